"""Retention (hub.retention): old receipts and deliveries go, in bounded batches; recent stay."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import func, insert, select

from hub.db import Database, deliveries, order_journal, webhook_receipts
from hub.retention import Retention
from hub.retry import now_utc
from hub.settings import Settings

from .support.databases import database_url

DAY = 86400.0


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def db(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[Database]:
    async with database_url(request.param, tmp_path) as url:
        database = Database(url)
        await database.start()
        try:
            yield database
        finally:
            await database.close()


async def count(db: Database, table: Any) -> int:
    return await db.run(
        lambda conn: int(conn.execute(select(func.count()).select_from(table)).scalar_one())
    )


async def test_old_rows_are_deleted_in_batches_recent_ones_kept(db: Database) -> None:
    now = now_utc()
    old_receipt, new_receipt = now - timedelta(days=8), now - timedelta(days=6)
    old_delivery, new_delivery = now - timedelta(days=31), now - timedelta(days=29)
    receipts = [
        {"connection": "shop", "delivery_id": f"old-{i}", "event_id": f"e{i}", "received_at": t}
        for i, t in enumerate([old_receipt] * 7)
    ] + [{"connection": "shop", "delivery_id": "new", "event_id": "n", "received_at": new_receipt}]
    delivered = [
        {"destination": "erp", "event_id": f"old-{i}", "route": "r", "delivered_at": old_delivery}
        for i in range(5)
    ] + [{"destination": "erp", "event_id": "new", "route": "r", "delivered_at": new_delivery}]
    steps = [  # an order's steps (hub.journal) are kept as long as deliveries
        {"event_id": f"e{i}", "step": "mapped", "route": "r", "golden_id": "ord_1", "at": t}
        for i, t in enumerate([old_delivery] * 4 + [new_delivery])
    ]

    def fill(conn: Any) -> None:
        conn.execute(insert(webhook_receipts), receipts)
        conn.execute(insert(deliveries), delivered)
        conn.execute(insert(order_journal), steps)

    await db.run(fill)
    settings = Settings(receipts_retention="7d", deliveries_retention="30d")
    retention = Retention(db, settings, batch=3)
    sizes: list[int] = []
    run = db.run

    async def counted(work: Callable[[Any], Any]) -> Any:
        result = await run(work)
        sizes.append(result)
        return result

    db.run = counted  # type: ignore[method-assign]
    try:
        deleted = await retention.run_once(now)
    finally:
        del db.run
    assert deleted == {
        "webhook_receipts": 7,
        "deliveries": 5,
        "order_journal": 4,
        "replay_jobs": 0,
    }
    # one transaction per batch of at most 3 rows, until a batch finds fewer
    assert sizes == [3, 3, 1, 3, 2, 3, 1, 0]
    assert await db.webhook_events("shop", ["new", "old-0"]) == {"new": ("n", None)}
    assert await db.delivered("erp", ["new", "old-0"]) == {("new", "r")}
    assert not any((await retention.run_once(now)).values())
    assert (await count(db, webhook_receipts), await count(db, deliveries)) == (1, 1)
    assert await count(db, order_journal) == 1


async def test_zero_keeps_for_ever(db: Database) -> None:
    long_ago = now_utc() - timedelta(days=3650)
    await db.run(
        lambda conn: conn.execute(
            insert(deliveries),
            [{"destination": "erp", "event_id": "e", "route": "r", "delivered_at": long_ago}],
        )
    )
    settings = Settings(receipts_retention=0, deliveries_retention=0)
    assert await Retention(db, settings).run_once() == {}
    assert await db.delivered("erp", ["e"]) == {("e", "r")}


def test_durations_and_the_retry_window() -> None:
    s = Settings(receipts_retention="3d", deliveries_retention="72h", retention_interval="5m")
    assert (s.receipts_retention, s.deliveries_retention, s.retention_interval) == (
        3 * DAY,
        3 * DAY,
        300.0,
    )
    with pytest.raises(ValidationError, match="retry window"):
        Settings(receipts_retention="47h")
    with pytest.raises(ValidationError, match="at least HUB_RECEIPTS_RETENTION"):
        Settings(receipts_retention="10d", deliveries_retention="9d")
    with pytest.raises(ValidationError, match="at least HUB_RECEIPTS_RETENTION"):
        Settings(receipts_retention=0, deliveries_retention="9d")
    with pytest.raises(ValidationError, match="not a duration"):
        Settings(retention_interval="soon")


async def test_replay_jobs_go_a_retention_after_their_last_sign_of_life(db: Database) -> None:
    from hub.db import replay_jobs
    from hub.deadletters import Filter
    from hub.replayjobs import ReplayJobStore

    store = ReplayJobStore(db)
    for job in ("ended-long-ago", "running"):
        await store.create(job, Filter(status="open"), 1, "host/1/x")
    long_ago = now_utc() - timedelta(days=31)
    await db.run(
        lambda conn: conn.execute(
            replay_jobs.update()
            .where(replay_jobs.c.id == "ended-long-ago")
            .values(status="finished", started_at=long_ago, heartbeat_at=long_ago)
        )
    )
    assert (await Retention(db, Settings()).run_once())["replay_jobs"] == 1
    assert await store.get("ended-long-ago") is None
    assert (await store.get("running") or {}).get("status") == "running"
