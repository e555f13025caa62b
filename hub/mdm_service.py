"""The MDM service: one golden id per business object across every system, on the database.

It runs :mod:`hub.matching` against the tables of :mod:`hub.db` (the crosswalk, golden records,
source records, match keys, review tasks, history)::

    service = MdmService(db, load_match_config(Path("mdm.yaml")))
    await service.resolve("customer", "shop", "1042", {"email": "ann@example.com", ...})
    await service.merge("customer", survivor, merged, actor="steward:ann")
    await service.unmerge("customer", merged, actor="steward:ann")

**Resolve.** A known external id is one crosswalk lookup (its attributes, when given, update its
source record and the golden record's survivorship). An unknown one is normalised, its rule and
blocking keys made, and matched against the stored records sharing a key (one indexed query per
key, :class:`DbIndex`): linked (``rule:<name>`` or ``match:<probability>``), or given a golden
record of its own, with a review task when the best candidate fell between the thresholds. A new
golden record has the id :class:`hub.mdm.DeterministicResolver` derives for the external id, so
nothing already published changes; a linked record's derived id is stored as an ``alias`` golden
row pointing at the golden record it joined, followed by lookups like a merged id.

**Exactly one golden record under concurrency.** The match-and-store step of an unknown record
runs in one transaction that first takes the locks of the record's keys: on PostgreSQL a
transaction advisory lock per key (its external id, every rule and blocking key; sorted, so two
transactions never wait for each other in a circle), on SQLite the database's write lock
(``BEGIN IMMEDIATE``). Whoever comes second finds the first one's crosswalk row (the same
record: the same golden id) or its keys (a near-duplicate: matched against it). The crosswalk's
unique key remains the arbiter: the row is inserted unless it exists, then read back.

**Merge and unmerge.** ``merge(survivor, merged)`` relinks the merged golden record's crosswalk
rows to the survivor, marks it ``merged`` into the survivor (its id keeps resolving: lookups
follow ``merged_into``) and recomputes survivorship; the history row keeps each moved row as it
was, so ``unmerge`` restores the crosswalk exactly. Each publishes ``hub.<entity>.merged`` or
``hub.<entity>.unmerged`` on the entity's canonical topic, once keyed by each golden id involved
(docs/mdm.md: keys and order across a merge), then each active golden record it leaves as a
canonical customer of origin ``mdm``, for the linked systems to follow (:mod:`hub.mdm_follow`).
``unmerge`` of an alias (a record *linked* by matching) undoes the link: the record gets a
golden record of its own under the alias id. The history row is the outbox: an event not yet
acknowledged by the broker is published again by :meth:`MdmService.publish_pending`.

**Cache invalidation.** :meth:`MdmService.changes_since` answers "which golden ids did merges
and unmerges touch since history id N" in one indexed query, for resolvers in other processes to
poll; :meth:`MdmService.on_change` calls back in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import hashlib
import logging
import math
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import (
    JSON,
    DateTime,
    Text,
    bindparam,
    cast,
    delete,
    func,
    insert,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.util.concurrency import await_

from .db import Database, crosswalk, mdm_golden, mdm_history, mdm_keys, mdm_records, mdm_reviews
from .envelope import CloudEvent, derived_id
from .errors import MdmRefused
from .matching import Decision, Entry, MatchConfig, Matcher, MatchResult
from .matching.survivorship import (
    GoldenRecord,
    SourceRecord,
    SurvivorshipRules,
    is_empty,
    survive,
)
from .mdm import _derive
from .mdm_follow import follow_events, golden_customer

log = logging.getLogger(__name__)

Publish = Callable[[str, CloudEvent], Awaitable[None]]
"""``publish(entity, event)``: a merge or unmerge event onto the entity's canonical topic, keyed
by ``event.key``; returns once the broker has it."""

SEARCHED = ("email", "phone", "first_name", "last_name", "company")
"""Normalised fields a steward can search by (``mdm_keys`` kind ``search``)."""

_KEY_MAX = 255  # longer keys are shortened to a prefix and a digest (mdm_keys.key is 512)
_FOLLOWED = ("merged", "alias")  # golden ids that resolve to their merged_into
_FOLLOW_MAX = 32  # merged_into hops followed at most (a chain longer is a bug: it stops there)


def _key(key: str) -> str:
    if len(key) <= _KEY_MAX:
        return key
    digest = hashlib.blake2b(key.encode(), digest_size=16).hexdigest()
    return f"{key[:200]}#{digest}"


def _lock_id(entity: str, key: str) -> int:
    """A PostgreSQL advisory lock key (signed 64 bit) for one match key of ``entity``."""
    raw = hashlib.blake2b(f"mdm\x1f{entity}\x1f{key}".encode(), digest_size=8).digest()
    return int.from_bytes(raw, "big", signed=True)


def _jsonable(value: Any) -> Any:
    """``value`` as JSON can store it: strings, numbers, booleans, lists and objects kept,
    anything else as its text."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)


def _record_id(system: str, external_id: str) -> str:
    return f"{system}:{external_id}"


_gc_lock = threading.Lock()
_gc_pauses = 0  # batches resolving now that paused the garbage collector (_gc_paused)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """The cyclic garbage collector held off while a batch of new records is matched and
    stored, enabled again when the last such batch ends (if it was enabled before). A batch
    keeps its blocks' members, results and rows alive until it ends: each survived the young
    generations and counted towards the next full collection, so a batch of 500 set off
    collections that scanned every object of the process (bench/mdm.py: ~0.16 ms of a 0.85 ms
    new record on PostgreSQL). Reference counting still frees everything at once; only cycles
    wait, at most a batch's time."""
    global _gc_pauses
    with _gc_lock:
        if _gc_pauses == 0 and not gc.isenabled():  # paused by someone else: theirs to enable
            paused = False
        else:
            paused = True
            _gc_pauses += 1
            gc.disable()
    try:
        yield
    finally:
        if paused:
            with _gc_lock:
                _gc_pauses -= 1
                if _gc_pauses == 0:
                    gc.enable()


@dataclass(frozen=True)
class Resolution:
    """What :meth:`MdmService.match_record` did with a record."""

    golden_id: str
    decision: Decision  # known, link, review or new
    linked_by: str | None = None
    review_id: int | None = None
    result: MatchResult | None = None  # the matcher's explanation (None: known, or no config)


@dataclass(frozen=True)
class Change:
    """A merge or unmerge, as :meth:`MdmService.changes_since` reports it."""

    history_id: int
    entity: str
    action: str  # merge | unmerge
    survivor: str
    merged: str


_LOOKUP = select(crosswalk.c.golden_id).where(
    crosswalk.c.entity == bindparam("e"),
    crosswalk.c.system == bindparam("s"),
    crosswalk.c.external_id == bindparam("x"),
)
_BLOCK = (
    select(
        crosswalk.c.system,
        crosswalk.c.external_id,
        crosswalk.c.golden_id,
        mdm_records.c.normalised,
    )
    .select_from(
        mdm_keys.join(crosswalk, crosswalk.c.id == mdm_keys.c.crosswalk_id).join(
            mdm_records, mdm_records.c.crosswalk_id == mdm_keys.c.crosswalk_id
        )
    )
    .where(
        mdm_keys.c.entity == bindparam("entity"),
        mdm_keys.c.kind == bindparam("kind"),
        mdm_keys.c.key == bindparam("key"),
    )
    .order_by(mdm_keys.c.crosswalk_id)
    .limit(bindparam("limit"))
)


# DbIndex.prefetch: every key's block in one round trip, in crosswalk-id order within a key.
_PREFETCH = text(
    """
    WITH m AS MATERIALIZED (
        SELECT q.i, k.crosswalk_id
        FROM unnest(CAST(:kinds AS varchar[]), CAST(:keys AS varchar[]),
                    CAST(:limits AS int[])) WITH ORDINALITY AS q(kind, key, lim, i)
        CROSS JOIN LATERAL (
            SELECT k.crosswalk_id FROM mdm_keys AS k
            WHERE k.entity = :entity AND k.kind = q.kind AND k.key = q.key
            ORDER BY k.crosswalk_id LIMIT q.lim
        ) AS k
    )
    SELECT
        (SELECT array_agg(i ORDER BY i, crosswalk_id) FROM m),
        (SELECT array_agg(crosswalk_id ORDER BY i, crosswalk_id) FROM m),
        (SELECT CAST(json_agg(json_build_array(c.id, c.system, c.external_id, c.golden_id,
                                               r.normalised)) AS text)
         FROM (SELECT DISTINCT crosswalk_id FROM m) AS d
         JOIN crosswalk AS c ON c.id = d.crosswalk_id
         JOIN mdm_records AS r ON r.crosswalk_id = d.crosswalk_id)
    """
)
"""Every question's block in one statement, as one row (a row per member cost more to read
than to find): the arrays of ``(i, crosswalk id)`` per member (``i`` the question's place, from
1), then ``[crosswalk id, system, external id, golden id, normalised values]`` once per
distinct record as one JSON text, decoded by orjson in one call: blocks of one batch overlap."""


_PREFETCH_RAW = (
    str(_PREFETCH)
    .replace(":kinds", "$2")
    .replace(":keys", "$3")
    .replace(":limits", "$4")
    .replace(":entity", "$1")
)
""":data:`_PREFETCH` for asyncpg itself (:meth:`DbIndex.send_prefetch`)."""


@dataclass
class Prefetching:
    """A :meth:`DbIndex.send_prefetch` on its way: its questions, the statement's task."""

    wanted: list[tuple[str, str, int]]
    task: asyncio.Task[Any]


