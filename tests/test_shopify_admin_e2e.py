"""End to end on real components: a signed Shopify webhook -> Tansu -> mapper -> canonical
order -> delivery -> the shopify_admin sink -> the strict fake Admin API
(tests/support/shopify_admin.py), asserted on the fake shop's state."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.deadletters import Filter
from tests.support.harness import (
    SHOP_CONFIG,
    HubFactory,
    order_body,
    post,
    shopify_headers,
    until,
)
from tests.support.shopify_admin import TOKEN, FakeShopify, admin_connection, fake_shopify

ROOT = Path(__file__).resolve().parents[1]
ORDER_ID = 820982911946154508


@pytest.fixture
def shop(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeShopify]:
    monkeypatch.setenv("TEST_SHOPIFY_ADMIN_TOKEN", TOKEN)
    with fake_shopify() as fake:
        yield fake


def hub_yaml(shop: FakeShopify) -> str:
    return (
        SHOP_CONFIG
        + admin_connection(shop)
        + """\
routes:
  - name: shop-orders-in
    from: shop
    mapping: shopify/orders_create
  - name: fulfilled-to-shop
    from: canonical.order
    to: shop-admin
    mapping: shopify/order_to_fulfillment
  - name: cancelled-to-shop
    from: canonical.order
    to: shop-admin
    mapping: shopify/order_to_cancel
"""
    )


def sent(shop: FakeShopify, method: str, path: str) -> int:
    return shop.requests.count((method, f"/admin/api/2025-01/{path}"))


async def test_a_fulfilled_order_sent_twice_is_one_fulfilment_with_its_tracking_number(
    hubs: HubFactory, shop: FakeShopify
) -> None:
    shop.add_order(ORDER_ID, [1, 2, 1])
    hub = await hubs.start(config=hub_yaml(shop))
    body = order_body(ORDER_ID, fulfillment_status="fulfilled", tags="tracking:1Z999AA1")
    for webhook_id in ("delivery-1", "delivery-2"):  # two deliveries of one order: two events
        response = await post(hub, body, shopify_headers(body, webhook_id))
        assert response.status_code == 202, response.text

    # the first is written; the second carries nothing the shop does not hold (hub.sync): it
    # is not sent at all, so the shop sees one look at its fulfilments and one fulfilment
    async def second_dropped() -> bool:
        dropped = hub.metrics.value(
            "hub_echoes_dropped_total", system="shopify", destination="shop-admin"
        )
        return dropped >= 1 and len(shop.fulfillments) >= 1

    await until(second_dropped)
    (fulfilment,) = shop.fulfillments
    assert fulfilment["order_id"] == ORDER_ID
    assert fulfilment["tracking_number"] == "1Z999AA1"
    assert sent(shop, "GET", f"orders/{ORDER_ID}/fulfillments.json") == 1
    assert sent(shop, "POST", "fulfillments.json") == 1
    assert shop.cancelled == []


async def test_a_fulfilled_order_replayed_looks_at_the_shop_first_and_adds_no_fulfilment(
    hubs: HubFactory, shop: FakeShopify
) -> None:
    """A route that keeps no state (drop_echoes: false) sends both deliveries: the sink itself
    is idempotent, reading the order's fulfilments before it creates one."""
    shop.add_order(ORDER_ID, [1, 2, 1])
    config = hub_yaml(shop).replace(
        "mapping: shopify/order_to_fulfillment\n",
        "mapping: shopify/order_to_fulfillment\n    drop_echoes: false\n",
    )
    hub = await hubs.start(config=config)
    body = order_body(ORDER_ID, fulfillment_status="fulfilled", tags="tracking:1Z999AA1")
    for webhook_id in ("delivery-1", "delivery-2"):
        response = await post(hub, body, shopify_headers(body, webhook_id))
        assert response.status_code == 202, response.text

    async def both_arrived() -> bool:
        return sent(shop, "GET", f"orders/{ORDER_ID}/fulfillments.json") >= 2

    await until(both_arrived)
    (fulfilment,) = shop.fulfillments
    assert fulfilment["tracking_number"] == "1Z999AA1"
    assert sent(shop, "POST", "fulfillments.json") == 1


async def test_an_order_cancelled_is_cancelled_in_the_shop(
    hubs: HubFactory, shop: FakeShopify
) -> None:
    shop.add_order(ORDER_ID, [1])
    hub = await hubs.start(config=hub_yaml(shop))
    body = order_body(ORDER_ID, cancelled_at="2026-11-22T11:00:00-05:00", cancel_reason="other")
    response = await post(hub, body, shopify_headers(body))
    assert response.status_code == 202, response.text

    async def cancelled() -> list[int]:
        return shop.cancelled

    await until(cancelled)
    assert shop.cancelled == [ORDER_ID]
    assert shop.fulfillments == []


async def test_an_order_the_shop_does_not_know_is_a_dead_letter_with_shopifys_answer(
    hubs: HubFactory, shop: FakeShopify
) -> None:
    hub = await hubs.start(config=hub_yaml(shop))  # the fake shop has no orders
    body = order_body(ORDER_ID, cancelled_at="2026-11-22T11:00:00-05:00")
    response = await post(hub, body, shopify_headers(body))
    assert response.status_code == 202, response.text

    async def dead_lettered() -> bool:
        total, _ = await hub.deadletters.search(Filter(status="open"))
        return total == 1

    await until(dead_lettered)
    _, (letter,) = await hub.deadletters.search(Filter(status="open"))
    assert letter["stage"] == "deliver"
    assert letter["error_class"] == "DeliveryRejected"
    assert 'HTTP 404: {"errors":"Not Found"}' in letter["error"]
    assert TOKEN not in letter["error"]
    assert shop.cancelled == []
