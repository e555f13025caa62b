"""The hub's own state (SQLAlchemy 2 async): SQLite by default, PostgreSQL in production.

Tables: webhook receipts (ingress deduplication), poll cursors (see :mod:`hub.polling`),
deliveries (per destination, event and route: a redelivered event does not repeat its effect
in a destination), dead letters and their replay attempts, bulk replay jobs
(:mod:`hub.replayjobs`), retries (events parked until their next attempt, see
:mod:`hub.retry`), destinations' circuits and rate buckets shared by the delivery processes
(:mod:`hub.circuits`, :mod:`hub.ratelimit`), the crosswalk of external ids to golden ids
(:mod:`hub.crosswalk`) and master data's golden records, source records, match keys, review
tasks and history (:mod:`hub.mdm_service`). The revisions in :mod:`hub.migrations` make and
change them (Alembic), when the hub starts or by ``hub db upgrade``; a change to a table here
comes with a revision.

The statements made for every event (receipts, deliveries) skip aiosqlite on SQLite: writes
go to a thread of the database's own, one thread hop per transaction, where a sqlite3
connection runs the statement compiled once from the table (:meth:`Database._insert_ignore`);
reads run on the loop's thread over a read-only connection (:meth:`Database._select`).
Through aiosqlite each statement cost several hops (checkout, execute, fetch, close, reset),
~400-600 us of CPU where the statement itself takes a few (bench/README.md). The loop never
waits on SQLite's write lock.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    create_engine,
    delete,
    event,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from . import migrations
from .errors import DatabaseUnavailable

T = TypeVar("T")
log = logging.getLogger(__name__)

# Constraint and index names that migrations can address (hub/migrations/): PostgreSQL's own
# defaults, which databases made before Alembic already carry there. SQLite keeps no name for a
# primary key made without one (databases made before Alembic): a revision that alters a
# constraint passes ``naming_convention=NAMING_CONVENTION`` to ``op.batch_alter_table``.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "%(table_name)s_%(column_0_N_name)s_key",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "%(table_name)s_%(column_0_name)s_fkey",
    "pk": "%(table_name)s_pkey",
}
metadata = MetaData(naming_convention=NAMING_CONVENTION)

webhook_receipts = Table(
    "webhook_receipts",
    metadata,
    Column("connection", String(64), primary_key=True),
    Column("delivery_id", String(255), primary_key=True),
    Column("event_id", String(64), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    # The embedded broker's run that holds the event (hub.broker); NULL with an external Kafka.
    Column("broker_incarnation", String(32)),
    Index("ix_webhook_receipts_received_at", "received_at"),  # retention (hub.retention)
)

poll_cursors = Table(
    "poll_cursors",
    metadata,
    Column("connection", String(64), primary_key=True),
    Column("cursor", Text),  # NULL: never polled through yet
    Column("polled_at", DateTime(timezone=True)),  # when the cursor last moved
    Column("owner", String(64)),  # the hub process polling it (see hub.polling)
    Column("lease_until", DateTime(timezone=True)),
)

# One row per (destination, event, outbound route) delivered. A row whose route is '' was
# recorded before deliveries were kept per route (migration 0005_deliveries_route): the event
# was delivered through every route of that destination then, and counts for each of them.
deliveries = Table(
    "deliveries",
    metadata,
    Column("destination", String(64), primary_key=True),
    Column("event_id", String(64), primary_key=True),
    Column("route", String(64), primary_key=True, server_default=""),
    Column("delivered_at", DateTime(timezone=True), nullable=False),
    Index("ix_deliveries_delivered_at", "delivered_at"),  # retention (hub.retention)
)
EVERY_ROUTE = ""
"""The route of a delivery recorded before routes were: it stands for every route."""


dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("failed_at", DateTime(timezone=True), nullable=False),
    Column("stage", String(16), nullable=False, index=True),
    Column("error_class", String(64), nullable=False, index=True),
    Column("error", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("connection", String(64), index=True),
    Column("route", String(64)),
    Column("mapping", String(255)),
    Column("mapping_version", String(32)),
    Column("destination", String(64), index=True),
    Column("event_id", String(64), index=True),
    Column("event_type", String(255)),
    Column("correlation_id", String(64), index=True),
    Column("source_topic", String(255), nullable=False),
    Column("source_partition", Integer, nullable=False),
    Column("source_offset", Integer, nullable=False),
    Column("key", LargeBinary),
    Column("value", LargeBinary),  # the original record's value, never changed
    Column("headers", JSON, nullable=False),  # the original headers: [[name, text], ...]
    Column("status", String(16), nullable=False, index=True),  # open | replayed | discarded
    Column("replay_of", String(64)),  # set when this failure came from replaying another
    Column("replays", Integer, nullable=False, default=0),
    Column("replayed_at", DateTime(timezone=True)),
    Column("replayed_value", LargeBinary),  # the last edited payload a replay sent
    Column("outcome", Text),  # replays made before replay_attempts existed: the last outcome
    Column("discarded_at", DateTime(timezone=True)),
    Column("attempt_times", JSON),  # when each attempt was made (retried failures)
    Index("ix_dead_letters_failed_at", "failed_at", "id"),  # the list's order and keyset pages
)

# Every replay of a dead letter, and everything the hub learnt of each (see hub.replay).
replay_attempts = Table(
    "replay_attempts",
    metadata,
    Column("id", String(36), primary_key=True),  # sent with the replay: hub_replay_attempt
    Column("dead_letter_id", String(64), nullable=False, index=True),
    Column("replayed_at", DateTime(timezone=True), nullable=False),
    Column("edited", Boolean, nullable=False),  # the request carried an edited payload
    Column("value", LargeBinary),  # the edited payload sent; NULL: the original
    Column("job_id", String(36)),  # the bulk replay it was part of
    Column("sent", Boolean, nullable=False),  # the broker acknowledged it
    Column("error", Text),  # why it was not sent
)

replay_outcomes = Table(
    "replay_outcomes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("attempt_id", String(36), nullable=False, index=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("outcome", Text, nullable=False),  # delivered to X at ... | failed again at ...
)


# Bulk replays (hub.replayjobs): any hub process answers for any job, and cancels it.
replay_jobs = Table(
    "replay_jobs",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("filter", JSON, nullable=False),  # the dead letters it replays, as asked
    Column("status", String(16), nullable=False),  # running | finished | cancelled | failed
    Column("total", Integer, nullable=False),
    Column("done", Integer, nullable=False),
    Column("failed", Integer, nullable=False),
    Column("errors", JSON, nullable=False),  # the first failures, "id: why"
    Column("error", Text),  # why it stopped early
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("instance", String(128), nullable=False),  # the hub process running it
    Column("heartbeat_at", DateTime(timezone=True), nullable=False),  # its last sign of life
    Column("cancel_requested", Boolean, nullable=False),
    Index("ix_replay_jobs_started_at", "started_at"),
    Index("ix_replay_jobs_heartbeat_at", "heartbeat_at"),  # retention
)


# Each destination's circuit breaker, shared by the delivery processes (hub.circuits).
circuits = Table(
    "circuits",
    metadata,
    Column("destination", String(64), primary_key=True),
    Column("state", String(16), nullable=False),  # closed | open (half-open: open, time up)
    Column("opened_at", DateTime(timezone=True)),
    Column("open_until", DateTime(timezone=True)),
    Column("open_s", Float),  # how long it was opened for (doubles while probes fail)
    Column("failures", Integer, nullable=False),  # failures of different events that opened it
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("updated_by", String(128), nullable=False),  # the hub process that decided
    # an operator's pause (POST /api/destinations/<name>/pause): nothing is sent until resumed
    Column("paused_at", DateTime(timezone=True)),
    Column("paused_by", String(128)),  # the user or token
    Column("pause_reason", String(500)),
)

# Each destination's rate limit as one token bucket for every delivery process (hub.ratelimit).
rate_buckets = Table(
    "rate_buckets",
    metadata,
    Column("destination", String(64), primary_key=True),
    Column("tokens", Float, nullable=False),
    Column("updated_at", Float, nullable=False),  # Unix time of the last take
    Column("granted", Integer, nullable=False),  # what the last take got (read by RETURNING)
)

retries = Table(
    "retries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),  # order of parking
    Column("worker", String(128), nullable=False),  # the consumer group that parked it
    Column("event_id", String(64), nullable=False),
    Column("stage", String(16), nullable=False),
    Column("route", String(64)),
    Column("order_key", String(255)),  # events of one key wait behind it; NULL: unordered
    Column("source_topic", String(255), nullable=False),
    Column("source_partition", Integer, nullable=False),
    Column("source_offset", Integer, nullable=False),
    Column("key", LargeBinary),
    Column("value", LargeBinary),
    Column("headers", JSON, nullable=False),  # [[name, hex of value], ...]
    Column("attempts", Integer, nullable=False),  # attempts that count against the policy
    Column("attempt_times", JSON, nullable=False),  # every attempt's time, counted or not
    Column("first_failed_at", DateTime(timezone=True)),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("last_error", Text),
    Column("error_class", String(64)),
    Column("parked_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("worker", "event_id"),
    Index("ix_retries_due", "worker", "next_attempt_at"),
    Index("ix_retries_key", "worker", "order_key", "id"),
)


# (entity, system, external id) -> golden id: one row per link, never relinked in place
# (hub.crosswalk). Who or what linked it, when and why are kept for master data's history.
crosswalk = Table(
    "crosswalk",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("entity", String(32), nullable=False),  # customer, product, order, inventory
    Column("system", String(64), nullable=False),  # a connection's system (hub.yaml)
    Column("external_id", String(255), nullable=False),  # the object's id in that system
    Column("golden_id", String(64), nullable=False),
    Column("version", String(255)),  # the system's version of the object, where it has one
    Column("linked_at", DateTime(timezone=True), nullable=False),
    Column("linked_by", String(128), nullable=False),  # sink:<connection>, rule:…, steward:…
    Column("reason", Text),  # why: the rule and score, the steward's note
    UniqueConstraint("entity", "system", "external_id", name="uq_crosswalk_external_id"),
    Index("ix_crosswalk_golden_id", "entity", "golden_id", "system"),
)


# The steps of each order (hub.journal): received, mapped, delivered; what GET /api/orders/{ref}
# answers. One row per (event, step, route): a redelivered event adds nothing.
order_journal = Table(
    "order_journal",
    metadata,
    Column("event_id", String(64), primary_key=True),  # raw (received) or canonical event
    Column("step", String(16), primary_key=True),  # received | mapped | delivered
    Column("route", String(64), primary_key=True, server_default=""),
    Column("golden_id", String(64), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("status", String(32)),  # the order's canonical status in this event
    Column("number", String(255)),  # the order's number (canonical `number`)
    Column("email", String(255)),  # its customer's e-mail, lower case
    Column("connection", String(64)),  # where it came from (received, mapped) or went to
    Column("system", String(64)),  # that connection's system
    Column("external_id", String(255)),  # the source's id of it, or the id a destination gave
    Column("correlation_id", String(64)),
    Index("ix_order_journal_golden_id", "golden_id", "at"),
    Index("ix_order_journal_number", "number"),
    Index("ix_order_journal_email", "email"),
    Index("ix_order_journal_at", "at"),  # retention (hub.retention)
)


# What the hub knows each system holds of an object (hub.sync): per (entity, system, golden id,
# outbound route to that system) a fingerprint of the document that route would write, set just
# before the hub writes it ('wrote') and by every change the system reports ('reported'). A change
# a system reports equal to it is the echo of the hub's own write, or no change: dropped.
sync_state = Table(
    "sync_state",
    metadata,
    Column("entity", String(32), primary_key=True),
    Column("system", String(64), primary_key=True),
    Column("golden_id", String(64), primary_key=True),
    Column("route", String(128), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("source", String(16), nullable=False),  # wrote | reported
    Column("event_id", String(255), nullable=False),  # the canonical event that set it
    # earlier writes whose echo may still come (a poll that read before the last write), as a
    # JSON list of fingerprints, oldest first; emptied when the system reports the last one
    Column("pending", Text, nullable=False),
    # the last reported event judged, and whether it was an echo: every delivery worker asks
    Column("judged_event", String(255)),
    Column("judged_echo", Boolean),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_sync_state_fingerprint", "entity", "system", "route", "fingerprint"),
)


# What each system last reported of an object, as each route to another system would write it
# (hub.sync): a report that, as that route would write it, equals the one before carries nothing
# new for that destination (a save of something the destination does not get, an echo seen again).
sync_seen = Table(
    "sync_seen",
    metadata,
    Column("entity", String(32), primary_key=True),
    Column("system", String(64), primary_key=True),  # the system that reported it
    Column("golden_id", String(64), primary_key=True),
    Column("route", String(128), primary_key=True),  # the route to another system
    Column("fingerprint", String(64), nullable=False),
    Column("previous", String(64)),  # the report's before it
    Column("event_id", String(255), nullable=False),  # the canonical event of the last report
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


# The newest change of each object the hub has seen from any system, by that system's own
# timestamp (the canonical updated_at): routes with last_writer_wins drop an older one (hub.sync).
sync_clock = Table(
    "sync_clock",
    metadata,
    Column("entity", String(32), primary_key=True),
    Column("golden_id", String(64), primary_key=True),
    Column("changed_at", DateTime(timezone=True), nullable=False),  # the source's timestamp
    Column("system", String(64), nullable=False),
    Column("event_id", String(255), nullable=False),
)


# Master data (hub.mdm_service): golden records, the source records linked to them (by their
# crosswalk row), the matcher's rule and blocking keys, review tasks and the history of it all.
mdm_golden = Table(
    "mdm_golden",
    metadata,
    Column("golden_id", String(64), primary_key=True),
    Column("entity", String(32), nullable=False),
    Column("status", String(16), nullable=False),  # active | merged | alias (see mdm_service)
    Column("merged_into", String(64)),  # the survivor, while merged
    Column("fields", JSON, nullable=False),  # {field: {value, system, source_id, at, rule}}
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_mdm_golden_entity_status", "entity", "status"),
)

# A source system's record: its normalised values (what the matcher compares), the attributes
# as received (what survivorship chooses from), and what failed normalisation.
mdm_records = Table(
    "mdm_records",
    metadata,
    Column("crosswalk_id", Integer, primary_key=True, autoincrement=False),
    Column("normalised", JSON, nullable=False),
    Column("attributes", JSON, nullable=False),
    Column("problems", JSON, nullable=False),  # [[field, reason], ...]
    Column("seen_at", DateTime(timezone=True), nullable=False),
)

# The matcher's index (hub.matching.GoldenIndex): one row per source record and key; kind is
# "rule" or "block". A block is one indexed query: WHERE entity = ? AND kind = ? AND key = ?.
mdm_keys = Table(
    "mdm_keys",
    metadata,
    Column("entity", String(32), primary_key=True),
    Column("kind", String(8), primary_key=True),
    Column("key", String(512), primary_key=True),
    Column("crosswalk_id", Integer, primary_key=True, autoincrement=False),
    Index("ix_mdm_keys_crosswalk_id", "crosswalk_id"),  # a record's keys, replaced on change
)

mdm_reviews = Table(
    "mdm_reviews",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("entity", String(32), nullable=False),
    Column("golden_id", String(64), nullable=False),  # the record's own, until decided
    Column("system", String(64), nullable=False),
    Column("external_id", String(255), nullable=False),
    Column("candidates", JSON, nullable=False),  # [{golden_id, record_id, score, probability}]
    Column("score", Float, nullable=False),  # the best candidate's probability
    Column("explanation", JSON, nullable=False),  # the best candidate's fields, weight by weight
    Column("status", String(16), nullable=False),  # open | accepted | rejected
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("decided_by", String(128)),
    Column("decided_at", DateTime(timezone=True)),
    Column("decision", JSON),  # accepted: the golden id it was merged into
    Index("ix_mdm_reviews_status", "status", "entity", "id"),
)

# Every step of master data: new golden record, link, review, merge, unmerge, decision.
mdm_history = Table(
    "mdm_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("entity", String(32), nullable=False),
    Column("golden_id", String(64), nullable=False),
    Column("action", String(16), nullable=False),  # new | link | review | merge | unmerge | …
    Column("actor", String(128), nullable=False),  # rule:<name>, match:<p>, steward:<user>
    Column("reason", Text),
    Column("detail", JSON, nullable=False),  # the ids involved, before and after
    Column("at", DateTime(timezone=True), nullable=False),
    # merge and unmerge: when their canonical events were published (NULL: not yet, the outbox)
    Column("published_at", DateTime(timezone=True)),
    Index("ix_mdm_history_golden_id", "entity", "golden_id", "id"),
    Index("ix_mdm_history_action", "action", "id"),
)


# The dashboard's users, their sessions and API tokens, the audit trail of every write, and
# login attempts (rate limit across processes): hub.auth.
users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("password_hash", Text, nullable=False),  # argon2id (argon2-cffi)
    Column("role", String(16), nullable=False),  # viewer | operator | steward | admin
    Column("disabled", Boolean, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", String(64), primary_key=True),  # SHA-256 of the cookie's value
    Column("user_id", Integer, nullable=False, index=True),
    Column("csrf", String(64), nullable=False),  # the synchronizer token of its writes
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", String(16), primary_key=True),  # the token's public part: hub_<id>_<secret>
    Column("name", String(64), nullable=False),
    Column("token_hash", String(64), nullable=False),  # SHA-256 of the whole token
    Column("role", String(16), nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_used_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(128), nullable=False),  # user:<name> | token:<id> | ops-token | …
    Column("action", String(64), nullable=False),
    Column("target", String(255)),
    Column("before", JSON),
    Column("after", JSON),
    Column("ip", String(64)),
    Index("ix_audit_log_at", "at"),
)

login_attempts = Table(
    "login_attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("name", String(64), nullable=False),
    Column("ip", String(64), nullable=False),
    Column("ok", Boolean, nullable=False),
    Index("ix_login_attempts_name", "name", "at"),
    Index("ix_login_attempts_ip", "ip", "at"),
)

# The reads made for every event; built once: a statement made per call costs SQLAlchemy a
# cache key each time. On SQLite they run through sqlite3 as compiled by _sqlite_sql.
_WEBHOOK_EVENTS = select(
    webhook_receipts.c.delivery_id,
    webhook_receipts.c.event_id,
    webhook_receipts.c.broker_incarnation,
).where(
    webhook_receipts.c.connection == bindparam("connection"),
    webhook_receipts.c.delivery_id.in_(bindparam("ids", expanding=True)),
)
_DELIVERED = select(deliveries.c.event_id, deliveries.c.route).where(
    deliveries.c.destination == bindparam("destination"),
    deliveries.c.event_id.in_(bindparam("ids", expanding=True)),
)


@functools.cache
def _sqlite_sql(query: Any) -> tuple[str, tuple[str, ...]]:
    """``query`` as SQLite text, with its parameter names in placeholder order."""
    compiled = query.compile(dialect=sqlite.dialect())
    return str(compiled), tuple(compiled.positiontup or ())


def _sqlite_args(query: Any, params: dict[str, Any]) -> tuple[str, list[Any]]:
    """The text and positional arguments for sqlite3; a list parameter (``IN``) gets one
    placeholder per value."""
    sql, names = _sqlite_sql(query)
    args: list[Any] = []
    for name in names:
        value = params[name]
        if isinstance(value, list):
            sql = sql.replace(f"__[POSTCOMPILE_{name}]", ",".join("?" * len(value)))
            args.extend(value)
        else:
            args.append(value)
    return sql, args


@functools.cache
def _sqlite_insert_ignore(
    table: Table,
) -> tuple[str, tuple[str, ...], tuple[Callable[[Any], Any] | None, ...]]:
    """``table``'s INSERT .. ON CONFLICT DO NOTHING as SQLite text, its parameter names in
    placeholder order, and each one's bind processor (a DateTime becomes the text SQLAlchemy
    itself writes and reads back)."""
    dialect = sqlite.dialect()
    sql, names = _sqlite_sql(sqlite.insert(table).on_conflict_do_nothing())
    processors = tuple(
        table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names
    )
    return sql, names, processors


def _open_reader(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)  # autocommit: no snapshot held open
    conn.execute("PRAGMA query_only=1")
    conn.execute("PRAGMA busy_timeout=20")  # then the thread, which may wait
    return conn


def _now() -> datetime:
    return datetime.now(UTC)


def instance_name() -> str:
    """This process, as other processes see it in the shared tables (replay jobs, circuits):
    host, pid and a random part (pid 1 repeats in containers)."""
    return f"{socket.gethostname()[:64]}/{os.getpid()}/{uuid.uuid4().hex[:8]}"


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.instance = instance_name()
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        sqlite = parsed.get_backend_name() == "sqlite"
        # A local file needs no liveness check per checkout (it cost ~1 ms per statement).
        self.engine: AsyncEngine = create_async_engine(url, pool_pre_ping=not sqlite)
        self.dialect = self.engine.dialect.name
        self._sync: Engine | None = None
        self._thread: ThreadPoolExecutor | None = None
        if self.dialect == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            if parsed.database not in (None, "", ":memory:"):  # one file both engines open
                self._sync = create_engine(parsed.set(drivername="sqlite"))
                event.listen(self._sync, "connect", _sqlite_pragmas)
        self._reader: sqlite3.Connection | None = None
        self._reader_path = parsed.database if self._sync is not None else None
        self._writer: sqlite3.Connection | None = None  # the database thread's own

    async def _select(self, query: Any, params: dict[str, Any]) -> list[Any]:
        """A read made for every event. On SQLite it runs on the loop's own thread, over a
        read-only connection of its own: WAL readers never wait for writers, and a statement
        costs ~10 us where a hop to another thread costs ~100 us of CPU. Should SQLite be busy
        all the same (WAL recovery), the read goes to the database thread."""
        if self._reader_path is not None:
            try:
                if self._reader is None:
                    self._reader = _open_reader(self._reader_path)
                return self._reader.execute(*_sqlite_args(query, params)).fetchall()
            except sqlite3.OperationalError as exc:
                log.info("SQLite read on the loop thread failed (%s); using the thread", exc)
        return await self.run(lambda conn: list(conn.execute(query, params)))

    async def run(self, work: Callable[[Connection], T]) -> T:
        """``work(connection)`` in one transaction, committed when it returns."""
        if self._sync is None:
            async with self.engine.begin() as conn:
                return await conn.run_sync(work)
        return await self._on_thread(self._in_thread, work)

    async def _on_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the database's own thread (SQLite)."""
        if self._thread is None:  # made on first use, again after close()
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite")
        # in the caller's context: what it set (a write's pending audit row) holds there too
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(
            self._thread, context.run, fn, *args
        )

    def _in_thread(self, work: Callable[[Connection], T]) -> T:
        assert self._sync is not None
        with self._sync.begin() as conn:
            return work(conn)

    async def _insert_ignore(self, table: Table, rows: list[dict[str, Any]]) -> None:
        """Insert ``rows``, skipping those whose primary key exists, in one transaction.

        For the writes made for every event (receipts, deliveries). On a SQLite file they skip
        SQLAlchemy: a sqlite3 connection of the database thread's own runs the statement
        compiled once from the table, with the same bind processing (about half the CPU of a
        SQLAlchemy connection's checkout, parameter processing and commit)."""
        if self._sync is None:
            insert = self.insert_ignore(table)
            await self.run(lambda conn: conn.execute(insert, rows))
            return
        await self._on_thread(self._write_rows, table, rows)

    def _write_rows(self, table: Table, rows: list[dict[str, Any]]) -> None:
        sql, names, processors = _sqlite_insert_ignore(table)
        args = [
            tuple(
                row[name] if process is None else process(row[name])
                for name, process in zip(names, processors, strict=True)
            )
            for row in rows
        ]
        if self._writer is None:
            assert self._reader_path is not None
            self._writer = sqlite3.connect(self._reader_path, isolation_level=None)
            _sqlite_pragmas(self._writer, None)
        conn = self._writer
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(sql, args)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    async def start(self, migrate: bool = True) -> None:
        """Open the database and bring its schema to this hub's head revision
        (:mod:`hub.migrations`); with ``migrate=False`` (HUB_DB_MIGRATE=false: a job migrates)
        only check that it is there. Refuses a database a newer hub migrated (DatabaseTooNew)."""
        if not migrate:
            await self._schema(functools.partial(migrations.check, migrate=False), lock=False)
            return
        done = await self.migrate()
        if done.changed:
            log.info("%s", done)

    async def migrate(self) -> migrations.Upgrade:
        """Upgrade the schema to the head revision, one process at a time: replicas starting
        together on one database run the migrations once, the others wait and find it done."""
        return await self._schema(migrations.upgrade, lock=True)

    async def revision(self) -> str | None:
        """The revision the schema is at (None: none recorded, see hub.migrations.current)."""
        return await self._schema(migrations.current, lock=False)

    async def _schema(self, work: Callable[[Connection], T], *, lock: bool) -> T:
        """``work(connection)`` in one transaction; with ``lock``, holding the schema lock: a
        PostgreSQL advisory lock, SQLite's write lock (BEGIN IMMEDIATE), until it commits."""
        try:
            async with self.engine.connect() as conn, conn.begin():
                if lock and self.dialect == "postgresql":
                    await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), _SCHEMA_LOCK)
                elif lock and self.dialect == "sqlite":
                    # Another process may be migrating: wait for it longer than for a write.
                    await conn.exec_driver_sql("PRAGMA busy_timeout=60000")
                    await conn.exec_driver_sql("BEGIN IMMEDIATE")
                    await conn.exec_driver_sql(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
                return await conn.run_sync(work)
        except (OSError, SQLAlchemyError) as exc:
            raise DatabaseUnavailable(
                f"cannot open the database {self.engine.url.render_as_string(hide_password=True)}"
                f": {exc.__class__.__name__}: {exc}; check HUB_DATABASE_URL"
            ) from None

    async def close(self) -> None:
        await self.engine.dispose()
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._sync is not None and self._thread is not None:
            thread, self._thread = self._thread, None
            await asyncio.get_running_loop().run_in_executor(thread, self._close_writer)
            await asyncio.get_running_loop().run_in_executor(thread, self._sync.dispose)
            thread.shutdown(wait=True)

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    def insert_ignore(self, table: Table) -> Any:
        """INSERT that skips rows whose primary key exists (execute with the rows)."""
        dialect = postgresql if self.dialect == "postgresql" else sqlite
        return dialect.insert(table).on_conflict_do_nothing()

    async def webhook_events(
        self, connection: str, delivery_ids: list[str]
    ) -> dict[str, tuple[str, str | None]]:
        """Event id and embedded broker run (None: external Kafka) stored for earlier
        deliveries with these ids (the ones found)."""
        params = {"connection": connection, "ids": delivery_ids}
        return {r[0]: (r[1], r[2]) for r in await self._select(_WEBHOOK_EVENTS, params)}

    async def record_webhooks(
        self, rows: list[tuple[str, str, str]], broker_incarnation: str | None = None
    ) -> None:
        """Record (connection, delivery id, event id) receipts in one transaction, their
        events held by the embedded broker's ``broker_incarnation`` (None: an external Kafka)."""
        if not rows:
            return
        now = _now()
        values = [
            {
                "connection": c,
                "delivery_id": d,
                "event_id": e,
                "received_at": now,
                "broker_incarnation": broker_incarnation,
            }
            for c, d, e in rows
        ]
        await self._insert_ignore(webhook_receipts, values)

    async def forget_webhooks(self, broker_incarnation: str) -> int:
        """Remove the receipts whose events only ``broker_incarnation`` held; returns how many."""
        query = delete(webhook_receipts).where(
            webhook_receipts.c.broker_incarnation == broker_incarnation
        )
        return await self.run(lambda conn: conn.execute(query).rowcount)

    async def delivered(self, destination: str, event_ids: list[str]) -> set[tuple[str, str]]:
        """The (event id, route) pairs among these events already delivered to
        ``destination``. A pair whose route is :data:`EVERY_ROUTE` ('') stands for every
        route of that event (recorded before deliveries were kept per route)."""
        if not event_ids:
            return set()
        params = {"destination": destination, "ids": event_ids}
        return {(r[0], r[1]) for r in await self._select(_DELIVERED, params)}

    async def record_deliveries(self, destination: str, done: list[tuple[str, str]]) -> None:
        """Record successful deliveries, (event id, route) pairs, in one transaction."""
        if not done:
            return
        now = _now()
        values = [
            {"destination": destination, "event_id": e, "route": r, "delivered_at": now}
            for e, r in done
        ]
        await self._insert_ignore(deliveries, values)


# The advisory lock key of the schema step (any constant: the same in every hub process).
_SCHEMA_LOCK = {"key": 0x6875625F736368}  # b"hub_sch"
_BUSY_TIMEOUT_MS = 5000


_WAL_WAIT_S = 60.0  # as long as the schema lock waits for another process's migration


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
    _wal(cur)
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _wal(cur: Any) -> None:
    """Put the database in WAL mode (it keeps it once set). Switching a new database needs it
    to itself, and SQLite answers "database is locked" at once, without its busy wait, while
    another process (a replica starting beside this one) switches it or migrates it: tried
    again until that is done, as the schema lock would wait. Only a new database's first
    moments see this: a database in WAL mode answers at once."""
    deadline = time.monotonic() + _WAL_WAIT_S
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except Exception as exc:  # sqlite3's, or the async adapter's copy of it
            if "database is locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(0.02)