async def _started(statement: Awaitable[Any]) -> asyncio.Task[Any]:
    """``statement`` as a task, given one turn of the event loop to send itself."""
    task = asyncio.ensure_future(statement)
    await asyncio.sleep(0)
    return task


# MdmService._known: a batch's crosswalk rows and source attributes in one statement.
_KNOWN_PG = text(
    """
    SELECT c.system, c.external_id, c.id, c.golden_id, r.attributes
    FROM unnest(CAST(:systems AS varchar[]), CAST(:ids AS varchar[])) AS q(system, external_id)
    CROSS JOIN LATERAL (
        SELECT c.system, c.external_id, c.id, c.golden_id FROM crosswalk AS c
        WHERE c.entity = :entity AND c.system = q.system AND c.external_id = q.external_id
    ) AS c
    LEFT JOIN mdm_records AS r ON r.crosswalk_id = c.id
    """
).columns(attributes=JSON)

_PIPELINE = 100  # records matched while the next ones' blocks are fetched (PostgreSQL)
_CHUNK = 500  # keys per statement where arrays are not an option (SQLite)

# MdmService._survive_many on PostgreSQL: every golden record's fields in one statement.
_SURVIVED_PG = text(
    """
    UPDATE mdm_golden AS g SET fields = CAST(u.fields AS json), updated_at = :now
    FROM unnest(CAST(:ids AS varchar[]), CAST(:fields AS text[])) AS u(golden_id, fields)
    WHERE g.golden_id = u.golden_id
    """
)

_LOCK_ALL = text("SELECT count(pg_advisory_xact_lock(k)) FROM unnest(CAST(:keys AS bigint[])) AS k")


class DbIndex:
    """:class:`hub.matching.GoldenIndex` on the tables, within one transaction: each question
    is one indexed query on ``mdm_keys`` (primary key ``entity, kind, key, crosswalk_id``).
    On PostgreSQL :meth:`send_prefetch` asks the questions of many records in one round trip,
    which the server answers while the caller matches the records before them. Records
    decided in the same batch are not stored yet: :meth:`add` keeps them in memory, and they
    answer after the stored ones (they will get higher crosswalk ids)."""

    def __init__(self, conn: Connection, entity: str) -> None:
        self.conn = conn
        self.entity = entity
        self._fetched: dict[tuple[str, str, int], list[Entry]] = {}
        self._added: dict[tuple[str, str], list[Entry]] = {}
        # term frequencies: the matcher names the fields; names are counted by their search
        # keys (SEARCHED), the records of the batch decided so far included
        self.counted: set[str] = set()
        self._counts: dict[str, int] = {}
        self._total: int | None = None
        self._added_counts: dict[str, int] = {}
        self._added_total = 0
        self._sent: Prefetching | None = None  # a prefetch on its way (send_prefetch)

    def known(self, record_id: str) -> str | None:
        return None  # the service looked the crosswalk up under the record's lock

    def by_rule(self, key: str, limit: int) -> Sequence[Entry]:
        return self._entries("rule", key, limit)

    def block(self, key: str, limit: int) -> Sequence[Entry]:
        return self._entries("block", key, limit)

    def add(self, entry: Entry, rule_keys: Iterable[str], block_keys: Iterable[str]) -> None:
        for kind, keys in (("rule", rule_keys), ("block", block_keys)):
            for key in dict.fromkeys(keys):
                self._added.setdefault((kind, _key(key)), []).append(entry)
        self._added_total += 1
        for name in self.counted:
            value = entry.values.get(name)
            if value:
                key = _key(f"{name}:{value}")
                self._added_counts[key] = self._added_counts.get(key, 0) + 1

    def count(self, values: Iterable[tuple[str, str]]) -> None:
        """Read how many stored records hold each ``(field, value)`` (one statement for them
        all, chunked on SQLite) and how many records there are."""
        self.take_prefetch()
        keys = sorted(
            {_key(f"{f}:{v}") for f, v in values if f in self.counted and f in SEARCHED and v}
            - set(self._counts)
        )
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            for key, n in self.conn.execute(
                select(mdm_keys.c.key, func.count())
                .where(
                    mdm_keys.c.entity == self.entity,
                    mdm_keys.c.kind == "search",
                    mdm_keys.c.key.in_(chunk),
                )
                .group_by(mdm_keys.c.key)
            ):
                self._counts[key] = int(n)
            for key in chunk:
                self._counts.setdefault(key, 0)
        if self._total is None:
            self._total = int(
                self.conn.execute(
                    select(func.count())
                    .select_from(crosswalk)
                    .where(crosswalk.c.entity == self.entity)
                ).scalar_one()
            )

    def frequency(self, field: str, value: str) -> tuple[int, int] | None:
        """How many records hold ``value`` in ``field``, of how many (None: not counted)."""
        if field not in self.counted or field not in SEARCHED:
            return None
        key = _key(f"{field}:{value}")
        if key not in self._counts or self._total is None:
            self.count([(field, value)])
        assert self._total is not None
        return (
            self._counts[key] + self._added_counts.get(key, 0),
            self._total + self._added_total,
        )

    def prefetch(self, wanted: Sequence[tuple[str, str, int]]) -> None:
        """Answer the questions ``(kind, key, limit)`` in one statement (PostgreSQL: the same
        indexed query per key, run for each element of arrays by a ``LATERAL`` join)."""
        self.send_prefetch(wanted)
        self.take_prefetch()

    def send_prefetch(self, wanted: Sequence[tuple[str, str, int]]) -> None:
        """:meth:`prefetch` sent, not waited for (PostgreSQL): the server finds the blocks
        while the caller matches; :meth:`take_prefetch` (or the next question that needs the
        connection: asyncpg runs one statement at a time) reads the answer."""
        self.take_prefetch()
        wanted = [q for q in dict.fromkeys(wanted) if q not in self._fetched]
        if not wanted:
            return
        params = (
            self.entity,
            [kind for kind, _, _ in wanted],
            [_key(key) for _, key, _ in wanted],
            [limit for _, _, limit in wanted],
        )
        if self.conn.dialect.driver != "asyncpg":  # another driver: asked and answered now
            names = ("entity", "kinds", "keys", "limits")
            answer = self.conn.execute(_PREFETCH, dict(zip(names, params, strict=True))).one()
            self._keep(wanted, answer)
            return
        raw = self.conn.connection.driver_connection
        assert raw is not None
        self._sent = Prefetching(wanted, await_(_started(raw.fetchrow(_PREFETCH_RAW, *params))))

    def take_prefetch(self) -> None:
        """The answer of :meth:`send_prefetch` (if one is on its way), waited for and kept."""
        sent, self._sent = self._sent, None
        if sent is None:
            return
        self._keep(sent.wanted, await_(sent.task))

    def _keep(self, wanted: list[tuple[str, str, int]], answer: Any) -> None:
        questions, ids, records = answer
        members = zip(questions or (), ids or (), strict=True)  # in crosswalk-id order by key
        entries = {
            crosswalk_id: Entry(_record_id(system, external_id), golden_id, values or {})
            for crosswalk_id, system, external_id, golden_id, values in orjson.loads(
                records or "[]"
            )
        }
        found: dict[int, list[Entry]] = {i: [] for i in range(1, len(wanted) + 1)}
        for question, crosswalk_id in members:
            found[question].append(entries[crosswalk_id])
        for i, question in enumerate(wanted, 1):
            self._fetched[question] = found[i]

    def drop_prefetch(self) -> None:
        """Wait for a prefetch on its way, its answer (or error) dropped: the connection is
        free for what follows (a rollback)."""
        sent, self._sent = self._sent, None
        if sent is not None:
            with contextlib.suppress(Exception):
                await_(sent.task)

    def _entries(self, kind: str, key: str, limit: int) -> list[Entry]:
        stored = self._fetched.get((kind, key, limit))
        if stored is None and self._sent is not None:
            self.take_prefetch()
            stored = self._fetched.get((kind, key, limit))
        if stored is None:
            params = {"entity": self.entity, "kind": kind, "key": _key(key), "limit": limit}
            stored = [
                Entry(_record_id(system, external_id), golden_id, normalised)
                for system, external_id, golden_id, normalised in self.conn.execute(_BLOCK, params)
            ]
            self._fetched[(kind, key, limit)] = stored
        added = self._added.get((kind, _key(key)))
        return (stored + added)[:limit] if added else stored


def _now() -> datetime:
    return datetime.now(UTC)


_PG_TYPES = {"VARCHAR": "varchar", "TEXT": "text", "INTEGER": "int", "FLOAT": "float8"}


def _pg_type(column: Any) -> str:
    if isinstance(column.type, JSON):
        return "json"
    if isinstance(column.type, DateTime):
        return "timestamptz"
    return _PG_TYPES.get(column.type.__visit_name__.upper(), "text")


def _bulk_insert(
    db: Database,
    conn: Connection,
    table: Any,
    rows: Sequence[Mapping[str, Any]],
    *,
    ignore: bool = False,
    returning: Sequence[Any] = (),
) -> list[Any]:
    """Insert ``rows`` (all with the same keys) in one statement, skipping those whose key
    exists with ``ignore``; the ``returning`` columns of the rows inserted. On PostgreSQL the
    rows go as one array per column (``unnest``): one parameter set, JSON encoded by orjson;
    elsewhere an executemany."""
    if not rows:
        return []
    if db.dialect != "postgresql":
        statement = db.insert_ignore(table) if ignore else insert(table)
        if returning:
            return list(conn.execute(statement.returning(*returning), list(rows)))
        conn.execute(statement, list(rows))
        return []
    columns = {name: [row[name] for row in rows] for name in rows[0]}
    return _insert_columns(db, conn, table, columns, ignore=ignore, returning=returning)


