"""Shopify Admin API: the hub writing back to a shop (fulfilments, inventory levels, cancels).

A connector of its own, not the webhook source (:mod:`connectors.shopify`): the source needs
the app's client secret and writes nothing, the sink needs an Admin API access token and the
shop's location; one connection per role keeps each one's credentials and checks apart.

Speaks the REST Admin API at a pinned version (``2025-01`` by default) in the path:
``https://{shop}.myshopify.com/admin/api/{version}/...`` with ``X-Shopify-Access-Token``. REST
is a legacy API since 2024-10-01 and new *public* apps must use GraphQL from 2025-04-01; the
endpoints used here (fulfilment-order based fulfilments, ``inventory_levels/set``, order
cancel) are still served for custom apps at 2025-01, and each is one documented request that a
local fake can check exactly. See docs/connectors/shopify.md.

The sink is given the output of an outbound mapping (``mappings/shopify/``), one of::

    {fulfillment: {order_id: "450789469", order_refs: [{system: shopify, id: "450789469"}],
                   tracking_numbers: ["1Z..."], tracking_company: UPS, tracking_url: ...,
                   notify_customer: false}}
    {inventory_level: {inventory_item_refs: [{system: shopify, id: "808950810"}], sku: MUG-1,
                       available: 7}}
    {cancel: {order_id: "450789469", order_refs: [...], reason: other, email: false}}
    {customer: {customer_id: "207119551", customer_refs: [...], first_name, last_name, email,
                phone, golden_id: "cus_..."}}

The Shopify id is the document's ``order_id`` (``inventory_item_id``) where the mapping gives
one: ``external_id('order', meta.destination_system, id)``, the crosswalk's link of the order
to the shop's id, which the hub made when the order came in from the shop, so an order polled
back from the ERP is fulfilled in the right Shopify order. Otherwise the refs, the canonical
object's ``external_refs``: the one entry whose system is ``refs_from`` (by default this
connection's system, ``shopify`` unless hub.yaml says otherwise: the system of the ``shopify``
webhook connection the orders come in through). An inventory level without either is set on
the item found by the document's ``sku`` (GraphQL ``inventoryItems``: REST has no SKU search).

A customer document updates an existing shop customer (never creates one: the shop's
customers sign up in the shop): ``PUT customers/{id}.json`` with the fields it gives, and its
``golden_id`` as the customer's metafield ``hub.golden_id`` (read first, then created or
changed: the metafield's own endpoints, as Shopify documents for a resource's metafields). It
is how the shop follows a steward's merge or unmerge (docs/mdm.md).

Every write is idempotent: a fulfilment is not created when the order already has one with the
same tracking number or has no open fulfilment order left; an order already cancelled is not
cancelled again; setting an inventory level or a customer's fields is idempotent by nature, and
the golden-id metafield is written only when it differs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Mapping
from typing import Any

from pydantic import Field, HttpUrl, field_validator

from hub.errors import (
    ConnectionCheckFailed,
    RequestFailed,
    RequestRefused,
    RequestRetriable,
    delivery_failed,
)

from .auth import HeaderAuth
from .base import ConnectorOptions, Delivery, DeliveryResult, Secret, Sink
from .registry import register
from .rest import Response, RestClient

log = logging.getLogger(__name__)

SHOP_DOMAIN = re.compile(r"^[a-z0-9][a-z0-9-]{0,61}\.myshopify\.com$")
API_VERSION = re.compile(r"^(20[0-9]{2}-(01|04|07|10)|unstable)$")
OPEN_STATUSES = ("open", "in_progress")  # fulfilment orders that can still be fulfilled
CANCEL_REASONS = ("customer", "inventory", "fraud", "declined", "other")
CUSTOMER_FIELDS = ("first_name", "last_name", "email", "phone")
"""What a customer document writes; Shopify's ``customers/update`` webhook reports all four."""
METAFIELD_NAMESPACE, METAFIELD_KEY = "hub", "golden_id"
ITEM_BY_SKU = (
    "query ($q: String!) { inventoryItems(first: 2, query: $q) { edges { node { id sku } } } }"
)
"""The inventory items of a SKU (GraphQL: REST has no SKU search); two, to see an ambiguous one."""


class BadDocument(RequestRefused):
    """The mapped document cannot be sent: names the field and what is wrong."""


