"""Mapping benchmark: the compiled YAML mapping against other ways to write the same transform.

The transform is the hub's Shopify ``orders/create`` -> canonical order mapping
(``mappings/shopify/orders_create.yaml`` with its ``shopify/customer_ref`` and ``shopify/address``
fragments) applied to ``tests/fixtures/shopify/orders_create.json``, parsed as the hub parses it
(``json.loads(..., parse_float=Decimal)``). Contenders, measured in one run, one process:

* ``compiled`` - ``load_mappings(Path("mappings")).get("shopify/orders_create").apply(...)``:
  the mapping's generated function, what the hub runs for every event;
* ``closures`` - the same mapping through ``apply_precise``: the closures that the hub runs only
  when the generated function fails, to name the field of the failure;
* ``hand`` - a hand-written Python function producing the same output (:func:`hand_written`);
* ``jmespath`` - one JMESPath expression plus custom functions (Python) for what JMESPath has no
  function for, and a Python pass that drops null fields;
* ``glom`` - one glom spec; value conversions are Python callables inside the spec;
* ``jsonata`` - one JSONata expression (jsonata-python) plus registered Python functions for
  exact decimals, exact 64-bit ids and golden ids, and a Python pass that drops null fields.

Every contender calls the same resolver object for the five golden ids of an order. Each is
measured twice: with ``hub.mdm.DeterministicResolver`` (what the hub uses) and with a resolver
that only looks the id up in a dict, so the engine's own cost is visible apart from the id
derivation's. Before anything is timed, every contender's output must equal the compiled
mapping's on the fixture and on variants of it (cancelled, fulfilled, taxes, discounts, a line of
quantity 0, no customer, ...); any difference is printed and the bench exits with status 1.

Then canonical-order validation per second: plain ``jsonschema``, the hub's
:func:`hub.schemas.compiled_validator`, pydantic (``hub.workers.mapper.validate``, what the mapper
uses), ``fastjsonschema``, and ``fastjsonschema`` with jsonschema run only for the messages of a
failing document. All must agree on a set of valid and invalid documents first; the messages each
gives for one invalid order are printed so their precision can be compared.

Run ``python -m bench.mapping --help``. Results: tables on stdout and a JSON file in
bench/results/.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import cProfile
import difflib
import functools
import gc
import json
import pstats
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from itertools import repeat
from pathlib import Path
from typing import Any

from bench import core
from bench.core import FIXTURE, OTHER_LOAD_WARN, ROOT, BenchError

MAPPINGS = ROOT / "mappings"
MAPPING_NAME = "shopify/orders_create"
META = {"connection": "shop"}
TARGET_RATIO = 0.7  # issue 3: the compiled mapping reaches >= 0.7x the hand-written function
VALIDATION_TARGET = 20_000  # issue 3: canonical validations per second

Payload = dict[str, Any]
Meta = dict[str, Any]
MapFn = Callable[[Payload, Meta], Any]


# =========================================================================== the hand-written one

ORDER_STATUS = {
    "pending": "pending",
    "authorized": "confirmed",
    "partially_paid": "confirmed",
    "paid": "paid",
    "partially_refunded": "paid",
    "refunded": "refunded",
    "voided": "cancelled",
}
CENTS = Decimal("0.01")


def money(value: Any) -> str | None:
    """Decimal string rounded half-even to 2 places ("0.00", never "-0.00")."""
    if value is None or value == "":
        return None
    amount = Decimal(value).quantize(CENTS, ROUND_HALF_EVEN)
    if amount.is_zero():
        amount = amount.copy_abs()
    return format(amount, "f")


def money_sum(values: Any) -> str | None:
    """``money`` of the exact sum of a list of amounts (nulls ignored)."""
    if values is None:
        return None
    if not isinstance(values, list):  # JSONata gives a lone value for a one-element list
        values = [values]
    return money(sum((Decimal(v) for v in values if v is not None), Decimal(0)))


def line_total(price: Any, quantity: Any, discount: Any) -> str | None:
    """``money(price * quantity - discount)``, exact."""
    if price is None or quantity is None or discount is None:
        return None
    return money(Decimal(price) * Decimal(quantity) - Decimal(discount))


def utc(value: Any) -> str | None:
    """RFC 3339 UTC ('Z'), milliseconds only when there are any; refuses naive timestamps."""
    if value is None or value == "":
        return None
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone offset")
    dt = dt.astimezone(UTC)
    text = dt.isoformat(timespec="milliseconds" if dt.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def text(value: Any) -> str | None:
    """str() that keeps null and writes decimals in full (as the mapping's str() does)."""
    if value is None:
        return None
    return format(value, "f") if isinstance(value, Decimal) else str(value)


def golden_id(resolver: Any, entity: str, system: str, external_id: Any) -> str | None:
    if external_id is None or external_id == "":
        return None
    result: str = resolver.golden_id(entity, system, text(external_id))
    return result


def compact(obj: dict[str, Any]) -> dict[str, Any]:
    """The object without its null fields (one level)."""
    return {k: v for k, v in obj.items() if v is not None}


def drop_nulls(value: Any) -> Any:
    """Null fields removed all the way down (glue for the library contenders)."""
    if type(value) is dict:
        return {k: drop_nulls(v) for k, v in value.items() if v is not None}
    if type(value) is list:
        return [drop_nulls(v) for v in value]
    return value


def _address(a: dict[str, Any] | None) -> dict[str, Any] | None:
    if a is None:
        return None
    full_name = " ".join(p for p in (a.get("first_name"), a.get("last_name")) if p is not None)
    country = a.get("country_code")
    return compact(
        {
            "name": a.get("name") or full_name.strip() or None,
            "company": a.get("company"),
            "line1": a.get("address1"),
            "line2": a.get("address2"),
            "city": a.get("city"),
            "region": a.get("province_code") or a.get("province") or None,
            "postal_code": a.get("zip"),
            "country": country.upper() if country is not None else None,
            "phone": a.get("phone") or None,
        }
    )


def _customer(c: dict[str, Any] | None, system: str, resolver: Any) -> dict[str, Any] | None:
    if c is None:
        return None
    email = c.get("email")
    return compact(
        {
            "id": golden_id(resolver, "customer", system, c.get("id")),
            "external_refs": [compact({"system": system, "id": text(c.get("id"))})],
            "email": email.strip().lower() if email is not None else None,
            "first_name": c.get("first_name"),
            "last_name": c.get("last_name"),
            "phone": c.get("phone"),
        }
    )


def _line(li: dict[str, Any], system: str, resolver: Any) -> dict[str, Any]:
    tax_lines = li.get("tax_lines")
    return compact(
        {
            "line_id": text(li.get("id")),
            "product_id": golden_id(resolver, "product", system, li.get("product_id")),
            "sku": li.get("sku") or None,
            "name": li.get("title"),
            "quantity": text(li.get("quantity")),
            "unit_price": money(li.get("price")),
            "discount": money(li.get("total_discount")),
            "tax": money_sum(
                [t.get("price") for t in tax_lines] if tax_lines is not None else None
            ),
            "total": line_total(li.get("price"), li.get("quantity"), li.get("total_discount")),
        }
    )


def _status(order: dict[str, Any]) -> str:
    if order.get("cancelled_at"):
        return "cancelled"
    if order.get("fulfillment_status") == "fulfilled":
        return "fulfilled"
    financial = order.get("financial_status")
    try:
        return ORDER_STATUS[financial]
    except KeyError:
        raise ValueError(f"unknown financial_status {financial!r}") from None


def hand_written(order: dict[str, Any], meta: Meta, resolver: Any) -> dict[str, Any]:
    """Shopify orders/create -> canonical order, written by hand (the reference)."""
    system = meta["connection"]
    items = order.get("line_items")
    shipping = order.get("shipping_lines")
    tags = order.get("tags")
    currency = order.get("currency")
    return compact(
        {
            "id": golden_id(resolver, "order", system, order.get("id")),
            "external_refs": [compact({"system": system, "id": text(order.get("id"))})],
            "number": order.get("name"),
            "status": _status(order),
            "currency": currency.upper() if currency is not None else None,
            "created_at": utc(order.get("created_at")),
            "updated_at": utc(order.get("updated_at")),
            "customer": _customer(order.get("customer"), system, resolver),
            "billing_address": _address(order.get("billing_address")),
            "shipping_address": _address(order.get("shipping_address")),
            "lines": None
            if items is None
            else [_line(li, system, resolver) for li in items if (li.get("quantity") or 0) > 0],
            "subtotal": money(order.get("subtotal_price")),
            "shipping_total": money_sum(
                [s.get("price") for s in shipping] if shipping is not None else None
            ),
            "discount_total": money(order.get("total_discounts")),
            "tax_total": money(order.get("total_tax")),
            "total": money(order.get("total_price")),
            "note": order.get("note") or None,
            "tags": None if tags is None else [t.strip() for t in tags.split(",") if t.strip()],
        }
    )


# =========================================================================== the libraries

# What each library contender leaves to Python, for the report.
GLUE = {
    "compiled": "none (the YAML mapping as the hub runs it)",
    "closures": "none (the same mapping, through the closures that report errors)",
    "hand": "all of it is Python",
    "jmespath": (
        "custom functions (Python): gid, conn, str, upper, lower, trim, concat, money, "
        "money_sum, line_total, utc, lookup, split_tags; a Python pass drops null fields. "
        "JMESPath itself: paths, projections, the quantity > 0 filter, the object shapes, "
        "the status logic (&&/||), coalescing (||)"
    ),
    "glom": (
        "callables (Python) for money, money_sum, line_total, utc, str, the status table and "
        "golden_id (via Invoke, resolver and connection in glom's scope); a Python pass drops "
        "null fields. glom itself: paths, Coalesce, Switch/Check for the status, Iter filter/"
        "map, T.upper()/T.strip()/T.split() method calls, Fill for the external_refs list"
    ),
    "jsonata": (
        "registered Python functions: $gid (golden ids), $str (ids: JSONata numbers are "
        "doubles, so $string(820982911946154508) gives '8.20982911946155e+17'), $money, "
        "$moneysum, $linetotal (exact decimals); a Python pass drops null fields. JSONata "
        "itself: paths, the filter, object shapes, status logic and lookup, upper/lower/trim, "
        "the name fallback, tag split/trim, and the UTC conversion ($toMillis/$fromMillis)"
    ),
}

JMESPATH_EXPR = """{
  id: gid('order', id),
  external_refs: [{system: conn(@), id: str(id)}],
  number: name,
  status: cancelled_at && 'cancelled'
          || fulfillment_status == 'fulfilled' && 'fulfilled'
          || lookup(financial_status),
  currency: upper(currency),
  created_at: utc(created_at),
  updated_at: utc(updated_at),
  customer: customer.{
    id: gid('customer', id),
    external_refs: [{system: conn(@), id: str(id)}],
    email: lower(trim(email)),
    first_name: first_name,
    last_name: last_name,
    phone: phone
  },
  billing_address: billing_address.{
    name: name || trim(concat(first_name, ' ', last_name)) || `null`,
    company: company, line1: address1, line2: address2, city: city,
    region: province_code || province || `null`,
    postal_code: zip, country: upper(country_code), phone: phone || `null`
  },
  shipping_address: shipping_address.{
    name: name || trim(concat(first_name, ' ', last_name)) || `null`,
    company: company, line1: address1, line2: address2, city: city,
    region: province_code || province || `null`,
    postal_code: zip, country: upper(country_code), phone: phone || `null`
  },
  lines: line_items[?quantity > `0`].{
    line_id: str(id),
    product_id: gid('product', product_id),
    sku: sku || `null`,
    name: title,
    quantity: str(quantity),
    unit_price: money(price),
    discount: money(total_discount),
    tax: money_sum(tax_lines[*].price),
    total: line_total(price, quantity, total_discount)
  },
  subtotal: money(subtotal_price),
  shipping_total: money_sum(shipping_lines[*].price),
  discount_total: money(total_discounts),
  tax_total: money(total_tax),
  total: money(total_price),
  note: note || `null`,
  tags: split_tags(tags)
}"""


def make_jmespath(resolver: Any) -> MapFn:
    import jmespath
    from jmespath import functions

    any_type: dict[str, list[str]] = {"types": []}

    class Glue(functions.Functions):  # type: ignore[misc]
        def __init__(self, system: str) -> None:
            self.system = system

        @functions.signature(any_type)
        def _func_conn(self, _node: Any) -> str:
            return self.system

        @functions.signature(any_type, any_type)
        def _func_gid(self, entity: str, external_id: Any) -> str | None:
            return golden_id(resolver, entity, self.system, external_id)

        @functions.signature(any_type)
        def _func_str(self, v: Any) -> str | None:
            return text(v)

        @functions.signature(any_type)
        def _func_upper(self, v: Any) -> str | None:
            return None if v is None else str(v).upper()

        @functions.signature(any_type)
        def _func_lower(self, v: Any) -> str | None:
            return None if v is None else str(v).lower()

        @functions.signature(any_type)
        def _func_trim(self, v: Any) -> str | None:
            return None if v is None else str(v).strip()

        @functions.signature({"types": [], "variadic": True})
        def _func_concat(self, *parts: Any) -> str:
            return "".join(str(p) for p in parts if p is not None)

        @functions.signature(any_type)
        def _func_money(self, v: Any) -> str | None:
            return money(v)

        @functions.signature(any_type)
        def _func_money_sum(self, v: Any) -> str | None:
            return money_sum(v)

        @functions.signature(any_type, any_type, any_type)
        def _func_line_total(self, p: Any, q: Any, d: Any) -> str | None:
            return line_total(p, q, d)

        @functions.signature(any_type)
        def _func_utc(self, v: Any) -> str | None:
            return utc(v)

        @functions.signature(any_type)
        def _func_lookup(self, v: Any) -> str:
            try:
                return ORDER_STATUS[v]
            except KeyError:
                raise ValueError(f"unknown financial_status {v!r}") from None

        @functions.signature(any_type)
        def _func_split_tags(self, v: Any) -> list[str] | None:
            return None if v is None else [t.strip() for t in v.split(",") if t.strip()]

    compiled = jmespath.compile(JMESPATH_EXPR)
    options: dict[str, Any] = {}  # one Options per connection, built on first use

    def run(payload: Payload, meta: Meta) -> Any:
        system = meta["connection"]
        opts = options.get(system)
        if opts is None:
            opts = options[system] = jmespath.Options(custom_functions=Glue(system))
        return drop_nulls(compiled.search(payload, options=opts))

    return run


def make_glom(resolver: Any) -> MapFn:
    from glom import Auto, Check, Coalesce, Fill, Invoke, Iter, S, Switch, T, Val, glom

    def gid(entity: str) -> Any:
        return Invoke(golden_id).specs(S["resolver"]).constants(entity).specs(S["system"], "id")

    def refs() -> Any:
        return Fill([{"system": S["system"], "id": Auto(("id", text))}])

    blank = (None, "")
    address = {
        # coalesce(name, trim(concat(first_name, ' ', last_name)))
        "name": Coalesce(
            "name",
            (
                Fill([T.get("first_name"), T.get("last_name")]),
                Iter().filter(lambda p: p is not None).all(),
                " ".join,
                T.strip(),
            ),
            skip=blank,
            default=None,
        ),
        "company": "company",
        "line1": "address1",
        "line2": "address2",
        "city": "city",
        "region": Coalesce("province_code", "province", skip=blank, default=None),
        "postal_code": "zip",
        "country": Coalesce(("country_code", T.upper()), default=None),
        "phone": Coalesce("phone", skip=blank, default=None),
    }
    customer = {
        "id": gid("customer"),
        "external_refs": refs(),
        "email": Coalesce(("email", T.strip().lower()), default=None),
        "first_name": "first_name",
        "last_name": "last_name",
        "phone": "phone",
    }
    line = {
        "line_id": ("id", text),
        "product_id": Invoke(golden_id)
        .specs(S["resolver"])
        .constants("product")
        .specs(S["system"], "product_id"),
        "sku": Coalesce("sku", skip=blank, default=None),
        "name": "title",
        "quantity": ("quantity", text),
        "unit_price": ("price", money),
        "discount": ("total_discount", money),
        "tax": ("tax_lines", ["price"], money_sum),
        "total": Invoke(line_total).specs("price", "quantity", "total_discount"),
    }
    optional = functools.partial(Check, type=dict)
    spec = {
        "id": gid("order"),
        "external_refs": refs(),
        "number": "name",
        "status": Switch(
            [
                (Check("cancelled_at", validate=bool), Val("cancelled")),
                (Check("fulfillment_status", equal_to="fulfilled"), Val("fulfilled")),
                (T, ("financial_status", ORDER_STATUS.__getitem__)),
            ]
        ),
        "currency": ("currency", T.upper()),
        "created_at": ("created_at", utc),
        "updated_at": ("updated_at", utc),
        "customer": ("customer", Switch([(optional(), customer)], default=None)),
        "billing_address": ("billing_address", Switch([(optional(), address)], default=None)),
        "shipping_address": ("shipping_address", Switch([(optional(), address)], default=None)),
        "lines": ("line_items", Iter().filter(lambda li: li["quantity"] > 0).map(line).all()),
        "subtotal": ("subtotal_price", money),
        "shipping_total": ("shipping_lines", ["price"], money_sum),
        "discount_total": ("total_discounts", money),
        "tax_total": ("total_tax", money),
        "total": ("total_price", money),
        "note": Coalesce("note", skip=blank, default=None),
        "tags": ("tags", T.split(","), Iter(T.strip()).filter(bool).all()),
    }

    def run(payload: Payload, meta: Meta) -> Any:
        return drop_nulls(
            glom(payload, spec, scope={"resolver": resolver, "system": meta["connection"]})
        )

    return run


JSONATA_EXPR = """(
  $address := function($a) { $type($a) = 'object' ? $a.{
    'name': name ? name : $trim($join([first_name, last_name][$type($) = 'string'], ' ')),
    'company': company, 'line1': address1, 'line2': address2, 'city': city,
    'region': province_code ? province_code : (province ? province),
    'postal_code': zip,
    'country': country_code ? $uppercase(country_code),
    'phone': phone ? phone
  } };
  {
    'id': $gid('order', $conn, id),
    'external_refs': [{'system': $conn, 'id': $str(id)}],
    'number': name,
    'status': cancelled_at ? 'cancelled'
              : fulfillment_status = 'fulfilled' ? 'fulfilled'
              : $lookup($statuses, financial_status),
    'currency': $uppercase(currency),
    'created_at': $replace($fromMillis($toMillis(created_at)), '.000Z', 'Z'),
    'updated_at': $replace($fromMillis($toMillis(updated_at)), '.000Z', 'Z'),
    'customer': $type(customer) = 'object' ? customer.{
      'id': $gid('customer', $conn, id),
      'external_refs': [{'system': $conn, 'id': $str(id)}],
      'email': email ? $lowercase($trim(email)),
      'first_name': first_name, 'last_name': last_name, 'phone': phone
    },
    'billing_address': $address(billing_address),
    'shipping_address': $address(shipping_address),
    'lines': [line_items[quantity > 0].{
      'line_id': $str(id),
      'product_id': $gid('product', $conn, product_id),
      'sku': sku ? sku,
      'name': title,
      'quantity': $string(quantity),
      'unit_price': $money(price),
      'discount': $money(total_discount),
      'tax': $type(tax_lines) = 'array' ? $moneysum([tax_lines.price]),
      'total': $linetotal(price, quantity, total_discount)
    }],
    'subtotal': $money(subtotal_price),
    'shipping_total': $type(shipping_lines) = 'array' ? $moneysum([shipping_lines.price]),
    'discount_total': $money(total_discounts),
    'tax_total': $money(total_tax),
    'total': $money(total_price),
    'note': note ? note,
    'tags': $type(tags) = 'string' ? [$split(tags, ',').$trim($)[$ != '']]
  }
)"""


def make_jsonata(resolver: Any) -> MapFn:
    import jsonata

    expr = jsonata.Jsonata(JSONATA_EXPR)
    expr.register_lambda("gid", functools.partial(golden_id, resolver))
    expr.register_lambda("str", text)
    expr.register_lambda("money", money)
    expr.register_lambda("moneysum", money_sum)
    expr.register_lambda("linetotal", line_total)
    expr.assign("statuses", ORDER_STATUS)

    def run(payload: Payload, meta: Meta) -> Any:
        return drop_nulls(expr.evaluate(payload, {"conn": meta["connection"]}))

    return run


def hub_mapping() -> Any:
    """The hub's mapping as ``hub up`` loads it."""
    from hub.mapping import load_mappings

    mapping = load_mappings(MAPPINGS).get(MAPPING_NAME)
    if mapping is None:
        raise BenchError(f"mapping {MAPPING_NAME} not found in {MAPPINGS}")
    return mapping


def make_compiled(resolver: Any) -> MapFn:
    return functools.partial(hub_mapping().apply, resolver=resolver)


def make_closures(resolver: Any) -> MapFn:
    return functools.partial(hub_mapping().apply_precise, resolver=resolver)


def make_hand(resolver: Any) -> MapFn:
    return functools.partial(hand_written, resolver=resolver)


CONTENDERS: dict[str, tuple[str, Callable[[Any], MapFn]]] = {
    "compiled": ("compiled mapping (YAML)", make_compiled),
    "closures": ("same, closures (errors)", make_closures),
    "hand": ("hand-written Python", make_hand),
    "jmespath": ("jmespath + glue", make_jmespath),
    "glom": ("glom (+ callables)", make_glom),
    "jsonata": ("jsonata-python + glue", make_jsonata),
}


# =========================================================================== resolvers


class DictResolver:
    """A trivial resolver: golden ids from a dict (filled on first sight of a key)."""

    def __init__(self, ids: dict[tuple[str, str, str], str]) -> None:
        self.ids = dict(ids)

    def golden_id(self, entity: str, system: str, external_id: str) -> str:
        try:
            return self.ids[entity, system, external_id]
        except KeyError:
            from hub.mdm import DeterministicResolver

            value = DeterministicResolver().golden_id(entity, system, external_id)
            self.ids[entity, system, external_id] = value
            return value


class RecordingResolver:
    """Records which golden ids a contender asks for (to check they all ask the same)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[tuple[str, str, str]] = []

    def golden_id(self, entity: str, system: str, external_id: str) -> str:
        self.calls.append((entity, system, external_id))
        result: str = self.inner.golden_id(entity, system, external_id)
        return result


class NothingLinked:
    """A crosswalk in which no id is linked (the common case: a shop's own ids)."""

    async def lookup_many(self, refs: Any) -> dict[Any, str]:
        return {}

    async def reverse_many(self, refs: Any) -> dict[Any, str]:
        return {}


def warm_crosswalk_resolver(payload: Payload) -> Any:
    """hub.mdm.CrosswalkResolver at steady state: the fixture's ids loaded (not linked)."""
    import asyncio

    from hub.mdm import CrosswalkResolver, Miss

    resolver = CrosswalkResolver(NothingLinked(), negative_ttl_s=1e9)  # type: ignore[arg-type]
    misses: set[Miss] = set()
    resolver.collect(lambda: hand_written(payload, META, resolver), misses)
    asyncio.run(resolver.load(misses))
    return resolver


def make_resolvers(payload: Payload) -> dict[str, tuple[str, Any]]:
    from hub.mdm import DeterministicResolver

    recorder = RecordingResolver(DeterministicResolver())
    hand_written(payload, META, recorder)
    ids = {key: recorder.inner.golden_id(*key) for key in recorder.calls}
    return {
        "mdm": ("hub.mdm.DeterministicResolver", DeterministicResolver()),
        "crosswalk": (
            "hub.mdm.CrosswalkResolver, its cache warm (as the hub runs it at steady state)",
            warm_crosswalk_resolver(payload),
        ),
        "dict": (
            f"dict lookup, the fixture's {len(ids)} distinct ids precomputed "
            f"({len(recorder.calls)} calls per order)",
            DictResolver(ids),
        ),
    }


def resolver_costs(seconds: float = 0.3) -> dict[str, float]:
    """Cost per golden_id call, in microseconds: as the hub does it, and a bare uuid5."""
    from hub.mdm import DeterministicResolver

    r = DeterministicResolver()
    ns = uuid.UUID("0b7f5a8e-3d2c-5e61-8f4a-9c1d2e3f4a5b")
    keys = [("order", "shop", str(820982911946154508 + i)) for i in range(200_000)]

    def uuid5_only(i: int) -> str:
        name = "\x1f".join(keys[i])
        return "ord_" + uuid.uuid5(ns, name).hex[:24]

    out = {}
    for name, call in (
        (
            "DeterministicResolver, same key (cache hit if it caches)",
            lambda i: r.golden_id(*keys[0]),
        ),
        ("DeterministicResolver, a new key every call", lambda i: r.golden_id(*keys[i])),
        ("bare uuid5 + formatting", uuid5_only),
    ):
        n = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds and n < len(keys) - 1000:
            for i in range(n, n + 1000):
                call(i)
            n += 1000
        out[name] = (time.perf_counter() - t0) / n * 1e6
    return out


# =========================================================================== verification


def load_fixture() -> Payload:
    payload: Payload = json.loads(FIXTURE.read_text(encoding="utf-8"), parse_float=Decimal)
    return payload


def variants(base: Payload) -> Iterator[tuple[str, Payload]]:
    """The fixture and edits of it that exercise every branch of the mapping."""
    yield "fixture", base

    v = copy.deepcopy(base)
    v["cancelled_at"] = "2022-01-02T10:00:00+01:00"
    v["fulfillment_status"] = "fulfilled"
    yield "cancelled", v

    v = copy.deepcopy(base)
    v["fulfillment_status"] = "fulfilled"
    v["financial_status"] = "partially_refunded"
    yield "fulfilled", v

    v = copy.deepcopy(base)
    v["financial_status"] = "authorized"
    v["created_at"] = "2021-12-31T19:00:00.123456-05:00"
    v["updated_at"] = "2022-01-01T00:00:00Z"
    v["note"] = "leave at the door"
    v["tags"] = " vip , ,wholesale,"
    v["line_items"][0]["tax_lines"] = [
        {"price": "1.995", "rate": 0.1, "title": "VAT"},
        {"price": "0.125", "rate": 0.1, "title": "city"},
    ]
    v["line_items"][1]["total_discount"] = "10.005"
    v["line_items"][1]["sku"] = ""
    v["line_items"][2]["quantity"] = 0
    v["shipping_lines"].append({"price": "4.99"})
    v["total_discounts"] = "-0.001"
    yield "taxes, discounts, a line of quantity 0, tags, note", v

    v = copy.deepcopy(base)
    v["customer"] = None
    v["shipping_address"] = None
    v["billing_address"]["name"] = ""
    v["billing_address"]["province_code"] = None
    v["billing_address"]["phone"] = ""
    v["billing_address"]["first_name"] = None
    v["line_items"] = v["line_items"][:1]
    v["shipping_lines"] = []
    v["tags"] = "single"
    yield "no customer or shipping address, one line, one tag", v


def canonical_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=repr)


def verify(contenders: list[str], base: Payload, resolvers: dict[str, Any]) -> list[str]:
    """Every contender's output equals the compiled mapping's on every variant, with every
    resolver, and asks the resolver for the same ids. Returns the problems (with diffs)."""
    problems = []
    reference = make_compiled
    for case, payload in variants(base):
        for rname, resolver in resolvers.items():
            rec = RecordingResolver(resolver)
            expected = reference(rec)(copy.deepcopy(payload), dict(META))
            expected_calls = sorted(rec.calls)
            for name in contenders:
                if name == "compiled":
                    continue
                rec = RecordingResolver(resolver)
                fn = CONTENDERS[name][1](rec)
                try:
                    got = fn(copy.deepcopy(payload), dict(META))
                except Exception as exc:  # any failure is a mismatch, shown as such
                    problems.append(f"{name} [{case}, {rname}]: raised {type(exc).__name__}: {exc}")
                    continue
                if got != expected or canonical_json(got) != canonical_json(expected):
                    diff = "\n".join(
                        difflib.unified_diff(
                            canonical_json(expected).splitlines(),
                            canonical_json(got).splitlines(),
                            "compiled mapping",
                            name,
                            lineterm="",
                        )
                    )
                    problems.append(f"{name} [{case}, {rname}]: output differs\n{diff}")
                elif sorted(rec.calls) != expected_calls:
                    problems.append(
                        f"{name} [{case}, {rname}]: resolver calls differ: "
                        f"{sorted(rec.calls)} != {expected_calls}"
                    )
    return problems


# =========================================================================== timing


def time_loop(fn: Callable[..., Any], args: tuple[Any, ...], n: int) -> float:
    t0 = time.perf_counter()
    for _ in repeat(None, n):
        fn(*args)
    return time.perf_counter() - t0


def calibrate(fn: Callable[..., Any], args: tuple[Any, ...], seconds: float) -> int:
    """A record count that takes about ``seconds`` (at least 1.1x, so each repeat is >= it)."""
    n = 1
    while True:
        elapsed = time_loop(fn, args, n)
        if elapsed >= 0.2:
            return max(1, int(n * seconds * 1.1 / elapsed) + 1)
        n *= 4 if elapsed < 0.05 else 2


def measure_interleaved(
    items: dict[str, tuple[Callable[..., Any], tuple[Any, ...]]],
    seconds: float,
    repeats: int,
) -> dict[str, dict[str, Any]]:
    """Time every item ``repeats`` times, round-robin (repeat 1 of each, then repeat 2 of
    each, ...), so a slow phase of the VM hits all items alike and their ratios stay fair."""
    counts = {}
    for key, (fn, args) in items.items():
        time_loop(fn, args, 10)  # warm-up
        counts[key] = calibrate(fn, args, seconds)
    rates: dict[str, list[float]] = {k: [] for k in items}
    others: dict[str, list[float]] = {k: [] for k in items}
    steals: dict[str, list[float]] = {k: [] for k in items}
    for i in range(repeats):
        print(f"  repeat {i + 1}/{repeats}:", end="", flush=True)
        for key, (fn, args) in items.items():
            n = counts[key]
            gc.collect()
            with core.CpuMeter(me="bench") as cpu:
                elapsed = time_loop(fn, args, n)
            rates[key].append(n / elapsed)
            others[key].append(max(0.0, core.other_load(cpu.cpu, cpu.steal)))
            steals[key].append(cpu.steal)
            print(f" {key} {n / elapsed:,.0f}", end="", flush=True)
        print()
    out = {}
    for key in items:
        r = rates[key]
        out[key] = {
            "records_per_repeat": counts[key],
            "seconds_per_repeat": [counts[key] / x for x in r],
            "per_s": r,
            "best": max(r),
            "median": statistics.median(r),
            "us_per_record_best": 1e6 / max(r),
            "other_load_pct_of_core": others[key],
            "steal_pct_of_core": steals[key],
        }
        worst = max(others[key])
        if worst > OTHER_LOAD_WARN:
            print(
                f"  warning: {key}: other processes used up to {worst:.0f}% of a core during its "
                "repeats (machine CPU minus this process): the figures may be disturbed; run "
                "again on a quiet machine"
            )
        if max(steals[key]) > OTHER_LOAD_WARN:
            print(
                f"  warning: {key}: the hypervisor stole up to {max(steals[key]):.0f}% of a core "
                "during its repeats: the figures may be disturbed"
            )
    return out


# =========================================================================== validation


def validators() -> dict[str, tuple[str, Callable[[dict[str, Any]], None], Callable[..., Any]]]:
    """name -> (description, validate(doc) raising on invalid, messages(doc) -> list[str])."""
    import fastjsonschema
    from jsonschema import Draft202012Validator

    from hub import schemas
    from hub.canonical import validate as mapper_validate
    from hub.errors import SchemaViolation

    schema = schemas.schema("order")
    plain = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    hub_validator = schemas.compiled_validator("order")
    # use_default=False: by default fastjsonschema writes schema defaults into the document.
    fast = fastjsonschema.compile(schema, use_default=False)

    def js_messages(v: Any) -> Callable[[dict[str, Any]], list[str]]:
        def messages(doc: dict[str, Any]) -> list[str]:
            return sorted(f"{e.json_path}: {e.message}" for e in v.iter_errors(doc))

        return messages

    def first_error(check: Callable[[dict[str, Any]], Any]) -> Callable[..., list[str]]:
        def messages(doc: dict[str, Any]) -> list[str]:
            try:
                check(doc)
            except Exception as exc:
                return [f"{type(exc).__name__}: {getattr(exc, 'message', None) or exc}"]
            return []

        return messages

    def pydantic_messages(doc: dict[str, Any]) -> list[str]:
        try:
            mapper_validate("order", doc)
        except SchemaViolation as exc:
            return list(exc.errors)
        return []

    def fast_then_messages(doc: dict[str, Any]) -> None:
        try:
            fast(doc)
        except fastjsonschema.JsonSchemaValueException:
            errors = js_messages(hub_validator)(doc)
            raise SchemaViolation("order", errors) from None

    return {
        "jsonschema": (
            "jsonschema Draft202012Validator(schema, format_checker).validate, built once",
            plain.validate,
            js_messages(plain),
        ),
        "hub-jsonschema": (
            "hub.schemas.compiled_validator('order').validate: the same with ECMA-262 '$' in "
            "'pattern'",
            hub_validator.validate,
            js_messages(hub_validator),
        ),
        "pydantic": (
            "hub.workers.mapper.validate('order', doc): pydantic Order.model_validate, what "
            "the mapper runs",
            functools.partial(mapper_validate, "order"),
            pydantic_messages,
        ),
        "fastjsonschema": (
            "fastjsonschema.compile(schema, use_default=False): generated Python code",
            fast,
            first_error(fast),
        ),
        "fastjsonschema+messages": (
            "fastjsonschema for the verdict; on failure hub-jsonschema's iter_errors for all "
            "the messages",
            fast_then_messages,
            js_messages(hub_validator),
        ),
    }


def invalid_example(doc: dict[str, Any]) -> dict[str, Any]:
    bad = copy.deepcopy(doc)
    bad["lines"][1]["unit_price"] = 19.9
    bad["currency"] = "eur"
    return bad


def validation_cases(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any], bool]]:
    """(what, document, valid?) for the agreement check."""
    cases: list[tuple[str, dict[str, Any], bool]] = [("the mapped order", doc, True)]

    def edit(what: str, valid: bool, change: Callable[[dict[str, Any]], None]) -> None:
        d = copy.deepcopy(doc)
        change(d)
        cases.append((what, d, valid))

    edit(
        "minimal (no optional fields)",
        True,
        lambda d: [
            d.pop(k)
            for k in (
                "customer",
                "billing_address",
                "shipping_address",
                "tags",
                "updated_at",
                "shipping_total",
                "discount_total",
                "tax_total",
            )
        ],
    )
    edit("unit_price 19.9 (float), currency 'eur'", False, lambda d: d.update(invalid_example(doc)))
    edit("total '19.90\\n' (trailing newline)", False, lambda d: d.update(total="19.90\n"))
    edit("unknown field", False, lambda d: d.update(channel="web"))
    edit("status 'shipped'", False, lambda d: d.update(status="shipped"))
    edit("no lines", False, lambda d: d.update(lines=[]))
    edit("missing total", False, lambda d: d.pop("total"))
    edit(
        "created_at with an offset",
        False,
        lambda d: d.update(created_at="2022-01-01T00:00:00+01:00"),
    )
    edit("line quantity as a number", False, lambda d: d["lines"][0].update(quantity=1))
    edit("country 'usa'", False, lambda d: d["billing_address"].update(country="usa"))
    edit("external_refs empty", False, lambda d: d.update(external_refs=[]))
    edit("customer id empty", False, lambda d: d["customer"].update(id=""))
    return cases


