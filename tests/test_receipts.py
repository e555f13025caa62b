"""Ingress receipts: cache in front of the table, batched writes, survival across restarts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hub.db import Database
from hub.errors import DatabaseUnavailable
from hub.receipts import Receipts


async def test_receipts_are_found_after_a_restart(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}"
    db = Database(url)
    await db.start()
    receipts = Receipts(db)
    receipts.start()
    for i in range(1200):  # more than one batch
        receipts.record("shop", f"wh-{i}", f"ev-{i}")
    assert await receipts.seen("shop", "wh-7") == "ev-7"  # from memory, before any write
    await receipts.close()
    await db.close()

    db = Database(url)
    await db.start()
    fresh = Receipts(db)
    assert await fresh.seen("shop", "wh-0") == "ev-0"
    assert await fresh.seen("shop", "wh-1199") == "ev-1199"
    assert await fresh.seen("other", "wh-0") is None  # per connection
    assert await fresh.seen("shop", "wh-1200") is None
    await db.close()


async def test_the_cache_is_bounded(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}")
    await db.start()
    receipts = Receipts(db, cache_size=10)
    for i in range(50):
        receipts.record("shop", f"wh-{i}", f"ev-{i}")
    assert len(receipts._cache) == 10
    await receipts.flush()
    assert await receipts.seen("shop", "wh-0") == "ev-0"  # evicted from memory, found in the table
    await db.close()


async def test_an_unreachable_database_is_a_clear_error() -> None:
    db = Database("postgresql+asyncpg://hub:secret-pw@127.0.0.1:1/hub")
    with pytest.raises(DatabaseUnavailable) as info:
        await db.start()
    message = str(info.value)
    assert "HUB_DATABASE_URL" in message
    assert "secret-pw" not in message
    await db.close()


async def test_lookups_made_together_share_one_query(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}")
    await db.start()
    await db.record_webhooks([("shop", f"wh-{i}", f"ev-{i}") for i in range(0, 40, 2)])
    queries: list[tuple[str, int]] = []
    real = db.webhook_events

    async def counted(connection: str, ids: list[str]) -> dict[str, tuple[str, str | None]]:
        queries.append((connection, len(ids)))
        return await real(connection, ids)

    db.webhook_events = counted  # type: ignore[method-assign]
    receipts = Receipts(db, batch=25)
    asks = [("shop", f"wh-{i}") for i in range(40)] + [("crm", "wh-0"), ("shop", "wh-0")]
    found = await asyncio.gather(*(receipts.seen(c, d) for c, d in asks))
    assert found[:40] == [f"ev-{i}" if i % 2 == 0 else None for i in range(40)]
    assert found[40:] == [None, "ev-0"]  # per connection; the same id asked twice
    assert sorted(queries) == [("crm", 1), ("shop", 15), ("shop", 25)]  # chunks of `batch`
    await db.close()