class ShopifyAdminOptions(ConnectorOptions):
    shop_domain: str = Field(
        description="The shop's myshopify.com domain (not a custom domain).",
        examples=["acme.myshopify.com"],
    )
    access_token: Secret = Field(
        description="Admin API access token of the shop's custom app (env:NAME or file:PATH); "
        "scopes write_fulfillments (or write_merchant_managed_fulfillment_orders), "
        "write_inventory, write_orders (write_customers for customers)."
    )
    api_version: str = Field(
        "2025-01",
        description="Admin API version, in every request's path (YYYY-MM of a release).",
        examples=["2025-01"],
    )
    location_id: int | None = Field(
        None,
        gt=0,
        description="Shopify location whose inventory levels are set (needed for inventory).",
        examples=[655441491],
    )
    notify_customer: bool = Field(
        False, description="Default of a fulfilment's notify_customer (Shopify emails them)."
    )
    max_wait_s: float = Field(
        10.0,
        ge=0,
        description="A 429 asking to wait at most this long is waited out and the request sent "
        "again; a longer wait goes back to the hub's retry policy.",
    )
    max_429_retries: int = Field(
        3, ge=0, le=20, description="429s waited out in a row before the hub's retry takes over."
    )
    bucket_margin: int = Field(
        4,
        ge=0,
        description="Requests kept free in Shopify's leaky bucket (X-Shopify-Shop-Api-Call-Limit"
        ", 40 per app and shop, 2 leak per second): nearer the top, the sink slows down.",
    )
    refs_from: str | None = Field(
        None,
        min_length=1,
        description="System whose external_refs entries hold this shop's ids: the system of "
        "the shopify webhook connection orders come in through (default: this connection's "
        "system, shopify unless hub.yaml sets system:).",
        examples=["shopify"],
    )
    base_url: HttpUrl | None = Field(
        None,
        description="Send requests here instead of https://{shop_domain} (a local stand-in "
        "of the Admin API in tests, or a proxy).",
        examples=["http://127.0.0.1:8080"],
    )
    timeout_s: float = Field(10.0, gt=0, description="Timeout of one request.")

    @field_validator("shop_domain")
    @classmethod
    def _shop_domain(cls, value: str) -> str:
        value = value.strip().lower()
        if not SHOP_DOMAIN.match(value):
            raise ValueError(
                "must be the shop's {shop}.myshopify.com domain (as in the admin's URL), "
                "without https:// or a path"
            )
        return value

    @field_validator("api_version")
    @classmethod
    def _api_version(cls, value: str) -> str:
        if not API_VERSION.match(value):
            raise ValueError("must be a Shopify API release, YYYY-01, -04, -07 or -10")
        return value


