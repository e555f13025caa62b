"""A Shopify order delivered twice, and the worker process writing it to Tryton killed with
SIGKILL mid-flow: after a restart Tryton holds exactly one party and one sale for it (read back
through Tryton's API), confirmed, with its lines."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

from sqlalchemy import select

from hub.bus import Publisher, ensure_topics
from hub.db import Database, deliveries
from hub.envelope import CloudEvent, derived_id
from hub.mdm import DeterministicResolver
from hub.settings import Settings
from tests.support.harness import ORDER_BODY, SECRET, SHOP_CONFIG, Cluster, until
from tests.support.tryton import TrytonServer, setup, tryton_connection

ROOT = Path(__file__).resolve().parents[2]
SHOP_ORDER_ID = "820982911946154508"
CUSTOMER_ID = "115310627314723954"


def hub_yaml(tryton: TrytonServer) -> str:
    return (
        SHOP_CONFIG
        + tryton_connection(tryton)
        + """\
routes:
  - {name: shop-orders-in, from: shop, mapping: shopify/orders_create}
  - {name: orders-to-tryton, from: canonical.order, to: erp, mapping: tryton/order_to_sale}
"""
    )


def webhook(delivery_id: str) -> CloudEvent:
    """What ingress writes for one delivery of the signed orders/create webhook."""
    return CloudEvent(
        id=derived_id("webhook", "shop", delivery_id),
        source="/connections/shop",
        type="shopify.orders/create",
        subject=SHOP_ORDER_ID,
        data=ORDER_BODY,
        key=f"shop/{SHOP_ORDER_ID}",
        extensions={"hubconnection": "shop", "hubsystem": "shopify", "hubevent": "orders/create"},
    )


def start_workers(state: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "hub.cli", "up", "--role", "workers", "-c", str(state / "hub.yaml")],
        env=env,
        stdout=open(state / "workers.log", "ab"),
        stderr=subprocess.STDOUT,
    )


async def test_a_webhook_twice_and_a_sigkill_mid_flow_leave_one_party_and_one_sale(
    broker: Cluster, tryton: TrytonServer, tmp_path: Path
) -> None:
    prefix = f"k{uuid.uuid4().hex[:10]}."
    settings = Settings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        kafka_topic_prefix=prefix,
        kafka_partitions=3,
        state_dir=tmp_path,
    )
    await ensure_topics(settings, broker.bootstrap_servers, settings.all_topics())
    golden = DeterministicResolver().golden_id("order", "shopify", SHOP_ORDER_ID)
    customer = DeterministicResolver().golden_id("customer", "shopify", CUSTOMER_ID)
    events = [webhook("delivery-1"), webhook("delivery-2")]  # Shopify sent it twice
    canonical = [derived_id(e.id, "shop-orders-in", "shopify/orders_create") for e in events]
    (tmp_path / "hub.yaml").write_text(hub_yaml(tryton))
    env = {
        **os.environ,
        "TEST_SHOPIFY_SECRET": SECRET,
        "HUB_TEST_TRYTON_PASSWORD": setup.HUB_PASSWORD,
        "HUB_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "HUB_KAFKA_TOPIC_PREFIX": prefix,
        "HUB_KAFKA_PARTITIONS": "3",
        "HUB_STATE_DIR": str(tmp_path),
        "HUB_RELOAD_INTERVAL_S": "0",
        "HUB_LOG_LEVEL": "WARNING",
    }

    def parties() -> list[dict[str, object]]:
        return tryton.search_read("party.party", [("code", "=", customer)], ["id"])

    def sales() -> list[dict[str, object]]:
        return tryton.search_read("sale.sale", [("reference", "=", golden)], ["state", "lines"])

    proc = start_workers(tmp_path, env)
    try:
        publisher = Publisher(settings, broker.bootstrap_servers, 30.0)
        try:
            await publisher.wait([publisher.send(settings.ingest_topic, e) for e in events])
        finally:
            await publisher.close()
        # killed as soon as Tryton has the party (the sale is being written), then again as soon
        # as it has the sale (being quoted and confirmed, or just done)
        states: list[list[object]] = []
        for written in (parties, sales):
            async with asyncio.timeout(120):
                while not await asyncio.to_thread(written):
                    assert proc.poll() is None, (tmp_path / "workers.log").read_text()
                    await asyncio.sleep(0.005)
            proc.send_signal(signal.SIGKILL)  # no chance to record, commit or flush anything
            await asyncio.to_thread(proc.wait)
            states.append([s["state"] for s in await asyncio.to_thread(sales)])
            proc = start_workers(tmp_path, env)
        print(f"\nthe sale's state at each SIGKILL: {states}")

        db = Database(settings.database_url)
        await db.start()
        try:

            async def both_delivered() -> bool:
                query = select(deliveries.c.event_id).where(deliveries.c.destination == "erp")
                rows = await db.run(lambda conn: {r[0] for r in conn.execute(query)})
                assert proc.poll() is None, (tmp_path / "workers.log").read_text()
                return set(canonical) <= rows

            await until(both_delivered, timeout_s=180)
        finally:
            await db.close()
    finally:
        proc.terminate()
        await asyncio.to_thread(proc.wait)

    assert len(await asyncio.to_thread(parties)) == 1
    (sale,) = await asyncio.to_thread(sales)
    assert sale["state"] == "processing"
    assert len(sale["lines"]) == 3  # type: ignore[arg-type]
    assert len(await asyncio.to_thread(tryton.search_read, "sale.sale", [], ["id"])) == 1
