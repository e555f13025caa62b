"""Failure handling end to end: retries that do not block, per-key order, the circuit breaker,
rate limits, parked events across a restart. Real broker, real HTTP destination."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import httpx
import pytest

from connectors import idempotency_key_for
from hub.deadletters import Filter
from hub.errors import MasterDataUnavailable
from hub.mdm import DeterministicResolver
from hub.retry import RetryQueue
from hub.runtime import Hub
from hub.workers.delivery import DeliveryWorker
from hub.workers.mapper import MapperWorker

from .support.harness import (
    HubFactory,
    Received,
    RecordingSink,
    config_text,
    header,
    order_body,
    post,
    shopify_headers,
    topic_records,
    until,
)


def config(url: str, retry: str = "", limits: str = "") -> str:
    return config_text(url, retry=retry, limits=limits)


def worker(hub: Hub) -> DeliveryWorker:
    (found,) = [w for w in hub.workers if isinstance(w, DeliveryWorker)]
    return found


async def send(hub: Hub, order_id: int, note: str) -> None:
    body = order_body(order_id, note=note)
    response = await post(hub, body, shopify_headers(body))
    assert response.status_code == 202, response.text


def drained(queue: RetryQueue) -> Any:
    async def empty() -> bool:
        return await queue.count() == 0

    return empty


async def test_a_poison_event_does_not_delay_other_keys_of_its_partition(
    hubs: HubFactory, sink: RecordingSink
) -> None:
    # One partition: every event below shares it. The poison fails with 503 forever; its next
    # attempt is an hour away, so anything delivered meanwhile went past it.
    sink.respond = lambda r: 503 if r.body.get("note") == "poison" else 200
    hub = await hubs.start(config=config(sink.url, retry="initial_delay: 1h, max_delay: 1h"))
    await send(hub, 7000, "poison")
    await send(hub, 7000, "same key, later")
    for i in range(1, 21):
        await send(hub, 7000 + i, "other")

    async def others_delivered() -> bool:
        return sum(1 for r in sink.received if r.body["note"] == "other") == 20

    await until(others_delivered)
    assert [r.body["note"] for r in sink.attempts].count("poison") == 1
    # The later event of the poison's key waits behind it, unattempted, in the retry table.
    assert not [r for r in sink.attempts if r.body["note"] == "same key, later"]
    w = worker(hub)

    async def both_parked() -> bool:  # the poison, and the later event of its key behind it
        return await w.queue.count() == 2

    await until(both_parked)
    assert len(w.blocked) == 1
    assert await topic_records(hub.bootstrap, hub.settings.deadletter_topic) == []

    # What an operator sees, and the fix: the destination accepts it now, retry it now.
    async with httpx.AsyncClient(base_url=f"{hub.base_url}/api") as api:
        parked = (await api.get("/retries")).json()
        assert parked["total"] == 2
        poison, later = parked["items"]
        assert (poison["payload"]["note"], poison["attempts"]) == ("poison", 1)
        assert "HTTP 503" in poison["last_error"] and not poison["waiting_behind"]
        assert (later["payload"]["note"], later["waiting_behind"]) == ("same key, later", True)
        (erp,) = (await api.get("/destinations")).json()["items"]
        assert (erp["name"], erp["circuit"], erp["parked"], erp["keys_waiting"]) == (
            "erp",
            "closed",
            2,
            1,
        )
        sink.respond = None
        assert (await api.post(f"/retries/{poison['id']}/retry-now")).status_code == 200
        assert (await api.post("/retries/999999/retry-now")).status_code == 404

    async def released() -> bool:
        return any(r.body["note"] == "same key, later" for r in sink.received)

    await until(released)
    notes = [r.body["note"] for r in sink.received if r.body["number"] == "#7000"]
    assert notes == ["poison", "same key, later"]  # in order
    await until(drained(w.queue))  # the row goes after the destination's answer


async def test_a_destination_that_fails_then_recovers_gets_each_event_once_in_key_order(
    hubs: HubFactory, sink: RecordingSink
) -> None:
    sink.status_script = [503] * 6  # fewer than the 8 attempts an event is allowed
    hub = await hubs.start(config=config(sink.url))
    keys = range(7100, 7105)
    for version in range(1, 5):  # v1 of every key, then v2 of every key, ...
        for order_id in keys:
            await send(hub, order_id, f"v{version}")

    async def all_delivered() -> bool:
        return len(sink.received) >= 20

    await until(all_delivered)
    ids = [r.headers["idempotency-key"] for r in sink.received]
    assert len(ids) == len(set(ids)) == 20  # each once
    assert len(sink.attempts) == 26  # the 6 failures were retried
    versions: dict[str, list[str]] = defaultdict(list)
    for r in sink.received:
        versions[r.body["number"]].append(r.body["note"])
    assert versions == {f"#{k}": ["v1", "v2", "v3", "v4"] for k in keys}
    assert await topic_records(hub.bootstrap, hub.settings.deadletter_topic) == []
    await until(drained(worker(hub).queue))  # the row goes after the destination's answer


async def test_exhausted_retries_make_a_dead_letter_with_every_attempt(
    hubs: HubFactory, sink: RecordingSink
) -> None:
    sink.respond = lambda r: 503
    hub = await hubs.start(
        config=config(sink.url, retry="max_attempts: 3, initial_delay: 10ms, max_delay: 50ms")
    )
    await send(hub, 7200, "doomed")

    async def dead_lettered() -> bool:
        letters = await hub.deadletters.search(Filter(status="open"))
        return letters[0] == 1

    await until(dead_lettered)
    _, (letter,) = await hub.deadletters.search(Filter(status="open"))
    assert letter["stage"] == "deliver"
    assert letter["error_class"] == "DeliveryRetriable"
    assert "HTTP 503" in letter["error"]
    assert letter["attempts"] == 3
    assert len(letter["attempt_times"]) == 3
    assert len(sink.attempts) == 3
    await until(drained(worker(hub).queue))  # the row goes after the destination's answer

    async def released() -> bool:  # just after the row: the key is no longer waited on
        return not worker(hub).blocked

    await until(released)


async def test_an_outage_opens_the_circuit_and_dead_letters_nothing(
    hubs: HubFactory, sink: RecordingSink
) -> None:
    # One attempt allowed per event: any failure counted against an event would dead-letter it.
    sink.down = True
    hub = await hubs.start(
        config=config(
            sink.url,
            retry="max_attempts: 1",
            limits="circuit_breaker: {failures: 1, open_for: 100ms, max_open_for: 300ms}",
        )
    )
    n = 60
    await asyncio.gather(*(send(hub, 7300 + i, "outage") for i in range(n)))
    w = worker(hub)

    async def probed_while_open() -> bool:
        # open, and at least three probes refused since
        return w.breaker.state != "closed" and len(sink.attempts) >= 4

    await until(probed_while_open)
    sink.down = False

    async def all_delivered() -> bool:
        return len({r.headers["idempotency-key"] for r in sink.received}) == n

    await until(all_delivered)
    assert w.breaker.closed
    assert len(sink.received) == n  # once each
    failed = len(sink.attempts) - n
    assert failed < n  # no retry storm: most events were never tried while it was down
    assert await topic_records(hub.bootstrap, hub.settings.deadletter_topic) == []


async def test_a_destination_with_a_rate_limit_gets_every_event(
    hubs: HubFactory, sink: RecordingSink
) -> None:
    hub = await hubs.start(config=config(sink.url, limits="rate: 20, burst: 1"))
    limiter = worker(hub).limiter
    assert limiter is not None and (limiter.rate, limiter.burst) == (20, 1)
    n = 10
    await asyncio.gather(*(send(hub, 7400 + i, "limited") for i in range(n)))

    async def all_delivered() -> bool:
        return len(sink.received) == n

    await until(all_delivered)  # its pacing is tested on a fake clock in test_retry.py


async def test_parked_events_survive_a_restart(hubs: HubFactory, sink: RecordingSink) -> None:
    sink.respond = lambda r: 503
    text = config(sink.url, retry="initial_delay: 500ms, max_delay: 500ms")
    first = await hubs.start(config=text)
    await send(first, 7500, "parked")

    async def parked() -> bool:
        return await worker(first).queue.count() == 1

    await until(parked)
    await first.stop()  # its offset is committed: only the retry table holds the event now

    accepted: list[Received] = []
    sink.respond = lambda r: accepted.append(r) or 200
    second = await hubs.start(config=text, settings=first.settings)
    got = await sink.next()
    assert got.body["note"] == "parked"
    assert [r.headers["idempotency-key"] for r in sink.attempts].count(
        got.headers["idempotency-key"]
    ) == len(sink.attempts)
    await until(drained(worker(second).queue))  # the row goes after the destination's answer
    ingest = await topic_records(second.bootstrap, second.settings.canonical_topic("order"))
    assert [header(r, "ce_id") for r in ingest] == [got.headers["ce-id"]]


IMPORT_ROUTE = """
  - name: orders-to-erp-import
    from: canonical.order
    to: erp
    mapping: generic/order_to_erp
