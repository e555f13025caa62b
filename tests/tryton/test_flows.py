"""The two flows of examples/tryton.yaml end to end, on real components: a whole hub (Tansu,
ingress, mapper, delivery, poller), a real Tryton 8.2 and the strict Shopify Admin fake
(tests/support/shopify_admin.py). Asserted on what Tryton and the fake shop hold afterwards.

1. Order to cash: a signed Shopify orders/create -> a confirmed Tryton sale -> the warehouse
   ships it in Tryton with a tracking reference -> the poller sees the sale fulfilled -> a
   Shopify fulfilment of *the shop's* order (the crosswalk's id, external_id()) with that
   tracking number; GET /api/orders/{the shop's id} shows the whole way.
2. Inventory sync: stock received and shipped in Tryton -> canonical inventory -> the shop's
   inventory level of the item with that SKU (inventory_levels/set)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.mdm import DeterministicResolver
from hub.runtime import Hub
from tests.support.harness import (
    ORDER_BODY,
    SHOP_CONFIG,
    HubFactory,
    order_body,
    post,
    shopify_headers,
    until,
)
from tests.support.shopify_admin import TOKEN, FakeShopify, admin_connection, fake_shopify
from tests.support.tryton import TrytonServer, setup, tryton_connection

ROOT = Path(__file__).resolve().parents[2]
SHOP_ORDER_ID = 820982911946154508
SKUS = {"IPOD2008PINK": 3, "IPOD2009BLACK": 1}  # quantities ordered
ITEMS = {"IPOD2008PINK": 808950810, "IPOD2009BLACK": 808950811}  # the shop's inventory items


def hub_yaml(tryton: TrytonServer, shop: FakeShopify) -> str:
    return (
        SHOP_CONFIG
        + admin_connection(shop)
        + tryton_connection(tryton, poll="[sales, stock]")
        + """\
routes:
  - {name: shop-orders-in, from: shop, mapping: shopify/orders_create}
  - name: orders-to-tryton
    from: canonical.order
    to: erp
    mapping: tryton/order_to_sale
    skip_origin: true
  - {name: tryton-sales, from: erp, mapping: tryton/sale_to_order}
  - {name: tryton-stock, from: erp, mapping: tryton/stock_to_inventory}
  - {name: shipped-to-shop, from: canonical.order, to: shop-admin,
      mapping: shopify/order_to_fulfillment}
  - {name: stock-to-shop, from: canonical.inventory, to: shop-admin,
      mapping: shopify/inventory_to_level}
