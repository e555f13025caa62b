"""The hub's state database, against SQLite and PostgreSQL alike."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from hub.db import Database, deliveries, webhook_receipts
from hub.retry import RetryQueue, StoredRecord, later, now_utc

from .support.databases import drop_postgres_database, new_postgres_database


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    dropped: str | None = None
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'state' / 'hub.db'}"
    else:
        url, dropped = await new_postgres_database()
    database = Database(url)
    try:
        yield database
    finally:
        await database.close()
        if dropped is not None:
            await drop_postgres_database(dropped)


async def test_start_is_idempotent_and_ping(db: Database) -> None:
    await db.start()
    await db.start()
    assert await db.ping() is True
    assert db.dialect in ("sqlite", "postgresql")


async def test_sqlite_folder_is_created(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "hub.db"
    database = Database(f"sqlite+aiosqlite:///{path}")
    try:
        await database.start()
        assert path.exists()
    finally:
        await database.close()


async def event_of(db: Database, connection: str, delivery_id: str) -> str | None:
    found = (await db.webhook_events(connection, [delivery_id])).get(delivery_id)
    return None if found is None else found[0]


async def test_webhook_receipts(db: Database) -> None:
    await db.start()
    assert await event_of(db, "shop", "d-1") is None
    await db.record_webhooks([("shop", "d-1", "evt-1")])
    assert await event_of(db, "shop", "d-1") == "evt-1"
    # the same delivery id on another connection is another delivery
    assert await event_of(db, "crm", "d-1") is None
    await db.record_webhooks([("crm", "d-1", "evt-9")])
    assert await event_of(db, "crm", "d-1") == "evt-9"


async def test_recording_a_webhook_twice_keeps_the_first_event(db: Database) -> None:
    await db.start()
    await db.record_webhooks([("shop", "d-1", "evt-1")])
    await db.record_webhooks([("shop", "d-1", "evt-1")])  # a retry of the same request
    await db.record_webhooks([("shop", "d-1", "evt-2")])  # a race: the first one wins
    assert await event_of(db, "shop", "d-1") == "evt-1"


async def test_deliveries(db: Database) -> None:
    await db.start()
    assert await db.delivered("erp", []) == set()
    assert await db.delivered("erp", ["e1", "e2"]) == set()
    await db.record_deliveries("erp", [("e1", "a")])
    await db.record_deliveries("erp", [("e1", "a")])  # recording twice is not an error
    await db.record_deliveries("erp", [("e1", "b"), ("e3", "b")])  # per route
    await db.record_deliveries("crm", [("e2", "c")])
    assert await db.delivered("erp", ["e1", "e2"]) == {("e1", "a"), ("e1", "b")}
    assert await db.delivered("crm", ["e1", "e2"]) == {("e2", "c")}


async def test_recorded_times_read_back_through_sqlalchemy(db: Database) -> None:
    """On SQLite receipts and deliveries are written through sqlite3, not SQLAlchemy: what
    they write must read back as SQLAlchemy writes it (a datetime, to the microsecond)."""
    await db.start()
    before = datetime.now(UTC).replace(tzinfo=None)
    await db.record_deliveries("erp", [("e1", "r"), ("e2", "r")])
    await db.record_webhooks([("shop", "d-1", "evt-1")])
    after = datetime.now(UTC).replace(tzinfo=None)
    rows = await db.run(lambda c: list(c.execute(select(deliveries.c.delivered_at))))
    received = await db.run(lambda c: list(c.execute(select(webhook_receipts.c.received_at))))
    for (at,) in [*rows, *received]:
        assert isinstance(at, datetime)
        if at.tzinfo is not None:  # PostgreSQL keeps the zone; SQLite stores UTC without it
            at = at.astimezone(UTC).replace(tzinfo=None)
        assert before <= at <= after


async def test_a_failed_write_writes_nothing_and_leaves_no_transaction_open(db: Database) -> None:
    await db.start()
    now = datetime.now(UTC)
    rows = [
        {"destination": "erp", "event_id": "e1", "route": "r", "delivered_at": now},
        {"destination": "erp", "event_id": "e2", "route": "r", "delivered_at": None},  # NOT NULL
    ]
    with pytest.raises((sqlite3.IntegrityError, IntegrityError)):
        await db._insert_ignore(deliveries, rows)
    await db.record_deliveries("erp", [("e3", "r")])  # the next transaction begins and commits
    assert await db.delivered("erp", ["e1", "e2", "e3"]) == {("e3", "r")}


async def test_reads_see_writes_made_through_the_other_connections(db: Database) -> None:
    """On SQLite the per-event reads use a connection of their own on the loop thread, the
    writes the database thread: every read must see every committed write."""
    await db.start()
    for i in range(20):
        assert await db.delivered("erp", [f"e{i}"]) == set()
        await db.record_deliveries("erp", [(f"e{i}", "r")])
        assert await db.delivered("erp", [f"e{j}" for j in range(25)]) == {
            (f"e{j}", "r") for j in range(i + 1)
        }
        await db.record_webhooks([("shop", f"d{i}", f"evt{i}")])
        assert await event_of(db, "shop", f"d{i}") == f"evt{i}"


async def test_a_busy_sqlite_read_falls_back_to_the_database_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    import hub.db

    def busy(_path: str) -> sqlite3.Connection:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(hub.db, "_open_reader", busy)
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}")
    try:
        await db.start()
        await db.record_deliveries("erp", [("e1", "r")])
        await db.record_webhooks([("shop", "d-1", "evt-1")])
        assert await db.delivered("erp", ["e1", "e2"]) == {("e1", "r")}
        assert await event_of(db, "shop", "d-1") == "evt-1"
    finally:
        await db.close()


async def test_state_survives_a_new_database_object(db: Database) -> None:
    await db.start()
    await db.record_deliveries("erp", [("e1", "r")])
    await db.record_webhooks([("shop", "d-1", "evt-1")])
    await db.close()
    again = Database(db.url)
    try:
        await again.start()
        assert await again.delivered("erp", ["e1"]) == {("e1", "r")}
        assert await event_of(again, "shop", "d-1") == "evt-1"
    finally:
        await again.close()


async def test_ping_is_false_when_the_database_is_unreachable(tmp_path: Path) -> None:
    import socket

    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    database = Database(f"postgresql+asyncpg://postgres@127.0.0.1:{port}/none")
    try:
        assert await database.ping() is False
    finally:
        await database.close()


async def test_the_retry_table_releases_one_key_in_order(db: Database) -> None:
    await db.start()
    queue = RetryQueue(db, "w")

    def rec(offset: int) -> StoredRecord:
        return StoredRecord("t", 0, offset, b"k", b"v", [("ce_id", b"x")])

    await queue.park(
        rec(1),
        event_id="e1",
        stage="deliver",
        route="r",
        order_key="k",
        next_attempt_at=later(3600),
        error=RuntimeError("503"),
    )
    await queue.park(
        rec(2),
        event_id="e2",
        stage="deliver",
        route="r",
        order_key="k",
        next_attempt_at=later(0),
    )
    await queue.park(
        rec(3),
        event_id="e3",
        stage="deliver",
        route="r",
        order_key=None,
        next_attempt_at=later(0),
    )
    await queue.park(
        rec(1),
        event_id="e1",
        stage="deliver",
        route="r",
        order_key="k",
        next_attempt_at=later(0),
    )  # parked again after a crash: ignored
    assert await queue.count() == 3
    assert await queue.blocked_keys([("t", 0)]) == {"k": 2}
    assert await queue.blocked_keys([("t", 1)]) == {}

    due = await queue.due([("t", 0)], now_utc())
    assert [p.event_id for p in due] == ["e3"]  # e2 waits behind e1, whose time has not come
    assert due[0].record.headers == [("ce_id", b"x")]
    assert due[0].first_failed_at is None  # never failed itself

    (e1,) = [p for p in await queue.due([("t", 0)], later(7200)) if p.event_id == "e1"]
    await queue.failed_again(e1, RuntimeError("503 again"), later(0), charged=True)
    assert e1.attempts == 1 and len(e1.attempt_times) == 1
    await queue.remove(e1)
    due = await queue.due([("t", 0)], now_utc())
    assert [p.event_id for p in due] == ["e2", "e3"]  # e1 gone: e2 is released


async def test_a_due_event_is_claimed_by_one_worker_only(db: Database) -> None:
    """Two workers of one group (e.g. the old and the new owner of a partition during a
    rebalance) both find an event due: only one may attempt it, until its hold runs out."""
    await db.start()
    first, second = RetryQueue(db, "w"), RetryQueue(db, "w")
    for offset in (1, 2):
        await first.park(
            StoredRecord("t", 0, offset, b"k", b"v", []),
            event_id=f"e{offset}",
            stage="deliver",
            route="r",
            order_key=None,
            next_attempt_at=later(0),
        )
    now = now_utc()
    seen_by_first = await first.due([("t", 0)], now)
    seen_by_second = await second.due([("t", 0)], now)
    assert [p.event_id for p in seen_by_first] == [p.event_id for p in seen_by_second]
    assert len(seen_by_first) == 2

    claimed = await first.claim(seen_by_first, now, hold_s=60)
    assert [p.event_id for p in claimed] == ["e1", "e2"]
    assert await second.claim(seen_by_second, now, hold_s=60) == []
    assert await second.due([("t", 0)], now) == []  # held while it is being attempted

    # The holder died mid-attempt: once the hold has run out, another worker takes it.
    after = later(61)
    retaken = await second.claim(await second.due([("t", 0)], after), after, hold_s=60)
    assert [p.event_id for p in retaken] == ["e1", "e2"]