def _insert_columns(
    db: Database,
    conn: Connection,
    table: Any,
    columns: Mapping[str, list[Any]],
    *,
    ignore: bool = False,
    returning: Sequence[Any] = (),
) -> list[Any]:
    """:func:`_bulk_insert` of rows given as one list of values per column (all as long)."""
    names = list(columns)
    if not names or not columns[names[0]]:
        return []
    if db.dialect != "postgresql":
        rows = [
            dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)
        ]
        return _bulk_insert(db, conn, table, rows, ignore=ignore, returning=returning)
    kinds = [_pg_type(table.c[name]) for name in names]
    params: dict[str, list[Any]] = {}
    for i, (name, kind) in enumerate(zip(names, kinds, strict=True)):
        values = columns[name]
        if kind == "json":
            values = [None if v is None else orjson.dumps(v).decode() for v in values]
        params[f"c{i}"] = values
    arrays = ", ".join(
        f"CAST(:c{i} AS {'text' if kind == 'json' else kind}[])" for i, kind in enumerate(kinds)
    )
    picks = ", ".join(
        f"CAST(u.c{i} AS json)" if kind == "json" else f"u.c{i}" for i, kind in enumerate(kinds)
    )
    sql = (
        f"INSERT INTO {table.name} ({', '.join(names)}) SELECT {picks} FROM unnest({arrays}) "
        f"AS u({', '.join(f'c{i}' for i in range(len(names)))})"
        + (" ON CONFLICT DO NOTHING" if ignore else "")
        + (f" RETURNING {', '.join(c.name for c in returning)}" if returning else "")
    )
    result = conn.execute(text(sql), params)
    return list(result) if returning else []


Item = tuple[str, str, Mapping[str, Any] | None]
"""``(system, external id, attributes)`` to resolve; attributes None: nothing to match on."""


@dataclass
class _New:
    """An unknown record of a batch, from its normalisation to its stored rows."""

    system: str
    external_id: str
    attributes: Mapping[str, Any]
    values: dict[str, str]
    problems: list[Any]
    rules: Sequence[str]
    blocks: Sequence[str]
    result: MatchResult | None = None
    golden_id: str = ""
    crosswalk_id: int | None = None
    stored: dict[str, Any] | None = None  # the attributes as JSON stores them (_jsonable)

    @property
    def ref(self) -> tuple[str, str]:
        return (self.system, self.external_id)


@dataclass(frozen=True)
class Batch:
    """What :meth:`MdmService.resolve_many` answered."""

    resolutions: dict[tuple[str, str], Resolution]  # (system, external id) -> what was done
    found: dict[tuple[str, str], str]  # of the lookups: the golden ids linked
    refs: dict[str, list[tuple[str, str]]]  # with_refs: each golden id's (system, id), in order


