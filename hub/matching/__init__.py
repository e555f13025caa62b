"""Record matching for MDM: normalise, block, compare, decide, and survivorship.

A pure library: no database, no broker. The MDM service stores the crosswalk and implements
:class:`GoldenIndex` on its tables; tests, the benchmark (bench/mdm.py) and anyone evaluating
the matcher use :class:`MemoryIndex`. docs/mdm.md explains the concepts and the configuration.

    config = load_match_config(Path("examples/mdm.yaml")).entities["customer"]
    matcher = Matcher(config)
    result = matcher.resolve("shop:1042", {"email": " Ann@Example.com", ...})
    result.decision, result.golden_id, result.fields   # link/review/new, the id, the reasons
"""

from .blocking import BlockingKey, KeyPart
from .compare import COMPARATORS
from .config import EntityConfig, MatchConfig, Rule, load_match_config, parse_match_config
from .evaluate import Quality, pairwise_quality
from .index import Entry, GoldenIndex, MemoryIndex
from .matcher import Candidate, Decision, Matcher, MatchResult, SkippedBlock
from .normalise import NORMALISERS, FieldProblem, NormaliseOptions, Unnormalisable, fold
from .scoring import Comparison, FieldScore, Level
from .survivorship import (
    FieldRule,
    GoldenRecord,
    SourceRecord,
    Survivor,
    SurvivorshipRules,
    choose,
    survive,
)

__all__ = [
    "COMPARATORS",
    "NORMALISERS",
    "BlockingKey",
    "Candidate",
    "Comparison",
    "Decision",
    "EntityConfig",
    "Entry",
    "FieldProblem",
    "FieldRule",
    "FieldScore",
    "GoldenIndex",
    "GoldenRecord",
    "KeyPart",
    "Level",
    "MatchConfig",
    "MatchResult",
    "Matcher",
    "MemoryIndex",
    "NormaliseOptions",
    "Quality",
    "Rule",
    "SkippedBlock",
    "SourceRecord",
    "Survivor",
    "SurvivorshipRules",
    "Unnormalisable",
    "choose",
    "fold",
    "load_match_config",
    "pairwise_quality",
    "parse_match_config",
    "survive",
]
