"""Fellegi-Sunter scoring: how much likelier two records look if they are one person.

Each comparison turns a field's similarity into a level: the first of its ordered levels whose
``at`` the similarity reaches, or the ``else`` level. A level has two probabilities: ``m``, how
often a true match lands in it, and ``u``, how often a non-match does. Its weight is
``log2(m / u)``: positive when the level is evidence for a match, negative against. A field that
either record lacks adds nothing. The score is the prior's weight plus the fields' weights, and
the match probability is ``1 / (1 + 2 ** -score)``. This is the model of Splink and
recordlinkage (without their EM estimation: m and u are set in the configuration, and the
benchmark checks them).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field

from .compare import Comparator


@dataclass(frozen=True)
class Level:
    label: str  # "≥0.92", "else"
    at: float  # the lowest similarity in this level (0 for else)
    m: float
    u: float
    weight: float = dataclass_field(init=False)  # log2(m / u)

    def __post_init__(self) -> None:
        object.__setattr__(self, "weight", math.log2(self.m / self.u))


@dataclass(frozen=True)
class Comparison:
    field: str
    comparator_name: str
    comparator: Comparator
    levels: tuple[Level, ...]  # descending ``at``, the last one is ``else`` (at 0)
    swap_with: str | None = None  # also compare with the other record's field (swapped names)
    term_frequency: bool = False  # the exact level's weight from how common the value is
    # (at, weight) of each level, for the scoring loop
    steps: tuple[tuple[float, float], ...] = dataclass_field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", tuple((lv.at, lv.weight) for lv in self.levels))

    def level_of(self, similarity: float) -> Level:
        for level in self.levels:
            if similarity >= level.at:
                return level
        return self.levels[-1]


@dataclass(frozen=True)
class FieldScore:
    """One field's part in a score: the values compared, the similarity, level and weight."""

    field: str
    comparator: str
    left: str | None
    right: str | None
    similarity: float | None  # None: a value is missing, the field adds nothing
    level: str
    weight: float


def prior_weight(prior: float) -> float:
    return math.log2(prior / (1 - prior))


def probability(score: float) -> float:
    if score > 60:
        return 1.0
    if score < -60:
        return 0.0
    return 1.0 / (1.0 + math.pow(2.0, -score))


TF_PSEUDO_RECORDS = 1000
"""Term frequencies are smoothed as if this many records had the configured u: a value's
exact-level u is ``(count + K·u) / (total + K)``, the configured u while few records are
stored, the value's share of the stored records once many are."""


def tf_weight(level: Level, count: int, total: int) -> float:
    """The exact level's weight for a value ``count`` of ``total`` stored records hold."""
    u = (count + TF_PSEUDO_RECORDS * level.u) / (total + TF_PSEUDO_RECORDS)
    return math.log2(level.m / u)


def score_pair(
    comparisons: tuple[Comparison, ...],
    prior_weight: float,
    left: Mapping[str, str],
    right: Mapping[str, str],
    explain: bool = False,
    exact: Mapping[str, float] | None = None,
) -> tuple[float, list[FieldScore]]:
    """The score (weight of evidence, in bits) of ``left`` against ``right``; with ``explain``
    also each field's part. ``exact``: for some fields, the weight of an exact agreement on
    ``left``'s value instead of the configured one (term frequencies)."""
    if explain:
        return _explained(comparisons, prior_weight, left, right, exact)
    return score_many(comparisons, prior_weight, left, (right,), exact)[0], []


def score_many(
    comparisons: tuple[Comparison, ...],
    prior_weight: float,
    left: Mapping[str, str],
    rights: Iterable[Mapping[str, str]],
    exact: Mapping[str, float] | None = None,
) -> list[float]:
    """:func:`score_pair`'s score of ``left`` against each of ``rights`` (the matcher's inner
    loop: ``left``'s side is looked up once, not once per candidate)."""
    plan = []
    for c in comparisons:
        a = left.get(c.field)
        if a is None:  # a field left lacks adds nothing, whatever the other has
            continue
        steps = c.steps
        agree = exact.get(c.field, steps[0][1]) if exact else steps[0][1]
        plan.append((c.field, a, c.comparator, steps, c.swap_with, agree, steps[0][0]))
    scores = []
    for right in rights:
        get = right.get
        total = prior_weight
        for name, a, comparator, steps, swap_with, agree, top in plan:
            b = get(name)
            if b is None:
                continue
            if a == b:
                total += agree
                continue
            similarity = comparator(a, b)
            if swap_with is not None and similarity < top:  # at the top level: nothing to gain
                other = get(swap_with)
                if other is not None:
                    swapped = comparator(a, other)
                    if swapped > similarity:
                        similarity = swapped
            for at, weight in steps:
                if similarity >= at:
                    total += weight
                    break
            else:
                total += steps[-1][1]
        scores.append(total)
    return scores


def _explained(
    comparisons: tuple[Comparison, ...],
    prior_weight: float,
    left: Mapping[str, str],
    right: Mapping[str, str],
    exact: Mapping[str, float] | None,
) -> tuple[float, list[FieldScore]]:
    total = prior_weight
    parts: list[FieldScore] = []
    for c in comparisons:
        a = left.get(c.field)
        b = right.get(c.field)
        if a is None or b is None:
            parts.append(FieldScore(c.field, c.comparator_name, a, b, None, "missing", 0.0))
            continue
        similarity = c.comparator(a, b)
        if c.swap_with is not None and similarity < 1.0:
            other = right.get(c.swap_with)
            if other is not None:
                similarity = max(similarity, c.comparator(a, other))
        level = c.level_of(similarity)
        weight, label = level.weight, level.label
        if a == b and exact and c.field in exact:
            weight, label = exact[c.field], f"{level.label} (term frequency)"
        total += weight
        parts.append(FieldScore(c.field, c.comparator_name, a, b, similarity, label, weight))
    return total, parts
