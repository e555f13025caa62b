"""What the Tryton sink writes: parties, products and sales, each found before it is created.

The sink is given the output of an outbound mapping (``mappings/tryton/``), a document in
Tryton's own terms (field names of ``party.party``, ``party.address``, ``sale.sale``...):

- ``{party: {...}}`` upserts a customer;
- ``{product: {...}}`` upserts a product;
- ``{party: {...}, sale: {...}}`` upserts the customer, the products of its lines, and the sale,
  which is quoted and confirmed (or cancelled, with ``sale.cancel: true``; with ``sale.confirm:
  false`` it is left a quotation: a deal agreed in a CRM, not yet a confirmed order).

Every write is idempotent: a party is found by its ``code`` (unique in Tryton; the mappings put
the hub's golden id there), a product by its ``code`` (the SKU), a sale by its ``reference``
(the order's golden id). An address or a contact mechanism is added only when the party has no
equal one; the customer's first address becomes the party's first (its default), the others
stay. A sale found half-way (a crash between its creation and its confirmation) is taken
on from the state it is in. So a redelivered event, or one delivered again after a crash, never
creates a second party, product or sale.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from hub.errors import RequestRefused

from .rpc import TrytonRpc, date, decimal

ADDRESS_FIELDS = ("party_name", "street", "postal_code", "city")


class BadDocument(RequestRefused):
    """The mapped document cannot be written: names the field and what is wrong."""


@dataclass
class Written:
    """Tryton ids of what one delivery wrote or found."""

    party: int | None = None
    product: int | None = None
    sale: int | None = None
    sale_state: str | None = None


class TrytonWriter:
    def __init__(
        self,
        rpc: TrytonRpc,
        *,
        warehouse: str,
        account_category: str,
        unit: str,
        create_products: bool,
    ) -> None:
        self.rpc = rpc
        self.system = rpc.system
        self.warehouse_code = warehouse
        self.account_category_name = account_category
        self.unit_symbol = unit
        self.create_products = create_products
        self._ids: dict[tuple[str, str], int] = {}  # (model, key) -> id, for reference data

    # --- entry point ------------------------------------------------------------------------

    async def write(self, document: Any) -> Written:
        if not isinstance(document, dict):
            raise self._bad("(root)", "is not an object: route events through a tryton mapping")
        written = Written()
        with self._naming("product"):
            if "product" in document:
                written.product = await self.upsert_product(
                    _obj(document["product"], "product", self), update=True
                )
        with self._naming("party"):
            if "party" in document:
                written.party = await self.upsert_party(_obj(document["party"], "party", self))
        with self._naming("sale"):
            if "sale" in document:
                if written.party is None:
                    raise self._bad("party", "is required with a sale")
                written.sale, written.sale_state = await self.upsert_sale(
                    _obj(document["sale"], "sale", self), written.party
                )
        if not ({"product", "party", "sale"} & document.keys()):
            raise self._bad("(root)", "has none of party, product, sale")
        return written

    @contextlib.contextmanager
    def _naming(self, part: str) -> Iterator[None]:
        """Tryton's refusal (a UserError, a validation) names the part of the mapped document
        being written when it came: ``the mapped document's sale: model.sale.sale.create:
        Tryton UserError: ...``. Retriable failures and the writer's own refusals (which name
        their field already) go through unchanged."""
        try:
            yield
        except BadDocument:
            raise
        except RequestRefused as exc:
            raise RequestRefused(
                exc.system, f"the mapped document's {part}: {exc.reason}", exc.status
            ) from None

    # --- parties ----------------------------------------------------------------------------

    async def upsert_party(self, party: dict[str, Any]) -> int:
        code = _text(party.get("code"), "party.code", self, required=True)
        name = _text(party.get("name"), "party.name", self, required=True)
        found = await self.rpc.call(
            "model.party.party.search_read",
            [("code", "=", code)],
            0,
            1,
            None,
            ["name", "addresses", "contact_mechanisms"],
            context={"active_test": False},
        )
        if found:
            party_id = int(found[0]["id"])
            if found[0]["name"] != name:
                await self.rpc.call("model.party.party.write", [party_id], {"name": name})
        else:
            try:
                (party_id,) = await self.rpc.call(
                    "model.party.party.create", [{"code": code, "name": name}]
                )
            except RequestRefused:
                # a delivery running beside this one created it first (the code is unique)
                again = await self.rpc.call(
                    "model.party.party.search",
                    [("code", "=", code)],
                    0,
                    1,
                    None,
                    context={"active_test": False},
                )
                if not again:
                    raise
                party_id = again[0]
        ids = [
            await self.address(party_id, _obj(address, f"party.addresses[{i}]", self))
            for i, address in enumerate(party.get("addresses") or [])
        ]
        if ids:
            await self._first_address(party_id, ids[0])
        await self._contacts(party_id, party.get("contact_mechanisms") or [])
        return int(party_id)

    async def _first_address(self, party_id: int, address_id: int) -> None:
        """Make the customer's first address the party's first (by ``sequence``): Tryton's
        default, the one a new sale or invoice takes, and the one the party is reported with
        when polled. The others stay, in their order, after it: a sale may ship to them."""
        rows = await self.rpc.call(
            "model.party.address.search_read", [("party", "=", party_id)], 0, None, None, ["id"]
        )
        order = [int(row["id"]) for row in rows]
        if not order or order[0] == address_id:
            return
        writes: list[Any] = []
        for sequence, other in enumerate([address_id, *(a for a in order if a != address_id)]):
            writes += [[other], {"sequence": sequence + 1}]
        await self.rpc.call("model.party.address.write", *writes)

    async def address(self, party_id: int, address: dict[str, Any]) -> int:
        """The party's address equal to ``address`` (street, postal code, city, country and
        name compared without case and spacing), created if it has none."""
        values: dict[str, Any] = {}
        for field in ADDRESS_FIELDS:
            value = address.get(field)
            if value not in (None, ""):
                values[field] = str(value)
        country = address.get("country")
        if country:
            values["country"] = await self._country(str(country))
        existing = await self.rpc.call(
            "model.party.address.search_read",
            [("party", "=", party_id)],
            0,
            None,
            None,
            [*ADDRESS_FIELDS, "country"],
        )
        wanted = _address_key(values)
        for row in existing:
            if _address_key(row) == wanted:
                return int(row["id"])
        (address_id,) = await self.rpc.call(
            "model.party.address.create", [{"party": party_id, **values}]
        )
        return int(address_id)

    async def _contacts(self, party_id: int, contacts: Any) -> None:
        if not isinstance(contacts, list):
            raise self._bad("party.contact_mechanisms", "is not a list")
        wanted = []
        for i, contact in enumerate(contacts):
            item = _obj(contact, f"party.contact_mechanisms[{i}]", self)
            value = item.get("value")
            if value in (None, ""):
                continue  # a customer without a phone: nothing to add
            kind = _text(item.get("type"), f"party.contact_mechanisms[{i}].type", self, True)
            wanted.append((kind, str(value)))
        if not wanted:
            return
        existing = await self.rpc.call(
            "model.party.contact_mechanism.search_read",
            [("party", "=", party_id)],
            0,
            None,
            None,
            ["type", "value", "sequence"],
        )
        have = {(row["type"], _squash(row["value"])) for row in existing}
        wanted_keys = {(kind, _squash(value)) for kind, value in wanted}
        # A mechanism of the party's that the customer no longer has, per type, first first: a
        # changed e-mail or phone replaces it (the customer has one of each), so the party
        # does not keep the old one in front of the new (what polling it reports).
        stale: dict[str, list[int]] = {}
        for row in sorted(existing, key=lambda r: (r.get("sequence") or 0, r["id"])):
            if (row["type"], _squash(row["value"])) not in wanted_keys:
                stale.setdefault(row["type"], []).append(int(row["id"]))
        new = []
        for kind, value in dict.fromkeys(wanted):
            if (kind, _squash(value)) in have:
                continue
            if stale.get(kind):
                mechanism = stale[kind].pop(0)
                await self.rpc.call(
                    "model.party.contact_mechanism.write", [mechanism], {"value": value}
                )
            else:
                new.append({"party": party_id, "type": kind, "value": value})
        if new:
            await self.rpc.call("model.party.contact_mechanism.create", new)

    # --- products ---------------------------------------------------------------------------

    async def upsert_product(
        self, product: dict[str, Any], *, update: bool, field: str = "product"
    ) -> int:
        """The product whose code is ``product.code``; created if missing (with the connection's
        account category and unit), unless ``create_products`` is false. ``update``: its name
        and list price are set too. ``field``: where the product is in the mapped document."""
        code = _text(product.get("code"), f"{field}.code", self, required=True)
        found = await self.rpc.call(
            "model.product.product.search_read",
            [("code", "=", code)],
            0,
            1,
            None,
            ["template", "name", "list_price_used"],
            context={"active_test": False},
        )
        name = product.get("name")
        price = product.get("list_price")
        if found:
            row = found[0]
            changes: dict[str, Any] = {}
            if update and name and row.get("name") != name:
                changes["name"] = str(name)
            if update and price not in (None, ""):
                if _dec(row.get("list_price_used")) != _number(price, "product.list_price", self):
                    changes["list_price"] = decimal(_number(price, "product.list_price", self))
            if changes:
                await self.rpc.call("model.product.template.write", [row["template"]], changes)
            return int(row["id"])
        if not self.create_products and not update:
            raise self._bad(
                f"{field}.code",
                f"{code!r} is no product in Tryton (create_products is false: create the "
                "product in Tryton, or let the hub create it)",
            )
        unit = await self._unit(str(product.get("unit") or self.unit_symbol))
        template = {
            "name": _text(name, "product.name", self, required=True),
            "type": str(product.get("type") or "goods"),
            "salable": True,
            "default_uom": unit,
            "sale_uom": unit,
            "list_price": decimal(_number(price or "0", "product.list_price", self)),
            "account_category": await self._account_category(),
            "products": [["create", [{"suffix_code": code}]]],
        }
        if product.get("description"):
            template["description"] = str(product["description"])
        (template_id,) = await self.rpc.call("model.product.template.create", [template])
        (created,) = await self.rpc.call(
            "model.product.product.search", [("template", "=", template_id)], 0, 1, None
        )
        return int(created)

    # --- sales ------------------------------------------------------------------------------

    async def upsert_sale(self, sale: dict[str, Any], party_id: int) -> tuple[int, str]:
        reference = _text(sale.get("reference"), "sale.reference", self, required=True)
        cancel = bool(sale.get("cancel"))
        confirm = sale.get("confirm", True)
        if not isinstance(confirm, bool):
            raise self._bad("sale.confirm", f"must be true or false, not {confirm!r}")
        found = await self.rpc.call(
            "model.sale.sale.search_read",
            [("reference", "=", reference), ("party", "=", party_id)],
            0,
            1,
            None,
            ["state"],
        )
        if found:
            sale_id, state = int(found[0]["id"]), str(found[0]["state"])
        elif cancel:
            return 0, "absent"  # cancelled before it reached Tryton: nothing to undo
        else:
            sale_id = await self._create_sale(sale, reference, party_id)
            state = "draft"
        if cancel:
            return sale_id, await self._cancel(sale_id, state)
        if state == "draft":
            await self.rpc.call("model.sale.sale.quote", [sale_id])
            state = "quotation"
        if state == "quotation" and confirm:
            await self.rpc.call("model.sale.sale.confirm", [sale_id])
        (row,) = await self.rpc.call("model.sale.sale.read", [sale_id], ["state"])
        return sale_id, str(row["state"])

    async def _create_sale(self, sale: dict[str, Any], reference: str, party_id: int) -> int:
        lines = sale.get("lines")
        if not isinstance(lines, list) or not lines:
            raise self._bad("sale.lines", "a sale needs at least one line")
        (party,) = await self.rpc.call(
            "model.party.party.read", [party_id], ["customer_payment_term", "addresses"]
        )
        values: dict[str, Any] = {
            "party": party_id,
            "reference": reference,
            "warehouse": await self._warehouse(),
        }
        if party.get("customer_payment_term"):
            values["payment_term"] = party["customer_payment_term"]
        for which in ("shipment_address", "invoice_address"):
            given = sale.get(which)
            if isinstance(given, dict) and any(given.values()):
                values[which] = await self.address(party_id, given)
        for which, other in (
            ("shipment_address", "invoice_address"),
            ("invoice_address", "shipment_address"),
        ):
            if which in values:
                continue
            if other in values:  # one address given: it serves for both
                values[which] = values[other]
            elif party.get("addresses"):
                values[which] = party["addresses"][0]
            else:
                raise self._bad(f"sale.{which}", "is missing and the party has no address")
        if sale.get("currency"):
            values["currency"] = await self._currency(str(sale["currency"]))
        if sale.get("sale_date"):
            try:
                values["sale_date"] = date(str(sale["sale_date"]))
            except ValueError:
                raise self._bad("sale.sale_date", f"{sale['sale_date']!r} is not a date") from None
        for field in ("description", "comment"):
            if sale.get(field):
                values[field] = str(sale[field])
        sale_lines = []
        for i, line in enumerate(lines):
            item = _obj(line, f"sale.lines[{i}]", self)
            product = _obj(item.get("product"), f"sale.lines[{i}].product", self)
            product_id = await self.upsert_product(
                product, update=False, field=f"sale.lines[{i}].product"
            )
            (row,) = await self.rpc.call(
                "model.product.product.read", [product_id], ["sale_uom", "default_uom"]
            )
            entry = {
                "type": "line",
                "product": product_id,
                "quantity": float(_number(item.get("quantity"), f"sale.lines[{i}].quantity", self)),
                "unit": row.get("sale_uom") or row["default_uom"],
                "unit_price": decimal(
                    _number(item.get("unit_price"), f"sale.lines[{i}].unit_price", self)
                ),
            }
            if item.get("description"):
                entry["description"] = str(item["description"])
            sale_lines.append(entry)
        values["lines"] = [["create", sale_lines]]
        (sale_id,) = await self.rpc.call("model.sale.sale.create", [values])
        return int(sale_id)

    async def _cancel(self, sale_id: int, state: str) -> str:
        """Cancel the sale as far as Tryton lets it be: a draft or quotation is cancelled; a
        confirmed sale goes back to draft first; a sale in processing has its shipments that
        are not done and its draft invoices cancelled (Tryton then shows the sale in
        exception, for someone to handle). A sale already shipped is refused."""
        if state in ("cancelled", "absent"):
            return state
        if state == "confirmed":
            await self.rpc.call("model.sale.sale.draft", [sale_id])
            state = "draft"
        if state in ("draft", "quotation"):
            await self.rpc.call("model.sale.sale.cancel", [sale_id])
            return "cancelled"
        (sale,) = await self.rpc.call(
            "model.sale.sale.read", [sale_id], ["shipments", "invoices", "number"]
        )
        shipments = await self.rpc.call(
            "model.stock.shipment.out.read", sale["shipments"], ["state", "number"]
        )
        done = [s["number"] or str(s["id"]) for s in shipments if s["state"] == "done"]
        if done:
            raise RequestRefused(
                self.system,
                f"sale {sale['number']} cannot be cancelled: shipment {', '.join(done)} is done "
                "(return the goods in Tryton)",
            )
        open_shipments = [s["id"] for s in shipments if s["state"] != "cancelled"]
        if open_shipments:
            await self.rpc.call("model.stock.shipment.out.cancel", open_shipments)
        invoices = await self.rpc.call("model.account.invoice.read", sale["invoices"], ["state"])
        drafts = [i["id"] for i in invoices if i["state"] in ("draft", "validated")]
        if drafts:
            await self.rpc.call("model.account.invoice.cancel", drafts)
        (row,) = await self.rpc.call("model.sale.sale.read", [sale_id], ["state"])
        return str(row["state"])

    # --- reference data, looked up once per connection --------------------------------------

    async def _lookup(self, model: str, domain: list[Any], key: str, what: str) -> int:
        cached = self._ids.get((model, key))
        if cached is not None:
            return cached
        found = await self.rpc.call(f"model.{model}.search", domain, 0, 1, None)
        if not found:
            raise RequestRefused(self.system, f"Tryton has no {what}")
        self._ids[(model, key)] = int(found[0])
        return int(found[0])

    async def _warehouse(self) -> int:
        code = self.warehouse_code
        return await self._lookup(
            "stock.location",
            [("code", "=", code), ("type", "=", "warehouse")],
            code,
            f"warehouse with code {code!r} (option warehouse)",
        )

    async def _account_category(self) -> int:
        name = self.account_category_name
        return await self._lookup(
            "product.category",
            [("name", "=", name), ("accounting", "=", True)],
            name,
            f"accounting product category named {name!r} (option account_category)",
        )

    async def _unit(self, symbol: str) -> int:
        return await self._lookup(
            "product.uom", [("symbol", "=", symbol)], symbol, f"unit with symbol {symbol!r}"
        )

    async def _currency(self, code: str) -> int:
        return await self._lookup(
            "currency.currency", [("code", "=", code.upper())], code, f"currency {code!r}"
        )

    async def _country(self, code: str) -> int:
        return await self._lookup(
            "country.country",
            [("code", "=", code.upper())],
            code,
            f"country {code!r} (import countries with trytond_import_countries)",
        )

    def _bad(self, field: str, message: str) -> BadDocument:
        return BadDocument(self.system, f"the mapped document's {field} {message}")


def _obj(value: Any, field: str, writer: TrytonWriter) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise writer._bad(field, "is not an object")
    return value


def _text(value: Any, field: str, writer: TrytonWriter, required: bool = False) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise writer._bad(field, "is missing")
        return ""
    return str(value)


def _number(value: Any, field: str, writer: TrytonWriter) -> Decimal:
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise writer._bad(field, f"{value!r} is not a number") from None
    if not number.is_finite():
        raise writer._bad(field, f"{value!r} is not a number")
    return number


def _dec(value: Any) -> Decimal | None:
    if isinstance(value, dict) and value.get("__class__") == "Decimal":
        return Decimal(value["decimal"])
    if value is None:
        return None
    return Decimal(str(value))


def _squash(value: Any) -> str:
    return re.sub(r"\s+", " ", str(value or "")).strip().casefold()


def _address_key(row: dict[str, Any]) -> tuple[str, ...]:
    return (*(_squash(row.get(f)) for f in ADDRESS_FIELDS), str(row.get("country") or ""))