class MdmService:
    def __init__(
        self,
        db: Database,
        config: MatchConfig | None = None,
        publish: Publish | None = None,
    ) -> None:
        self.db = db
        self.config = config
        self.publish = publish
        self._listeners: list[Callable[[Change], None]] = []

    def matches(self, entity: str) -> bool:
        """Whether ``entity`` has a match configuration (else: crosswalk and new ids only)."""
        return self.config is not None and entity in self.config.entities

    # -- resolve ---------------------------------------------------------------------------

    async def resolve(
        self,
        entity: str,
        system: str,
        external_id: str,
        attributes: Mapping[str, Any] | None = None,
    ) -> str:
        """The golden id of ``external_id`` in ``system``: looked up, matched or new."""
        return (await self.match_record(entity, system, external_id, attributes)).golden_id

    async def match_record(
        self,
        entity: str,
        system: str,
        external_id: str,
        attributes: Mapping[str, Any] | None = None,
    ) -> Resolution:
        """:meth:`resolve`, saying what was decided and why."""
        batch = await self.resolve_many(entity, [(system, external_id, attributes)])
        return batch.resolutions[(system, external_id)]

    async def resolve_many(
        self,
        entity: str,
        items: Sequence[Item],
        lookups: Iterable[tuple[str, str]] = (),
        *,
        with_refs: bool = False,
    ) -> Batch:
        """Resolve ``items`` (looked up, matched or new; a known record's changed attributes
        update it) and look ``lookups`` up (never creating anything), all in one transaction:
        a batch costs a fixed number of statements, not a number per record. ``with_refs``:
        also every external ref of the golden ids answered."""
        wanted: dict[tuple[str, str], Mapping[str, Any] | None] = {}
        for system, external_id, attributes in items:
            wanted[(system, external_id)] = attributes  # the last attributes of a record win
        looked = [ref for ref in dict.fromkeys(lookups) if ref not in wanted]
        return await self.db.run(
            functools.partial(self._resolve_many, entity, wanted, looked, with_refs)
        )

    def _resolve_many(
        self,
        entity: str,
        wanted: dict[tuple[str, str], Mapping[str, Any] | None],
        looked: list[tuple[str, str]],
        with_refs: bool,
        conn: Connection,
    ) -> Batch:
        known = self._known(conn, entity, [*wanted, *looked])
        out: dict[tuple[str, str], Resolution] = {}
        changed: list[tuple[str, str, Mapping[str, Any]]] = []
        new: list[tuple[str, str, Mapping[str, Any]]] = []
        for (system, external_id), attributes in wanted.items():
            row = known.get((system, external_id))
            if row is None:
                new.append((system, external_id, attributes or {}))
                continue
            out[(system, external_id)] = Resolution(row[1], Decision.KNOWN)
            if attributes is not None and _jsonable(dict(attributes)) != row[2]:
                changed.append((system, external_id, attributes))
        if new:  # first: on SQLite its lock must open the transaction
            with _gc_paused():
                out.update(self._resolve_new(conn, entity, new))
        for system, external_id, attributes in changed:
            self._update_record(conn, entity, system, external_id, attributes)
        found = {ref: known[ref][1] for ref in looked if ref in known}
        refs: dict[str, list[tuple[str, str]]] = {}
        if with_refs:
            goldens = {r.golden_id for r in out.values()} | set(found.values())
            refs = self._refs(conn, entity, goldens)
        return Batch(out, found, refs)

    def _known(
        self, conn: Connection, entity: str, refs: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], tuple[int, str, Any]]:
        """The crosswalk rows of ``refs`` that exist: crosswalk id, golden id, the attributes
        of its source record (None: none)."""
        if not refs:
            return {}
        found: dict[tuple[str, str], tuple[int, str, Any]] = {}
        rows: Iterable[Any]
        if self.db.dialect == "postgresql":
            rows = conn.execute(
                _KNOWN_PG,
                {"entity": entity, "systems": [s for s, _ in refs], "ids": [x for _, x in refs]},
            )
        else:
            rows = (
                row
                for start in range(0, len(refs), _CHUNK)
                for row in conn.execute(
                    select(
                        crosswalk.c.system,
                        crosswalk.c.external_id,
                        crosswalk.c.id,
                        crosswalk.c.golden_id,
                        mdm_records.c.attributes,
                    )
                    .select_from(
                        crosswalk.outerjoin(
                            mdm_records, mdm_records.c.crosswalk_id == crosswalk.c.id
                        )
                    )
                    .where(
                        crosswalk.c.entity == entity,
                        tuple_(crosswalk.c.system, crosswalk.c.external_id).in_(
                            refs[start : start + _CHUNK]
                        ),
                    )
                )
            )
        for system, external_id, crosswalk_id, golden_id, attributes in rows:
            found[(system, external_id)] = (crosswalk_id, golden_id, attributes)
        return found

    def _refs(
        self, conn: Connection, entity: str, golden_ids: Iterable[str]
    ) -> dict[str, list[tuple[str, str]]]:
        """Every ``(system, external id)`` linked to each of ``golden_ids``, first linked first."""
        ids = sorted(set(golden_ids))
        refs: dict[str, list[tuple[str, str]]] = {g: [] for g in ids}
        for start in range(0, len(ids), _CHUNK):
            rows = conn.execute(
                select(crosswalk.c.golden_id, crosswalk.c.system, crosswalk.c.external_id)
                .where(
                    crosswalk.c.entity == entity,
                    crosswalk.c.golden_id.in_(ids[start : start + _CHUNK]),
                )
                .order_by(crosswalk.c.id)
            )
            for golden_id, system, external_id in rows:
                refs[golden_id].append((system, external_id))
        return refs

    def _lock(self, conn: Connection, entity: str, keys: Iterable[str]) -> None:
        """Hold the locks of ``keys`` until the transaction ends (see the module's doc)."""
        if self.db.dialect == "postgresql":
            locks = sorted({_lock_id(entity, key) for key in keys})
            conn.execute(_LOCK_ALL, {"keys": locks})  # one round trip, in the array's order
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    def _matcher(self, conn: Connection, entity: str, new_id: str) -> Matcher | None:
        config = self.config.entities.get(entity) if self.config is not None else None
        if config is None:
            return None
        return Matcher(config, DbIndex(conn, entity), new_id=lambda: new_id)

    def _resolve_new(
        self, conn: Connection, entity: str, items: list[tuple[str, str, Mapping[str, Any]]]
    ) -> dict[tuple[str, str], Resolution]:
        """Match and store the records the crosswalk does not know, under their keys' locks:
        normalise all, lock every key at once (sorted: no deadlock between batches), look the
        crosswalk up again, read every block in one query, match one record after another
        (each sees the earlier ones of the batch), then store all in a few statements."""
        matcher = self._matcher(conn, entity, "")
        records: list[_New] = []
        for system, external_id, attributes in items:
            values: dict[str, str] = {}
            problems: list[Any] = []
            rules: Sequence[str] = ()
            blocks: Sequence[str] = ()
            if matcher is not None:
                values, problems = matcher.normalise(attributes)
                rules, blocks = matcher.keys(values)
            records.append(_New(system, external_id, attributes, values, problems, rules, blocks))
        self._lock(
            conn,
            entity,
            [
                key
                for r in records
                for key in (f"id:{_record_id(r.system, r.external_id)}", *r.rules, *r.blocks)
            ],
        )
        out: dict[tuple[str, str], Resolution] = {}
        stored = self._known(conn, entity, [r.ref for r in records])
        if stored:  # another process stored them while this one waited
            for ref, (_, golden_id, _) in stored.items():
                out[ref] = Resolution(golden_id, Decision.KNOWN)
            records = [r for r in records if r.ref not in stored]
        if not records:
            return out
        if matcher is not None:
            index = matcher.index
            assert isinstance(index, DbIndex)
            config = matcher.config
            questions = [
                [("rule", key, config.max_candidates) for key in r.rules]
                + [("block", key, config.max_block_size + 1) for key in r.blocks]
                for r in records
            ]
            if index.counted:
                index.count((f, r.values.get(f, "")) for r in records for f in index.counted)
            # PostgreSQL: the blocks of the next chunk of records are found by the server while
            # this one is matched (sent before anything is stored: none of the batch's own rows)
            postgres = self.db.dialect == "postgresql"
            step = _PIPELINE if postgres else len(records)
            ends = range(0, len(records), step)
            chunks = [range(at, min(at + step, len(records))) for at in ends]
            try:
                for n, chunk in enumerate(chunks):
                    if postgres and n == 0:
                        index.send_prefetch([q for i in chunk for q in questions[i]])
                    index.take_prefetch()
                    if postgres and n + 1 < len(chunks):
                        index.send_prefetch([q for i in chunks[n + 1] for q in questions[i]])
                    for i in chunk:
                        r = records[i]
                        new_id = _derive(entity, r.system, r.external_id)
                        matcher.new_id = functools.partial(str, new_id)
                        record_id = _record_id(r.system, r.external_id)
                        r.result = matcher.match(
                            record_id, r.attributes, (r.values, r.problems), (r.rules, r.blocks)
                        )
                        index.add(
                            Entry(record_id, r.result.golden_id, r.result.values),
                            r.result.rule_keys,
                            r.result.block_keys,
                        )
            finally:
                index.drop_prefetch()
        for r in records:
            r.golden_id = (
                r.result.golden_id
                if r.result is not None
                else _derive(entity, r.system, r.external_id)
            )
        linked = {r.golden_id for r in records if _decision(r) is Decision.LINK}
        # a golden record merged meanwhile: its survivor. Read FOR UPDATE, not FOR SHARE: this
        # transaction writes the row (survivorship), and two holding a share lock on it would
        # each wait for the other's (PostgreSQL: "deadlock detected", one batch failed)
        if linked:
            follow = self._follow_many(conn, linked, lock=True)
            for r in records:
                if _decision(r) is Decision.LINK:
                    r.golden_id = follow.get(r.golden_id, r.golden_id)
        out.update(self._store_new(conn, entity, records))
        return out

    def _store_new(
        self, conn: Connection, entity: str, records: list[_New]
    ) -> dict[tuple[str, str], Resolution]:
        """Store a batch's decided records: crosswalk rows, golden records, source records,
        keys, history, review tasks, survivorship — each one statement for the batch."""
        now = _now()
        why = {r.ref: _why(r.result) for r in records}
        rows = _bulk_insert(
            self.db,
            conn,
            crosswalk,
            [
                {
                    "entity": entity,
                    "system": r.system,
                    "external_id": r.external_id,
                    "golden_id": r.golden_id,
                    "version": None,
                    "linked_at": now,
                    "linked_by": why[r.ref][0],
                    "reason": why[r.ref][1],
                }
                for r in records
            ],
            ignore=True,
            returning=(crosswalk.c.id, crosswalk.c.system, crosswalk.c.external_id),
        )
        ids = {(system, external_id): crosswalk_id for crosswalk_id, system, external_id in rows}
        out: dict[tuple[str, str], Resolution] = {}
        taken = [r for r in records if r.ref not in ids]
        if taken:  # linked meanwhile (a sink reported it, no lock taken): that link wins
            for ref, (_, golden_id, _) in self._known(conn, entity, [r.ref for r in taken]).items():
                out[ref] = Resolution(golden_id, Decision.KNOWN)
            records = [r for r in records if r.ref in ids]
        for r in records:
            r.crosswalk_id = ids[r.ref]
            r.stored = _jsonable(dict(r.attributes))
        members: dict[str, list[_New]] = {}
        for r in records:
            members.setdefault(r.golden_id, []).append(r)
        rules = self._rules(entity)
        made = [
            r for r in records if _decision(r) is not Decision.LINK and members[r.golden_id][0] is r
        ]
        if made:
            _bulk_insert(
                self.db,
                conn,
                mdm_golden,
                [
                    {
                        "golden_id": r.golden_id,
                        "entity": entity,
                        "status": "active",
                        "merged_into": None,
                        "fields": _provenance_of_one(
                            SourceRecord(r.system, r.external_id, now, r.stored or {}), rules
                        ),
                        "created_at": now,
                        "updated_at": now,
                    }
                    for r in made
                ],
                ignore=True,
            )
        # a linked record's deterministic id (published before MDM was switched on, perhaps)
        # keeps resolving: an alias row pointing at the golden record, followed like a merge
        aliases = {
            alias: r.golden_id
            for r in records
            if _decision(r) is Decision.LINK
            and (alias := _derive(entity, r.system, r.external_id)) != r.golden_id
        }
        if aliases:
            _bulk_insert(
                self.db,
                conn,
                mdm_golden,
                [
                    {
                        "golden_id": alias,
                        "entity": entity,
                        "status": "alias",
                        "merged_into": golden_id,
                        "fields": {},
                        "created_at": now,
                        "updated_at": now,
                    }
                    for alias, golden_id in aliases.items()
                ],
                ignore=True,
            )
        _bulk_insert(
            self.db,
            conn,
            mdm_records,
            [
                {
                    "crosswalk_id": r.crosswalk_id,
                    "normalised": dict(r.result.values) if r.result is not None else {},
                    "attributes": r.stored,
                    "problems": [[p.field, p.reason] for p in r.result.problems]
                    if r.result is not None
                    else [],
                    "seen_at": now,
                }
                for r in records
            ],
        )
        # the crosswalk ids are new: no key row can exist yet (no ON CONFLICT to check)
        owners: list[int] = []
        kinds: list[str] = []
        keys: list[str] = []
        for r in records:
            if r.result is not None and r.crosswalk_id is not None:
                for kind, key in _keys_of(r.result, r.system):
                    owners.append(r.crosswalk_id)
                    kinds.append(kind)
                    keys.append(key)
        _insert_columns(
            self.db,
            conn,
            mdm_keys,
            {"entity": [entity] * len(keys), "kind": kinds, "key": keys, "crosswalk_id": owners},
        )
        history = []
        reviews = []
        for r in records:
            decision = _decision(r)
            detail: dict[str, Any] = {  # JSON as it is: strings, numbers, lists of objects
                "system": r.system,
                "external_id": r.external_id,
                "decision": str(decision),
                "candidates": _candidates(r.result, 10),
            }
            if r.result is not None and r.result.rule is not None:
                detail["rule"] = r.result.rule
            alias = _derive(entity, r.system, r.external_id)
            if aliases.get(alias) == r.golden_id:
                detail["alias"] = alias
            action = {Decision.LINK: "link", Decision.REVIEW: "review"}.get(decision, "new")
            linked_by, reason = why[r.ref]
            history.append(
                {
                    "entity": entity,
                    "golden_id": r.golden_id,
                    "action": action,
                    "actor": linked_by,
                    "reason": reason,
                    "detail": detail,
                    "at": now,
                }
            )
            if decision is Decision.REVIEW and r.result is not None:
                reviews.append(_review_row(entity, r, _candidates(r.result), now))
        _bulk_insert(self.db, conn, mdm_history, history)
        review_ids: dict[tuple[str, str], int] = {}
        if reviews:
            review_ids = {
                (system, external_id): review_id
                for review_id, system, external_id in conn.execute(
                    insert(mdm_reviews).returning(
                        mdm_reviews.c.id, mdm_reviews.c.system, mdm_reviews.c.external_id
                    ),
                    reviews,
                )
            }
        # survivorship again where records joined a golden record (a lone new one has it)
        joined = {g for g, rs in members.items() if any(_decision(r) is Decision.LINK for r in rs)}
        if joined:
            self._survive_many(conn, entity, joined, now)
        for r in records:
            out[r.ref] = Resolution(
                r.golden_id, _decision(r), why[r.ref][0], review_ids.get(r.ref), r.result
            )
        return out

    def _store_keys(
        self, conn: Connection, entity: str, crosswalk_id: int, result: MatchResult, system: str
    ) -> None:
        rows = [
            {"entity": entity, "kind": kind, "key": key, "crosswalk_id": crosswalk_id}
            for kind, key in _keys_of(result, system)
        ]
        if rows:
            conn.execute(self.db.insert_ignore(mdm_keys), rows)

    def _update_record(
        self,
        conn: Connection,
        entity: str,
        system: str,
        external_id: str,
        attributes: Mapping[str, Any],
    ) -> None:
        """A known record's new attributes: its source record, keys and golden record's fields."""
        row = conn.execute(
            select(crosswalk.c.id, crosswalk.c.golden_id).where(
                crosswalk.c.entity == entity,
                crosswalk.c.system == system,
                crosswalk.c.external_id == external_id,
            )
        ).one()
        now = _now()
        matcher = self._matcher(conn, entity, row.golden_id)
        result = matcher.match(_record_id(system, external_id), attributes) if matcher else None
        record = {
            "normalised": dict(result.values) if result is not None else {},
            "attributes": _jsonable(dict(attributes)),
            "problems": [[p.field, p.reason] for p in result.problems] if result else [],
            "seen_at": now,
        }
        changed = conn.execute(
            update(mdm_records).where(mdm_records.c.crosswalk_id == row.id).values(**record)
        ).rowcount
        if not changed:  # linked by a sink, or before the service: its first attributes
            conn.execute(insert(mdm_records), [{"crosswalk_id": row.id, **record}])
        if result is not None:
            conn.execute(delete(mdm_keys).where(mdm_keys.c.crosswalk_id == row.id))
            self._store_keys(conn, entity, row.id, result, system)
        self._ensure_golden(conn, entity, row.golden_id, now)
        self._survive(conn, entity, row.golden_id, now)

    def _ensure_golden(self, conn: Connection, entity: str, golden_id: str, now: datetime) -> None:
        conn.execute(
            self.db.insert_ignore(mdm_golden),
            [
                {
                    "golden_id": golden_id,
                    "entity": entity,
                    "status": "active",
                    "merged_into": None,
                    "fields": {},
                    "created_at": now,
                    "updated_at": now,
                }
            ],
        )

    # -- survivorship ----------------------------------------------------------------------

    def _rules(self, entity: str) -> SurvivorshipRules:
        config = self.config.entities.get(entity) if self.config is not None else None
        return config.survivorship if config is not None else SurvivorshipRules()

    def _survive(self, conn: Connection, entity: str, golden_id: str, now: datetime) -> None:
        """Recompute ``golden_id``'s fields from its source records (hub.matching.survive)."""
        self._survive_many(conn, entity, [golden_id], now)

    def _survive_many(
        self, conn: Connection, entity: str, golden_ids: Iterable[str], now: datetime
    ) -> None:
        """:meth:`_survive` for several golden records: one read, one write."""
        ids = sorted(set(golden_ids))
        members: dict[str, list[SourceRecord]] = {g: [] for g in ids}
        postgres = self.db.dialect == "postgresql"
        # on PostgreSQL the attributes come as JSON text, decoded by orjson
        attributes_column = (
            cast(mdm_records.c.attributes, Text) if postgres else mdm_records.c.attributes
        )
        for start in range(0, len(ids), _CHUNK):
            rows = conn.execute(
                select(
                    crosswalk.c.golden_id,
                    crosswalk.c.system,
                    crosswalk.c.external_id,
                    attributes_column,
                    mdm_records.c.seen_at,
                )
                .select_from(
                    crosswalk.join(mdm_records, mdm_records.c.crosswalk_id == crosswalk.c.id)
                )
                .where(
                    crosswalk.c.entity == entity,
                    crosswalk.c.golden_id.in_(ids[start : start + _CHUNK]),
                )
                .order_by(crosswalk.c.id)
            )
            for golden_id, system, external_id, attributes, seen_at in rows:
                if postgres and attributes is not None:
                    attributes = orjson.loads(attributes)
                members[golden_id].append(
                    SourceRecord(system, external_id, _aware(seen_at), attributes or {})
                )
        rules = self._rules(entity)
        if postgres:
            survived = [_provenance(survive(g, records, rules)) for g, records in members.items()]
            conn.execute(
                _SURVIVED_PG,
                {
                    "ids": list(members),
                    "fields": [orjson.dumps(f).decode() for f in survived],
                    "now": now,
                },
            )
            return
        conn.execute(
            update(mdm_golden)
            .where(mdm_golden.c.golden_id == bindparam("g"))
            .values(fields=bindparam("f"), updated_at=now),
            [
                {"g": g, "f": _provenance(survive(g, records, rules))}
                for g, records in members.items()
            ],
        )

    # -- merge and unmerge -----------------------------------------------------------------

    def _follow(self, conn: Connection, golden_id: str, *, lock: bool = False) -> str:
        """The active golden record ``golden_id`` stands for: itself, or where merges took it.
        With ``lock``, the row is read FOR UPDATE (PostgreSQL): a merge of it waits for this
        transaction, or this one sees the merge done."""
        current = golden_id
        for _ in range(_FOLLOW_MAX):
            query = select(mdm_golden.c.status, mdm_golden.c.merged_into).where(
                mdm_golden.c.golden_id == current
            )
            if lock:
                query = query.with_for_update()
            row = conn.execute(query).one_or_none()
            if row is None or row.status not in _FOLLOWED or row.merged_into is None:
                return current
            current = row.merged_into
        return current

    def _follow_many(
        self, conn: Connection, golden_ids: Iterable[str], *, lock: bool = False
    ) -> dict[str, str]:
        """:meth:`_follow` for several ids, one query per merge hop."""
        where = {g: g for g in golden_ids}  # id -> where it has got to
        pending = set(where.values())
        for _ in range(_FOLLOW_MAX):
            if not pending:
                break
            query = select(
                mdm_golden.c.golden_id, mdm_golden.c.status, mdm_golden.c.merged_into
            ).where(mdm_golden.c.golden_id.in_(sorted(pending)))
            if lock:  # in id order, as merges lock: two batches never wait in a circle
                query = query.order_by(mdm_golden.c.golden_id).with_for_update()
            hops = {
                g: into
                for g, status, into in conn.execute(query)
                if status in _FOLLOWED and into is not None
            }
            for start, at in where.items():
                if at in hops:
                    where[start] = hops[at]
            pending = set(hops.values())
        return where

    async def merge(
        self,
        entity: str,
        survivor: str,
        merged: str,
        *,
        actor: str,
        reason: str | None = None,
    ) -> int:
        """Merge golden record ``merged`` into ``survivor``; returns the history id. Raises
        :class:`MdmRefused` (404: unknown id; 409: the same id, or one is merged already)."""
        history_id = await self.db.run(
            lambda conn: self._merge(conn, entity, survivor, merged, actor, reason)
        )
        await self._changed(Change(history_id, entity, "merge", survivor, merged))
        return history_id

    def _locked_golden(self, conn: Connection, entity: str, ids: Sequence[str]) -> dict[str, Any]:
        if self.db.dialect != "postgresql":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        rows = conn.execute(
            select(mdm_golden)
            .where(mdm_golden.c.golden_id.in_(sorted(set(ids))))
            .order_by(mdm_golden.c.golden_id)
            .with_for_update()
        ).all()
        found = {r.golden_id: r for r in rows if r.entity == entity}
        for golden_id in ids:
            if golden_id not in found:
                raise MdmRefused(f"no {entity} golden record {golden_id!r}", 404)
        return found

    def _merge(
        self,
        conn: Connection,
        entity: str,
        survivor: str,
        merged: str,
        actor: str,
        reason: str | None,
    ) -> int:
        if survivor == merged:
            raise MdmRefused(f"cannot merge {survivor} into itself")
        rows = self._locked_golden(conn, entity, [survivor, merged])
        for golden_id in (survivor, merged):
            if rows[golden_id].status == "alias":
                raise MdmRefused(_alias_refusal(golden_id, rows[golden_id].merged_into))
            if rows[golden_id].status != "active":
                into = rows[golden_id].merged_into
                raise MdmRefused(f"{golden_id} is merged into {into} already")
        moved = conn.execute(
            select(
                crosswalk.c.id,
                crosswalk.c.system,
                crosswalk.c.external_id,
                crosswalk.c.linked_at,
                crosswalk.c.linked_by,
                crosswalk.c.reason,
            )
            .where(crosswalk.c.entity == entity, crosswalk.c.golden_id == merged)
            .order_by(crosswalk.c.id)
        ).all()
        now = _now()
        conn.execute(
            update(crosswalk)
            .where(crosswalk.c.entity == entity, crosswalk.c.golden_id == merged)
            .values(
                golden_id=survivor,
                linked_at=now,
                linked_by=actor,
                reason=f"merged {merged} into {survivor}" + (f": {reason}" if reason else ""),
            )
        )
        conn.execute(
            update(mdm_golden)
            .where(mdm_golden.c.golden_id == merged)
            .values(status="merged", merged_into=survivor, updated_at=now)
        )
        before = {survivor: rows[survivor].fields, merged: rows[merged].fields}
        self._survive(conn, entity, survivor, now)
        after = conn.execute(
            select(mdm_golden.c.fields).where(mdm_golden.c.golden_id == survivor)
        ).scalar()
        detail = {
            "survivor": survivor,
            "merged": merged,
            "moved": [
                {
                    "crosswalk_id": m.id,
                    "system": m.system,
                    "external_id": m.external_id,
                    "linked_at": _aware(m.linked_at).isoformat(),
                    "linked_by": m.linked_by,
                    "reason": m.reason,
                }
                for m in moved
            ],
            "before": before,
            "after": after,
            "golden": self._golden_documents(conn, entity, [survivor]),
        }
        history_id = self._history(conn, entity, merged, "merge", actor, reason, detail, now)
        self._history(conn, entity, survivor, "merged-in", actor, reason, detail, now)
        return history_id

    async def unmerge(
        self, entity: str, merged: str, *, actor: str, reason: str | None = None
    ) -> int:
        """Undo the last merge of ``merged``: its crosswalk rows linked back as they were before
        it (those still linked to the survivor); returns the history id."""
        history_id, survivor = await self.db.run(
            lambda conn: self._unmerge(conn, entity, merged, actor, reason)
        )
        await self._changed(Change(history_id, entity, "unmerge", survivor, merged))
        return history_id

    def _unmerge(
        self, conn: Connection, entity: str, merged: str, actor: str, reason: str | None
    ) -> tuple[int, str]:
        row = self._locked_golden(conn, entity, [merged])[merged]
        if row.status == "alias":
            return self._unlink(conn, entity, merged, row.merged_into, actor, reason)
        if row.status != "merged" or row.merged_into is None:
            raise MdmRefused(f"{merged} is not merged")
        survivor = row.merged_into
        target = conn.execute(
            select(mdm_golden).where(mdm_golden.c.golden_id == survivor).with_for_update()
        ).one()
        if target.status != "active":
            raise MdmRefused(
                f"{survivor} (which {merged} was merged into) is merged into "
                f"{target.merged_into} itself: unmerge {survivor} first"
            )
        last = conn.execute(
            select(mdm_history.c.detail)
            .where(
                mdm_history.c.entity == entity,
                mdm_history.c.golden_id == merged,
                mdm_history.c.action == "merge",
            )
            .order_by(mdm_history.c.id.desc())
            .limit(1)
        ).scalar_one()
        now = _now()
        restored = []
        for m in last["moved"]:
            done = conn.execute(
                update(crosswalk)
                .where(crosswalk.c.id == m["crosswalk_id"], crosswalk.c.golden_id == survivor)
                .values(
                    golden_id=merged,
                    linked_at=datetime.fromisoformat(m["linked_at"]),
                    linked_by=m["linked_by"],
                    reason=m["reason"],
                )
            ).rowcount
            if done:
                restored.append({"system": m["system"], "external_id": m["external_id"]})
        conn.execute(
            update(mdm_golden)
            .where(mdm_golden.c.golden_id == merged)
            .values(status="active", merged_into=None, updated_at=now)
        )
        self._survive(conn, entity, merged, now)
        self._survive(conn, entity, survivor, now)
        detail = {
            "survivor": survivor,
            "merged": merged,
            "restored": restored,
            "golden": self._golden_documents(conn, entity, [merged, survivor]),
        }
        history_id = self._history(conn, entity, merged, "unmerge", actor, reason, detail, now)
        self._history(conn, entity, survivor, "unmerged-out", actor, reason, detail, now)
        return history_id, survivor

    def _unlink(
        self,
        conn: Connection,
        entity: str,
        alias: str,
        linked_to: str | None,
        actor: str,
        reason: str | None,
    ) -> tuple[int, str]:
        """Unmerge of an alias: the record it is the deterministic id of was *linked* to a
        golden record by matching (a rule or a score), not merged by a steward. Undone the same
        way: the record's crosswalk row leaves that golden record (where merges took it) for
        a golden record of its own, whose id is the alias (the id it had before it was linked),
        active from now on; merging it back is an ordinary merge."""
        if linked_to is None:
            raise MdmRefused(f"{alias} is an alias of no golden record")
        survivor = self._follow(conn, linked_to, lock=True)
        rows = conn.execute(
            select(crosswalk.c.id, crosswalk.c.system, crosswalk.c.external_id)
            .where(crosswalk.c.entity == entity, crosswalk.c.golden_id == survivor)
            .order_by(crosswalk.c.id)
        ).all()
        mine = [r for r in rows if _derive(entity, r.system, r.external_id) == alias]
        if not mine:
            raise MdmRefused(f"the record {alias} stands for is not linked to {survivor} any more")
        now = _now()
        why = f"unlinked from {survivor}" + (f": {reason}" if reason else "")
        conn.execute(
            update(crosswalk)
            .where(crosswalk.c.id.in_([r.id for r in mine]))
            .values(golden_id=alias, linked_at=now, linked_by=actor, reason=why)
        )
        conn.execute(
            update(mdm_golden)
            .where(mdm_golden.c.golden_id == alias)
            .values(status="active", merged_into=None, updated_at=now)
        )
        self._survive_many(conn, entity, [alias, survivor], now)
        detail = {
            "survivor": survivor,
            "merged": alias,
            "restored": [{"system": r.system, "external_id": r.external_id} for r in mine],
            "unlinked": True,
            "golden": self._golden_documents(conn, entity, [alias, survivor]),
        }
        history_id = self._history(conn, entity, alias, "unmerge", actor, reason, detail, now)
        self._history(conn, entity, survivor, "unmerged-out", actor, reason, detail, now)
        return history_id, survivor

    def _golden_documents(
        self, conn: Connection, entity: str, golden_ids: Sequence[str]
    ) -> dict[str, Any]:
        """What the systems linked to these golden records are sent after a merge or unmerge
        (:mod:`hub.mdm_follow`): golden id -> its canonical document, as of this transaction.
        Customers only (the entity the canonical documents are made for)."""
        if entity != "customer":
            return {}
        fields = dict(
            conn.execute(
                select(mdm_golden.c.golden_id, mdm_golden.c.fields).where(
                    mdm_golden.c.golden_id.in_(golden_ids)
                )
            ).all()
        )
        refs: dict[str, list[tuple[str, str]]] = {g: [] for g in golden_ids}
        for golden_id, system, external_id in conn.execute(
            select(crosswalk.c.golden_id, crosswalk.c.system, crosswalk.c.external_id)
            .where(crosswalk.c.entity == entity, crosswalk.c.golden_id.in_(golden_ids))
            .order_by(crosswalk.c.id)
        ):
            refs[golden_id].append((system, external_id))
        config = self.config.entities.get(entity) if self.config is not None else None
        matcher = Matcher(config) if config is not None else None
        out = {}
        for golden_id in golden_ids:
            document = golden_customer(
                golden_id, fields.get(golden_id) or {}, refs[golden_id], matcher
            )
            if document is not None:
                out[golden_id] = document
        return out

    # -- review tasks -----------------------------------------------------------------------

    async def accept(
        self,
        review_id: int,
        *,
        actor: str,
        golden_id: str | None = None,
        reason: str | None = None,
    ) -> dict[str, Any]:
        """Accept review task ``review_id`` as a match: the record's golden id is merged into
        the candidate ``golden_id`` (by default the best one). Returns the task as decided."""
        task = await self.review(review_id)
        if task is None:
            raise MdmRefused(f"no review task {review_id}", 404)
        if task["status"] != "open":
            raise MdmRefused(f"review task {review_id} is {task['status']} already")
        choices = [c["golden_id"] for c in task["candidates"]]
        target = golden_id if golden_id is not None else (choices[0] if choices else None)
        if target is None or target not in choices:
            raise MdmRefused(f"{target} is not a candidate of review task {review_id}", 422)
        entity = task["entity"]
        survivor = await self.db.run(lambda conn: self._follow(conn, target))
        if survivor == task["golden_id"]:
            raise MdmRefused(f"{task['golden_id']} and {target} are one golden record already")
        why = reason or f"review task {review_id} accepted"
        history_id = await self.merge(entity, survivor, task["golden_id"], actor=actor, reason=why)
        decision = {"merged_into": survivor, "history_id": history_id}
        return await self._decide(review_id, "accepted", actor, decision, reason)

    async def reject(
        self, review_id: int, *, actor: str, reason: str | None = None
    ) -> dict[str, Any]:
        """Reject review task ``review_id``: the record keeps its own golden record."""
        task = await self.review(review_id)
        if task is None:
            raise MdmRefused(f"no review task {review_id}", 404)
        if task["status"] != "open":
            raise MdmRefused(f"review task {review_id} is {task['status']} already")
        return await self._decide(review_id, "rejected", actor, {"kept": task["golden_id"]}, reason)

    async def _decide(
        self, review_id: int, status: str, actor: str, decision: dict[str, Any], reason: str | None
    ) -> dict[str, Any]:
        def work(conn: Connection) -> bool:
            now = _now()
            done = conn.execute(
                update(mdm_reviews)
                .where(mdm_reviews.c.id == review_id, mdm_reviews.c.status == "open")
                .values(status=status, decided_by=actor, decided_at=now, decision=decision)
            ).rowcount
            if done:
                row = conn.execute(
                    select(mdm_reviews.c.entity, mdm_reviews.c.golden_id).where(
                        mdm_reviews.c.id == review_id
                    )
                ).one()
                detail = {"review_id": review_id, **decision}
                action = "accept" if status == "accepted" else "reject"
                self._history(conn, row.entity, row.golden_id, action, actor, reason, detail, now)
            return bool(done)

        if not await self.db.run(work):
            raise MdmRefused(f"review task {review_id} was decided meanwhile")
        task = await self.review(review_id)
        assert task is not None
        return task

    async def review(self, review_id: int) -> dict[str, Any] | None:
        query = select(mdm_reviews).where(mdm_reviews.c.id == review_id)
        row = await self.db.run(lambda conn: conn.execute(query).one_or_none())
        return _review(row) if row is not None else None

    async def reviews(
        self, status: str | None, entity: str | None, limit: int, offset: int
    ) -> tuple[int, list[dict[str, Any]]]:
        """Review tasks, oldest first (the queue's order), with the total."""
        where = [
            *([mdm_reviews.c.status == status] if status else []),
            *([mdm_reviews.c.entity == entity] if entity else []),
        ]
        count = select(func.count()).select_from(mdm_reviews).where(*where)
        page = select(mdm_reviews).where(*where).order_by(mdm_reviews.c.id).limit(limit)

        def work(conn: Connection) -> tuple[int, list[Any]]:
            return conn.execute(count).scalar_one(), list(conn.execute(page.offset(offset)))

        total, rows = await self.db.run(work)
        return total, [_review(r) for r in rows]

    # -- reads for the API -----------------------------------------------------------------

    async def lookup(self, entity: str, system: str, external_id: str) -> dict[str, Any] | None:
        """The link of ``external_id`` in ``system`` (None: unknown), with the active golden id
        it resolves to."""
        query = select(crosswalk).where(
            crosswalk.c.entity == entity,
            crosswalk.c.system == system,
            crosswalk.c.external_id == external_id,
        )

        def work(conn: Connection) -> dict[str, Any] | None:
            row = conn.execute(query).one_or_none()
            if row is None:
                return None
            return {**_link(row), "resolves_to": self._follow(conn, row.golden_id)}

        return await self.db.run(work)

    async def golden(
        self, entity: str, golden_id: str, history_limit: int = 200
    ) -> dict[str, Any] | None:
        """A golden record whole: status, fields with provenance, crosswalk, history (newest
        first), open review tasks; a merged id, or an alias, answers with ``resolves_to`` the
        golden record it stands for now. An alias's history is the step that stored it (the
        link step of the record it was derived for, or its own ``alias`` step). A golden id
        the crosswalk links ids to without a golden record (an entity without matching)
        answers ``status: linked``, its crosswalk and no fields."""

        def work(conn: Connection) -> dict[str, Any] | None:
            row = conn.execute(
                select(mdm_golden).where(
                    mdm_golden.c.golden_id == golden_id, mdm_golden.c.entity == entity
                )
            ).one_or_none()
            links = conn.execute(
                select(crosswalk)
                .where(crosswalk.c.entity == entity, crosswalk.c.golden_id == golden_id)
                .order_by(crosswalk.c.id)
            ).all()
            if row is None and not links:
                return None
            history = conn.execute(
                select(mdm_history)
                .where(mdm_history.c.entity == entity, mdm_history.c.golden_id == golden_id)
                .order_by(mdm_history.c.id.desc())
                .limit(history_limit)
            ).all()
            if row is not None and row.status == "alias" and row.merged_into is not None:
                linked = conn.execute(
                    select(mdm_history).where(
                        mdm_history.c.entity == entity,
                        mdm_history.c.golden_id == row.merged_into,
                        mdm_history.c.action == "link",
                    )
                ).all()
                stored = [h for h in linked if (h.detail or {}).get("alias") == golden_id]
                history = sorted([*history, *stored], key=lambda h: -h.id)
            if row is None:
                return {
                    "golden_id": golden_id,
                    "entity": entity,
                    "status": "linked",
                    "merged_into": None,
                    "resolves_to": golden_id,
                    "created_at": _iso(min(r.linked_at for r in links)),
                    "updated_at": _iso(max(r.linked_at for r in links)),
                    "fields": {},
                    "external_refs": [{"system": r.system, "id": r.external_id} for r in links],
                    "crosswalk": [_link(r) for r in links],
                    "history": [_step(h) for h in history],
                    "open_reviews": [],
                }
            reviews = conn.execute(
                select(mdm_reviews)
                .where(mdm_reviews.c.golden_id == golden_id, mdm_reviews.c.status == "open")
                .order_by(mdm_reviews.c.id)
            ).all()
            return {
                "golden_id": row.golden_id,
                "entity": row.entity,
                "status": row.status,
                "merged_into": row.merged_into,
                "resolves_to": self._follow(conn, golden_id),
                "created_at": _iso(row.created_at),
                "updated_at": _iso(row.updated_at),
                "fields": row.fields,
                "external_refs": [{"system": r.system, "id": r.external_id} for r in links],
                "crosswalk": [_link(r) for r in links],
                "history": [_step(h) for h in history],
                "open_reviews": [_review(r) for r in reviews],
            }

        return await self.db.run(work)

    def search_keys(self, entity: str, terms: Mapping[str, str]) -> list[set[str]]:
        """The ``search`` keys a query asks for: one set per word or term, a record must hold
        a key of every set. ``terms``: ``name``, ``email``, ``phone`` as a user types them."""
        config = self.config.entities.get(entity) if self.config is not None else None
        if config is None:
            return []
        matcher = Matcher(config)
        wanted: list[set[str]] = []
        for field in ("email", "phone"):
            if terms.get(field):
                values, _ = matcher.normalise({field: terms[field]})
                wanted.append({f"{field}:{values[field]}"} if values.get(field) else set())
        for word in (terms.get("name") or "").split():
            keys = set()
            for field in ("first_name", "last_name", "company"):
                values, _ = matcher.normalise({field: word})
                if values.get(field):
                    keys.add(f"{field}:{values[field]}")
            wanted.append(keys)
        return wanted

    async def search(
        self, entity: str, terms: Mapping[str, str], limit: int
    ) -> list[dict[str, Any]]:
        """Active golden records whose source records match every term (normalised as the
        matcher does): each with its fields and external refs, at most ``limit``."""
        wanted = self.search_keys(entity, terms)
        if not wanted:
            return []
        if any(not keys for keys in wanted):
            return []  # a term that normalises to nothing matches nothing

        def work(conn: Connection) -> list[dict[str, Any]]:
            found: set[int] | None = None
            for keys in wanted:
                ids = set(
                    conn.execute(
                        select(mdm_keys.c.crosswalk_id)
                        .where(
                            mdm_keys.c.entity == entity,
                            mdm_keys.c.kind == "search",
                            mdm_keys.c.key.in_([_key(k) for k in keys]),
                        )
                        .limit(10_000)
                    ).scalars()
                )
                found = ids if found is None else found & ids
                if not found:
                    return []
            golden_ids = sorted(
                set(
                    conn.execute(
                        select(crosswalk.c.golden_id).where(crosswalk.c.id.in_(sorted(found or ())))
                    ).scalars()
                )
            )[:limit]
            rows = conn.execute(
                select(mdm_golden).where(mdm_golden.c.golden_id.in_(golden_ids))
            ).all()
            refs = conn.execute(
                select(crosswalk.c.golden_id, crosswalk.c.system, crosswalk.c.external_id)
                .where(crosswalk.c.entity == entity, crosswalk.c.golden_id.in_(golden_ids))
                .order_by(crosswalk.c.id)
            ).all()
            return [
                {
                    "golden_id": r.golden_id,
                    "status": r.status,
                    "fields": {k: v.get("value") for k, v in (r.fields or {}).items()},
                    "external_refs": [
                        {"system": s, "id": e} for g, s, e in refs if g == r.golden_id
                    ],
                }
                for r in sorted(rows, key=lambda r: r.golden_id)
            ]

        return await self.db.run(work)

    async def quality(self, entity: str | None = None) -> dict[str, Any]:
        """Data-quality counts: golden records (active, merged), records linked as duplicates
        (by rule, by score, by a steward's merge), review tasks by status, and source records
        whose fields failed normalisation, by system and field."""

        def where(table: Any) -> list[Any]:
            return [table.c.entity == entity] if entity else []

        def counts(conn: Connection, table: Any, column: Any) -> dict[str, int]:
            query = select(column, func.count()).where(*where(table)).group_by(column)
            return {key: n for key, n in conn.execute(query)}

        def work(conn: Connection) -> dict[str, Any]:
            golden = counts(conn, mdm_golden, mdm_golden.c.status)
            actions = counts(conn, mdm_history, mdm_history.c.action)
            reviews = counts(conn, mdm_reviews, mdm_reviews.c.status)
            problems = conn.execute(
                select(mdm_keys.c.key, func.count())
                .where(mdm_keys.c.kind == "problem", *where(mdm_keys))
                .group_by(mdm_keys.c.key)
                .order_by(mdm_keys.c.key)
            ).all()
            return {
                "golden_records": {
                    "active": golden.get("active", 0),
                    "merged": golden.get("merged", 0),
                    "aliases": golden.get("alias", 0),
                },
                "duplicates_found": actions.get("link", 0) + actions.get("review", 0),
                "duplicates_linked": actions.get("link", 0),
                "duplicates_merged": actions.get("merge", 0) - actions.get("unmerge", 0),
                "merges": actions.get("merge", 0),
                "unmerges": actions.get("unmerge", 0),
                "review_tasks": {
                    "open": reviews.get("open", 0),
                    "accepted": reviews.get("accepted", 0),
                    "rejected": reviews.get("rejected", 0),
                },
                "normalisation_failures": [
                    {
                        "system": key.split("\x1f", 1)[0],
                        "field": key.split("\x1f", 1)[-1],
                        "records": n,
                    }
                    for key, n in problems
                ],
            }

        return await self.db.run(work)

    # -- events, history, invalidation -----------------------------------------------------

    def _history(
        self,
        conn: Connection,
        entity: str,
        golden_id: str,
        action: str,
        actor: str,
        reason: str | None,
        detail: Mapping[str, Any],
        at: datetime,
    ) -> int:
        return int(
            conn.execute(
                insert(mdm_history).returning(mdm_history.c.id),
                {
                    "entity": entity,
                    "golden_id": golden_id,
                    "action": action,
                    "actor": actor,
                    "reason": reason,
                    "detail": _jsonable(detail),
                    "at": at,
                },
            ).scalar_one()
        )

    def on_change(self, listener: Callable[[Change], None]) -> None:
        """Call ``listener`` after each merge or unmerge made through this service object."""
        self._listeners.append(listener)

    async def _changed(self, change: Change) -> None:
        for listener in self._listeners:
            try:
                listener(change)
            except Exception:
                log.exception("an MDM change listener failed")
        try:
            await self.publish_pending()
        except Exception as exc:  # committed: the outbox keeps the events for the next try
            log.warning("merge events not published yet (kept to publish again): %s", exc)

    async def changes_since(self, history_id: int, limit: int = 1000) -> list[Change]:
        """Merges and unmerges after history row ``history_id``, oldest first (poll with the
        last one's id; 0 at start). One query on ``ix_mdm_history_action``."""
        query = (
            select(
                mdm_history.c.id, mdm_history.c.entity, mdm_history.c.action, mdm_history.c.detail
            )
            .where(mdm_history.c.action.in_(("merge", "unmerge")), mdm_history.c.id > history_id)
            .order_by(mdm_history.c.id)
            .limit(limit)
        )
        rows = await self.db.run(lambda conn: conn.execute(query).all())
        return [
            Change(r.id, r.entity, r.action, r.detail["survivor"], r.detail["merged"]) for r in rows
        ]

    async def last_change(self, actions: Sequence[str] = ("merge", "unmerge")) -> int:
        """The history id of the last merge or unmerge (``actions``; 0: none): cheap to poll."""
        query = select(func.max(mdm_history.c.id)).where(mdm_history.c.action.in_(actions))
        return int(await self.db.run(lambda conn: conn.execute(query).scalar()) or 0)

    async def links_since(self, history_id: int, limit: int = 1000) -> list[tuple[int, str, str]]:
        """``(history id, entity, golden id)`` of each record linked to an existing golden
        record after ``history_id``, oldest first: its external refs changed. One query on
        ``ix_mdm_history_action``."""
        query = (
            select(mdm_history.c.id, mdm_history.c.entity, mdm_history.c.golden_id)
            .where(mdm_history.c.action == "link", mdm_history.c.id > history_id)
            .order_by(mdm_history.c.id)
            .limit(limit)
        )
        rows = await self.db.run(lambda conn: conn.execute(query).all())
        return [(r.id, r.entity, r.golden_id) for r in rows]

    async def publish_pending(self) -> int:
        """Publish the merge and unmerge events not yet acknowledged (oldest first); returns
        how many. Without a publisher, nothing (they wait for a process that has one)."""
        if self.publish is None:
            return 0
        query = (
            select(mdm_history)
            .where(
                mdm_history.c.action.in_(("merge", "unmerge")),
                mdm_history.c.published_at.is_(None),
            )
            .order_by(mdm_history.c.id)
            .limit(100)
        )
        rows = await self.db.run(lambda conn: conn.execute(query).all())
        for row in rows:
            for event in merge_events(row):
                await self.publish(row.entity, event)
            await self.db.run(functools.partial(_stamp, row.id))
        return len(rows)


