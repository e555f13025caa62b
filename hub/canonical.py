"""The canonical entities: customer, product, order, inventory.

These models are the source of the JSON Schemas in ``schemas/`` (``hub schemas export`` writes
them; a test proves the committed files match). Conventions (BRIEF, Contracts):

- money: decimal strings (``"19.90"``) next to an ISO 4217 ``currency``; never floats;
- timestamps: RFC 3339 in UTC with a ``Z`` suffix;
- countries: ISO 3166-1 alpha-2; phone numbers E.164 where they could be normalised;
- every entity has its golden ``id`` and its ``external_refs`` ``[{system, id}]``.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, ClassVar, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

from .errors import SchemaViolation
from .exactjson import NestedTooDeeply
from .yamlfile import format_loc

SCHEMA_BASE = "https://hub.dev/schemas/"

Money = Annotated[
    str,
    Field(
        pattern=r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?$",
        description="Exact decimal amount as a string, in the entity's currency.",
        examples=["19.90"],
    ),
]
Quantity = Annotated[
    str,
    Field(
        pattern=r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?$",
        description="Exact decimal quantity as a string.",
        examples=["3"],
    ),
]
Currency = Annotated[
    str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code.", examples=["EUR"])
]
Country = Annotated[
    str, Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2 code.", examples=["DE"])
]
Timestamp = Annotated[
    str,
    Field(
        pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?Z$",
        description="RFC 3339 timestamp in UTC.",
        examples=["2026-11-22T10:15:00Z"],
    ),
]
Phone = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        description="E.164 (+4915112345678) where it could be normalised, else as given.",
    ),
]
GoldenId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=128,
        description="The hub's golden id: one per business object across all systems.",
    ),
]
NonEmpty = Annotated[str, Field(min_length=1)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ExternalRef(_Model):
    """Where the object lives in one external system, under that system's id."""

    system: NonEmpty = Field(description="Connection name, e.g. 'shop' or 'erp'.")
    id: NonEmpty = Field(description="The object's id in that system.")


class Address(_Model):
    name: str | None = None
    company: str | None = None
    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    region: str | None = Field(None, description="State or province, as given by the source.")
    postal_code: str | None = None
    country: Country | None = None
    phone: Phone | None = None


class Entity(_Model):
    entity: ClassVar[str]

    id: GoldenId
    external_refs: list[ExternalRef] = Field(min_length=1)
    updated_at: Timestamp | None = None


class Customer(Entity):
    """A person or company that buys."""

    entity: ClassVar[str] = "customer"

    email: str | None = Field(None, max_length=320)
    first_name: str | None = None
    last_name: str | None = None
    company: str | None = None
    phone: Phone | None = None
    addresses: list[Address] = Field(default_factory=list)
    created_at: Timestamp | None = None


class Product(Entity):
    """A sellable item, identified across systems by its SKU where it has one."""

    entity: ClassVar[str] = "product"

    sku: str | None = None
    name: NonEmpty
    description: str | None = None
    price: Money | None = None
    currency: Currency | None = None
    unit: str | None = Field(None, description="Unit of measure, e.g. 'each', 'kg'.")
    active: StrictBool = True


class CustomerRef(_Model):
    """The customer of an order: golden id plus the fields needed without a lookup."""

    id: GoldenId
    external_refs: list[ExternalRef] = Field(default_factory=list)
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    phone: Phone | None = None


class OrderLine(_Model):
    line_id: NonEmpty = Field(description="The line's id in the source system.")
    product_id: GoldenId | None = None
    sku: str | None = None
    name: NonEmpty
    quantity: Quantity
    unit_price: Money
    discount: Money = "0"
    tax: Money = "0"
    total: Money = Field(description="quantity * unit_price - discount (before tax).")


OrderStatus = Literal["pending", "confirmed", "paid", "fulfilled", "cancelled", "refunded"]


class Order(Entity):
    """A customer's order, from whichever system took it."""

    entity: ClassVar[str] = "order"

    number: NonEmpty = Field(description="The order number people use, e.g. '#1001'.")
    status: OrderStatus
    currency: Currency
    created_at: Timestamp
    customer: CustomerRef | None = None
    billing_address: Address | None = None
    shipping_address: Address | None = None
    lines: list[OrderLine] = Field(min_length=1)
    subtotal: Money
    shipping_total: Money = "0"
    discount_total: Money = "0"
    tax_total: Money = "0"
    total: Money
    note: str | None = None
    tags: list[str] = Field(default_factory=list)


class Inventory(Entity):
    """Stock of one product at one location."""

    entity: ClassVar[str] = "inventory"

    product_id: GoldenId
    sku: str | None = None
    location: NonEmpty = Field(description="Warehouse or location code.")
    on_hand: Quantity
    available: Quantity | None = Field(None, description="On hand minus reserved, if known.")
    unit: str | None = None


ENTITY_MODELS: dict[str, type[Entity]] = {
    m.entity: m for m in (Customer, Product, Order, Inventory)
}


MODELS: dict[str, type[_Model]] = {
    m.__name__: m
    for m in (Customer, Product, Order, Inventory, Address, ExternalRef, CustomerRef, OrderLine)
}
"""Models a mapping may target with ``target: {model: Name}``."""


def dump(entity: Entity) -> dict[str, Any]:
    """JSON-ready dict without unset optional fields."""
    return entity.model_dump(mode="json", exclude_none=True)


def encode(data: dict[str, Any]) -> bytes:
    """A canonical entity as compact UTF-8 JSON, the form it takes on the bus.

    orjson (a canonical order: ~5x json); json for what orjson cannot write (an integer beyond
    64 bits). For what a canonical entity holds (text, integers, booleans, null) both give the
    same bytes (tests/test_canonical_encode.py)."""
    try:
        return orjson.dumps(data)
    except TypeError:
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def decode(data: bytes) -> Any:
    """A canonical event's data as it came off the bus: the reverse of ``encode``; ingress
    reads webhook bodies with it too (``hub.api.ingress.parse``).

    orjson (a canonical order: ~5x json); json for what orjson refuses (an integer beyond 64
    bits, NaN from a foreign producer, a byte order mark, UTF-16). Raises ``ValueError`` for
    what is not JSON, :class:`hub.exactjson.NestedTooDeeply` (a ``ValueError`` too) for what
    orjson refuses as deeper than 1,024 levels and json cannot follow (recursion limit)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        try:
            return json.loads(data)
        except RecursionError:
            raise NestedTooDeeply() from None


def validate(entity: str, data: dict[str, Any]) -> None:
    """Raise SchemaViolation, listing every error with its path, unless ``data`` is a valid
    canonical ``entity``. (pydantic: ~68k orders/s here, against ~1.4k for jsonschema.)"""
    model = ENTITY_MODELS.get(entity)
    if model is None:
        raise SchemaViolation(entity, [f"unknown entity {entity!r}"])
    try:
        model.model_validate(data)
    except ValidationError as exc:
        raise SchemaViolation(
            entity,
            [
                f"{format_loc(tuple(e['loc'])) or '(root)'}: {e['msg']}"
                for e in exc.errors(include_url=False)
            ],
        ) from None
