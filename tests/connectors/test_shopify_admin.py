"""The shopify_admin sink against a strict fake of Shopify's REST Admin API
(tests/support/shopify_admin.py): what the shop holds afterwards, not what was logged."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from connectors import Delivery
from connectors.conformance import check_problems, idempotency_problems
from connectors.shopify_admin import ShopifyAdmin, ShopifyAdminOptions
from hub.errors import ConnectionCheckFailed, DeliveryRejected, DeliveryRetriable
from hub.mapping import load_mappings
from hub.mdm import DeterministicResolver
from tests.support.shopify_admin import TOKEN, FakeShopify, fake_shopify

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"


@pytest.fixture(scope="module")
def served() -> Iterator[FakeShopify]:
    with fake_shopify() as shop:
        yield shop


@pytest.fixture
def shop(served: FakeShopify, monkeypatch: pytest.MonkeyPatch) -> FakeShopify:
    """The module's server, its state emptied for each test."""
    monkeypatch.setenv("SHOP_ADMIN_TOKEN", TOKEN)
    monkeypatch.setenv("SHOP_WRONG_TOKEN", "shpat_not-the-right-token-000000")
    served.orders.clear()
    served.fulfillment_orders.clear()
    served.fulfillments.clear()
    served.levels.clear()
    served.skus.clear()
    served.cancelled.clear()
    served.customers.clear()
    served.metafields.clear()
    served.requests.clear()
    served.throttled = 0
    return served


def sink(shop: FakeShopify, **options: Any) -> ShopifyAdmin:
    values = {
        "shop_domain": shop.shop_domain,
        "access_token": "env:SHOP_ADMIN_TOKEN",
        "location_id": shop.location_id,
        "base_url": shop.base,
        "refs_from": "shop",  # the webhook connection the orders came in through
        **options,
    }
    return ShopifyAdmin("shop-admin", ShopifyAdminOptions.model_validate(values))


def delivery(data: Any, event_id: str = "evt-1", route: str = "shop-out") -> Delivery:
    return Delivery(event_id, "hub.order.upserted", "ord_1", "corr-1", {}, data, route=route)


def canonical_order(status: str, tags: list[str] | None = None) -> dict[str, Any]:
    return {
        "id": "ord_1",
        "external_refs": [{"system": "erp", "id": "7"}, {"system": "shop", "id": "450789469"}],
        "number": "#1001",
        "status": status,
        "currency": "EUR",
        "created_at": "2026-11-22T10:15:00Z",
        "lines": [
            {"line_id": "1", "name": "Mug", "quantity": "3", "unit_price": "4.5", "total": "13.5"}
        ],
        "subtotal": "13.50",
        "total": "13.50",
        "tags": tags or [],
    }


def mapped(name: str, data: dict[str, Any]) -> Any:
    """The outbound mapping's output, as the delivery worker hands it to the sink."""
    mapping = load_mappings(MAPPINGS).get(name)
    assert mapping is not None
    meta = {"connection": "shop-admin", "destination_system": "shopify", "event_id": "evt-1"}
    return mapping.apply(data, meta, DeterministicResolver())


async def test_a_shipped_order_becomes_one_fulfilment_with_its_tracking_number(
    shop: FakeShopify,
) -> None:
    shop.add_order(450789469, [1, 2])
    document = mapped(
        "shopify/order_to_fulfillment",
        canonical_order("fulfilled", ["tracking:1Z999AA10123456784"]),
    )
    writer = sink(shop)
    await writer.deliver(delivery(document))
    await writer.deliver(delivery(document))  # redelivered: no second fulfilment
    await writer.close()
    (fulfilment,) = shop.fulfillments
    assert fulfilment["order_id"] == 450789469
    assert fulfilment["tracking_number"] == "1Z999AA10123456784"
    assert fulfilment["notify_customer"] is False
    assert [fo["status"] for fo in shop.fulfillment_orders.values()] == ["closed"]


async def test_a_second_shipment_with_another_number_finds_nothing_left_to_fulfil(
    shop: FakeShopify,
) -> None:
    shop.add_order(450789469, [1])
    writer = sink(shop)
    for number in ("A-1", "B-2"):
        doc = {
            "fulfillment": {
                "order_refs": [{"system": "shop", "id": "450789469"}],
                "tracking_numbers": [number],
            }
        }
        await writer.deliver(delivery(doc, f"evt-{number}"))
    await writer.close()
    assert [f["tracking_number"] for f in shop.fulfillments] == ["A-1"]


async def test_inventory_level_is_set_at_the_connections_location(shop: FakeShopify) -> None:
    shop.add_item(808950810, 3)
    level = {
        "id": "inv_1",
        "external_refs": [{"system": "shop", "id": "808950810"}],
        "product_id": "prd_1",
        "location": "WH",
        "on_hand": "10",
        "available": "8",
    }
    writer = sink(shop)
    await writer.deliver(delivery(mapped("shopify/inventory_to_level", level)))
    await writer.close()
    assert shop.levels == {(shop.location_id, 808950810): 8}