def _alias_refusal(alias: str, golden_id: str | None) -> str:
    return (
        f"{alias} is not a golden record: it is the deterministic id of a record linked to "
        f"{golden_id}, kept so that it resolves there"
    )


def _decision(r: _New) -> Decision:
    return r.result.decision if r.result is not None else Decision.NEW


def _why(result: MatchResult | None) -> tuple[str, str | None]:
    """``linked_by`` and ``reason`` of a new record's crosswalk row."""
    if result is None or result.decision is not Decision.LINK:
        return "mdm:new", None
    best = result.best.record_id if result.best is not None else "?"
    if result.rule is not None:
        return f"rule:{result.rule}", f"same {result.rule} as {best}"
    p = math.floor((result.probability or 0.0) * 1e6) / 1e6  # never shown as 1
    return f"match:{p:.6f}", f"match probability {p:.6f} with {best}"


def _keys_of(result: MatchResult, system: str) -> list[tuple[str, str]]:
    """``(kind, key)`` of a record's rows in ``mdm_keys``: its rule and blocking keys (the
    matcher's index), its search keys (a steward's search) and its normalisation problems (data
    quality: ``system``, field)."""
    search = [f"{name}:{result.values[name]}" for name in SEARCHED if result.values.get(name)]
    problems = [f"{system}\x1f{p.field}" for p in result.problems]
    return [
        (kind, _key(key))
        for kind, keys in (
            ("rule", result.rule_keys),
            ("block", result.block_keys),
            ("search", search),
            ("problem", problems),
        )
        for key in dict.fromkeys(keys)
    ]


