"""A strict stand-in for Shopify's REST Admin API, served over real HTTP on 127.0.0.1.

It answers only the requests the ``shopify_admin`` sink makes, each checked as Shopify documents
it (https://shopify.dev/docs/api/admin-rest/2025-01/resources/fulfillment,
.../inventorylevel, .../order#post-orders-order-id-cancel, .../shop, .../customer#put-customers-
customer-id, .../metafield for a customer's metafields): the method, the path and
its API version, ``X-Shopify-Access-Token``, the JSON content type of a body and the body's
shape (pydantic models that refuse unknown fields). A request that is not right is answered as
Shopify answers it: 401 ``{"errors": "[API] Invalid API key or access token ..."}``, 404
``{"errors": "Not Found"}``, 415, or 422 ``{"errors": {...}}``. Every leaky-bucket answer
carries ``X-Shopify-Shop-Api-Call-Limit``; ``throttle(n)`` makes the next n requests 429 with
``Retry-After``.

Tests assert on the fake's state afterwards (``fulfillments``, ``levels``, ``cancelled``,
``customers`` with their ``metafields``), not on logs. :meth:`FakeShopify.customer_webhook` is
the ``customers/update`` webhook Shopify sends after a customer changes (the echo of a write).
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.threaded import serve

API_VERSION = "2025-01"
TOKEN = "shpat_0123456789abcdef0123456789abcdef"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class FulfillmentOrderLineItem(_Strict):
    id: int
    quantity: int = Field(gt=0)


class LineItemsByFulfillmentOrder(_Strict):
    fulfillment_order_id: int
    fulfillment_order_line_items: list[FulfillmentOrderLineItem] | None = None


class TrackingInfo(_Strict):
    number: str | None = None
    company: str | None = None
    url: str | None = None


class FulfillmentCreate(_Strict):
    line_items_by_fulfillment_order: list[LineItemsByFulfillmentOrder] = Field(min_length=1)
    tracking_info: TrackingInfo | None = None
    notify_customer: bool | None = None
    message: str | None = None
    origin_address: dict[str, str] | None = None


class FulfillmentBody(_Strict):
    fulfillment: FulfillmentCreate


class InventoryLevelSet(_Strict):
    location_id: int
    inventory_item_id: int
    available: int
    disconnect_if_necessary: bool | None = None


class GraphQLRequest(_Strict):
    query: str = Field(min_length=1)
    variables: dict[str, Any] | None = None
    operationName: str | None = None  # GraphQL over HTTP names it so


ITEMS_QUERY = re.compile(
    r"^query \(\$q: String!\) \{ inventoryItems\(first: (\d+), query: \$q\) "
    r"\{ edges \{ node \{ id sku \} \} \} \}$"
)
SKU_FILTER = re.compile(r'^sku:"((?:[^"\\]|\\.)*)"$')


E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
MetafieldType = Literal["single_line_text_field", "multi_line_text_field", "number_integer", "json"]


class CustomerUpdate(_Strict):
    """PUT customers/{id}.json: the writable fields the sink sends (Shopify's customer resource
    has more; the fake refuses what the sink has no business sending)."""

    id: int
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    phone: str | None = None
    note: str | None = None
    tags: str | None = None


class CustomerBody(_Strict):
    customer: CustomerUpdate


class MetafieldCreate(_Strict):
    namespace: str = Field(min_length=3, max_length=255)
    key: str = Field(min_length=3, max_length=64, pattern=r"^[a-zA-Z0-9_-]+$")
    value: str
    type: MetafieldType


class MetafieldCreateBody(_Strict):
    metafield: MetafieldCreate


class MetafieldUpdate(_Strict):
    id: int
    value: str
    type: MetafieldType | None = None


class MetafieldUpdateBody(_Strict):
    metafield: MetafieldUpdate


class OrderCancel(_Strict):
    reason: Literal["customer", "inventory", "fraud", "declined", "other"] | None = None
    email: bool | None = None
    restock: bool | None = None
    amount: str | None = None
    currency: str | None = None


@dataclass
class Order:
    id: int
    line_items: list[dict[str, Any]]  # {id, quantity}
    cancelled_at: str | None = None


@dataclass
class FakeShopify:
    """The shop's state and what it was sent."""

    base: str = ""
    shop_domain: str = "acme.myshopify.com"
    location_id: int = 655441491
    orders: dict[int, Order] = field(default_factory=dict)
    fulfillment_orders: dict[int, dict[str, Any]] = field(default_factory=dict)
    fulfillments: list[dict[str, Any]] = field(default_factory=list)
    levels: dict[tuple[int, int], int] = field(default_factory=dict)  # (location, item) -> n
    skus: dict[int, str] = field(default_factory=dict)  # inventory item -> its variant's SKU
    cancelled: list[int] = field(default_factory=list)
    customers: dict[int, dict[str, Any]] = field(default_factory=dict)
    metafields: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # customer -> its
    requests: list[tuple[str, str]] = field(default_factory=list)
    throttled: int = 0
    retry_after: str = "2.0"
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1_000_000))

    def add_order(self, order_id: int, quantities: list[int]) -> Order:
        """An order with one open fulfilment order holding its lines."""
        lines = [{"id": next(self._ids), "quantity": q} for q in quantities]
        order = Order(order_id, lines)
        self.orders[order_id] = order
        fo_id = next(self._ids)
        self.fulfillment_orders[fo_id] = {
            "id": fo_id,
            "order_id": order_id,
            "status": "open",
            "assigned_location_id": self.location_id,
            "supported_actions": ["create_fulfillment"],
            "line_items": [
                {
                    "id": next(self._ids),
                    "shop_id": 548380009,
                    "fulfillment_order_id": fo_id,
                    "line_item_id": line["id"],
                    "inventory_item_id": next(self._ids),
                    "quantity": line["quantity"],
                    "fulfillable_quantity": line["quantity"],
                }
                for line in lines
            ],
        }
        return order

    def add_item(self, item_id: int, available: int, sku: str | None = None) -> None:
        self.levels[(self.location_id, item_id)] = available
        if sku is not None:
            self.skus[item_id] = sku

    def add_customer(self, customer_id: int, **fields: Any) -> dict[str, Any]:
        """A customer as the shop holds it (first_name, last_name, email, phone...)."""
        stamp = "2025-01-01T12:00:00-05:00"
        customer = {"id": customer_id, "created_at": stamp, "updated_at": stamp, **fields}
        self.customers[customer_id] = customer
        self.metafields.setdefault(customer_id, [])
        return customer

    def metafield(self, customer_id: int, namespace: str, key: str) -> str | None:
        """The value of a customer's metafield (None: it has none)."""
        for m in self.metafields.get(customer_id, []):
            if (m["namespace"], m["key"]) == (namespace, key):
                return str(m["value"])
        return None

    def customer_webhook(self, customer_id: int) -> dict[str, Any]:
        """The body of the ``customers/update`` webhook Shopify sends for this customer now
        (its documented payload's fields the fake keeps; metafields are not in it)."""
        customer = self.customers[customer_id]
        return {
            "id": customer_id,
            "email": customer.get("email"),
            "first_name": customer.get("first_name"),
            "last_name": customer.get("last_name"),
            "phone": customer.get("phone"),
            "note": customer.get("note"),
            "tags": customer.get("tags") or "",
            "state": "enabled",
            "verified_email": True,
            "currency": "EUR",
            "created_at": customer["created_at"],
            "updated_at": customer["updated_at"],
            "addresses": customer.get("addresses") or [],
            "admin_graphql_api_id": f"gid://shopify/Customer/{customer_id}",
        }

    def throttle(self, times: int, retry_after: str = "2.0") -> None:
        self.throttled, self.retry_after = times, retry_after