@register
class ShopifyAdmin(Sink):
    name = "shopify_admin"
    title = "Shopify Admin API"
    description = (
        "Writes back to a Shopify shop through its REST Admin API: fulfilments with tracking, "
        "inventory levels, order cancels and customers' fields, from the documents of "
        "mappings/shopify/."
    )
    Options = ShopifyAdminOptions
    options: ShopifyAdminOptions

    _client: RestClient | None = None
    _items: dict[str, int]  # SKU -> inventory item id, as found in the shop

    def __init__(self, connection: str, options: ConnectorOptions) -> None:
        super().__init__(connection, options)
        self.system = "shopify"  # the shop's system, as its webhook connection's (hub.yaml may say)
        self._items = {}

    def _new_client(self) -> RestClient:
        o = self.options
        base = str(o.base_url) if o.base_url is not None else f"https://{o.shop_domain}"
        return RestClient(
            self.connection,
            f"{base.rstrip('/')}/admin/api/{o.api_version}/",
            auth=HeaderAuth("x-shopify-access-token", o.access_token.get_secret_value()),
            headers={"accept": "application/json"},
            timeout_s=o.timeout_s,
            max_connections=4,  # the leaky bucket allows 2 requests a second anyway
        )

    async def open(self) -> None:
        if self._client is None:
            self._client = self._new_client()
            await self._client.open()

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def check_connection(self) -> str:
        """GET shop.json: the domain serves a shop and the token is accepted; writes nothing."""
        o = self.options
        client = self._new_client()
        try:
            answer = await client.request("GET", "shop.json", allow=(401, 403, 404))
        except RequestFailed as exc:
            raise ConnectionCheckFailed(
                f"{o.shop_domain} cannot be reached: {exc.reason}; check shop_domain and any "
                "proxy (HTTPS_PROXY, NO_PROXY)"
            ) from None
        finally:
            await client.close()
        if answer.status == 401:
            raise ConnectionCheckFailed(
                f"{o.shop_domain} refused the access token (HTTP 401); check access_token: it "
                "must be the Admin API access token of the shop's custom app (shpat_...)"
            )
        if answer.status == 403:
            raise ConnectionCheckFailed(
                f"{o.shop_domain} accepted the token but denied reading the shop (HTTP 403); "
                "give the app the scopes listed in docs/connectors/shopify.md"
            )
        if answer.status == 404:
            raise ConnectionCheckFailed(
                f"{o.shop_domain} has no Admin API {o.api_version} (HTTP 404); check "
                "shop_domain (the {shop}.myshopify.com name) and api_version"
            )
        shop = (answer.json() or {}).get("shop") or {}
        return (
            f"{o.shop_domain}: shop {shop.get('name')!r} (id {shop.get('id')}) accepted the "
            f"token on Admin API {o.api_version}"
        )

    # --- delivery ---------------------------------------------------------------------------

    async def deliver(self, delivery: Delivery) -> DeliveryResult | None:
        await self.open()
        document = delivery.data
        try:
            if not isinstance(document, dict):
                raise self._bad(
                    "(root)", "is not an object: route events through a shopify mapping"
                )
            if "fulfillment" in document:
                await self.fulfil(_obj(document["fulfillment"], "fulfillment", self))
            elif "inventory_level" in document:
                await self.set_inventory(_obj(document["inventory_level"], "inventory_level", self))
            elif "cancel" in document:
                await self.cancel(_obj(document["cancel"], "cancel", self))
            elif "customer" in document:
                await self.update_customer(_obj(document["customer"], "customer", self))
            else:
                raise self._bad(
                    "(root)", "has none of fulfillment, inventory_level, cancel, customer"
                )
        except RequestFailed as exc:
            raise delivery_failed(exc) from None
        return None

    async def fulfil(self, doc: dict[str, Any]) -> None:
        order_id = self._order_id(doc, "fulfillment")
        numbers = [str(n) for n in doc.get("tracking_numbers") or [] if n not in (None, "")]
        number = numbers[0] if numbers else None
        path = {"id": order_id}
        existing = (await self._call("GET", "orders/{id}/fulfillments.json", path)).json()
        for fulfilment in existing.get("fulfillments") or []:
            if fulfilment.get("status") in ("cancelled", "error", "failure"):
                continue
            theirs = fulfilment.get("tracking_numbers") or [fulfilment.get("tracking_number")]
            if number is not None and number in theirs:
                log.info(
                    "%s: order %s already has fulfilment %s", self.connection, order_id, number
                )
                return
        orders = (await self._call("GET", "orders/{id}/fulfillment_orders.json", path)).json()
        open_orders = [
            fo for fo in orders.get("fulfillment_orders") or [] if fo.get("status") in OPEN_STATUSES
        ]
        if not open_orders:
            log.info("%s: order %s has nothing left to fulfil", self.connection, order_id)
            return
        body: dict[str, Any] = {
            "line_items_by_fulfillment_order": [
                {"fulfillment_order_id": fo["id"]} for fo in open_orders
            ],
            "notify_customer": bool(doc.get("notify_customer", self.options.notify_customer)),
        }
        if number is not None:
            tracking: dict[str, Any] = {"number": number}
            for key, field in (("company", "tracking_company"), ("url", "tracking_url")):
                if doc.get(field):
                    tracking[key] = str(doc[field])
            body["tracking_info"] = tracking
        if doc.get("message"):
            body["message"] = str(doc["message"])
        await self._call("POST", "fulfillments.json", json={"fulfillment": body})

    async def set_inventory(self, doc: dict[str, Any]) -> None:
        refs = doc.get("inventory_item_refs")
        sku = doc.get("sku")
        if doc.get("inventory_item_id") not in (None, ""):
            item = self._digits(doc["inventory_item_id"], "inventory_level.inventory_item_id")
        elif sku and not self._ids_in(refs):
            item = await self._item_by_sku(str(sku))
        else:
            item = self._one_id(refs, "inventory_level.inventory_item_refs", "inventory item")
        location = doc.get("location_id") or self.options.location_id
        if location is None:
            raise self._bad(
                "inventory_level.location_id", "is not set: set the connection's location_id"
            )
        available = doc.get("available")
        try:
            quantity = int(str(available).split(".")[0]) if available is not None else None
        except ValueError:
            quantity = None
        if quantity is None or str(available).partition(".")[2].strip("0"):
            raise self._bad("inventory_level.available", f"is not a whole number: {available!r}")
        await self._call(
            "POST",
            "inventory_levels/set.json",
            json={"location_id": int(location), "inventory_item_id": item, "available": quantity},
        )

    async def cancel(self, doc: dict[str, Any]) -> None:
        order_id = self._order_id(doc, "cancel")
        path = {"id": order_id}
        order = (
            await self._call("GET", "orders/{id}.json", path, params={"fields": "id,cancelled_at"})
        ).json()
        if (order.get("order") or {}).get("cancelled_at"):
            log.info("%s: order %s is already cancelled", self.connection, order_id)
            return
        reason = doc.get("reason") or "other"
        if reason not in CANCEL_REASONS:
            raise self._bad(
                "cancel.reason", f"is {reason!r}, not one of {', '.join(CANCEL_REASONS)}"
            )
        body = {"reason": reason, "email": bool(doc.get("email", False))}
        await self._call("POST", "orders/{id}/cancel.json", path, json=body)

    async def update_customer(self, doc: dict[str, Any]) -> None:
        """The shop's customer gets the document's fields and its golden id (a metafield)."""
        if doc.get("customer_id") not in (None, ""):
            customers = [self._digits(doc["customer_id"], "customer.customer_id")]
        else:
            customers = self._all_ids(doc.get("customer_refs"), "customer.customer_refs")
        for customer in customers:
            await self._update_customer(customer, doc)

    async def _update_customer(self, customer: int, doc: dict[str, Any]) -> None:
        path = {"id": customer}
        fields = {f: str(doc[f]) for f in CUSTOMER_FIELDS if doc.get(f) not in (None, "")}
        if fields:
            body = {"customer": {"id": customer, **fields}}
            await self._call("PUT", "customers/{id}.json", path, json=body)
        golden = doc.get("golden_id")
        if golden in (None, ""):
            return
        params = {"namespace": METAFIELD_NAMESPACE, "key": METAFIELD_KEY}
        listed = await self._call("GET", "customers/{id}/metafields.json", path, params=params)
        found = [
            m
            for m in (listed.json() or {}).get("metafields") or []
            if isinstance(m, dict)
            and (m.get("namespace"), m.get("key")) == (METAFIELD_NAMESPACE, METAFIELD_KEY)
        ]
        if found and str(found[0].get("value")) == str(golden):
            return
        if found:
            metafield = {
                "id": found[0]["id"],
                "value": str(golden),
                "type": "single_line_text_field",
            }
            await self._call(
                "PUT",
                "customers/{id}/metafields/{metafield}.json",
                {"id": customer, "metafield": found[0]["id"]},
                json={"metafield": metafield},
            )
            return
        metafield = {**params, "value": str(golden), "type": "single_line_text_field"}
        await self._call(
            "POST", "customers/{id}/metafields.json", path, json={"metafield": metafield}
        )

    def state_of(self, document: Any) -> Any:
        """Of a customer document, the fields Shopify's ``customers/update`` webhook reports
        back (not the ids that find the customer, nor the metafield, not in the webhook)."""
        if isinstance(document, dict) and isinstance(document.get("customer"), dict):
            customer = document["customer"]
            return {"customer": {f: customer.get(f) for f in CUSTOMER_FIELDS}}
        return document

    # --- requests ---------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        path_params: Mapping[str, object] | None = None,
        *,
        params: dict[str, str] | None = None,
        json: Any = None,
    ) -> Response:
        """One request; a 429 asking for a short wait is waited out here (Retry-After exactly),
        a longer one goes back to the hub's retry policy."""
        assert self._client is not None
        kwargs: dict[str, Any] = {"path_params": path_params, "params": params}
        if json is not None:
            kwargs["json"] = json
        for attempt in range(self.options.max_429_retries + 1):
            try:
                answer = await self._client.request(method, path, **kwargs)
            except RequestFailed as exc:
                wait = exc.retry_after_s if exc.retry_after_s is not None else 2.0
                if exc.status != 429 or attempt == self.options.max_429_retries:
                    raise
                if wait > self.options.max_wait_s:
                    raise
                await asyncio.sleep(wait)
                continue
            await self._pace(answer)
            return answer
        raise AssertionError("unreachable")

    async def _pace(self, answer: Response) -> None:
        """Slow down near the top of the leaky bucket: ``X-Shopify-Shop-Api-Call-Limit: 38/40``
        leaks 2 a second (Shopify's REST limit for a standard shop)."""
        used, _, size = (answer.headers.get("x-shopify-shop-api-call-limit") or "").partition("/")
        if not (used.isdigit() and size.isdigit()):
            return
        over = int(used) - (int(size) - self.options.bucket_margin)
        if over > 0:
            await asyncio.sleep(over / 2.0)

    async def _item_by_sku(self, sku: str) -> int:
        """The shop's one inventory item whose variant has exactly this SKU."""
        if sku in self._items:
            return self._items[sku]
        quoted = sku.replace("\\", "\\\\").replace('"', '\\"')
        answer = await self._call(
            "POST",
            "graphql.json",
            json={"query": ITEM_BY_SKU, "variables": {"q": f'sku:"{quoted}"'}},
        )
        body = answer.json()
        errors = body.get("errors") if isinstance(body, dict) else None
        if errors:
            throttled = any(
                (e.get("extensions") or {}).get("code") == "THROTTLED"
                for e in errors
                if isinstance(e, dict)
            )
            kind = RequestRetriable if throttled else RequestRefused
            raise kind(self.connection, f"GraphQL inventoryItems: {_excerpt(errors)}")
        edges = (((body.get("data") or {}).get("inventoryItems") or {}).get("edges")) or []
        ids = [
            e["node"]["id"].rsplit("/", 1)[-1]
            for e in edges
            if isinstance(e, dict) and (e.get("node") or {}).get("sku") == sku
        ]
        if len(ids) != 1 or not ids[0].isdigit():
            raise self._bad(
                "inventory_level.sku",
                f"{sku!r} names {len(ids)} inventory items in the shop, not one: give the "
                "variant this SKU in Shopify, or the item's id to the inventory's external_refs",
            )
        self._items[sku] = int(ids[0])
        return self._items[sku]

    def _order_id(self, doc: dict[str, Any], kind: str) -> int:
        """The Shopify order: the document's ``order_id`` (the crosswalk's, through
        ``external_id()``), else the one entry of its ``order_refs`` of this shop."""
        if doc.get("order_id") not in (None, ""):
            return self._digits(doc["order_id"], f"{kind}.order_id")
        return self._one_id(doc.get("order_refs"), f"{kind}.order_refs", "order")

    def _digits(self, value: Any, field: str) -> int:
        text = str(value)
        if isinstance(value, bool) or not text.isdigit():
            raise self._bad(field, f"{text!r} is not a Shopify id (digits)")
        return int(text)

    def _ids_in(self, refs: Any) -> bool:
        system = self.options.refs_from or self.system
        return isinstance(refs, list) and any(
            isinstance(r, dict) and r.get("system") == system for r in refs
        )

    def _all_ids(self, refs: Any, field: str) -> list[int]:
        """Every id of this shop in ``refs``: a golden customer that two shop customers were
        merged into is written to both. None is a bad document."""
        system = self.options.refs_from or self.system
        if not isinstance(refs, list):
            raise self._bad(field, "is not a list of {system, id}")
        texts = sorted(
            {
                str(ref.get("id"))
                for ref in refs
                if isinstance(ref, dict) and ref.get("system") == system and ref.get("id")
            }
        )
        if not texts:
            raise self._bad(
                field,
                f"has no id of system {system!r}: the customer is not known in this shop "
                "(refs_from names the system of the shopify connection)",
            )
        return [self._digits(text, field) for text in texts]

    def _one_id(self, refs: Any, field: str, what: str) -> int:
        """The id of the one entry of ``refs`` ([{system, id}]) that is this shop's."""
        system = self.options.refs_from or self.system
        if not isinstance(refs, list):
            raise self._bad(field, "is not a list of {system, id}")
        values = {
            str(ref.get("id"))
            for ref in refs
            if isinstance(ref, dict) and ref.get("system") == system and ref.get("id")
        }
        if len(values) != 1:
            raise self._bad(
                field,
                f"has {len(values)} ids of system {system!r}, not one, and the document has no "
                f"{what} id: the canonical object is not known in this shop (refs_from names "
                "the system of the shopify connection)",
            )
        (text,) = values
        if not text.isdigit():
            raise self._bad(field, f"{text!r} is not a Shopify id (digits)")
        return int(text)

    def _bad(self, field: str, problem: str) -> BadDocument:
        return BadDocument(self.connection, f"{field} {problem}")


def _excerpt(value: Any, limit: int = 300) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + "…"


def _obj(value: Any, field: str, sink: ShopifyAdmin) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise sink._bad(field, "is not an object")
    return value


__all__ = ["ShopifyAdmin", "ShopifyAdminOptions"]