def check_validators(
    vals: dict[str, tuple[str, Callable[..., None], Callable[..., Any]]], doc: dict[str, Any]
) -> tuple[list[dict[str, Any]], list[str]]:
    rows, problems = [], []
    for what, d, valid in validation_cases(doc):
        verdicts = {}
        for name, (_desc, check, _msgs) in vals.items():
            try:
                check(copy.deepcopy(d))
                verdicts[name] = True
            except Exception:
                verdicts[name] = False
        rows.append({"case": what, "expected_valid": valid, "verdicts": verdicts})
        for name, ok in verdicts.items():
            if ok != valid:
                problems.append(
                    f"{name} {'accepts' if ok else 'rejects'} {what} (expected "
                    f"{'valid' if valid else 'invalid'})"
                )
    return rows, problems


# =========================================================================== profile


def profile_compiled(fn: MapFn, payload: Payload, seconds: float, top: int = 20) -> dict[str, Any]:
    profiler = cProfile.Profile()
    n = 0
    t0 = time.perf_counter()
    profiler.enable()
    while time.perf_counter() - t0 < seconds:
        for _ in range(200):
            fn(payload, META)
        n += 200
    profiler.disable()
    stats = pstats.Stats(profiler)
    total = stats.total_tt  # type: ignore[attr-defined]
    rows = []
    for (file, line, func), (_cc, nc, tt, ct, _callers) in sorted(
        stats.stats.items(),  # type: ignore[attr-defined]
        key=lambda kv: kv[1][2],
        reverse=True,
    )[:top]:
        short = file
        with contextlib.suppress(ValueError):
            short = str(Path(file).resolve().relative_to(ROOT))
        if "site-packages" in short or short.startswith("/"):
            short = Path(file).name if file != "~" else "~"
        rows.append(
            {
                "function": f"{short}:{line}({func})",
                "calls_per_record": nc / n,
                "tottime_us_per_record": tt / n * 1e6,
                "cumtime_us_per_record": ct / n * 1e6,
                "tottime_pct": tt / total * 100 if total else 0.0,
            }
        )
    return {"records": n, "seconds": seconds, "total_us_per_record": total / n * 1e6, "top": rows}


