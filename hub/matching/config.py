"""The match configuration (``mdm.yaml``): per entity, how records are normalised, matched and
merged. The reference with every key is docs/mdm.md; examples/mdm.yaml is a worked example.

    entities:
      customer:
        fields:                                  # field: normaliser, or {normalise: ..., options}
          email: email
          phone: {normalise: phone, region: DE, country_field: country}
          last_name: name
        rules:                                   # deterministic: all fields present and equal
          - {name: same-email, fields: [email]}
        compare:                                 # Fellegi-Sunter levels per field
          last_name:
            comparator: jaro_winkler
            levels: [{at: 1, m: 0.9, u: 0.01}, {at: 0.9, m: 0.06, u: 0.02}]
        prior: 0.05
        thresholds: {upper: 0.99, lower: 0.8}    # match probability
        blocking:
          keys: [[postcode, soundex(last_name)]]
        survivorship: {default: most_recent}

A bad file is refused as a whole with a :class:`ConfigError` listing every problem with its
file, line and path, like hub.yaml and the mappings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from ..errors import ConfigError, Problem
from ..yamlfile import Loc, YamlDoc, load_yaml, validation_problems
from .blocking import BadKey, BlockingKey, KeyPart
from .compare import COMPARATORS, ComparatorName
from .normalise import NORMALISERS, FieldNormaliser, NormaliseOptions, NormaliserName
from .scoring import Comparison, Level, prior_weight
from .survivorship import FieldRule, RuleName, SurvivorshipRules


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _shorthand(key: str) -> Any:
    def expand(value: Any) -> Any:
        return {key: value} if isinstance(value, str) else value

    return BeforeValidator(expand)


class FieldSpec(_Strict):
    normalise: NormaliserName
    region: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")
    country_field: str | None = None
    date_order: Literal["dmy", "mdy"] = "dmy"
    gmail_canonical: bool = False


class RuleSpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    fields: list[str] = Field(min_length=1)


class LevelSpec(_Strict):
    at: float = Field(gt=0, le=1)
    m: float = Field(gt=0, lt=1)
    u: float = Field(gt=0, lt=1)


class ElseSpec(_Strict):
    m: float = Field(gt=0, lt=1)
    u: float = Field(gt=0, lt=1)


class CompareSpec(_Strict):
    comparator: ComparatorName
    levels: list[LevelSpec] = Field(min_length=1)
    else_: ElseSpec | None = Field(default=None, alias="else")
    swap_with: str | None = None
    term_frequency: bool = False  # the exact level's u: how common the value is (smoothed)


class ThresholdSpec(_Strict):
    upper: float = Field(gt=0, le=1)
    lower: float = Field(ge=0, le=1)


class BlockingSpec(_Strict):
    keys: list[list[str]] = Field(min_length=1)
    max_block_size: int = Field(default=1000, ge=1)
    max_candidates: int = Field(default=100, ge=1)


class FieldRuleSpec(_Strict):
    rule: RuleName
    sources: list[str] | None = None


class SurvivorshipSpec(_Strict):
    default: RuleName = "most_recent"
    sources: list[str] = []
    fields: dict[str, Annotated[FieldRuleSpec, _shorthand("rule")]] = {}


class EntitySpec(_Strict):
    fields: dict[str, Annotated[FieldSpec, _shorthand("normalise")]] = Field(min_length=1)
    rules: list[RuleSpec] = []
    compare: dict[str, CompareSpec] = {}
    prior: float = Field(default=0.01, gt=0, lt=1)
    thresholds: ThresholdSpec
    blocking: BlockingSpec
    survivorship: SurvivorshipSpec = SurvivorshipSpec()


class MatchFile(_Strict):
    entities: dict[str, EntitySpec] = Field(min_length=1)


@dataclass(frozen=True)
class Rule:
    name: str
    fields: tuple[str, ...]

    def key(self, values: dict[str, str]) -> str | None:
        """The rule's key of a record, or None if one of its fields is missing."""
        parts = []
        for name in self.fields:
            value = values.get(name)
            if value is None:
                return None
            parts.append(value)
        return f"{self.name}:" + "\x1f".join(parts)