def _errors(status: int, errors: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"errors": errors}, status, headers=headers)


def app(shop: FakeShopify, token: str = TOKEN) -> Starlette:
    prefix = f"/admin/api/{API_VERSION}"

    def guard(request: Request, body_expected: bool) -> Response | None:
        shop.requests.append((request.method, request.url.path))
        if request.headers.get("x-shopify-access-token") != token:
            return _errors(
                401, "[API] Invalid API key or access token (unrecognized login or wrong password)"
            )
        if shop.throttled > 0:
            shop.throttled -= 1
            return _errors(
                429,
                "Exceeded 2 calls per second for api client. Reduce request rates to resume "
                "uninterrupted service.",
                {"retry-after": shop.retry_after},
            )
        if body_expected and request.headers.get("content-type", "").split(";")[0] != (
            "application/json"
        ):
            return _errors(415, "Content-Type must be application/json")
        return None

    def limited(body: Any, status: int = 200) -> JSONResponse:
        return JSONResponse(body, status, headers={"x-shopify-shop-api-call-limit": "1/40"})

    async def parsed(request: Request, model: type[BaseModel]) -> BaseModel | JSONResponse:
        try:
            raw = json.loads(await request.body())
            return model.model_validate(raw)
        except json.JSONDecodeError:
            return _errors(400, "body is not JSON")
        except ValidationError as exc:
            problems: dict[str, list[str]] = {}
            for error in exc.errors():
                where = ".".join(str(p) for p in error["loc"]) or "base"
                problems.setdefault(where, []).append(error["msg"])
            return _errors(422, problems)

    def order_of(request: Request) -> Order | None:
        raw = request.path_params["order_id"]
        return shop.orders.get(int(raw)) if raw.isdigit() else None

    async def shop_json(request: Request) -> Response:
        return guard(request, False) or limited(
            {"shop": {"id": 548380009, "name": "Acme", "myshopify_domain": shop.shop_domain}}
        )

    async def get_order(request: Request) -> Response:
        if (refused := guard(request, False)) is not None:
            return refused
        order = order_of(request)
        if order is None:
            return _errors(404, "Not Found")
        return limited({"order": {"id": order.id, "cancelled_at": order.cancelled_at}})

    async def fulfillment_orders(request: Request) -> Response:
        if (refused := guard(request, False)) is not None:
            return refused
        order = order_of(request)
        if order is None:
            return _errors(404, "Not Found")
        found = [fo for fo in shop.fulfillment_orders.values() if fo["order_id"] == order.id]
        return limited({"fulfillment_orders": found})

    async def order_fulfillments(request: Request) -> Response:
        if (refused := guard(request, False)) is not None:
            return refused
        order = order_of(request)
        if order is None:
            return _errors(404, "Not Found")
        return limited(
            {"fulfillments": [f for f in shop.fulfillments if f["order_id"] == order.id]}
        )

    async def create_fulfillment(request: Request) -> Response:
        if (refused := guard(request, True)) is not None:
            return refused
        body = await parsed(request, FulfillmentBody)
        if isinstance(body, JSONResponse):
            return body
        assert isinstance(body, FulfillmentBody)
        create = body.fulfillment
        fos = []
        for pair in create.line_items_by_fulfillment_order:
            fo = shop.fulfillment_orders.get(pair.fulfillment_order_id)
            if fo is None:
                return _errors(404, "Not Found")
            if fo["status"] not in ("open", "in_progress"):
                return _errors(
                    422,
                    {
                        "base": [
                            f"Fulfillment order {fo['id']} has an unfulfillable status= closed."
                        ]
                    },
                )
            fos.append(fo)
        if len({fo["order_id"] for fo in fos}) != 1:
            return _errors(422, {"base": ["Fulfillment orders must belong to the same order."]})
        tracking = create.tracking_info or TrackingInfo()
        fulfillment = {
            "id": next(shop._ids),
            "order_id": fos[0]["order_id"],
            "status": "success",
            "location_id": fos[0]["assigned_location_id"],
            "tracking_company": tracking.company,
            "tracking_number": tracking.number,
            "tracking_numbers": [tracking.number] if tracking.number else [],
            "tracking_url": tracking.url,
            "tracking_urls": [tracking.url] if tracking.url else [],
            "notify_customer": bool(create.notify_customer),
            "line_items": [li for fo in fos for li in fo["line_items"]],
        }
        for fo in fos:
            fo["status"] = "closed"
        shop.fulfillments.append(fulfillment)
        return limited({"fulfillment": fulfillment}, 201)

    async def set_level(request: Request) -> Response:
        if (refused := guard(request, True)) is not None:
            return refused
        body = await parsed(request, InventoryLevelSet)
        if isinstance(body, JSONResponse):
            return body
        assert isinstance(body, InventoryLevelSet)
        key = (body.location_id, body.inventory_item_id)
        if body.location_id != shop.location_id or key not in shop.levels:
            return _errors(
                422, {"inventory_item_id": ["Inventory item is not stocked at location"]}
            )
        shop.levels[key] = body.available
        return limited(
            {
                "inventory_level": {
                    "inventory_item_id": body.inventory_item_id,
                    "location_id": body.location_id,
                    "available": body.available,
                    "updated_at": "2025-01-01T12:00:00-05:00",
                    "admin_graphql_api_id": (
                        f"gid://shopify/InventoryLevel/{body.location_id}"
                        f"?inventory_item_id={body.inventory_item_id}"
                    ),
                }
            }
        )

    async def cancel(request: Request) -> Response:
        if (refused := guard(request, True)) is not None:
            return refused
        body = await parsed(request, OrderCancel)
        if isinstance(body, JSONResponse):
            return body
        order = order_of(request)
        if order is None:
            return _errors(404, "Not Found")
        if order.cancelled_at is not None:
            return _errors(422, {"base": ["Order has already been cancelled"]})
        order.cancelled_at = "2025-01-01T12:00:00-05:00"
        shop.cancelled.append(order.id)
        return limited({"order": {"id": order.id, "cancelled_at": order.cancelled_at}})

    def customer_of(request: Request) -> dict[str, Any] | None:
        raw = request.path_params["customer_id"]
        return shop.customers.get(int(raw)) if raw.isdigit() else None

    async def update_customer(request: Request) -> Response:
        if (refused := guard(request, True)) is not None:
            return refused
        body = await parsed(request, CustomerBody)
        if isinstance(body, JSONResponse):
            return body
        assert isinstance(body, CustomerBody)
        customer = customer_of(request)
        if customer is None:
            return _errors(404, "Not Found")
        if body.customer.id != customer["id"]:
            return _errors(422, {"id": ["does not match the customer in the path"]})
        update = body.customer.model_dump(exclude_unset=True, exclude={"id"})
        problems: dict[str, list[str]] = {}
        phone = update.get("phone")
        if phone and not E164.match(phone):
            problems["phone"] = ["is invalid"]
        email = update.get("email")
        if email and ("@" not in email or email != email.strip()):
            problems["email"] = ["is invalid"]
        for other in shop.customers.values():
            if other["id"] == customer["id"]:
                continue
            if email and str(other.get("email") or "").lower() == email.lower():
                problems.setdefault("email", []).append("has already been taken")
            if phone and other.get("phone") == phone:
                problems.setdefault("phone", []).append("has already been taken")
        if problems:
            return _errors(422, problems)
        customer.update(update)
        customer["updated_at"] = f"2025-01-01T12:{len(shop.requests) % 60:02d}:00-05:00"
        return limited({"customer": customer})

    async def customer_metafields(request: Request) -> Response:
        if (refused := guard(request, False)) is not None:
            return refused
        customer = customer_of(request)
        if customer is None:
            return _errors(404, "Not Found")
        q = request.query_params
        found = [
            m
            for m in shop.metafields[customer["id"]]
            if q.get("namespace") in (None, m["namespace"]) and q.get("key") in (None, m["key"])
        ]
        return limited({"metafields": found})

    async def create_metafield(request: Request) -> Response:
        if (refused := guard(request, True)) is not None:
            return refused
        body = await parsed(request, MetafieldCreateBody)
        if isinstance(body, JSONResponse):
            return body
        assert isinstance(body, MetafieldCreateBody)
        customer = customer_of(request)
        if customer is None:
            return _errors(404, "Not Found")
        mine = shop.metafields[customer["id"]]
        new = body.metafield
        if any((m["namespace"], m["key"]) == (new.namespace, new.key) for m in mine):
            return _errors(422, {"key": ["must be unique within this namespace on this resource"]})
        metafield = {
            "id": next(shop._ids),
            "namespace": new.namespace,
            "key": new.key,
            "value": new.value,
            "type": new.type,
            "owner_id": customer["id"],
            "owner_resource": "customer",
        }
        mine.append(metafield)
        return limited({"metafield": metafield}, 201)

    async def update_metafield(request: Request) -> Response:
        if (refused := guard(request, True)) is not None:
            return refused
        body = await parsed(request, MetafieldUpdateBody)
        if isinstance(body, JSONResponse):
            return body
        assert isinstance(body, MetafieldUpdateBody)
        customer = customer_of(request)
        raw = request.path_params["metafield_id"]
        found = [
            m
            for m in (shop.metafields.get(customer["id"], []) if customer else [])
            if raw.isdigit() and m["id"] == int(raw)
        ]
        if not found or body.metafield.id != found[0]["id"]:
            return _errors(404, "Not Found")
        found[0]["value"] = body.metafield.value
        return limited({"metafield": found[0]})

    async def graphql(request: Request) -> Response:
        """Only the inventoryItems query by SKU; GraphQL errors come with HTTP 200, as
        Shopify sends them."""
        if (refused := guard(request, True)) is not None:
            return refused
        body = await parsed(request, GraphQLRequest)
        if isinstance(body, JSONResponse):
            return body
        assert isinstance(body, GraphQLRequest)
        query = " ".join(body.query.split())
        wanted = SKU_FILTER.match(str((body.variables or {}).get("q", "")))
        matched = ITEMS_QUERY.match(query)
        if matched is None or wanted is None:
            return JSONResponse({"errors": [{"message": f"the fake does not answer {query!r}"}]})
        sku = re.sub(r"\\(.)", r"\1", wanted.group(1))
        edges = [
            {"node": {"id": f"gid://shopify/InventoryItem/{item}", "sku": item_sku}}
            for item, item_sku in shop.skus.items()
            if item_sku == sku
        ][: int(matched.group(1))]
        return limited({"data": {"inventoryItems": {"edges": edges}}})

    async def not_found(request: Request) -> Response:
        shop.requests.append((request.method, request.url.path))
        return _errors(404, "Not Found")

    return Starlette(
        routes=[
            Route(f"{prefix}/shop.json", shop_json, methods=["GET"]),
            Route(f"{prefix}/orders/{{order_id}}.json", get_order, methods=["GET"]),
            Route(
                f"{prefix}/orders/{{order_id}}/fulfillment_orders.json",
                fulfillment_orders,
                methods=["GET"],
            ),
            Route(
                f"{prefix}/orders/{{order_id}}/fulfillments.json",
                order_fulfillments,
                methods=["GET"],
            ),
            Route(f"{prefix}/fulfillments.json", create_fulfillment, methods=["POST"]),
            Route(f"{prefix}/inventory_levels/set.json", set_level, methods=["POST"]),
            Route(f"{prefix}/orders/{{order_id}}/cancel.json", cancel, methods=["POST"]),
            Route(f"{prefix}/graphql.json", graphql, methods=["POST"]),
            Route(f"{prefix}/customers/{{customer_id}}.json", update_customer, methods=["PUT"]),
            Route(
                f"{prefix}/customers/{{customer_id}}/metafields.json",
                customer_metafields,
                methods=["GET"],
            ),
            Route(
                f"{prefix}/customers/{{customer_id}}/metafields.json",
                create_metafield,
                methods=["POST"],
            ),
            Route(
                f"{prefix}/customers/{{customer_id}}/metafields/{{metafield_id}}.json",
                update_metafield,
                methods=["PUT"],
            ),
            Route("/{path:path}", not_found, methods=["GET", "POST", "PUT", "DELETE", "HEAD"]),
        ]
    )


def admin_connection(shop: FakeShopify) -> str:
    """hub.yaml lines (under ``connections:``) of the ``shopify_admin`` connection `shop-admin`
    to ``shop`` (its token read from TEST_SHOPIFY_ADMIN_TOKEN)."""
    return f"""\
  shop-admin:
    connector: shopify_admin
    options:
      shop_domain: {shop.shop_domain}
      access_token: env:TEST_SHOPIFY_ADMIN_TOKEN
      location_id: {shop.location_id}
      base_url: {shop.base}
"""


@contextmanager
def fake_shopify(token: str = TOKEN) -> Iterator[FakeShopify]:
    """A fake shop served on 127.0.0.1 until the block ends; ``.base`` is its URL."""
    shop = FakeShopify()
    with serve(app(shop, token), lifespan="off") as base:
        shop.base = base
        yield shop