# =========================================================================== report


MACHINE_PACKAGES = (
    "pydantic",
    "pydantic-core",
    "jsonschema",
    "fastjsonschema",
    "jmespath",
    "glom",
    "jsonata-python",
    "PyYAML",
)


def fmt_rate(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f}"


def mapping_table(results: dict[str, dict[str, Any]], resolvers: dict[str, Any]) -> str:
    head = (
        f"{'contender':<26} {'resolver':<8} {'best rec/s':>11} {'median rec/s':>13} "
        f"{'us/rec':>8} {'vs hand':>8} {'(median)':>9}"
    )
    lines = [head, "-" * len(head)]
    for rname in resolvers:
        hand = results.get("hand", {}).get(rname)
        for name, by_resolver in results.items():
            r = by_resolver.get(rname)
            if r is None:
                continue
            ratio = f"{r['best'] / hand['best']:.2f}x" if hand else "-"
            ratio_median = f"{r['median'] / hand['median']:.2f}x" if hand else "-"
            lines.append(
                f"{CONTENDERS[name][0]:<26} {rname:<8} {fmt_rate(r['best']):>11} "
                f"{fmt_rate(r['median']):>13} {r['us_per_record_best']:>8.1f} {ratio:>8} "
                f"{ratio_median:>9}"
            )
    lines.append("vs hand: best / hand-written's best, (median): median / its median")
    return "\n".join(lines)


