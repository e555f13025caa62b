"""An operator's pause of a destination (hub/circuits.py, ``/api/destinations/<name>/pause``):
every process stops sending to it, its events wait in Kafka, and a resume sends them in order."""

from __future__ import annotations

import httpx

from hub.circuits import CircuitStore, SharedCircuit
from hub.db import Database
from hub.retry import CircuitBreaker
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

        async def fetching_stopped() -> bool:
            consumer = worker._consumer
            return (
                consumer is not None
                and bool(worker.assigned)
                and (consumer.paused() == worker.assigned)
            )

        await until(fetching_stopped)
        for n in (8700, 8701, 8702):
            body = order_body(n)
            assert (await post(hub, body, shopify_headers(body))).status_code == 202
        topic = hub.settings.canonical_topic("order")

        async def mapped() -> bool:  # the canonical orders are in Kafka, waiting
            return len(await topic_records(hub.bootstrap, topic)) == 3

        await until(mapped)
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
