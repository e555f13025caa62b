"""The matcher: one new source record in, its golden id and the reasons out.

For each record: normalise it (failures become problems, the rest goes on); a record already
indexed keeps its golden id (``known``); else the deterministic rules in order (the first whose
key an indexed record shares links to it: ``link`` by rule); else score the candidates of its
blocks and decide on the best one's match probability:

- ``>= upper``           ``link``    the record joins that golden record;
- ``>= lower``           ``review``  it gets its own golden id, and the candidates go to a
                                     steward (a review task) who may merge them later;
- below, or no candidate ``new``     it gets its own golden id.

:meth:`Matcher.match` decides without changing anything; :meth:`Matcher.resolve` also indexes
the record, so later records can match it. The :class:`MatchResult` explains itself: the rule or
the score with each field's part, every candidate compared, the blocks that were too large.
"""

from __future__ import annotations

import functools
import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ..mdm import PREFIX
from .blocking import keys_of
from .config import EntityConfig
from .index import Entry, GoldenIndex, MemoryIndex
from .normalise import FieldProblem, normalise_record
from .scoring import FieldScore, probability, score_many, score_pair, tf_weight


class Decision(StrEnum):
    KNOWN = "known"
    LINK = "link"
    REVIEW = "review"
    NEW = "new"


@dataclass(frozen=True)
class Candidate:
    golden_id: str
    record_id: str  # the golden record's member that scored best
    score: float  # weight of evidence, bits
    probability: float


@dataclass(frozen=True)
class SkippedBlock:
    key: str
    reason: str  # "larger than max_block_size (1000)"


@dataclass(frozen=True)
class MatchResult:
    record_id: str
    decision: Decision
    golden_id: str  # what the record resolves to now (a new id for review and new)
    values: Mapping[str, str]  # normalised
    rule: str | None = None  # the deterministic rule that linked it
    best: Candidate | None = None
    prior_weight: float = 0.0  # where every candidate's score starts (Matcher.prior_weight)
    candidates: tuple[Candidate, ...] = ()  # one per golden record compared, best first
    review: tuple[str, ...] = ()  # golden ids a steward should decide on
    skipped: tuple[SkippedBlock, ...] = ()
    truncated: bool = False  # max_candidates was reached: some block members were not compared
    compared: int = 0  # source records scored (at most max_candidates)
    problems: tuple[FieldProblem, ...] = ()
    rule_keys: tuple[str, ...] = field(default=(), repr=False)
    block_keys: tuple[str, ...] = field(default=(), repr=False)
    # makes ``fields`` when first asked: most results are stored without their explanation
    explain: Callable[[], tuple[FieldScore, ...]] | None = field(
        default=None, repr=False, compare=False
    )

    @functools.cached_property
    def fields(self) -> tuple[FieldScore, ...]:
        """The best candidate's score, field by field (empty: no candidate)."""
        return self.explain() if self.explain is not None else ()

    @property
    def probability(self) -> float | None:
        return self.best.probability if self.best is not None else None


def random_id(entity: str) -> Callable[[], str]:
    prefix = PREFIX.get(entity, entity[:3])
    return lambda: f"{prefix}_{uuid.uuid4().hex[:24]}"