"""


@pytest.mark.parametrize("failing", ["orders-to-erp", "orders-to-erp-import"])
async def test_two_routes_to_one_destination_each_deliver_once_with_their_own_key(
    hubs: HubFactory, sink: RecordingSink, failing: str
) -> None:
    # Two routes to `erp`: the order as is (orders-to-erp, tried first), and the same order
    # through an outbound mapping (orders-to-erp-import: its body has `order_no`). One route's
    # requests fail three times, then it recovers; the other succeeds at once.
    failures = 3
    field = {"orders-to-erp": "number", "orders-to-erp-import": "order_no"}
    other = next(route for route in field if route != failing)

    def respond(r: Received) -> int:
        tried = [a for a in sink.attempts if field[failing] in a.body]
        return 503 if field[failing] in r.body and len(tried) <= failures else 200

    sink.respond = respond
    hub = await hubs.start(config=config_text(sink.url, IMPORT_ROUTE))
    await send(hub, 7700, "two routes")

    async def both_delivered() -> bool:
        return len(sink.received) == 2

    await until(both_delivered)
    await until(drained(worker(hub).queue))  # the row goes after the destination's answer
    first, last = sink.received
    assert field[other] in first.body and field[failing] in last.body  # not held back
    assert first.body[field[other]] == last.body[field[failing]] == "#7700"
    event_id = first.headers["ce-id"]
    assert last.headers["ce-id"] == event_id  # one event, a key per route
    assert first.headers["idempotency-key"] == idempotency_key_for(event_id, other)
    assert last.headers["idempotency-key"] == idempotency_key_for(event_id, failing)
    # The route that succeeded was sent once, never again during the other route's retries;
    # the other was tried until it succeeded, always with its own key.
    keys = [a.headers["idempotency-key"] for a in sink.attempts]
    assert keys.count(first.headers["idempotency-key"]) == 1
    assert keys.count(last.headers["idempotency-key"]) == failures + 1
    assert len(sink.attempts) == failures + 2
    # Each route's delivery is recorded on its own.
    assert await hub.db.delivered("erp", [event_id]) == {
        (event_id, "orders-to-erp"),
        (event_id, "orders-to-erp-import"),
    }
    assert await topic_records(hub.bootstrap, hub.settings.deadletter_topic) == []


async def test_a_delivery_recorded_before_routes_were_counts_for_every_route(
    hubs: HubFactory, sink: RecordingSink
) -> None:
    """A row with route '' (recorded by a hub before deliveries were per route, kept so by
    migration 0005_deliveries_route) means the event went through every route of the
    destination: after the upgrade it is not sent again through either of two routes."""
    from hub.bus import Publisher, ensure_topics
    from hub.db import EVERY_ROUTE, Database
    from hub.envelope import CloudEvent

    settings = hubs.settings()
    await ensure_topics(settings, hubs.bootstrap, settings.all_topics())
    events = [
        CloudEvent(
            id=event_id,
            source="/mappings/shopify/orders_create",
            type="hub.order",
            data=b'{"id": "ord_a", "number": "#1"}',
            subject="ord_a",
            key="ord_a",  # one key: c-1 is handled before c-2
        )
        for event_id in ("c-1", "c-2")
    ]
    publisher = Publisher(settings, hubs.bootstrap, 10.0)
    try:
        await publisher.wait([publisher.send(settings.canonical_topic("order"), e) for e in events])
    finally:
        await publisher.close()
    db = Database(settings.database_url)
    try:
        await db.start()
        await db.record_deliveries("erp", [("c-1", EVERY_ROUTE)])
    finally:
        await db.close()

    copy = "\n  - {name: orders-to-erp-copy, from: canonical.order, to: erp}\n"
    await hubs.start(config=config_text(sink.url, copy), settings=settings)

    async def both_routes_of_c2() -> bool:
        return len(sink.received) == 2

    await until(both_routes_of_c2)
    assert [r.headers["ce-id"] for r in sink.attempts] == ["c-2", "c-2"]
    assert {r.headers["idempotency-key"] for r in sink.received} == {
        idempotency_key_for("c-2", "orders-to-erp"),
        idempotency_key_for("c-2", "orders-to-erp-copy"),
    }


async def test_a_route_refused_does_not_stop_the_other_and_its_replay_sends_only_it(
    hubs: HubFactory, sink: RecordingSink
) -> None:
    refusing = True
    sink.respond = lambda r: 422 if "order_no" in r.body and refusing else 200
    hub = await hubs.start(config=config_text(sink.url, IMPORT_ROUTE))
    await send(hub, 7800, "refused on one route")

    async def dead_lettered() -> bool:
        return (await hub.deadletters.search(Filter(status="open")))[0] == 1

    await until(dead_lettered)
    _, (letter,) = await hub.deadletters.search(Filter(status="open"))
    assert (letter["route"], letter["error_class"]) == ("orders-to-erp-import", "DeliveryRejected")
    (as_is,) = sink.received  # the other route was delivered all the same
    assert "number" in as_is.body

    refusing = False
    async with httpx.AsyncClient(base_url=f"{hub.base_url}/api") as api:
        replayed = await api.post(f"/deadletters/{letter['id']}/replay")
        assert replayed.status_code == 200, replayed.text
    imported = await sink.next()
    imported = imported if "order_no" in imported.body else await sink.next()
    assert imported.headers["idempotency-key"] == idempotency_key_for(
        as_is.headers["ce-id"], "orders-to-erp-import"
    )

    async def outcome_known() -> bool:
        _, (item,) = await hub.deadletters.search(Filter(status="replayed"))
        return str(item.get("outcome") or "").startswith("delivered to erp")

    await until(outcome_known)
    keys = [a.headers["idempotency-key"] for a in sink.attempts]
    assert keys.count(as_is.headers["idempotency-key"]) == 1  # not resent by the replay
    assert len(sink.received) == 2


class FlakyMasterData:
    """An MDM that cannot answer for one order until told it is back."""

    def __init__(self, unavailable_for: str) -> None:
        self.unavailable_for = unavailable_for
        self.back = False
        self.refused = 0
        self.inner = DeterministicResolver()

    def golden_id(self, entity: str, system: str, external_id: str) -> str:
        if entity == "order" and external_id == self.unavailable_for and not self.back:
            self.refused += 1
            raise MasterDataUnavailable(f"MDM has no answer for order {external_id} now")
        return self.inner.golden_id(entity, system, external_id)


async def test_master_data_unavailable_parks_the_event_at_the_map_stage(
    hubs: HubFactory, sink: RecordingSink
) -> None:
    mdm = FlakyMasterData("7600")
    hub = await hubs.start(sink.url, resolver=mdm, retry_initial_delay_s=0.05)
    await send(hub, 7600, "first")
    await send(hub, 7601, "other key")

    async def other_delivered() -> bool:
        return any(r.body["note"] == "other key" for r in sink.received)

    await until(other_delivered)  # the stuck lookup holds nothing else up
    mapper = next(w for w in hub.workers if isinstance(w, MapperWorker))

    async def parked() -> bool:
        return await mapper.queue.count() == 1 and mdm.refused >= 2

    await until(parked)  # ... and is being retried
    mdm.back = True
    got = await sink.next()
    got = got if got.body["note"] == "first" else await sink.next()
    assert got.body["number"] == "#7600"
    await until(drained(mapper.queue))  # the row goes after the destination's answer
    assert await topic_records(hub.bootstrap, hub.settings.deadletter_topic) == []
