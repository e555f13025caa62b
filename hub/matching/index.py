"""Where the matcher finds golden records: the :class:`GoldenIndex` interface and an in-memory one.

The index holds one :class:`Entry` per source record (its normalised values and the golden id it
belongs to) under its rule keys and blocking keys. The matcher asks for a block with a limit and
never for more, so an index backed by a database answers each question with one indexed query
(``... WHERE key = ? LIMIT ?``) and a new record costs the same with 10 thousand or 10 million
golden records.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Entry:
    record_id: str  # the source record, e.g. "shop:1042"
    golden_id: str
    values: Mapping[str, str]  # normalised


class GoldenIndex(Protocol):
    def known(self, record_id: str) -> str | None:
        """The golden id of a source record already indexed, or None."""
        ...

    def by_rule(self, key: str, limit: int) -> Sequence[Entry]:
        """At most ``limit`` entries holding the rule key ``key``."""
        ...

    def block(self, key: str, limit: int) -> Sequence[Entry]:
        """At most ``limit`` entries of the block ``key``."""
        ...

    def add(self, entry: Entry, rule_keys: Iterable[str], block_keys: Iterable[str]) -> None:
        """Index ``entry`` under its keys."""
        ...


class MemoryIndex:
    """A :class:`GoldenIndex` in dicts: for tests, the benchmark and in-process use."""

    def __init__(self) -> None:
        self._rules: dict[str, list[Entry]] = defaultdict(list)
        self._blocks: dict[str, list[Entry]] = defaultdict(list)
        self._records: dict[str, Entry] = {}
        self.counted: set[str] = set()  # fields whose values are counted (term frequencies)
        self._counts: Counter[tuple[str, str]] = Counter()

    def __len__(self) -> int:
        return len(self._records)

    def known(self, record_id: str) -> str | None:
        entry = self._records.get(record_id)
        return entry.golden_id if entry is not None else None

    def by_rule(self, key: str, limit: int) -> Sequence[Entry]:
        return self._rules.get(key, [])[:limit]

    def block(self, key: str, limit: int) -> Sequence[Entry]:
        return self._blocks.get(key, [])[:limit]

    def add(self, entry: Entry, rule_keys: Iterable[str], block_keys: Iterable[str]) -> None:
        if entry.record_id in self._records:
            raise ValueError(f"record {entry.record_id!r} is indexed already")
        self._records[entry.record_id] = entry
        for name in self.counted:
            value = entry.values.get(name)
            if value:
                self._counts[(name, value)] += 1
        for key in rule_keys:
            self._rules[key].append(entry)
        for key in block_keys:
            self._blocks[key].append(entry)

    def frequency(self, field: str, value: str) -> tuple[int, int] | None:
        """How many indexed records hold ``value`` in ``field``, of how many (None: the field
        is not counted)."""
        if field not in self.counted:
            return None
        return self._counts[(field, value)], len(self._records)

    def block_sizes(self) -> Mapping[str, int]:
        return {key: len(entries) for key, entries in self._blocks.items()}

    def clusters(self) -> dict[str, list[str]]:
        """Golden id → its source records, in the order they were indexed."""
        out: dict[str, list[str]] = defaultdict(list)
        for entry in self._records.values():
            out[entry.golden_id].append(entry.record_id)
        return dict(out)
