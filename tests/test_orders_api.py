"""``GET /api/orders/{ref}`` (hub/api/orders.py, hub/journal.py) on a whole hub over HTTP: a
signed Shopify order, mapped, delivered to an ERP that answers its sale's id and refused by a
warehouse system; the order is found by any of its ids or its number, with its steps in time
order and its dead letter; by its customer's e-mail; behind the ops auth."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from hub.mdm import DeterministicResolver
from hub.runtime import Hub

from .support.harness import ORDER_BODY, SHOP_CONFIG, HubFactory, post, shopify_headers, until
from .support.threaded import serve

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
SHOP_ORDER_ID = "820982911946154508"
TOKEN = "orders-api-token-0123456789"


@pytest.fixture
def systems() -> Iterator[str]:
    """An ERP that answers a sale's id, and a warehouse system that refuses every order."""

    async def sale(request: Request) -> JSONResponse:
        await request.body()
        return JSONResponse({"id": "SO-17"}, 201)

    async def refuse(request: Request) -> JSONResponse:
        await request.body()
        return JSONResponse({"error": "unknown carrier"}, 422)

    app = Starlette(
        routes=[Route("/sales", sale, methods=["POST"]), Route("/wms", refuse, methods=["POST"])]
    )
    with serve(app, lifespan="off") as base:
        yield base


def hub_yaml(base: str) -> str:
    return (
        SHOP_CONFIG
        + f"""\
  erp:
    connector: http
    system: acme-erp
    options: {{url: {base}/sales, result_id: /id}}
  wms:
    connector: http
    options: {{url: {base}/wms}}
routes:
  - {{name: shop-orders-in, from: shop, mapping: shopify/orders_create}}
  - {{name: orders-to-erp, from: canonical.order, to: erp}}
  - {{name: orders-to-wms, from: canonical.order, to: wms}}
"""
    )


async def get(hub: Hub, path: str, token: str | None = TOKEN, **params: Any) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=hub.base_url, timeout=30) as client:
        return await client.get(path, headers=headers, params=params)


async def test_an_order_is_followed_by_any_of_its_ids(hubs: HubFactory, systems: str) -> None:
    hub = await hubs.start(config=hub_yaml(systems), ops_token=TOKEN)
    response = await post(hub, ORDER_BODY, shopify_headers(ORDER_BODY, "delivery-1"))
    assert response.status_code == 202, response.text
    golden = DeterministicResolver().golden_id("order", "shopify", SHOP_ORDER_ID)

    async def journey() -> dict[str, Any] | None:
        answer = await get(hub, f"/api/orders/{SHOP_ORDER_ID}")
        if answer.status_code != 200:
            return None
        body: dict[str, Any] = answer.json()
        steps = [e["step"] for e in body["events"]]
        return body if "delivered" in steps and "dead_letter" in steps else None

    await until(journey)
    order = await journey()
    assert order is not None
    assert (order["golden_id"], order["number"], order["status"]) == (golden, "#9999", "paid")
    assert order["email"] == "john@example.com"
    assert {(i["system"], i["id"]) for i in order["ids"]} == {
        ("shopify", SHOP_ORDER_ID),  # the id it came in under, in the shop connection's system
        ("acme-erp", "SO-17"),  # the id the ERP reported (linked in the crosswalk)
    }
    events = order["events"]
    assert [e["at"] for e in events] == sorted(e["at"] for e in events)
    received, mapped, delivered, dead = (
        next(e for e in events if e["step"] == step)
        for step in ("received", "mapped", "delivered", "dead_letter")
    )
    assert (received["connection"], received["id"]) == ("shop", SHOP_ORDER_ID)
    assert (mapped["route"], mapped["status"]) == ("shop-orders-in", "paid")
    assert (delivered["connection"], delivered["system"], delivered["id"]) == (
        "erp",
        "acme-erp",
        "SO-17",
    )
    assert delivered["summary"] == "delivered to erp (acme-erp) by route orders-to-erp as SO-17"
    assert received["at"] <= mapped["at"] <= delivered["at"]
    [letter] = order["dead_letters"]
    assert letter["destination"] == "wms" and "unknown carrier" in letter["error"]
    assert dead["dead_letter"] == letter["href"] == f"/api/deadletters/{letter['id']}"
    assert (await get(hub, letter["href"])).status_code == 200

    # the same answer by the golden id, the ERP's id and the number (#: URL-encoded)
    for ref in (golden, "SO-17", quote("#9999", safe="")):
        again = await get(hub, f"/api/orders/{ref}")
        assert again.status_code == 200, again.text
        assert again.json()["golden_id"] == golden

    # Shopify delivering the webhook again adds no step
    await post(hub, ORDER_BODY, shopify_headers(ORDER_BODY, "delivery-1"))
    assert len((await get(hub, f"/api/orders/{golden}")).json()["events"]) == len(events)

    found = await get(hub, "/api/orders", email="John@Example.com")
    assert found.status_code == 200, found.text
    assert [(o["golden_id"], o["number"]) for o in found.json()["items"]] == [(golden, "#9999")]


async def test_unknown_hostile_and_unauthenticated_asks(hubs: HubFactory, systems: str) -> None:
    hub = await hubs.start(config=hub_yaml(systems), ops_token=TOKEN)
    unknown = await get(hub, "/api/orders/nothing-like-it")
    assert unknown.status_code == 404
    assert unknown.json() == {
        "error": "not_found",
        "message": "no order is known as 'nothing-like-it'",
    }
    assert (await get(hub, "/api/orders/ord_1", token=None)).status_code == 401
    assert (await get(hub, "/api/orders/ord_1", token="wrong-token-0123456789")).status_code == 401
    for hostile in ("%00", "x" * 300, quote("' OR 1=1 --", safe="")):
        answer = await get(hub, f"/api/orders/{hostile}")
        assert answer.status_code in (404, 422), answer.text
    assert (await get(hub, "/api/orders", email="a\x00b")).status_code == 422
    assert (await get(hub, "/api/orders")).status_code == 422  # no e-mail
    spec = (await get(hub, "/openapi.json")).json()
    assert {"/api/orders/{ref}", "/api/orders"} <= set(spec["paths"])
