"""An operator's pause of a destination (hub/circuits.py, ``/api/destinations/<name>/pause``):
every process stops sending to it, its events wait in Kafka, and a resume sends them in order."""

from __future__ import annotations

import httpx
import pytest
from aiokafka import ConsumerRecord

from hub.circuits import CircuitStore, SharedCircuit
from hub.db import Database
from hub.retry import CircuitBreaker
from hub.runtime import Hub
from hub.workers.base import NotNow
from hub.workers.delivery import DeliveryWorker

from .support.harness import (
    HubFactory,
    RecordingSink,
    order_body,
    post,
    shopify_headers,
    topic_records,
    until,
)
from .test_sharedstate import two  # noqa: F401


async def fetching_stopped(worker: DeliveryWorker) -> bool:
    """The worker has partitions, and has paused every one of them (it fetches nothing)."""
    consumer = worker._consumer
    return consumer is not None and bool(worker.assigned) and consumer.paused() == worker.assigned


async def orders_waiting(hub: Hub, numbers: list[int]) -> None:
    """Send shop orders ``numbers`` and wait until their canonical orders are in Kafka."""
    for n in numbers:
        body = order_body(n)
        assert (await post(hub, body, shopify_headers(body))).status_code == 202
    topic = hub.settings.canonical_topic("order")

    async def mapped() -> bool:
        return len(await topic_records(hub.bootstrap, topic)) == len(numbers)

    await until(mapped)


async def test_a_pause_made_through_one_process_holds_every_process(two: list[Database]) -> None:  # noqa: F811
    a, b = two
    breaker = CircuitBreaker(threshold=1, open_s=3600, max_open_s=3600)
    there = SharedCircuit(b, "erp", breaker, b.instance, 0.0)
    await there.refresh()
    assert there.pause is None

    pause, changed = await CircuitStore(a).pause("erp", "alice", "ERP maintenance", a.instance)
    assert changed and (pause.by, pause.reason) == ("alice", "ERP maintenance")
    again, changed = await CircuitStore(a).pause("erp", "bob", None, a.instance)
    assert not changed and again == pause  # the first pause is kept: who, when, why
    await there.refresh()
    assert there.pause == pause

    # the breaker's own writes (it opens, it closes) leave the operator's pause alone
    breaker.failure("e1")
    await there.publish()
    view = (await CircuitStore(a).views())["erp"]
    assert (view.state, view.pause) == ("open", pause)

    assert await CircuitStore(b).resume("erp") == pause
    await there.refresh()
    assert there.pause is None
    assert (await CircuitStore(a).views())["erp"].pause is None
    assert await CircuitStore(a).resume("erp") is None  # nothing to lift


async def test_a_paused_destination_gets_nothing_until_resumed_and_nothing_is_lost(
    hubs: HubFactory, sink: RecordingSink
) -> None:
    hub = await hubs.start(sink.url)
    (worker,) = [w for w in hub.workers if isinstance(w, DeliveryWorker)]
    async with httpx.AsyncClient(base_url=f"{hub.base_url}/api", timeout=30) as api:
        paused = await api.post("/destinations/erp/pause", json={"reason": "ERP maintenance"})
        assert paused.status_code == 200, paused.text
        assert paused.json()["changed"] is True
        assert paused.json()["pause"]["reason"] == "ERP maintenance"
        assert paused.json()["pause"]["paused_by"] == "local"  # the loopback operator

        await until(lambda: fetching_stopped(worker))
        await orders_waiting(hub, [8700, 8701, 8702])
        (erp,) = (await api.get("/destinations")).json()["items"]
        assert erp["pause"]["reason"] == "ERP maintenance" and erp["circuit"] == "closed"
        assert sink.attempts == []  # not one attempt: no retry spent, no dead letter
        metrics = (await api.get(f"{hub.base_url}/metrics")).text
        assert 'hub_destination_paused{destination="erp"} 1.0' in metrics
        assert (await api.get("/deadletters")).json()["items"] == []

        resumed = await api.post("/destinations/erp/resume")
        assert resumed.status_code == 200, resumed.text
        assert resumed.json()["lifted"]["reason"] == "ERP maintenance"

        async def delivered() -> bool:
            return len(sink.received) == 3

        await until(delivered)
        refs = [r.body["external_refs"][0]["id"] for r in sink.received]
        assert refs == ["8700", "8701", "8702"]  # in order: one partition, one key each
        (erp,) = (await api.get("/destinations")).json()["items"]
        assert erp["pause"] is None
        metrics = (await api.get(f"{hub.base_url}/metrics")).text
        assert 'hub_destination_paused{destination="erp"} 0.0' in metrics
        actions = [(a["actor"], a["action"]) for a in (await api.get("/audit")).json()["items"]]
        assert actions[:2] == [
            ("local", "POST /destinations/erp/resume"),
            ("local", "POST /destinations/erp/pause"),
        ]