def _candidates(result: MatchResult | None, limit: int | None = None) -> list[dict[str, Any]]:
    """The candidates compared (at most ``limit``), best first, as history and reviews keep them."""
    return [
        {
            "golden_id": c.golden_id,
            "record_id": c.record_id,
            "score": round(c.score, 4),
            "probability": round(c.probability, 6),
        }
        for c in (result.candidates[:limit] if result is not None else ())
    ]


def _review_row(
    entity: str, r: _New, candidates: list[dict[str, Any]], now: datetime
) -> dict[str, Any]:
    """The review task of a record whose best candidate fell between the thresholds."""
    result = r.result
    assert result is not None
    return {
        "entity": entity,
        "golden_id": r.golden_id,
        "system": r.system,
        "external_id": r.external_id,
        "candidates": [c for c in candidates if c["golden_id"] in result.review],
        "score": result.probability or 0.0,
        "explanation": [
            {
                "field": f.field,
                "comparator": f.comparator,
                "left": f.left,
                "right": f.right,
                "similarity": f.similarity,
                "level": f.level,
                "weight": round(f.weight, 4),
            }
            for f in result.fields
        ],
        "status": "open",
        "created_at": now,
    }


class ChangeWatcher:
    """Tells this process about merges and unmerges that any process made: every
    ``interval_s`` one indexed query (:meth:`MdmService.changes_since`); ``on_change`` gets the
    new ones (a resolver drops its cache). With ``on_link``, also the golden records that
    records joined (:meth:`MdmService.links_since`: a resolver drops their cached external
    refs). A failed poll is logged and tried again."""

    def __init__(
        self,
        service: MdmService,
        on_change: Callable[[list[Change]], None],
        interval_s: float = 1.0,
        on_link: Callable[[list[tuple[str, str]]], None] | None = None,
    ) -> None:
        self.service = service
        self.on_change = on_change
        self.on_link = on_link
        self.interval_s = interval_s
        self.last = 0
        self.last_link = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.last = await self.service.last_change()
        if self.on_link is not None:
            self.last_link = await self.service.last_change(("link",))
        self._task = asyncio.create_task(self._run(), name="mdm-changes")

    async def poll(self) -> list[Change]:
        changes = await self.service.changes_since(self.last)
        if changes:
            self.last = changes[-1].history_id
            self.on_change(changes)
        if self.on_link is not None:
            links = await self.service.links_since(self.last_link)
            if links:
                self.last_link = links[-1][0]
                self.on_link([(entity, golden_id) for _, entity, golden_id in links])
        return changes

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.poll()
            except Exception as exc:
                log.warning("could not read master data's changes: %s: %s", type(exc).__name__, exc)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