"""
    )


@pytest.fixture
def shop(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeShopify]:
    monkeypatch.setenv("TEST_SHOPIFY_ADMIN_TOKEN", TOKEN)
    with fake_shopify() as fake:
        yield fake


@pytest.fixture
async def hub(
    hubs: HubFactory, tryton: TrytonServer, shop: FakeShopify, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Hub]:
    monkeypatch.setenv("HUB_TEST_TRYTON_PASSWORD", setup.HUB_PASSWORD)
    shop.add_order(SHOP_ORDER_ID, [1, 2, 1])
    for sku, item in ITEMS.items():
        shop.add_item(item, 0, sku=sku)
    yield await hubs.start(config=hub_yaml(tryton, shop))


async def read(tryton: TrytonServer, model: str, domain: list[Any], fields: list[str]) -> Any:
    return await asyncio.to_thread(tryton.search_read, model, domain, fields)


async def test_order_to_cash_and_inventory_sync(
    hub: Hub, tryton: TrytonServer, shop: FakeShopify
) -> None:
    golden = DeterministicResolver().golden_id("order", "shopify", str(SHOP_ORDER_ID))
    response = await post(hub, ORDER_BODY, shopify_headers(ORDER_BODY, "delivery-1"))
    assert response.status_code == 202, response.text

    # 1. the order is a confirmed sale in Tryton, for its customer, with its lines
    async def confirmed() -> list[Any]:
        sales = await read(
            tryton, "sale.sale", [("reference", "=", golden)], ["state", "shipments", "lines"]
        )
        return [s for s in sales if s["state"] == "processing"]

    await until(confirmed)
    (sale,) = await confirmed()
    assert len(sale["lines"]) == 3

    # the warehouse receives stock, then ships the sale with a tracking reference
    products = await read(tryton, "product.product", [("code", "in", list(SKUS))], ["id", "code"])
    storage = (await read(tryton, "stock.location", [("code", "=", "STO")], ["id"]))[0]["id"]
    lines = [{"product": p["id"], "quantity": 10.0} for p in products]
    (inventory,) = await asyncio.to_thread(
        tryton.rpc,
        "model.stock.inventory.create",
        [{"location": storage, "lines": [["create", lines]]}],
    )
    await asyncio.to_thread(tryton.rpc, "model.stock.inventory.confirm", [inventory])
    (shipment,) = sale["shipments"]
    await asyncio.to_thread(
        tryton.rpc, "model.stock.shipment.out.write", [shipment], {"reference": "1Z999AA10"}
    )
    for step in ("assign_try", "pick", "pack", "do"):
        await asyncio.to_thread(tryton.rpc, f"model.stock.shipment.out.{step}", [shipment])

    # -> polled, fulfilled -> one fulfilment of the shop's order with the tracking number
    async def fulfilled() -> bool:
        return bool(shop.fulfillments)

    await until(fulfilled)
    (fulfilment,) = shop.fulfillments
    assert (fulfilment["order_id"], fulfilment["tracking_number"]) == (SHOP_ORDER_ID, "1Z999AA10")

    # 2. inventory: each SKU's level in the shop is Tryton's, 10 received less what shipped
    async def levels_synced() -> bool:
        return all(
            shop.levels.get((shop.location_id, ITEMS[sku])) == 10 - ordered
            for sku, ordered in SKUS.items()
        )

    await until(levels_synced)

    # the order view answers for the order that went the whole way, by the shop's id
    async with httpx.AsyncClient(base_url=hub.base_url, timeout=30) as client:

        async def journey() -> dict[str, Any] | None:
            answer = await client.get(f"/api/orders/{SHOP_ORDER_ID}")
            assert answer.status_code == 200, answer.text
            body: dict[str, Any] = answer.json()
            done = [e for e in body["events"] if e["step"] == "delivered"]
            return body if {e["connection"] for e in done} == {"erp", "shop-admin"} else None

        await until(journey)
        order = await journey()
    assert order is not None and order["golden_id"] == golden
    assert {(i["system"], i["id"]) for i in order["ids"]} >= {
        ("shopify", str(SHOP_ORDER_ID)),
        ("tryton", str(sale["id"])),
    }
    steps = [(e["step"], e["connection"], e["status"]) for e in order["events"]]
    assert steps[0] == ("received", "shop", None)
    assert ("mapped", "shop", "paid") in steps
    assert ("delivered", "erp", "paid") in steps
    assert ("mapped", "erp", "fulfilled") in steps  # polled back from Tryton as shipped
    assert ("delivered", "shop-admin", "fulfilled") in steps  # the fulfilment sent
    delivered_to_erp = next(e for e in order["events"] if e["step"] == "delivered")
    assert delivered_to_erp["id"] == str(sale["id"])  # "delivered to Tryton as sale N"
    assert order["dead_letters"] == []
    # still one sale, never written back from its own polls
    assert len(await read(tryton, "sale.sale", [], ["id"])) == 1


async def test_an_order_cancelled_in_shopify_is_cancelled_in_tryton(
    hub: Hub, tryton: TrytonServer
) -> None:
    order_id = 820982911946154599  # not the other test's order: Tryton's database is the module's
    golden = DeterministicResolver().golden_id("order", "shopify", str(order_id))
    created = order_body(order_id)
    response = await post(hub, created, shopify_headers(created, "create-1"))
    assert response.status_code == 202, response.text

    async def sale_state() -> str | None:
        sales = await read(tryton, "sale.sale", [("reference", "=", golden)], ["state"])
        return str(sales[0]["state"]) if sales else None

    async def confirmed() -> bool:
        return await sale_state() == "processing"

    await until(confirmed)
    body = order_body(order_id, cancelled_at="2026-12-06T10:00:00-05:00", cancel_reason="customer")
    headers = {**shopify_headers(body, "cancel-1"), "x-shopify-topic": "orders/cancelled"}
    response = await post(hub, body, headers)
    assert response.status_code == 202, response.text

    # Tryton cannot cancel a sale in processing: its shipment is cancelled (and draft invoices),
    # and the sale shows the exception for someone to handle (docs/connectors/tryton.md)
    async def cancelled() -> bool:
        (sale,) = await read(
            tryton, "sale.sale", [("reference", "=", golden)], ["shipment_state", "shipments"]
        )
        shipments = await read(
            tryton, "stock.shipment.out", [("id", "in", sale["shipments"])], ["state"]
        )
        return sale["shipment_state"] == "exception" and [s["state"] for s in shipments] == [
            "cancelled"
        ]

    await until(cancelled)
    sales = await read(tryton, "sale.sale", [("reference", "=", golden)], ["id"])
    assert len(sales) == 1  # not a second sale
