"""Bulk replay jobs live in the database: two hub processes (two Hub objects on one database,
real broker, real SQLite and PostgreSQL) answer the same, and either can cancel a job."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from hub.db import replay_jobs
from hub.deadletters import Filter
from hub.retry import now_utc

from .support.databases import database_url
from .support.harness import HubFactory, until
from .test_opsapi import api, assert_error, dead_letters


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def shared_db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with database_url(request.param, tmp_path) as url:
        yield url


async def test_a_job_started_in_one_process_is_seen_and_cancelled_from_another(
    hubs: HubFactory, shared_db: str
) -> None:
    one = await hubs.start(None, database_url=shared_db)
    other = await hubs.start(None, roles=frozenset({"ingress"}), database_url=shared_db)
    await dead_letters(one, range(8400, 8406))
    one.replays.CHUNK = 2
    # The job's second chunk waits until the test has cancelled it from the other process.
    chunks = 0
    go_on = asyncio.Event()
    get_many = one.deadletters.get_many

    async def gated(ids: list[str]) -> dict[str, dict[str, Any]]:
        nonlocal chunks
        chunks += 1
        if chunks == 2:
            await go_on.wait()
        return await get_many(ids)

    one.deadletters.get_many = gated  # type: ignore[method-assign]

    started = await api(one, "POST", "/replays")
    assert started.status_code == 202, started.text
    job = started.json()
    assert (job["state"], job["total"], job["instance"]) == ("running", 6, one.replays.instance)

    async def first_chunk_done() -> bool:
        seen = (await api(other, "GET", f"/replays/{job['id']}")).json()
        return bool(seen["done"] == 2 and chunks == 2)

    await until(first_chunk_done)
    listed = (await api(other, "GET", "/replays")).json()
    assert (listed["total"], [j["id"] for j in listed["items"]]) == (1, [job["id"]])

    cancelled = await api(other, "DELETE", f"/replays/{job['id']}")
    assert cancelled.status_code == 200, cancelled.text
    assert (cancelled.json()["state"], cancelled.json()["cancel_requested"]) == ("cancelling", True)
    go_on.set()  # the chunk in hand finishes; the job stops before the next
    await one.replays.wait(job["id"])

    for hub in (one, other):
        seen = (await api(hub, "GET", f"/replays/{job['id']}")).json()
        assert (seen["state"], seen["done"], seen["failed"]) == ("cancelled", 4, 0)
        assert seen["finished_at"] is not None
    replayed = (await api(other, "GET", "/deadletters", params={"status": "replayed"})).json()
    assert replayed["total"] == 4  # the last chunk's two were not replayed
    # an ended job stays as it ended
    again = (await api(other, "DELETE", f"/replays/{job['id']}")).json()
    assert (again["state"], again["done"]) == ("cancelled", 4)


async def test_a_job_whose_process_died_shows_abandoned_and_cancels_at_once(
    hubs: HubFactory, shared_db: str
) -> None:
    hub = await hubs.start(None, roles=frozenset({"ingress"}), database_url=shared_db)
    store = hub.replays.store
    await store.create("dead-job", Filter(status="open"), 10, "gone-host/1/abcd")
    await store.create("live-job", Filter(status="open", stage="deliver"), 3, "other/2/ef01")
    stale = now_utc() - timedelta(seconds=hub.replays.LEASE_S + 5)
    await hub.db.run(
        lambda conn: conn.execute(
            replay_jobs.update()
            .where(replay_jobs.c.id == "dead-job")
            .values(heartbeat_at=stale, started_at=stale)
        )
    )
    dead = (await api(hub, "GET", "/replays/dead-job")).json()
    assert (dead["state"], dead["instance"], dead["filter"]) == (
        "abandoned",
        "gone-host/1/abcd",
        {"status": "open"},
    )
    listed = (await api(hub, "GET", "/replays", params={"limit": 1})).json()
    assert (listed["total"], [j["id"] for j in listed["items"]]) == (2, ["live-job"])
    page_two = (await api(hub, "GET", "/replays", params={"limit": 1, "offset": 1})).json()
    assert [j["id"] for j in page_two["items"]] == ["dead-job"]

    # nobody runs it: a cancel ends it at once; a live one is only asked to stop
    assert (await api(hub, "DELETE", "/replays/dead-job")).json()["state"] == "cancelled"
    assert (await api(hub, "DELETE", "/replays/live-job")).json()["state"] == "cancelling"
    running = (await api(hub, "GET", "/replays", params={"status": "running"})).json()
    assert [j["id"] for j in running["items"]] == ["live-job"]
    assert assert_error(await api(hub, "GET", "/replays", params={"status": "x"}), 400)
    assert_error(await api(hub, "GET", "/replays/no-such-job"), 404)
    assert_error(await api(hub, "DELETE", "/replays/no-such-job"), 404)