def _stamp(history_id: int, conn: Connection) -> None:
    stamp = update(mdm_history).where(mdm_history.c.id == history_id)
    conn.execute(stamp.values(published_at=_now()))


def merge_events(row: Any) -> list[CloudEvent]:
    """The canonical events of a merge or unmerge history row: the change, once per golden id
    involved, keyed by it, the merged id's first (docs/mdm.md: keys and order across a merge);
    then each golden record it left, as a canonical customer (:mod:`hub.mdm_follow`)."""
    detail = row.detail
    kind = "merged" if row.action == "merge" else "unmerged"
    ids = [detail["merged"], detail["survivor"]]
    data = orjson.dumps(
        {
            "survivor": detail["survivor"],
            "merged": detail["merged"],
            "refs": [
                {"system": m["system"], "id": m["external_id"]}
                for m in detail.get("moved", detail.get("restored", []))
            ],
            "actor": row.actor,
            "reason": row.reason,
            "history_id": row.id,
            "at": _aware(row.at).isoformat().replace("+00:00", "Z"),
        }
    )
    first = derived_id("mdm", str(row.id), ids[0])
    changed = [
        CloudEvent(
            id=derived_id("mdm", str(row.id), key),
            source="hub/mdm",
            type=f"hub.{row.entity}.{kind}",
            data=data,
            subject=key,
            key=key,
            correlationid=first,
        )
        for key in ids
    ]
    return changed + follow_events(row.entity, row.id, detail, first)


