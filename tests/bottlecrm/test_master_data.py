"""The master data coding standard (issue 15, flow 2) by a whole hub running
examples/crm-shop.yaml between a real BottleCRM and the strict Shopify fake
(tests/support/shopify_admin.py).

The same customer is entered in the shop (a signed ``customers/create`` webhook through the
hub's ingress, as Shopify sends it) and in the CRM (through BottleCRM's API, whose own webhook
reaches the hub), with differences of case, accents and the phone's format: one golden id, two
crosswalk rows. A steward then unmerges the CRM's record through ``/api/mdm`` and merges the
two again: each time both systems follow (hub/mdm_follow.py), which the test reads from what
BottleCRM and the fake shop hold. Every write the hub makes to either system is counted around
its sink. Both systems report those writes back (BottleCRM's webhook; Shopify's
``customers/update``, which the test sends as Shopify would); once the hub has handled
everything it received (every consumer group committed), no further write was made: one write
per system and step, none more, no loop."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition

from connectors.base import Delivery, DeliveryResult
from hub.mdm import DeterministicResolver
from hub.runtime import Hub
from tests.support.bottlecrm import BottleCrmServer
from tests.support.harness import SECRET, HubFactory, shopify_webhook, topic_records, until
from tests.support.shopify_admin import TOKEN, FakeShopify, fake_shopify

ROOT = Path(__file__).resolve().parents[2]
derive = DeterministicResolver().golden_id
SHOP_ID = 706405506930370084


class Writes:
    """The hub's writes to each system (counted around the sinks)."""

    def __init__(self, hub: Hub) -> None:
        self.count: Counter[str] = Counter()
        for name in ("bottlecrm", "shop-admin"):
            sink = hub.config.connections[name]
            sink.deliver = self._counting(name, sink.deliver)  # type: ignore[attr-defined]

    def _counting(self, name: str, deliver: Callable[[Delivery], Any]) -> Callable[[Delivery], Any]:
        async def counted(delivery: Delivery) -> DeliveryResult | None:
            self.count[name] += 1
            result: DeliveryResult | None = await deliver(delivery)
            return result

        return counted

    def now(self) -> dict[str, int]:
        return {"bottlecrm": self.count["bottlecrm"], "shop": self.count["shop-admin"]}


@pytest.fixture(scope="module")
def shop() -> Iterator[FakeShopify]:
    with fake_shopify() as served:
        yield served