@dataclass(frozen=True)
class EntityConfig:
    """One entity's match configuration, checked and compiled: what the matcher runs."""

    entity: str
    fields: tuple[FieldNormaliser, ...]
    rules: tuple[Rule, ...]
    comparisons: tuple[Comparison, ...]
    prior: float
    upper: float
    lower: float
    keys: tuple[BlockingKey, ...]
    max_block_size: int
    max_candidates: int
    survivorship: SurvivorshipRules = field(default_factory=SurvivorshipRules)

    @property
    def prior_weight(self) -> float:
        return prior_weight(self.prior)


@dataclass(frozen=True)
class MatchConfig:
    file: str
    entities: dict[str, EntityConfig]


def load_match_config(path: Path, text: str | None = None) -> MatchConfig:
    """Read and check ``path`` (or ``text`` as if it were that file)."""
    doc = load_yaml(path, text)
    if not isinstance(doc.data, dict):
        raise ConfigError([doc.problem((), "must be a mapping with `entities:`")])
    return parse_match_config(doc, ())


def parse_match_config(doc: YamlDoc, prefix: Loc) -> MatchConfig:
    """The configuration at ``prefix`` of ``doc`` (``()`` for mdm.yaml, ``("mdm",)`` for a
    section of another file)."""
    data: Any = doc.data
    for part in prefix:
        data = data[part]
    try:
        spec = MatchFile.model_validate(data)
    except PydanticValidationError as exc:
        raise ConfigError(validation_problems(doc, prefix, exc)) from None
    problems: list[Problem] = []
    entities = {
        name: _compile(name, entity, doc, (*prefix, "entities", name), problems)
        for name, entity in spec.entities.items()
    }
    if problems:
        raise ConfigError(problems)
    return MatchConfig(doc.file, entities)