def _provenance(golden: GoldenRecord) -> dict[str, Any]:
    """The golden record's fields as stored: each value with its system, source id, time and
    the rule that chose it."""
    return {
        name: {
            "value": s.value,
            "system": s.system,
            "source_id": s.source_id,
            "at": s.updated_at.isoformat(),
            "rule": s.rule,
        }
        for name, s in golden.fields.items()
    }


def _provenance_of_one(record: SourceRecord, rules: SurvivorshipRules) -> dict[str, Any]:
    """``_provenance(survive(golden_id, [record], rules))`` without the machinery: a new
    golden record's only source holds every value that survives."""
    at = record.updated_at.isoformat()
    return {
        name: {
            "value": value,
            "system": record.system,
            "source_id": record.source_id,
            "at": at,
            "rule": rules.for_field(name).rule,
        }
        for name, value in sorted(record.values.items())
        if not is_empty(value)
    }


def _iso(at: datetime | None) -> str | None:
    return _aware(at).isoformat() if at is not None else None


def _link(row: Any) -> dict[str, Any]:
    return {
        "system": row.system,
        "external_id": row.external_id,
        "golden_id": row.golden_id,
        "version": row.version,
        "linked_at": _iso(row.linked_at),
        "linked_by": row.linked_by,
        "reason": row.reason,
    }


def _step(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "action": row.action,
        "actor": row.actor,
        "reason": row.reason,
        "at": _iso(row.at),
        "detail": row.detail,
    }


def _review(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "entity": row.entity,
        "golden_id": row.golden_id,
        "system": row.system,
        "external_id": row.external_id,
        "score": row.score,
        "candidates": row.candidates,
        "explanation": row.explanation,
        "status": row.status,
        "created_at": _iso(row.created_at),
        "decided_by": row.decided_by,
        "decided_at": _iso(row.decided_at),
        "decision": row.decision,
    }


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


__all__ = ["Change", "ChangeWatcher", "DbIndex", "MdmService", "Resolution", "merge_events"]