async def test_an_inventory_item_is_found_by_its_sku_when_the_shop_has_no_ref(
    shop: FakeShopify,
) -> None:
    """Stock polled from the ERP carries the ERP's refs and the SKU, not the shop's item id."""
    shop.add_item(808950810, 3, sku='MUG-"1"')
    shop.add_item(808950811, 4, sku="MUG-10")
    level = {
        "id": "inv_1",
        "external_refs": [{"system": "erp", "id": "WH/5"}],
        "product_id": "prd_1",
        "sku": 'MUG-"1"',
        "location": "WH",
        "on_hand": "10",
    }
    writer = sink(shop)
    await writer.deliver(delivery(mapped("shopify/inventory_to_level", level)))
    await writer.deliver(delivery(mapped("shopify/inventory_to_level", level), "evt-2"))
    await writer.close()
    assert shop.levels == {(shop.location_id, 808950810): 10, (shop.location_id, 808950811): 4}
    assert sent_graphql(shop) == 1  # the SKU's item is remembered


async def test_a_sku_unknown_to_the_shop_is_refused_naming_it(shop: FakeShopify) -> None:
    doc = {"inventory_level": {"inventory_item_refs": [], "sku": "NOPE-1", "available": 1}}
    writer = sink(shop)
    with pytest.raises(DeliveryRejected, match=r"inventory_level.sku 'NOPE-1' names 0"):
        await writer.deliver(delivery(doc))
    await writer.close()


def sent_graphql(shop: FakeShopify) -> int:
    return shop.requests.count(("POST", "/admin/api/2025-01/graphql.json"))


async def test_an_order_cancelled_elsewhere_is_cancelled_once(shop: FakeShopify) -> None:
    shop.add_order(450789469, [1])
    document = mapped("shopify/order_to_cancel", canonical_order("cancelled"))
    writer = sink(shop)
    await writer.deliver(delivery(document))
    await writer.deliver(delivery(document))  # already cancelled: not sent again (Shopify: 422)
    await writer.close()
    assert shop.cancelled == [450789469]
    assert shop.requests.count(("POST", "/admin/api/2025-01/orders/450789469/cancel.json")) == 1


def golden_customer(golden_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": golden_id,
        "external_refs": [{"system": "shop", "id": "207119551"}, {"system": "crm", "id": "c-9"}],
        **fields,
    }


async def test_a_golden_customer_updates_the_shop_customer_and_its_golden_id_metafield(
    shop: FakeShopify,
) -> None:
    shop.add_customer(207119551, first_name="ANNA", last_name="Muller", email="a@example.com")
    writer = sink(shop)
    anna = golden_customer(
        "cus_1",
        first_name="Anna",
        last_name="Müller",
        email="a@example.com",
        phone="+4915123456789",
    )
    document = mapped("shopify/customer_to_customer", anna)
    await writer.deliver(delivery(document))
    assert {k: shop.customers[207119551][k] for k in ("first_name", "last_name", "phone")} == {
        "first_name": "Anna",
        "last_name": "Müller",
        "phone": "+4915123456789",
    }
    assert shop.metafield(207119551, "hub", "golden_id") == "cus_1"
    # delivered again: the same state, the metafield not written again
    await writer.deliver(delivery(document))
    assert len(shop.metafields[207119551]) == 1
    prefix = "/admin/api/2025-01/customers/207119551"
    assert shop.requests.count(("POST", f"{prefix}/metafields.json")) == 1
    # another golden id (an unmerge): the metafield changes, in place
    await writer.deliver(delivery(mapped("shopify/customer_to_customer", {**anna, "id": "cus_2"})))
    await writer.close()
    assert shop.metafield(207119551, "hub", "golden_id") == "cus_2"
    assert len(shop.metafields[207119551]) == 1
    assert writer.state_of(document) == {
        "customer": {
            "first_name": "Anna",
            "last_name": "Müller",
            "email": "a@example.com",
            "phone": "+4915123456789",
        }
    }


async def test_a_customer_the_shop_refuses_or_does_not_know_is_a_dead_letter(
    shop: FakeShopify,
) -> None:
    shop.add_customer(207119551, first_name="Anna")
    writer = sink(shop)
    bad_phone = mapped("shopify/customer_to_customer", golden_customer("cus_1", phone="0151 23"))
    with pytest.raises(DeliveryRejected, match="phone"):
        await writer.deliver(delivery(bad_phone))
    other = {**golden_customer("cus_1"), "external_refs": [{"system": "crm", "id": "c-9"}]}
    with pytest.raises(DeliveryRejected, match=r"customer\.customer_refs has no id of system"):
        await writer.deliver(delivery(mapped("shopify/customer_to_customer", other)))
    gone = {**golden_customer("cus_1"), "external_refs": [{"system": "shop", "id": "5"}]}
    with pytest.raises(DeliveryRejected, match="404"):
        await writer.deliver(delivery(mapped("shopify/customer_to_customer", gone)))
    await writer.close()
    assert shop.customers[207119551].get("phone") is None