def _compile(
    name: str, spec: EntitySpec, doc: YamlDoc, loc: Loc, problems: list[Problem]
) -> EntityConfig:
    def problem(at: Loc, message: str) -> None:
        problems.append(doc.problem((*loc, *at), message))

    known = set(spec.fields)

    def check_field(at: Loc, field_name: str) -> None:
        if field_name not in known:
            problem(at, f"unknown field {field_name!r} (fields: {', '.join(spec.fields)})")

    normalisers = []
    for fname, fspec in spec.fields.items():
        if fspec.country_field is not None:
            check_field(("fields", fname, "country_field"), fspec.country_field)
            target = spec.fields.get(fspec.country_field)
            if target is not None and target.normalise != "country":
                problem(
                    ("fields", fname, "country_field"),
                    f"{fspec.country_field!r} is not normalised as a country",
                )
        if fspec.country_field is not None and fspec.normalise not in ("phone", "postcode"):
            problem(("fields", fname, "country_field"), "only phone and postcode use a country")
        if fspec.region is not None and fspec.normalise != "phone":
            problem(("fields", fname, "region"), "only phone uses a region")
        options = NormaliseOptions(
            fspec.region, fspec.country_field, fspec.date_order, fspec.gmail_canonical
        )
        normalisers.append(FieldNormaliser(fname, NORMALISERS[fspec.normalise], options))

    rules = []
    seen_rules: set[str] = set()
    for i, rspec in enumerate(spec.rules):
        if rspec.name in seen_rules:
            problem(("rules", i, "name"), f"rule name {rspec.name!r} used twice")
        seen_rules.add(rspec.name)
        for j, fname in enumerate(rspec.fields):
            check_field(("rules", i, "fields", j), fname)
        rules.append(Rule(rspec.name, tuple(rspec.fields)))

    comparisons = []
    for fname, cspec in spec.compare.items():
        check_field(("compare", fname), fname)
        if cspec.swap_with is not None:
            check_field(("compare", fname, "swap_with"), cspec.swap_with)
        target = spec.fields.get(fname)
        if cspec.comparator == "date" and target is not None and target.normalise != "date":
            problem(("compare", fname, "comparator"), f"{fname!r} is not normalised as a date")
        ats = [lv.at for lv in cspec.levels]
        if ats != sorted(ats, reverse=True) or len(set(ats)) != len(ats):
            problem(("compare", fname, "levels"), "levels must go from the highest `at` down")
        m_sum = sum(lv.m for lv in cspec.levels)
        u_sum = sum(lv.u for lv in cspec.levels)
        if cspec.else_ is None and (m_sum >= 1 or u_sum >= 1):
            problem(
                ("compare", fname, "levels"),
                "the levels' m (and u) must add up to less than 1: `else` gets the rest",
            )
        levels = [Level(f">={lv.at:g}", lv.at, lv.m, lv.u) for lv in cspec.levels]
        if cspec.else_ is not None:
            levels.append(Level("else", 0.0, cspec.else_.m, cspec.else_.u))
        elif m_sum < 1 and u_sum < 1:
            levels.append(Level("else", 0.0, 1 - m_sum, 1 - u_sum))
        comparisons.append(
            Comparison(
                fname,
                cspec.comparator,
                COMPARATORS[cspec.comparator],
                tuple(levels),
                cspec.swap_with,
                cspec.term_frequency,
            )
        )

    if spec.thresholds.lower > spec.thresholds.upper:
        problem(("thresholds", "lower"), "lower must not be above upper")
    if not comparisons and not rules:
        problem((), "needs rules or compare (nothing would ever match)")

    keys = []
    for i, parts in enumerate(spec.blocking.keys):
        if not parts:
            problem(("blocking", "keys", i), "a key needs at least one part")
            continue
        parsed = []
        for j, text in _rejoin(parts):
            try:
                part = KeyPart.parse(text)
            except BadKey as exc:
                problem(("blocking", "keys", i, j), str(exc))
                continue
            check_field(("blocking", "keys", i, j), part.field)
            parsed.append(part)
        keys.append(BlockingKey("+".join(str(p) for p in parsed), tuple(parsed)))

    surv = spec.survivorship
    field_rules = {}
    for fname, frule in surv.fields.items():
        check_field(("survivorship", "fields", fname), fname)
        sources = tuple(frule.sources) if frule.sources is not None else tuple(surv.sources)
        if frule.rule == "source_priority" and not sources:
            problem(("survivorship", "fields", fname), "source_priority needs `sources`")
        field_rules[fname] = FieldRule(frule.rule, sources)
    if surv.default == "source_priority" and not surv.sources:
        problem(("survivorship", "default"), "source_priority needs `sources`")

    return EntityConfig(
        entity=name,
        fields=tuple(normalisers),
        rules=tuple(rules),
        comparisons=tuple(comparisons),
        prior=spec.prior,
        upper=spec.thresholds.upper,
        lower=spec.thresholds.lower,
        keys=tuple(keys),
        max_block_size=spec.blocking.max_block_size,
        max_candidates=spec.blocking.max_candidates,
        survivorship=SurvivorshipRules(FieldRule(surv.default, tuple(surv.sources)), field_rules),
    )


def _rejoin(parts: list[str]) -> list[tuple[int, str]]:
    """``[domain(email), prefix(name, 3)]`` reads in YAML as three parts (a comma ends an item
    of a [flow list]); put ``prefix(name`` and ``3)`` back together."""
    out: list[tuple[int, str]] = []
    open_at: int | None = None
    for j, text in enumerate(parts):
        if open_at is not None:
            i, head = out[-1]
            out[-1] = (i, f"{head}, {text}")
            if text.count(")") > text.count("("):
                open_at = None
            continue
        out.append((j, text))
        if text.count("(") > text.count(")"):
            open_at = j
    return out