def validation_table(results: dict[str, dict[str, Any]]) -> str:
    head = f"{'validator':<26} {'best /s':>10} {'median /s':>10} {'us/doc':>8}  >= 20k/s"
    lines = [head, "-" * len(head)]
    for name, r in results.items():
        lines.append(
            f"{name:<26} {fmt_rate(r['best']):>10} {fmt_rate(r['median']):>10} "
            f"{r['us_per_record_best']:>8.1f}  {'yes' if r['best'] >= VALIDATION_TARGET else 'no'}"
        )
    return "\n".join(lines)


def verdict_table(rows: list[dict[str, Any]], names: list[str]) -> str:
    width = max(len(r["case"]) for r in rows)
    head = f"  {'document':<{width}} {'expected':<8} " + " ".join(f"{n:>{len(n)}}" for n in names)
    lines = [head]
    for r in rows:
        cells = []
        for n in names:
            ok = r["verdicts"][n]
            mark = ("valid" if ok else "invalid") + ("" if ok == r["expected_valid"] else "!")
            cells.append(f"{mark:>{len(n)}}")
        expected = "valid" if r["expected_valid"] else "invalid"
        lines.append(f"  {r['case']:<{width}} {expected:<8} " + " ".join(cells))
    return "\n".join(lines)


# =========================================================================== main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = core.parser("bench.mapping", __doc__)
    p.add_argument("--seconds", type=float, default=2.0, help="least length of a timed repeat")
    p.add_argument("--repeat", type=int, default=5, help="timed repeats per contender")
    p.add_argument(
        "--only",
        help="comma-separated subset: mapping contenders "
        f"({', '.join(CONTENDERS)}), validators (jsonschema, hub-jsonschema, pydantic, "
        "fastjsonschema, fastjsonschema+messages), or the groups 'mapping' and 'validation' "
        "(default: everything). The outputs of the chosen contenders are verified all the same.",
    )
    p.add_argument(
        "--resolvers",
        default="mdm,crosswalk,dict",
        help="resolver variants to time: mdm (hub.mdm.DeterministicResolver), crosswalk "
        "(hub.mdm.CrosswalkResolver, warm) and/or dict",
    )
    p.add_argument(
        "--profile",
        action=argparse.BooleanOptionalAction,
        help="profile the compiled mapping with cProfile and print the top functions by own "
        "time (default: only if it is below 0.7x the hand-written function)",
    )
    p.add_argument("--profile-seconds", type=float, default=3.0, help="how long to profile")
    core.add_output(p, "mapping")
    args = p.parse_args(argv)
    validator_names = {
        "jsonschema",
        "hub-jsonschema",
        "pydantic",
        "fastjsonschema",
        "fastjsonschema+messages",
    }
    chosen = [x.strip() for x in (args.only or "mapping,validation").split(",") if x.strip()]
    args.contenders, args.validators = [], []
    for x in chosen:
        if x == "mapping":
            args.contenders += list(CONTENDERS)
        elif x == "validation":
            args.validators += sorted(validator_names, key=list(validator_names).index)
        elif x in CONTENDERS:
            args.contenders.append(x)
        elif x in validator_names:
            args.validators.append(x)
        else:
            p.error(f"--only: unknown name {x!r}")
    args.contenders = list(dict.fromkeys(args.contenders))
    args.validators = list(dict.fromkeys(args.validators))
    args.resolver_names = [r.strip() for r in args.resolvers.split(",") if r.strip()]
    for r in args.resolver_names:
        if r not in ("mdm", "crosswalk", "dict"):
            p.error(f"--resolvers: unknown resolver {r!r}: use mdm, crosswalk and/or dict")
    if args.seconds <= 0 or args.repeat < 1:
        p.error("--seconds must be > 0 and --repeat >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = core.command_line("bench.mapping", argv)
    info = core.machine_info(MACHINE_PACKAGES)
    core.header("mapping", info)
    print(
        f"single process; {args.repeat} repeats of >= {args.seconds:g} s per contender; "
        "best and median records/s"
    )
    if info["loadavg_at_start"] and float(info["loadavg_at_start"][0]) > 1.0:
        print(
            f"warning: load average {info['loadavg_at_start'][0]} at start: something else is "
            "running on this machine; the figures may be low"
        )

    payload = load_fixture()
    all_resolvers = make_resolvers(payload)
    resolvers = {name: all_resolvers[name][1] for name in args.resolver_names}
    notes: list[str] = []

    # -- verify ---------------------------------------------------------------------------------
    mapping_results: dict[str, dict[str, Any]] = {}
    profile = None
    if args.contenders:
        print("verifying outputs against the compiled mapping ...", flush=True)
        mismatches = verify(
            args.contenders,
            payload,
            {name: r for name, (_d, r) in all_resolvers.items()},
        )
        if mismatches:
            for m in mismatches:
                print(f"MISMATCH: {m}", file=sys.stderr)
            print("error: outputs differ; nothing was timed", file=sys.stderr)
            return 1
        cases = sum(1 for _ in variants(payload))
        print(
            f"  all {len(args.contenders)} contenders give the same output on {cases} payloads "
            f"with every resolver, and ask for the same golden ids"
        )

        # -- time -------------------------------------------------------------------------------
        print(
            f"timing, {args.repeat} rounds; each round runs every contender with every resolver "
            "once (records/s):",
            flush=True,
        )
        items = {
            f"{name}/{rname}": (CONTENDERS[name][1](resolvers[rname]), (payload, META))
            for rname in args.resolver_names
            for name in args.contenders
        }
        for key, r in measure_interleaved(items, args.seconds, args.repeat).items():
            name, rname = key.split("/")
            mapping_results.setdefault(name, {})[rname] = r
        ratio = None
        if "compiled" in mapping_results and "hand" in mapping_results:
            rname = args.resolver_names[0]
            ratio = (
                mapping_results["compiled"][rname]["best"] / mapping_results["hand"][rname]["best"]
            )
        do_profile = (
            args.profile
            if args.profile is not None
            else (ratio is not None and ratio < TARGET_RATIO)
        )
        if do_profile and "compiled" in args.contenders:
            print(
                f"  profiling the compiled mapping for {args.profile_seconds:g} s ...", flush=True
            )
            profile = profile_compiled(
                make_compiled(resolvers[args.resolver_names[0]]), payload, args.profile_seconds
            )

    # -- validation -----------------------------------------------------------------------------
    validation_results: dict[str, dict[str, Any]] = {}
    agreement: list[dict[str, Any]] = []
    messages: dict[str, list[str]] = {}
    descriptions: dict[str, str] = {}
    if args.validators:
        from hub.mdm import DeterministicResolver

        doc = make_compiled(DeterministicResolver())(copy.deepcopy(payload), dict(META))
        vals = {k: v for k, v in validators().items() if k in args.validators}
        print("checking the validators agree on valid and invalid orders ...", flush=True)
        agreement, disagreements = check_validators(vals, doc)
        print(verdict_table(agreement, list(vals)))
        for d in disagreements:
            print(f"  NOTE: {d}")
        notes += disagreements
        bad = invalid_example(doc)
        for name, (desc, _check, msgs) in vals.items():
            descriptions[name] = desc
            messages[name] = msgs(bad)
        print(f"timing, {args.repeat} rounds (documents/s):", flush=True)
        validation_results = measure_interleaved(
            {name: (check, (doc,)) for name, (_desc, check, _msgs) in vals.items()},
            args.seconds,
            args.repeat,
        )

    costs = resolver_costs()

    ratios: dict[str, dict[str, float]] = {}

    # -- report ---------------------------------------------------------------------------------
    print()
    if mapping_results:
        print("Shopify orders/create -> canonical order, records/s (one core):")
        print(mapping_table(mapping_results, resolvers))
        for rname in args.resolver_names:
            print(f"  resolver {rname}: {all_resolvers[rname][0]}")
        print("golden_id cost per call: " + "; ".join(f"{k} {v:.2f} us" for k, v in costs.items()))
        if "compiled" in mapping_results and "hand" in mapping_results:
            for rname in args.resolver_names:
                c, h = mapping_results["compiled"][rname], mapping_results["hand"][rname]
                ratio = c["best"] / h["best"]
                per_round = statistics.median(
                    a / b for a, b in zip(c["per_s"], h["per_s"], strict=True)
                )
                ratios[rname] = {"best_over_best": ratio, "median_per_round": per_round}
                verdict = "meets" if ratio >= TARGET_RATIO else "BELOW"
                print(
                    f"compiled / hand-written ({rname}): {ratio:.2f}x best/best, "
                    f"{per_round:.2f}x median of the per-round ratios - {verdict} the "
                    f"{TARGET_RATIO}x target"
                )
        print()
    if profile:
        print(
            f"cProfile of the compiled mapping ({profile['records']} records, "
            f"{profile['total_us_per_record']:.1f} us of own time per record under the "
            "profiler), top by tottime:"
        )
        print(f"  {'tottime us/rec':>14} {'%':>5} {'calls/rec':>9}  function")
        for row in profile["top"]:
            print(
                f"  {row['tottime_us_per_record']:>14.2f} {row['tottime_pct']:>5.1f} "
                f"{row['calls_per_record']:>9.1f}  {row['function']}"
            )
        print()
    if validation_results:
        print("canonical order validation, documents/s (one core):")
        print(validation_table(validation_results))
        print("messages for the invalid order (lines[1].unit_price = 19.9, currency 'eur'):")
        for name, msgs in messages.items():
            print(f"  {name}:")
            for m in msgs or ["(accepted!)"]:
                first = m.splitlines()[0] if m else m
                print(f"    {first}")
        print()

    core.write_report(
        "mapping",
        args.output,
        command,
        info,
        settings={
            "seconds": args.seconds,
            "repeat": args.repeat,
            "contenders": args.contenders,
            "validators": args.validators,
            "resolvers": {r: all_resolvers[r][0] for r in args.resolver_names},
            "fixture": str(FIXTURE.relative_to(ROOT)),
            "fixture_bytes": FIXTURE.stat().st_size,
            "mapping": MAPPING_NAME,
        },
        glue={k: GLUE[k] for k in args.contenders},
        mapping=mapping_results,
        compiled_vs_hand=ratios,
        golden_id_cost_us=costs,
        profile_compiled=profile,
        validation={
            name: {**r, "description": descriptions[name], "messages_for_invalid": messages[name]}
            for name, r in validation_results.items()
        },
        validation_agreement=agreement,
        validator_disagreements=notes,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
