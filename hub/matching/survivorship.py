"""Survivorship: the golden record's value of each field, chosen among its linked source records.

Pure functions: the same source records and rules give the same golden record, whatever order
the records come in. Every value keeps where it came from (system, source id, time) and the rule
that chose it. Empty values (``None``, ``""``, empty lists) never survive while another record
has one.

- ``source_priority``  the value of the first system in ``sources`` that has one (systems not
                       listed come after them); the most recent wins within a system.
- ``most_recent``      the value of the record updated last.
- ``most_complete``    the longest value (its text form); the most recent on a tie.
- ``most_frequent``    the value most records agree on; the most recent on a tie.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

RuleName = Literal["source_priority", "most_recent", "most_complete", "most_frequent"]


@dataclass(frozen=True)
class FieldRule:
    rule: RuleName = "most_recent"
    sources: tuple[str, ...] = ()  # for source_priority: the systems, most trusted first


@dataclass(frozen=True)
class SurvivorshipRules:
    default: FieldRule = FieldRule()
    fields: Mapping[str, FieldRule] = field(default_factory=dict)

    def for_field(self, name: str) -> FieldRule:
        return self.fields.get(name, self.default)


@dataclass(frozen=True)
class SourceRecord:
    """One system's record of the object, as linked to the golden record."""

    system: str
    source_id: str
    updated_at: datetime
    values: Mapping[str, Any]


@dataclass(frozen=True)
class Survivor:
    """A golden value and its provenance."""

    value: Any
    system: str
    source_id: str
    updated_at: datetime
    rule: RuleName


@dataclass(frozen=True)
class GoldenRecord:
    golden_id: str
    fields: dict[str, Survivor]
    sources: tuple[tuple[str, str], ...]  # (system, source id) of every linked record

    def values(self) -> dict[str, Any]:
        return {name: s.value for name, s in self.fields.items()}


def is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, (str, list, dict, tuple)) and len(value) == 0)


def _text(value: Any) -> str:
    return value.strip().casefold() if isinstance(value, str) else repr(value)


def _newest_first(records: Iterable[SourceRecord]) -> list[SourceRecord]:
    """Latest first; system and source id break ties, so the input order never matters."""
    ordered = sorted(records, key=lambda r: (r.system, r.source_id))
    return sorted(ordered, key=lambda r: r.updated_at, reverse=True)


def choose(name: str, rule: FieldRule, records: Iterable[SourceRecord]) -> Survivor | None:
    """The surviving value of field ``name`` among ``records``, or None if none has one."""
    holders = [r for r in _newest_first(records) if not is_empty(r.values.get(name))]
    if not holders:
        return None
    if rule.rule == "source_priority":
        rank = {system: i for i, system in enumerate(rule.sources)}
        best = min(holders, key=lambda r: rank.get(r.system, len(rank)))  # min is stable
    elif rule.rule == "most_complete":
        best = max(holders, key=lambda r: len(str(r.values[name]).strip()))
    elif rule.rule == "most_frequent":
        counts = Counter(_text(r.values[name]) for r in holders)
        best = max(holders, key=lambda r: counts[_text(r.values[name])])
    else:
        best = holders[0]
    return Survivor(best.values[name], best.system, best.source_id, best.updated_at, rule.rule)


def survive(
    golden_id: str, records: Iterable[SourceRecord], rules: SurvivorshipRules
) -> GoldenRecord:
    """The golden record of ``records``: every field any of them has, chosen by its rule."""
    linked = list(records)
    names = sorted({name for r in linked for name in r.values})
    fields = {}
    for name in names:
        survivor = choose(name, rules.for_field(name), linked)
        if survivor is not None:
            fields[name] = survivor
    sources = tuple(sorted({(r.system, r.source_id) for r in linked}))
    return GoldenRecord(golden_id, fields, sources)
