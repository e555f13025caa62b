"""The metrics listener (HUB_METRICS_PORT): /metrics, /livez and /readyz of a process that has
no HTTP API, such as `hub up --role workers`, guarded like the API's /metrics."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from hub.broker import free_port

from .support.harness import HubFactory, RecordingSink, order_body, post, shopify_headers, until
from .test_metrics import sample

WORKERS = frozenset({"workers"})


async def test_a_workers_process_serves_its_delivery_counters(
    hubs: HubFactory, sink: RecordingSink, tmp_path: Path
) -> None:
    # ingress in this process; the mapper and delivery in a real `hub up --role workers`
    ingress = await hubs.start(sink.url, roles=frozenset({"ingress"}))
    s = ingress.settings
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env |= {
        "HUB_CONFIG": str(s.config),
        "HUB_KAFKA_BOOTSTRAP_SERVERS": hubs.bootstrap,
        "HUB_KAFKA_TOPIC_PREFIX": s.kafka_topic_prefix,
        "HUB_KAFKA_PARTITIONS": "1",
        "HUB_STATE_DIR": str(tmp_path / "workers"),
        "HUB_METRICS_PORT": str(port),
        "HUB_RETRY_INITIAL_DELAY_S": "0.05",
    }
    log = (tmp_path / "workers.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hub.cli",
        "up",
        "--role",
        "workers",
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"

    async def get(client: httpx.AsyncClient, path: str) -> httpx.Response | None:
        assert proc.returncode is None, (tmp_path / "workers.log").read_text()
        try:
            return await client.get(f"{base}{path}")
        except httpx.TransportError:
            return None  # not listening yet

    async def delivered(client: httpx.AsyncClient) -> float | None:
        answer = await get(client, "/metrics")
        assert answer is not None and answer.status_code == 200
        route = {"route": "orders-to-erp", "destination": "erp"}
        return sample(answer.text, "hub_events_delivered_total", **route)

    try:
        async with httpx.AsyncClient(timeout=10) as client:

            async def ready() -> bool:
                answer = await get(client, "/readyz")
                return answer is not None and answer.status_code == 200

            await until(ready)
            assert (await get(client, "/livez")).status_code == 200  # type: ignore[union-attr]
            assert not await delivered(client)  # nothing yet (no sample, or 0)
            for number in (1, 2):
                body = order_body(number)
                assert (await post(ingress, body, shopify_headers(body))).status_code == 202
            got = {(await sink.next()).body["number"], (await sink.next()).body["number"]}
            assert got == {"#1", "#2"}

            async def counted() -> bool:
                return await delivered(client) == 2

            await until(counted)
            text = (await get(client, "/metrics")).text  # type: ignore[union-attr]
            mapped = sample(text, "hub_events_mapped_total", route="shop-orders-in", entity="order")
            assert mapped == 2
            assert sample(text, "hub_delivery_seconds_count", destination="erp") == 2
            group = s.delivery_group("erp")
            topic = s.canonical_topic("order")

            async def lag_noted() -> bool:
                # a worker notes its lag after a fetch, once a second at most: wait for the note
                text = (await get(client, "/metrics")).text  # type: ignore[union-attr]
                lag = sample(text, "hub_consumer_lag", group=group, topic=topic, partition="0")
                return lag == 0

            await until(lag_noted)
            # the workers process serves only these: no webhooks, no ops API
            assert (await get(client, "/api/deadletters")).status_code == 404  # type: ignore[union-attr]
            assert (await get(client, "/webhooks/shop")).status_code == 404  # type: ignore[union-attr]
    finally:
        proc.terminate()
        async with asyncio.timeout(60):
            await proc.wait()
        log.close()
    assert proc.returncode == 0, (tmp_path / "workers.log").read_text()
    assert f"metrics at http://127.0.0.1:{port}/metrics" in (tmp_path / "workers.log").read_text()


async def test_the_listener_keeps_the_token_guard_and_the_head_limits(hubs: HubFactory) -> None:
    hub = await hubs.start(
        None, roles=WORKERS, metrics_port=0, ops_token="metrics-token-0123456789"
    )
    assert hub.metrics_listener is not None
    base = hub.metrics_listener.url
    token = {"authorization": "Bearer metrics-token-0123456789"}
    async with httpx.AsyncClient() as client:
        refused = await client.get(f"{base}/metrics")
        allowed = await client.get(f"{base}/metrics", headers=token)
        huge = await client.get(f"{base}/livez", headers={"x-big": "a" * 70_000})
        many = await client.get(f"{base}/livez", headers={f"x-{i}": "1" for i in range(120)})
        ready = await client.get(f"{base}/readyz")
    assert refused.status_code == 401
    assert refused.json()["error"] == "forbidden"
    assert allowed.status_code == 200
    assert allowed.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "hub_events_mapped_total" in allowed.text
    assert huge.status_code in (400, 431)  # h11's limit, or ours: never read whole
    assert many.status_code == 431
    assert ready.json() == {"status": "ready", "checks": {"broker": "ok", "database": "ok"}}


async def test_without_a_token_metrics_answer_only_on_a_loopback_listener(
    hubs: HubFactory,
) -> None:
    # the HTTP API's host is loopback; the metrics listener's is not: its own host counts
    hub = await hubs.start(None, roles=WORKERS, metrics_port=0, metrics_host="0.0.0.0")
    assert hub.metrics_listener is not None
    base = f"http://127.0.0.1:{hub.metrics_listener.port}"
    async with httpx.AsyncClient() as client:
        metrics = await client.get(f"{base}/metrics")
        live = await client.get(f"{base}/livez")
    assert metrics.status_code == 403
    assert "HUB_OPS_TOKEN" in metrics.json()["message"]
    assert live.status_code == 200


async def test_no_listener_unless_the_port_is_set(
    hubs: HubFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HUB_METRICS_PORT", "")  # as an env file or a manifest may leave it
    hub = await hubs.start(None, roles=WORKERS)
    assert hub.settings.metrics_port is None
    assert hub.metrics_listener is None