@pytest.fixture
async def hub(
    hubs: HubFactory,
    bottlecrm: BottleCrmServer,
    shop: FakeShopify,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Hub]:
    """The hub of examples/crm-shop.yaml, pointed at this module's BottleCRM and fake shop."""
    config = yaml.safe_load((ROOT / "examples" / "crm-shop.yaml").read_text())
    config["mappings"] = str(ROOT / "mappings")
    config["mdm"] = str(ROOT / "examples" / "mdm.yaml")
    config["connections"]["bottlecrm"]["options"]["url"] = bottlecrm.url
    config["connections"]["shop-admin"]["options"]["base_url"] = shop.base
    monkeypatch.setenv("SHOPIFY_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("SHOPIFY_ADMIN_TOKEN", TOKEN)
    monkeypatch.setenv("BOTTLECRM_TOKEN", bottlecrm.token)
    monkeypatch.setenv("BOTTLECRM_WEBHOOK_SECRET", bottlecrm.webhook_secret)
    started = await hubs.start(config=yaml.safe_dump(config))
    bottlecrm.point_webhook(f"{started.base_url}/webhooks/bottlecrm")
    try:
        yield started
    finally:
        bottlecrm.point_webhook("http://127.0.0.1:9/hub-stopped", active=False)


async def shop_webhook(hub: Hub, shop: FakeShopify, topic: str) -> None:
    """The shop's customer webhook, signed as Shopify signs it, for what the shop holds now."""
    await shopify_webhook(hub, shop.customer_webhook(SHOP_ID), topic)


async def steward(hub: Hub, action: str, body: dict[str, Any]) -> dict[str, Any]:
    """A steward's decision through the MDM API (the loopback operator: steward:local)."""
    async with httpx.AsyncClient(base_url=hub.base_url, timeout=30) as client:
        answer = await client.post(f"/api/mdm/customer/{action}", json=body)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


async def _done(hub: Hub, group: str, topic: str) -> bool:
    """Whether consumer group ``group`` has committed every record ``topic`` holds now (its
    workers commit only what they finished)."""
    records = await topic_records(hub.bootstrap, topic)
    ends: dict[int, int] = {}
    for r in records:
        ends[r.partition] = max(ends.get(r.partition, 0), r.offset + 1)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=hub.bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        for partition, end in ends.items():
            committed = await consumer.committed(TopicPartition(topic, partition))
            if (committed or 0) < end:
                return False
    finally:
        await consumer.stop()
    return True


async def settled(hub: Hub) -> None:
    """Everything the hub has received so far is through it: mapped, then handled by both
    destinations' delivery workers (written, or not for a reason)."""
    s = hub.settings

    async def mapped() -> bool:
        return await _done(hub, s.mapper_group, s.ingest_topic)

    async def delivered() -> bool:
        topic = s.canonical_topic("customer")
        return all(
            [await _done(hub, s.delivery_group(d), topic) for d in ("bottlecrm", "shop-admin")]
        )

    await until(mapped)
    await until(delivered)


async def crm_saved(bottlecrm: BottleCrmServer, contact_id: str, count: int) -> None:
    """BottleCRM has sent the webhooks of ``count`` saves of the contact (and had them
    answered: the hub has them)."""

    async def sent() -> bool:
        rows = await asyncio.to_thread(
            bottlecrm.sql,
            "SELECT status FROM webhook_delivery WHERE payload->'data'->>'id' = %s",
            contact_id,
        )
        return len(rows) >= count and all(row[0] == "succeeded" for row in rows)

    await until(sent)


async def test_one_customer_typed_twice_is_one_golden_record_both_systems_follow_a_steward(
    hub: Hub, bottlecrm: BottleCrmServer, shop: FakeShopify
) -> None:
    writes = Writes(hub)
    # The shop: the customer typed her own name, accents included.
    shop.add_customer(
        SHOP_ID,
        first_name="Anna",
        last_name="Müller",
        email="Anna.Mueller@Example.com",
        phone="+49 151 23456789",
    )
    await shop_webhook(hub, shop, "customers/create")
    # The CRM: a sales person typed her in capitals, without the umlaut, a national phone.
    created = await asyncio.to_thread(
        bottlecrm.api,
        "POST",
        "contacts/",
        {
            "first_name": "ANNA",
            "last_name": "Muller",
            "email": "ANNA.MUELLER@example.com",
            "phone": "0151 2345 6789",
        },
    )
    crm_id = f"contact:{created['id']}"
    golden = derive("customer", "shopify", str(SHOP_ID))
    alias = derive("customer", "bottlecrm", crm_id)  # the CRM's record's id before the link

    async def linked() -> bool:
        return await hub.mdm.lookup("customer", "bottlecrm", crm_id) is not None

    await until(linked)
    record = await hub.mdm.golden("customer", golden)
    assert record is not None
    # one golden customer, each system its own id in the crosswalk
    assert [(c["system"], c["external_id"]) for c in record["crosswalk"]] == [
        ("shopify", str(SHOP_ID)),
        ("bottlecrm", crm_id),
    ]
    assert record["crosswalk"][1]["linked_by"] == "rule:same-email"
    # matching writes nothing to the systems: only a steward's decision is followed
    assert writes.now() == {"bottlecrm": 0, "shop": 0}

    # 1. The steward unmerges the CRM's record: each system gets its own golden record.
    await steward(hub, "unmerge", {"merged": alias, "reason": "checking the link"})

    async def split() -> bool:
        crm = await asyncio.to_thread(bottlecrm.contact, created["id"])
        return (
            crm.get("phone") == "+4915123456789"
            and shop.metafield(SHOP_ID, "hub", "golden_id") == golden
        )

    await until(split)
    held = shop.customers[SHOP_ID]
    assert (held["first_name"], held["last_name"]) == ("Anna", "Müller")
    assert (held["email"], held["phone"]) == ("anna.mueller@example.com", "+4915123456789")
    crm = await asyncio.to_thread(bottlecrm.contact, created["id"])
    # the CRM's own record, in the coding standard: e-mail lower-case, phone E.164
    assert (crm["first_name"], crm["last_name"]) == ("ANNA", "Muller")
    assert (crm["email"], crm["phone"]) == ("anna.mueller@example.com", "+4915123456789")
    assert await hub.mdm.resolve("customer", "bottlecrm", crm_id) == alias
    assert await hub.mdm.resolve("customer", "shopify", str(SHOP_ID)) == golden

    # Both systems report the writes back (BottleCRM's webhook; Shopify's customers/update,
    # sent as Shopify would): through the hub, and nothing written again.
    await shop_webhook(hub, shop, "customers/update")
    await crm_saved(bottlecrm, created["id"], 2)
    await settled(hub)
    assert writes.now() == {"bottlecrm": 1, "shop": 1}

    # 2. Merged back, the CRM's golden record surviving this time (the steward's choice):
    # both follow the one golden record, the shop's golden id changing with it.
    await steward(hub, "merge", {"survivor": alias, "merged": golden, "reason": "same person"})

    async def together() -> bool:
        crm = await asyncio.to_thread(bottlecrm.contact, created["id"])
        return (crm.get("first_name"), crm.get("last_name")) == ("Anna", "Müller")

    await until(together)

    async def renamed() -> bool:
        return shop.metafield(SHOP_ID, "hub", "golden_id") == alias

    await until(renamed)
    assert await hub.mdm.resolve("customer", "bottlecrm", crm_id) == alias
    assert await hub.mdm.resolve("customer", "shopify", str(SHOP_ID)) == alias
    await shop_webhook(hub, shop, "customers/update")
    await crm_saved(bottlecrm, created["id"], 3)
    await settled(hub)
    assert writes.now() == {"bottlecrm": 2, "shop": 2}
    held = shop.customers[SHOP_ID]  # names as the shop has them (survivorship: shop first)
    assert (held["first_name"], held["last_name"], held["phone"]) == (
        "Anna",
        "Müller",
        "+4915123456789",
    )
    # BottleCRM saved the contact when its user created it and when the hub wrote it: no loop
    assert bottlecrm.saves(created["id"]) == [
        "contact.created",
        "contact.updated",
        "contact.updated",
    ]
