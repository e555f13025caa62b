"""Crash safety: a worker process killed with SIGKILL mid-stream loses nothing, and after a
restart the (idempotent) destination holds every event exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

from hub.bus import Publisher, ensure_topics
from hub.envelope import CloudEvent, derived_id
from hub.settings import Settings

from .support.harness import SECRET, Cluster, RecordingSink, config_text, order_body

EVENTS = 5000


def _raw_event(i: int) -> CloudEvent:
    """What ingress writes for a signed Shopify orders/create webhook."""
    order_id = 100_000 + i
    return CloudEvent(
        id=derived_id("webhook", "shop", f"crash-{i}"),
        source="/connections/shop",
        type="shopify.orders/create",
        subject=str(order_id),
        data=order_body(order_id),
        key=f"shop/{order_id}",
        extensions={"hubconnection": "shop", "hubevent": "orders/create"},
    )


def _start_workers(state: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "hub.cli", "up", "--role", "workers", "-c", str(state / "hub.yaml")],
        env=env,
        stdout=open(state / "workers.log", "ab"),  # the child writes it
        stderr=subprocess.STDOUT,
    )


async def test_sigkill_mid_stream_loses_nothing_and_duplicates_nothing(
    broker: Cluster, tmp_path: Path
) -> None:
    prefix = f"c{uuid.uuid4().hex[:10]}."
    settings = Settings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        kafka_topic_prefix=prefix,
        kafka_partitions=3,
        state_dir=tmp_path,
    )
    await ensure_topics(settings, broker.bootstrap_servers, settings.all_topics())
    events = [_raw_event(i) for i in range(EVENTS)]
    publisher = Publisher(settings, broker.bootstrap_servers, 30.0)
    try:
        for start in range(0, EVENTS, 500):
            await publisher.wait(
                [publisher.send(settings.ingest_topic, e) for e in events[start : start + 500]]
            )
    finally:
        await publisher.close()
    expected = {derived_id(e.id, "shop-orders-in", "shopify/orders_create") for e in events}

    env = {
        **os.environ,
        "TEST_SHOPIFY_SECRET": SECRET,
        "HUB_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "HUB_KAFKA_TOPIC_PREFIX": prefix,
        "HUB_KAFKA_PARTITIONS": "3",
        "HUB_STATE_DIR": str(tmp_path),
        "HUB_RELOAD_INTERVAL_S": "0",
        "HUB_LOG_LEVEL": "WARNING",
    }
    async with RecordingSink() as sink:
        (tmp_path / "hub.yaml").write_text(config_text(sink.url))

        def distinct() -> int:
            return len({r.headers["ce-id"] for r in sink.received})

        proc = _start_workers(tmp_path, env)
        try:
            for kill_at in (EVENTS // 3, 2 * EVENTS // 3):
                async with asyncio.timeout(300):
                    while distinct() < kill_at:
                        assert proc.poll() is None, (tmp_path / "workers.log").read_text()
                        await asyncio.sleep(0.01)
                proc.send_signal(signal.SIGKILL)  # no chance to commit or flush anything
                await asyncio.to_thread(proc.wait)
                proc = _start_workers(tmp_path, env)
            async with asyncio.timeout(300):
                while distinct() < EVENTS:
                    assert proc.poll() is None, (tmp_path / "workers.log").read_text()
                    await asyncio.sleep(0.05)
        finally:
            proc.terminate()
            await asyncio.to_thread(proc.wait)

        delivered = [r.headers["ce-id"] for r in sink.received]
        assert set(delivered) == expected  # every event, and nothing else
        # Deliveries are recorded one by one as they succeed, so a kill can repeat only what was
        # in flight: at most HUB_DELIVERY_CONCURRENCY per partition. Repeats carry the same
        # idempotency key, so an idempotent destination applies each event once.
        repeated = len(delivered) - len(expected)
        in_flight = Settings().delivery_concurrency * 3
        assert repeated <= 2 * in_flight
        print(f"\n{repeated} deliveries repeated after two SIGKILLs (same idempotency keys)")
