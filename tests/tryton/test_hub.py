"""A whole hub (real broker, real HTTP ingress) with a Tryton connection: a signed Shopify order
becomes one confirmed sale in Tryton, whose id is linked in the crosswalk, and the hub's
poller brings the sale back as a canonical order. What Tryton holds is read through its API."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from hub.db import crosswalk
from hub.mdm import DeterministicResolver
from hub.runtime import Hub
from tests.support.harness import (
    ORDER_BODY,
    SHOP_CONFIG,
    HubFactory,
    post,
    shopify_headers,
    until,
)
from tests.support.tryton import TrytonServer, setup, tryton_connection

ROOT = Path(__file__).resolve().parents[2]
SHOP_ORDER_ID = "820982911946154508"


def hub_yaml(tryton: TrytonServer, outbox: Path) -> str:
    return (
        SHOP_CONFIG
        + tryton_connection(tryton, poll="[sales]")
        + f"""\
  outbox:
    connector: file
    options: {{path: {outbox}}}
routes:
  - name: shop-orders-in
    from: shop
    mapping: shopify/orders_create
  - name: orders-to-tryton
    from: canonical.order
    to: erp
    mapping: tryton/order_to_sale
    when: "'tryton' not in pluck(external_refs, 'system')"
  - name: tryton-sales
    from: erp
    mapping: tryton/sale_to_order
  - name: orders-to-outbox
    from: canonical.order
    to: outbox
"""
    )


@pytest.fixture
async def hub(
    hubs: HubFactory, tryton: TrytonServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Hub]:
    monkeypatch.setenv("HUB_TEST_TRYTON_PASSWORD", setup.HUB_PASSWORD)
    yield await hubs.start(config=hub_yaml(tryton, tmp_path / "outbox.jsonl"))


def outbox(hub: Hub) -> list[dict[str, Any]]:
    path = Path(hub.config.connections["outbox"].options.path)  # type: ignore[attr-defined]
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_a_shopify_order_twice_is_one_confirmed_sale_linked_and_polled_back(
    hub: Hub, tryton: TrytonServer
) -> None:
    # nothing links this order yet, so its golden id is the derived one
    golden = DeterministicResolver().golden_id("order", "shopify", SHOP_ORDER_ID)
    for webhook_id in ("delivery-1", "delivery-2"):  # Shopify sent it twice
        response = await post(hub, ORDER_BODY, shopify_headers(ORDER_BODY, webhook_id))
        assert response.status_code == 202, response.text

    async def linked(system: str = "tryton") -> list[Any]:
        query = select(crosswalk).where(crosswalk.c.entity == "order", crosswalk.c.system == system)
        return await hub.db.run(lambda conn: list(conn.execute(query)))

    async def confirmed() -> bool:
        fields = ["state"]
        sales = await asyncio.to_thread(
            tryton.search_read, "sale.sale", [("reference", "=", golden)], fields
        )
        return bool(sales) and sales[0]["state"] == "processing"

    await until(confirmed)
    await until(linked)
    (sale,) = tryton.search_read(
        "sale.sale", [("reference", "=", golden)], ["state", "party.code", "lines", "total_amount"]
    )
    assert sale["state"] == "processing"
    assert sale["total_amount"]["decimal"] == "398.00"  # 199.00 + 2 x 99.50 + 0.00
    assert len(sale["lines"]) == 3
    (link,) = await linked()
    assert (link.system, link.external_id, link.golden_id) == ("tryton", str(sale["id"]), golden)
    # the shop's id of the order is linked too, by the mapper (what external_id() answers)
    (source,) = await linked("shopify")
    assert (source.external_id, source.golden_id) == (SHOP_ORDER_ID, golden)

    async def polled_back() -> list[dict[str, Any]]:
        """The sale as polled (a poll may also have seen its draft, before it was confirmed:
        each state is an event of its own)."""
        return [
            e["data"]
            for e in outbox(hub)
            if {"system": "tryton", "id": str(sale["id"])} in e["data"]["external_refs"]
            and e["data"]["status"] == "confirmed"
        ]

    await until(polled_back)
    order = (await polled_back())[0]
    assert order["id"] == golden  # the same order as the shop's, by the sale's reference
    assert order["customer"]["id"] == DeterministicResolver().golden_id(
        "customer", "shopify", "115310627314723954"
    )
    assert order["total"] == "398.00"
    assert [line["sku"] for line in order["lines"]] == [
        "IPOD2008PINK",
        "IPOD2008PINK",
        "IPOD2009BLACK",
    ]
    # the polled order is not written back to Tryton: still one sale
    assert len(tryton.search_read("sale.sale", [], ["id"])) == 1