async def test_a_429_is_waited_out_as_retry_after_says(shop: FakeShopify) -> None:
    shop.add_item(808950810, 3)
    shop.throttle(2, retry_after="0.05")
    doc = {
        "inventory_level": {
            "inventory_item_refs": [{"system": "shop", "id": "808950810"}],
            "available": 5,
        }
    }
    writer = sink(shop)
    await writer.deliver(delivery(doc))
    await writer.close()
    assert shop.levels[(shop.location_id, 808950810)] == 5
    assert len(shop.requests) == 3  # two 429s, then the write


async def test_a_long_retry_after_goes_back_to_the_hubs_retry(shop: FakeShopify) -> None:
    shop.add_item(808950810, 3)
    shop.throttle(1, retry_after="30")
    doc = {
        "inventory_level": {
            "inventory_item_refs": [{"system": "shop", "id": "808950810"}],
            "available": 5,
        }
    }
    writer = sink(shop, max_wait_s=1)
    with pytest.raises(DeliveryRetriable) as failed:
        await writer.deliver(delivery(doc))
    await writer.close()
    assert failed.value.retry_after_s == 30
    assert shop.levels[(shop.location_id, 808950810)] == 3


async def test_a_422_is_a_dead_letter_keeping_shopifys_message(shop: FakeShopify) -> None:
    doc = {
        "inventory_level": {
            "inventory_item_refs": [{"system": "shop", "id": "999"}],
            "available": 5,
        }
    }  # not stocked
    writer = sink(shop)
    with pytest.raises(DeliveryRejected) as failed:
        await writer.deliver(delivery(doc))
    await writer.close()
    assert "HTTP 422" in str(failed.value)
    assert "Inventory item is not stocked at location" in str(failed.value)


async def test_an_order_unknown_to_the_shop_is_refused_naming_the_field(shop: FakeShopify) -> None:
    document = mapped(
        "shopify/order_to_fulfillment",
        {**canonical_order("fulfilled"), "external_refs": [{"system": "erp", "id": "7"}]},
    )
    writer = sink(shop)
    with pytest.raises(
        DeliveryRejected, match=r"fulfillment.order_refs has 0 ids of system 'shop'"
    ):
        await writer.deliver(delivery(document))
    await writer.close()
    assert shop.requests == []


async def test_the_fake_refuses_a_body_shopify_would_refuse(shop: FakeShopify) -> None:
    """The fake is strict: an unknown field is a 422 with Shopify's errors shape."""
    from connectors.rest import RestClient

    client = RestClient("shop", f"{shop.base}/admin/api/2025-01/")
    answer = await client.request(
        "POST",
        "inventory_levels/set.json",
        json={"location_id": 1, "inventory_item_id": 2, "available": "5", "extra": 1},
        headers={"x-shopify-access-token": TOKEN},
        allow=(422,),
    )
    await client.close()
    assert answer.status == 422
    assert set(answer.json()["errors"]) == {"available", "extra"}


async def test_check_connection_explains_each_failure(shop: FakeShopify) -> None:
    assert "accepted the token" in await sink(shop).check_connection()
    wrong_token = sink(shop, access_token="env:SHOP_WRONG_TOKEN")
    with pytest.raises(ConnectionCheckFailed, match="refused the access token"):
        await wrong_token.check_connection()
    wrong_version = sink(shop, api_version="2024-07")  # not served here: 404
    with pytest.raises(ConnectionCheckFailed, match="check shop_domain"):
        await wrong_version.check_connection()
    for failing in (wrong_token, wrong_version):
        assert await check_problems(failing, [TOKEN, "shpat_not-the-right-token-000000"]) == []


def test_the_shop_domain_must_be_a_myshopify_domain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOP_ADMIN_TOKEN", TOKEN)
    for domain in ("https://acme.myshopify.com", "acme.com", "acme.myshopify.com/admin"):
        with pytest.raises(ValidationError, match=r"myshopify\.com domain"):
            ShopifyAdminOptions.model_validate(
                {"shop_domain": domain, "access_token": "env:SHOP_ADMIN_TOKEN"}
            )
    options = ShopifyAdminOptions.model_validate(
        {"shop_domain": "Acme.myshopify.com", "access_token": "env:SHOP_ADMIN_TOKEN"}
    )
    assert options.shop_domain == "acme.myshopify.com"


async def test_conformance_one_fulfilment_per_order(shop: FakeShopify) -> None:
    shop.add_order(450789469, [1])
    doc = {
        "fulfillment": {
            "order_refs": [{"system": "shop", "id": "450789469"}],
            "tracking_numbers": ["T-1"],
        }
    }

    async def effects() -> int:
        return len(shop.fulfillments)

    assert await idempotency_problems(sink(shop), delivery(doc), effects, per_object=True) == []