async def test_pausing_an_unknown_destination_or_with_a_bad_body_changes_nothing(
    hubs: HubFactory, sink: RecordingSink
) -> None:
    hub = await hubs.start(sink.url)
    async with httpx.AsyncClient(base_url=f"{hub.base_url}/api", timeout=30) as api:
        unknown = await api.post("/destinations/nope/pause", json={})
        assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"
        assert (await api.post("/destinations/nope/resume")).status_code == 404
        for body in ({"reason": "x" * 501}, {"reason": "ok", "extra": 1}, {"reason": ["a"]}):
            refused = await api.post("/destinations/erp/pause", json=body)
            assert refused.status_code == 422, refused.text
        as_form = await api.post(
            "/destinations/erp/pause",
            content=b"reason=x",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert as_form.status_code == 415
        from_elsewhere = await api.post(
            "/destinations/erp/pause", json={}, headers={"origin": "https://evil.example"}
        )
        assert from_elsewhere.status_code == 403
        (erp,) = (await api.get("/destinations")).json()["items"]
        assert erp["pause"] is None
        assert (await api.post("/destinations/erp/resume")).json()["lifted"] is None


async def test_a_hub_started_while_its_destination_is_paused_sends_nothing(
    hubs: HubFactory, sink: RecordingSink
) -> None:
    """A deploy during the maintenance window: the restarted worker's first fetch, made as it
    joins its group and before any housekeeping, holds the orders that wait; it sends none."""
    first = await hubs.start(sink.url)
    async with httpx.AsyncClient(base_url=f"{first.base_url}/api", timeout=30) as api:
        paused = await api.post("/destinations/erp/pause", json={"reason": "deploy"})
        assert paused.status_code == 200, paused.text
    (worker,) = [w for w in first.workers if isinstance(w, DeliveryWorker)]
    await until(lambda: fetching_stopped(worker))
    await orders_waiting(first, [8710, 8711])
    await first.stop()

    second = await hubs.start(sink.url, settings=first.settings)
    (worker,) = [w for w in second.workers if isinstance(w, DeliveryWorker)]
    await until(lambda: fetching_stopped(worker))
    assert worker.circuit.pause is not None and worker.circuit.pause.reason == "deploy"
    assert sink.attempts == []
    async with httpx.AsyncClient(base_url=f"{second.base_url}/api", timeout=30) as api:
        assert (await api.post("/destinations/erp/resume")).status_code == 200

    async def delivered() -> bool:
        return len(sink.received) == 2

    await until(delivered)
    assert [r.body["external_refs"][0]["id"] for r in sink.received] == ["8710", "8711"]


async def test_a_batch_fetched_before_the_worker_read_its_circuit_waits_for_the_resume(
    hubs: HubFactory, sink: RecordingSink
) -> None:
    """A worker's first batch can come with its group's assignment, before housekeeping ever
    read the circuit's row: it reads it first, and a paused destination's batch is left for
    later (read again from its first record), not sent."""
    hub = await hubs.start(sink.url)
    (worker,) = [w for w in hub.workers if isinstance(w, DeliveryWorker)]
    await CircuitStore(hub.db).pause("erp", "test", None, hub.db.instance)
    joined = SharedCircuit(hub.db, "erp", worker.breaker, hub.db.instance, 3600.0)
    assert not joined.started  # as a worker that has just joined: nothing read yet
    worker.circuit = joined

    async def assigned() -> bool:
        return bool(worker.assigned)

    await until(assigned)
    (tp,) = worker.assigned
    record = ConsumerRecord(tp.topic, tp.partition, 5, 0, 0, None, b"{}", None, 0, 2, [])
    with pytest.raises(NotNow):
        await worker.process(tp, [record])
    assert joined.started and joined.pause is not None
    # as the worker's loop handles that batch: not done, read again from its first record
    consumer = worker._consumer
    assert consumer is not None
    await worker._one(tp, [record])
    assert tp not in worker._done and await consumer.position(tp) == 5
    consumer.seek(tp, 0)
    assert sink.attempts == []
