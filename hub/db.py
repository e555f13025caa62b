"""The hub's own state (SQLAlchemy 2 async): SQLite by default, PostgreSQL in production.

Tables: webhook receipts (ingress deduplication), deliveries (so a redelivered event does not
repeat its effect in a destination), dead letters, and retries (events parked until their next
attempt, see :mod:`hub.retry`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    event,
    inspect,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from .errors import DatabaseUnavailable

metadata = MetaData()

webhook_receipts = Table(
    "webhook_receipts",
    metadata,
    Column("connection", String(64), primary_key=True),
    Column("delivery_id", String(255), primary_key=True),
    Column("event_id", String(64), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("destination", String(64), primary_key=True),
    Column("event_id", String(64), primary_key=True),
    Column("delivered_at", DateTime(timezone=True), nullable=False),
)


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
    Column("replayed_value", LargeBinary),  # what the last replay sent, if edited
    Column("outcome", Text),  # what became of the last replay, as far as the hub knows
    Column("discarded_at", DateTime(timezone=True)),
    Column("attempt_times", JSON),  # when each attempt was made (retried failures)
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


def _now() -> datetime:
    return datetime.now(UTC)


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        sqlite = parsed.get_backend_name() == "sqlite"
        # A local file needs no liveness check per checkout (it cost ~1 ms per statement).
        self.engine: AsyncEngine = create_async_engine(url, pool_pre_ping=not sqlite)
        self.dialect = self.engine.dialect.name
        if self.dialect == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)

    async def start(self) -> None:
        try:
            async with self.engine.begin() as conn:
                await conn.run_sync(metadata.create_all)
                await conn.run_sync(_add_new_columns)
        except (OSError, SQLAlchemyError) as exc:
            raise DatabaseUnavailable(
                f"cannot open the database {self.engine.url.render_as_string(hide_password=True)}"
                f": {exc.__class__.__name__}: {exc}; check HUB_DATABASE_URL"
            ) from None

    async def close(self) -> None:
        await self.engine.dispose()

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

    async def webhook_events(self, connection: str, delivery_ids: list[str]) -> dict[str, str]:
        """Event ids stored for earlier deliveries with these ids (the ones found)."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(webhook_receipts.c.delivery_id, webhook_receipts.c.event_id).where(
                    webhook_receipts.c.connection == connection,
                    webhook_receipts.c.delivery_id.in_(delivery_ids),
                )
            )
            return {r[0]: r[1] for r in rows}

    async def record_webhooks(self, rows: list[tuple[str, str, str]]) -> None:
        """Record (connection, delivery id, event id) receipts in one transaction."""
        if not rows:
            return
        now = _now()
        async with self.engine.begin() as conn:
            await conn.execute(
                self.insert_ignore(webhook_receipts),
                [
                    {"connection": c, "delivery_id": d, "event_id": e, "received_at": now}
                    for c, d, e in rows
                ],
            )

    async def delivered(self, destination: str, event_ids: list[str]) -> set[str]:
        if not event_ids:
            return set()
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(deliveries.c.event_id).where(
                    deliveries.c.destination == destination, deliveries.c.event_id.in_(event_ids)
                )
            )
            return {r[0] for r in rows}

    async def record_deliveries(self, destination: str, event_ids: list[str]) -> None:
        """Record successful deliveries in one transaction."""
        if not event_ids:
            return
        now = _now()
        async with self.engine.begin() as conn:
            await conn.execute(
                self.insert_ignore(deliveries),
                [
                    {"destination": destination, "event_id": e, "delivered_at": now}
                    for e in event_ids
                ],
            )


def _add_new_columns(conn: Any) -> None:
    """Columns added to a table since it was created are added to it (nullable ones only).

    create_all makes missing tables, never missing columns. Until the schema needs real
    migrations, new columns are nullable and appear here."""
    inspector = inspect(conn)
    for table in metadata.sorted_tables:
        if not inspector.has_table(table.name):
            continue
        present = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in present or not column.nullable:
                continue
            kind = column.type.compile(dialect=conn.dialect)
            conn.execute(text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}'))


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()
