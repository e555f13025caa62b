"""Circuits and rate limits shared by delivery processes: two Database objects (or two hubs) on
one real SQLite file or PostgreSQL database stand for two hub processes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from itertools import pairwise
from pathlib import Path

import httpx
import pytest

from hub.circuits import CircuitStore, SharedCircuit
from hub.db import Database
from hub.ratelimit import RateLimiter
from hub.retry import CircuitBreaker
from hub.workers.delivery import DeliveryWorker

from .support.databases import database_url
from .support.harness import (
    HubFactory,
    RecordingSink,
    config_text,
    order_body,
    post,
    shopify_headers,
    until,
)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def two(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[list[Database]]:
    async with database_url(request.param, tmp_path) as url:
        dbs = [Database(url), Database(url)]
        try:
            for db in dbs:
                await db.start()
            yield dbs
        finally:
            for db in dbs:
                await db.close()


def circuit(db: Database, breaker: CircuitBreaker, interval_s: float = 0.0) -> SharedCircuit:
    return SharedCircuit(db, "erp", breaker, db.instance, interval_s)


async def test_a_circuit_opened_by_one_process_makes_the_other_hold(two: list[Database]) -> None:
    a = circuit(two[0], CircuitBreaker(threshold=2, open_s=3600, max_open_s=3600))
    b = circuit(two[1], CircuitBreaker(threshold=2, open_s=3600, max_open_s=3600))
    await b.refresh()
    assert b.breaker.closed  # nothing shared yet

    a.breaker.failure("e1")
    a.breaker.failure("e2")
    await a.publish()
    assert a.breaker.state == "open"
    await b.refresh()
    assert b.breaker.state == "open" and not b.breaker.allow()
    assert 3500 < b.breaker.retry_in() <= 3600
    # either process's ops API reads the same
    for db in two:
        shared = (await CircuitStore(db).views())["erp"]
        assert (shared.state, shared.updated_by) == ("open", two[0].instance)
        assert 3500 < shared.next_probe_in_s <= 3600
    assert (await CircuitStore(two[1]).views())["erp"].failures == 2

    # A probe elsewhere succeeds: every process closes.
    c = circuit(two[0], CircuitBreaker(threshold=1, open_s=0.0, max_open_s=0.0))
    c.breaker.failure("e3")
    await c.publish()
    assert c.breaker.allow()  # no time to wait: the probe
    c.breaker.success()
    await c.publish()
    await b.refresh()
    assert b.breaker.closed and b.breaker.allow()
    assert (await CircuitStore(two[1]).views())["erp"].state == "closed"


async def test_the_shared_circuit_is_read_at_most_every_interval(two: list[Database]) -> None:
    a = circuit(two[0], CircuitBreaker(threshold=1, open_s=3600))
    b = circuit(two[1], CircuitBreaker(threshold=1, open_s=3600), interval_s=3600)
    await b.refresh()
    a.breaker.failure("e1")
    await a.publish()
    for _ in range(100):
        await b.refresh()
    assert (b.reads, b.breaker.closed) == (1, True)  # not read again within the interval
    writes = a.writes
    for _ in range(100):
        a.breaker.failure("more")  # already open: no change, no write
        await a.publish()
    assert a.writes == writes == 1


async def test_a_half_open_row_does_not_stop_a_closed_process(two: list[Database]) -> None:
    a = circuit(two[0], CircuitBreaker(threshold=1, open_s=0.0, max_open_s=0.0))
    b = circuit(two[1], CircuitBreaker(threshold=1, open_s=60))
    await b.refresh()  # running before it opened
    a.breaker.failure("e1")
    await a.publish()
    await b.refresh()
    # its open time is over (a probe may go): the other process goes on as it was
    assert (await CircuitStore(two[1]).views())["erp"].state == "half-open"
    assert b.breaker.closed


async def test_a_process_that_starts_while_the_circuit_is_open_probes_once(
    two: list[Database],
) -> None:
    a = circuit(two[0], CircuitBreaker(threshold=1, open_s=3600, max_open_s=7200))
    await a.refresh()
    a.breaker.failure("e1")
    await a.publish()
    b = circuit(two[1], CircuitBreaker(threshold=1, open_s=3600, max_open_s=7200))
    await b.refresh()  # a restart, say
    assert b.breaker.allow()  # its one probe
    assert not b.breaker.allow()
    b.breaker.failure("probe")  # still down: open for longer, for every process
    await b.publish()
    assert 7100 < b.breaker.retry_in() <= 7200
    assert (await CircuitStore(two[0]).views())["erp"].next_probe_in_s > 7100
    await a.refresh()
    assert 7100 < a.breaker.retry_in() <= 7200


async def test_two_limiters_on_one_database_stay_within_the_rate(two: list[Database]) -> None:
    rate, burst, wanted = 100.0, 10, 250
    limiters = [RateLimiter(db, "erp", rate, burst) for db in two]
    assert limiters[0].batch == 5  # 50 ms worth at 100/s
    spent = [0, 0]
    started = time.monotonic()

    async def spend(i: int) -> None:
        while sum(spent) < wanted:
            await limiters[i].acquire()
            spent[i] += 1

    await asyncio.gather(spend(0), spend(1))
    elapsed = time.monotonic() - started
    # Together they never take more than the burst and the rate allow: a bound, not a timing.
    assert sum(spent) <= burst + rate * elapsed + 1e-6, (spent, elapsed)
    assert min(spent) > 0  # both took from the one bucket
    takes = sum(limiter.takes for limiter in limiters)
    assert takes < sum(spent)  # tokens come in batches, not a round trip each


async def test_the_limiter_paces_attempts_after_a_burst(two: list[Database]) -> None:
    now = [1_000_000.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:  # a fake clock: sleeping moves it on
        slept.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(two[0], "slow", 20, burst=3, clock=lambda: now[0], sleep=sleep)
    assert limiter.batch == 1
    times = []
    for _ in range(10):
        await limiter.acquire()
        times.append(now[0])
    assert times[:3] == [1_000_000.0] * 3  # the burst goes at once
    gaps = [b - a for a, b in pairwise(times[2:])]
    assert gaps == pytest.approx([0.05] * 7)  # then one every 1/rate seconds
    now[0] += 10  # idle for a while: the bucket refills, but only up to the burst
    for _ in range(3):
        await limiter.acquire()
    assert len(slept) == 7
    other = RateLimiter(two[1], "slow", 20, burst=3, clock=lambda: now[0], sleep=sleep)
    await other.acquire()  # the other process finds the bucket this one emptied
    assert len(slept) == 8


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def shared_db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with database_url(request.param, tmp_path) as url:
        yield url


async def test_a_hub_holds_for_a_destination_another_hub_found_down(
    hubs: HubFactory, sink: RecordingSink, shared_db: str
) -> None:
    sink.down = True
    text = config_text(
        sink.url, limits="circuit_breaker: {failures: 2, open_for: 1h, max_open_for: 1h}"
    )
    one = await hubs.start(config=text, database_url=shared_db)
    other = await hubs.start(config=text, database_url=shared_db)
    (w1,) = [w for w in one.workers if isinstance(w, DeliveryWorker)]
    (w2,) = [w for w in other.workers if isinstance(w, DeliveryWorker)]
    for n in (8500, 8501, 8502):
        body = order_body(n)
        assert (await post(one, body, shopify_headers(body))).status_code == 202

    async def other_holds() -> bool:
        return w2.breaker is not None and w2.breaker.state == "open"

    await until(other_holds)  # it never sent anything itself
    assert w1.breaker is not None and w1.breaker.state == "open"
    assert w2.paused()  # its events wait in Kafka
    async with httpx.AsyncClient(base_url=f"{other.base_url}/api") as api:
        (erp,) = (await api.get("/destinations")).json()["items"]
    assert (erp["circuit"], erp["circuit_changed_by"]) == ("open", one.db.instance)
    assert erp["next_probe_in_s"] > 3000
