"""The embedded broker's unfinished records survive a graceful restart of the hub (hub.backlog).

Each hub here runs its own embedded Tansu, as `make run` does: its memory goes with it."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from hub.backlog import backlog_path, save
from hub.broker import EmbeddedBroker, free_port
from hub.bus import Publisher, ensure_topics
from hub.runtime import Hub
from hub.workers.delivery import DeliveryWorker

from .support.harness import (
    SECRET,
    HubFactory,
    RecordingSink,
    config_text,
    order_body,
    post,
    shopify_headers,
    topic_records,
    until,
)


async def send(hub: Hub, order_id: int) -> None:
    body = order_body(order_id, note="backlog")
    response = await post(hub, body, shopify_headers(body))
    assert response.status_code == 202, response.text


def delivered_once(sink: RecordingSink, n: int) -> object:
    async def check() -> bool:
        return len({r.headers["idempotency-key"] for r in sink.received}) == n

    return check


async def test_events_waiting_for_a_down_destination_survive_a_restart(
    hubs: HubFactory, sink: RecordingSink
) -> None:
    sink.down = True
    text = config_text(
        sink.url,
        retry="initial_delay: 50ms, max_delay: 200ms",
        limits="circuit_breaker: {failures: 2, open_for: 1h, max_open_for: 1h}",
    )
    first = await hubs.start(config=text, kafka_bootstrap_servers="")
    assert first.broker is not None  # its own embedded broker
    (worker,) = [w for w in first.workers if isinstance(w, DeliveryWorker)]
    await asyncio.gather(*(send(first, 8100 + i) for i in range(10)))

    async def circuit_open() -> bool:
        return worker.breaker is not None and worker.breaker.state == "open"

    await until(circuit_open)
    # The worker no longer fetches: these wait in Kafka, as they would for the whole outage.
    await asyncio.gather(*(send(first, 8110 + i) for i in range(30)))
    await first.stop()  # the broker and its memory are gone
    path = backlog_path(first.settings)
    saved = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(saved) >= 30
    assert {r["topic"] for r in saved} <= {
        first.settings.ingest_topic,
        first.settings.canonical_topic("order"),
    }

    sink.down = False
    second = await hubs.start(config=text, settings=first.settings)
    assert second.bootstrap != first.bootstrap  # a new broker, empty but for the backlog
    (queue,) = [w.queue for w in second.workers if isinstance(w, DeliveryWorker)]
    kept = {str(8110 + i) for i in range(30)}

    def delivered() -> list[str]:
        return [r.body["external_refs"][0]["id"] for r in sink.received]

    async def accounted_for() -> bool:
        # The 30 from the backlog delivered; the first 10 delivered or still parked in the
        # retry table (those parked while the circuit was open wait for its hour).
        got = set(delivered())
        return kept <= got and len(got) + await queue.count() == 40

    await until(accounted_for)
    assert not path.exists()
    assert len(delivered()) == len(set(delivered()))  # none twice

    await second.stop()  # nothing left in its broker: nothing to keep
    assert not path.exists()


async def test_events_no_worker_read_yet_survive_a_restart(
    hubs: HubFactory, sink: RecordingSink
) -> None:
    text = config_text(sink.url)
    # Ingress alone: nobody reads the ingest topic, and the mapper's group never committed.
    first = await hubs.start(config=text, kafka_bootstrap_servers="", roles=frozenset({"ingress"}))
    n = 25
    await asyncio.gather(*(send(first, 8200 + i) for i in range(n)))
    await first.stop()
    assert backlog_path(first.settings).exists()

    second = await hubs.start(config=text, settings=first.settings)
    await until(delivered_once(sink, n))
    assert len(sink.received) == n
    ingest = await topic_records(second.bootstrap, second.settings.ingest_topic)
    assert len(ingest) == n  # published again once, in the new broker
    assert not backlog_path(first.settings).exists()


async def test_a_backlog_not_yet_published_again_is_kept_by_the_next_save(
    hubs: HubFactory, broker: EmbeddedBroker
) -> None:
    """A start that failed before publishing the saved records again stops, and saves what its
    broker holds: the records of the earlier file must stay in it."""
    settings = hubs.settings()
    await ensure_topics(settings, broker.bootstrap_servers, [settings.ingest_topic])
    publisher = Publisher(settings, broker.bootstrap_servers, 10.0)
    try:
        await publisher.wait(
            [publisher.send_raw(settings.ingest_topic, b"k", b"new %d" % i, []) for i in range(3)]
        )
    finally:
        await publisher.close()
    path = backlog_path(settings)
    earlier = {"topic": settings.ingest_topic, "partition": 0, "offset": 7, "key": None}
    earlier |= {"value": base64.b64encode(b"earlier").decode(), "headers": []}
    path.write_text(json.dumps(earlier) + "\n")

    readers = {settings.ingest_topic: {settings.mapper_group}}
    assert await save(settings, broker.bootstrap_servers, readers, path) == 3
    values = [base64.b64decode(json.loads(line)["value"]) for line in path.read_text().splitlines()]
    assert values == [b"earlier", b"new 0", b"new 1", b"new 2"]


def _start_hub(state: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "hub.cli", "up", "-c", str(state / "hub.yaml")]
    with (state / "hub.log").open("ab") as log:
        return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)


async def test_a_hub_killed_outright_leaves_its_broker_and_the_next_start_takes_it_over(
    hubs: HubFactory, sink: RecordingSink, tmp_path: Path
) -> None:
    """SIGKILL gives the hub no chance to save anything, but Tansu outlives it: the next start
    takes over what the orphaned broker holds, then stops it."""
    sink.down = True
    text = config_text(
        sink.url,
        retry="initial_delay: 50ms, max_delay: 200ms",
        limits="circuit_breaker: {failures: 2, open_for: 1h, max_open_for: 1h}",
    )
    (tmp_path / "hub.yaml").write_text(text)
    port = free_port()
    env = {
        **os.environ,
        "TEST_SHOPIFY_SECRET": SECRET,
        "HUB_STATE_DIR": str(tmp_path),
        "HUB_HTTP_PORT": str(port),
        "HUB_KAFKA_PARTITIONS": "1",
        "HUB_RELOAD_INTERVAL_S": "0",
    }
    env.pop("HUB_KAFKA_BOOTSTRAP_SERVERS", None)  # its own embedded broker
    proc = _start_hub(tmp_path, env)
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:

            async def ready() -> bool:
                assert proc.poll() is None, (tmp_path / "hub.log").read_text()
                try:
                    return (await client.get("/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            await until(ready)

            async def send_over_http(order_id: int) -> None:
                body = order_body(order_id, note="killed")
                # A connection of its own: a kept-alive one from the first batch may be closed by
                # the server's keep-alive timeout (5 s) while the circuit opens, just as it is
                # reused (httpx.ReadError, seen under load); a webhook sender retries that.
                async with httpx.AsyncClient(base_url=base, timeout=10) as own:
                    r = await own.post(
                        "/webhooks/shop", content=body, headers=shopify_headers(body)
                    )
                assert r.status_code == 202, r.text

            async def circuit_open() -> bool:
                items = (await client.get("/api/destinations")).json()["items"]
                return [d["circuit"] for d in items] == ["open"]

            await asyncio.gather(*(send_over_http(8300 + i) for i in range(10)))
            await until(circuit_open)
            await asyncio.gather(*(send_over_http(8310 + i) for i in range(30)))
    finally:
        proc.send_signal(signal.SIGKILL)  # no chance to save anything
        await asyncio.to_thread(proc.wait)

    orphan = EmbeddedBroker.orphan(tmp_path / "embedded-broker.json")
    assert orphan is not None  # Tansu outlived the hub, with the 30 events in it

    sink.down = False
    settings = hubs.settings(
        kafka_bootstrap_servers="", state_dir=tmp_path, kafka_topic_prefix="hub."
    )
    try:
        second = await hubs.start(config=text, settings=settings)
        assert not orphan.alive()  # stopped, once its records were taken over
    finally:
        if orphan.alive():
            await asyncio.to_thread(orphan.stop)  # never leave a broker behind
    (queue,) = [w.queue for w in second.workers if isinstance(w, DeliveryWorker)]

    def delivered() -> list[str]:
        return [r.body["external_refs"][0]["id"] for r in sink.received]

    async def accounted_for() -> bool:
        got = set(delivered())
        return {str(8310 + i) for i in range(30)} <= got and len(got) + await queue.count() == 40

    await until(accounted_for)
    assert len(delivered()) == len(set(delivered()))  # none twice