class Matcher:
    """Matches the records of one entity against ``index``."""

    def __init__(
        self,
        config: EntityConfig,
        index: GoldenIndex | None = None,
        new_id: Callable[[], str] | None = None,
    ) -> None:
        self.config = config
        self.index: GoldenIndex = index if index is not None else MemoryIndex()
        self.new_id = new_id or random_id(config.entity)
        self._prior = config.prior_weight
        self._tf = tuple(c for c in config.comparisons if c.term_frequency)
        counted = getattr(self.index, "counted", None)
        if self._tf and isinstance(counted, set):  # the index counts these fields' values
            counted.update(c.field for c in self._tf)

    def normalise(self, record: Mapping[str, Any]) -> tuple[dict[str, str], list[FieldProblem]]:
        return normalise_record(list(self.config.fields), record)

    def keys(self, values: dict[str, str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The rule keys and the blocking keys of a record's normalised ``values``."""
        cfg = self.config
        rules = tuple(k for k in (rule.key(values) for rule in cfg.rules) if k is not None)
        return rules, tuple(keys_of(list(cfg.keys), values))

    def match(
        self,
        record_id: str,
        record: Mapping[str, Any],
        normalised: tuple[dict[str, str], list[FieldProblem]] | None = None,
        keys: tuple[Sequence[str], Sequence[str]] | None = None,
    ) -> MatchResult:
        """The decision for ``record`` (known as ``record_id`` in its system); changes nothing.
        ``normalised``: what :meth:`normalise` gave for it, and ``keys``: its rule and blocking
        keys (:meth:`keys`), if the caller has them already."""
        cfg = self.config
        values, problems = normalised if normalised is not None else self.normalise(record)
        rule_keys, block_keys = (
            (tuple(keys[0]), tuple(keys[1])) if keys is not None else self.keys(values)
        )
        common: dict[str, Any] = {
            "problems": tuple(problems),
            "rule_keys": rule_keys,
            "block_keys": block_keys,
        }
        known = self.index.known(record_id)
        if known is not None:
            return MatchResult(record_id, Decision.KNOWN, known, values, **common)
        exact = self._exact(values)

        for key in rule_keys:
            hits = self.index.by_rule(key, cfg.max_candidates)
            if hits:
                prior = self.prior_weight(len({e.golden_id for e in hits}))
                ranked = self._rank(values, hits, prior, exact)
                best = ranked[0]
                return MatchResult(
                    record_id,
                    Decision.LINK,
                    best.golden_id,
                    values,
                    rule=key.split(":", 1)[0],
                    best=best,
                    prior_weight=prior,
                    explain=functools.partial(self._explain, values, hits, best, prior, exact),
                    candidates=tuple(ranked),
                    compared=len(hits),
                    **common,
                )

        entries, skipped, truncated = self._candidates(block_keys)
        common.update(skipped=tuple(skipped), truncated=truncated, compared=len(entries))
        prior = self.prior_weight(len({e.golden_id for e in entries}))
        ranked = self._rank(values, entries, prior, exact)
        if not ranked:
            return MatchResult(record_id, Decision.NEW, self.new_id(), values, **common)
        best = ranked[0]
        common.update(
            best=best,
            prior_weight=prior,
            explain=functools.partial(self._explain, values, entries, best, prior, exact),
            candidates=tuple(ranked),
        )
        if best.probability >= cfg.upper:
            return MatchResult(record_id, Decision.LINK, best.golden_id, values, **common)
        if best.probability >= cfg.lower:
            review = tuple(c.golden_id for c in ranked if c.probability >= cfg.lower)
            return MatchResult(
                record_id, Decision.REVIEW, self.new_id(), values, review=review, **common
            )
        return MatchResult(record_id, Decision.NEW, self.new_id(), values, **common)

    def resolve(self, record_id: str, record: Mapping[str, Any]) -> MatchResult:
        """Match ``record`` and index it under the golden id it got."""
        result = self.match(record_id, record)
        if result.decision is not Decision.KNOWN:
            self.index.add(
                Entry(record_id, result.golden_id, result.values),
                result.rule_keys,
                result.block_keys,
            )
        return result

    def _candidates(
        self, block_keys: tuple[str, ...]
    ) -> tuple[list[Entry], list[SkippedBlock], bool]:
        """The members of the record's blocks, at most ``max_candidates``: when there are more,
        those sharing the most blocks with it (then block order), the likeliest matches."""
        cfg = self.config
        shared: dict[str, int] = {}
        entries: dict[str, Entry] = {}
        skipped: list[SkippedBlock] = []
        for key in block_keys:
            members = self.index.block(key, cfg.max_block_size + 1)
            if len(members) > cfg.max_block_size:
                skipped.append(
                    SkippedBlock(key, f"larger than max_block_size ({cfg.max_block_size})")
                )
                continue
            for entry in members:
                if entry.record_id in shared:
                    shared[entry.record_id] += 1
                else:
                    shared[entry.record_id] = 1
                    entries[entry.record_id] = entry
        if len(entries) <= cfg.max_candidates:
            return list(entries.values()), skipped, False
        best = sorted(entries, key=lambda r: -shared[r])[: cfg.max_candidates]  # sort is stable
        return [entries[r] for r in best], skipped, True

    def prior_weight(self, candidates: int) -> float:
        """The prior's weight for one of ``candidates`` golden records compared: the
        configured prior is the chance that a new record has a match among its candidates,
        shared among them. With one candidate it is the prior itself; with 70 (a million
        golden records) each starts log2(70) ≈ 6 bits lower, so more strangers compared do not
        mean more chances of a wrong link (bench/mdm.py: precision 0.993 → 1.0 at a million)."""
        return self._prior - math.log2(max(1, candidates))

    def _exact(self, values: Mapping[str, str]) -> dict[str, float] | None:
        """Term frequencies: the exact level's weight of each ``term_frequency`` field for
        this record's value, from how many stored records hold it (the index's counts)."""
        frequency = getattr(self.index, "frequency", None)
        if not self._tf or frequency is None:
            return None
        exact = {}
        for c in self._tf:
            value = values.get(c.field)
            found = frequency(c.field, value) if value else None
            if found is not None:
                exact[c.field] = tf_weight(c.levels[0], *found)
        return exact or None

    def _rank(
        self,
        values: Mapping[str, str],
        entries: Sequence[Entry],
        prior: float,
        exact: Mapping[str, float] | None = None,
    ) -> list[Candidate]:
        """One candidate per golden record (its best-scoring member), best first."""
        best: dict[str, Candidate] = {}
        scores = score_many(
            self.config.comparisons, prior, values, [e.values for e in entries], exact
        )
        for entry, score in zip(entries, scores, strict=True):
            held = best.get(entry.golden_id)
            if held is None or score > held.score:
                best[entry.golden_id] = Candidate(
                    entry.golden_id, entry.record_id, score, probability(score)
                )
        return sorted(best.values(), key=lambda c: (-c.score, c.golden_id))

    def _explain(
        self,
        values: Mapping[str, str],
        entries: Sequence[Entry],
        best: Candidate,
        prior: float,
        exact: Mapping[str, float] | None = None,
    ) -> tuple[FieldScore, ...]:
        entry = next(e for e in entries if e.record_id == best.record_id)
        _, parts = score_pair(
            self.config.comparisons, prior, values, entry.values, explain=True, exact=exact
        )
        return tuple(parts)
