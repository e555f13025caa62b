"""What the Tryton connector polls: records changed since the hub's cursor.

Tryton has no webhooks, so changes are found by their timestamps: ``write_date``, which is
null until a record's first edit, else ``create_date``. Tryton keeps them to the microsecond,
and records written by one transaction share one; so a record's position is the pair
``(timestamp, id)``, and a poll asks for the records after the cursor's pair: nothing written
in the same second, or in the same transaction, is skipped when a page ends among them.

A transaction that started before another but commits after it carries the older timestamp:
had the cursor already passed it, it would be skipped. So a poll leaves the records younger
than ``settle_s`` (by Tryton's clock, the ``Date`` of its answers) for a later poll: a write
whose transaction lasts longer than that can still be missed.

Kinds (option ``poll``), each with its own position in the cursor (a JSON object):

- ``sales``: ``sale.sale`` with its lines and shipments -> ``sale.changed``;
- ``shipments``: customer shipments done (``stock.shipment.out``), with the tracking reference
  where one is set and the sales they ship -> ``shipment.done``;
- ``stock``: done stock moves; each product they moved, with its quantity in the connection's
  warehouse -> ``stock.level``;
- ``parties``: ``party.party`` with addresses and contact mechanisms -> ``party.changed``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from hub.errors import RequestRefused

from ..base import Change, Page
from .rpc import TrytonRpc, plain

KINDS = ("sales", "shipments", "stock", "parties")
Key = tuple[dt.datetime, int]


class TrytonChanges:
    def __init__(
        self,
        rpc: TrytonRpc,
        kinds: Iterable[str],
        warehouse: str,
        page_size: int,
        settle_s: float = 5.0,
    ):
        self.rpc = rpc
        self.settle_s = settle_s
        self._upper: dt.datetime | None = None
        self.kinds = list(kinds)
        self.warehouse_code = warehouse
        self.page_size = page_size
        self._warehouse: int | None = None

    async def poll(self, cursor: str | None) -> Page:
        positions = _read_cursor(cursor)
        # a fresh Date from Tryton; it has whole seconds, so its clock is before date + 1 s
        await self.rpc.call("model.res.user.get_preferences", True)
        now = self.rpc.server_now or dt.datetime.now(dt.UTC)
        self._upper = now + dt.timedelta(seconds=1) - dt.timedelta(seconds=self.settle_s)
        changes: list[Change] = []
        more = False
        for kind in self.kinds:
            key = positions.get(kind)
            found, last, full = await getattr(self, f"_{kind}")(key)
            changes.extend(found)
            more = more or full
            if last is not None:
                positions[kind] = last
        new_cursor = _write_cursor(positions)
        return Page(changes, new_cursor if new_cursor != cursor else None, more)

    # --- the records changed after a key --------------------------------------------------

    async def changed(
        self,
        model: str,
        domain: list[Any],
        key: Key | None,
        fields: list[str],
        context: dict[str, Any] | None = None,
    ) -> tuple[list[dict[str, Any]], Key | None, bool]:
        """Up to ``page_size`` records of ``model`` after ``key`` in (timestamp, id) order: the
        records, the key of the last, and whether the page is full."""
        limit = self.page_size
        edited: list[Any] = [("write_date", "!=", None)]
        created: list[Any] = [("write_date", "=", None)]
        if self._upper is not None:  # settled records only
            edited.append(("write_date", "<=", _wire(self._upper)))
            created.append(("create_date", "<=", _wire(self._upper)))
        if key is not None:
            when, last_id = _wire(key[0]), key[1]
            edited.append(
                ["OR", ("write_date", ">", when), [("write_date", "=", when), ("id", ">", last_id)]]
            )
            created.append(
                [
                    "OR",
                    ("create_date", ">", when),
                    [("create_date", "=", when), ("id", ">", last_id)],
                ]
            )
        wanted = [*fields, "write_date", "create_date"]
        rows: list[dict[str, Any]] = []
        for extra, order in (
            (edited, [["write_date", "ASC"], ["id", "ASC"]]),
            (created, [["create_date", "ASC"], ["id", "ASC"]]),
        ):
            rows += await self.rpc.call(
                f"model.{model}.search_read",
                [*domain, *extra],
                0,
                limit,
                order,
                wanted,
                context=context,
            )
        rows.sort(key=_key)
        rows = rows[:limit]
        return rows, (_key(rows[-1]) if rows else None), len(rows) == limit

    # --- kinds ----------------------------------------------------------------------------

    async def _sales(self, key: Key | None) -> tuple[list[Change], Key | None, bool]:
        rows, last, full = await self.changed(
            "sale.sale",
            [],
            key,
            [
                "number",
                "reference",
                "description",
                "state",
                "shipment_state",
                "invoice_state",
                "party",
                "party.code",
                "party.name",
                "currency.code",
                "sale_date",
                "untaxed_amount",
                "tax_amount",
                "total_amount",
                "shipments",
                "comment",
            ],
        )
        ids = [r["id"] for r in rows]
        lines = await self.rpc.call(
            "model.sale.line.search_read",
            [("sale", "in", ids), ("type", "=", "line")],
            0,
            None,
            [["sequence", "ASC"], ["id", "ASC"]],
            [
                "sale",
                "product.code",
                "product.name",
                "description",
                "quantity",
                "unit_price",
                "amount",
            ],
        )
        shipment_ids = sorted({s for r in rows for s in r["shipments"]})
        shipments = {
            s["id"]: s
            for s in await self.rpc.call(
                "model.stock.shipment.out.read",
                shipment_ids,
                ["number", "reference", "state", "effective_date"],
            )
        }
        changes = []
        for row in rows:
            data = {
                "id": row["id"],
                "number": row["number"],
                "reference": row["reference"],
                "description": row["description"],
                "state": row["state"],
                "shipment_state": row["shipment_state"],
                "invoice_state": row["invoice_state"],
                "party": {
                    "id": row["party"],
                    "code": _get(row, "party.", "code"),
                    "name": _get(row, "party.", "name"),
                },
                "currency": _get(row, "currency.", "code"),
                "sale_date": row["sale_date"],
                "untaxed_amount": row["untaxed_amount"],
                "tax_amount": row["tax_amount"],
                "total_amount": row["total_amount"],
                "comment": row["comment"],
                "lines": [
                    {
                        "id": line["id"],
                        "product_code": _get(line, "product.", "code"),
                        "product_name": _get(line, "product.", "name"),
                        "description": line["description"],
                        "quantity": line["quantity"],
                        "unit_price": line["unit_price"],
                        "amount": line["amount"],
                    }
                    for line in lines
                    if line["sale"] == row["id"]
                ],
                "shipments": [_shipment(shipments[s]) for s in row["shipments"] if s in shipments],
                "created_at": row["create_date"],
                "updated_at": row["write_date"] or row["create_date"],
            }
            changes.append(_change("sale.changed", f"sale/{row['id']}", row, data))
        return changes, last, full

    async def _shipments(self, key: Key | None) -> tuple[list[Change], Key | None, bool]:
        rows, last, full = await self.changed(
            "stock.shipment.out",
            [("state", "=", "done")],
            key,
            [
                "number",
                "reference",
                "effective_date",
                "customer",
                "customer.code",
                "warehouse.code",
            ],
        )
        ids = [r["id"] for r in rows]
        sales = await self.rpc.call(
            "model.sale.sale.search_read",
            [("shipments", "in", ids)],
            0,
            None,
            None,
            ["number", "reference", "shipments"],
        )
        changes = []
        for row in rows:
            data = {
                **_shipment(row),
                "customer": {"id": row["customer"], "code": _get(row, "customer.", "code")},
                "warehouse": _get(row, "warehouse.", "code"),
                "sales": [
                    {"id": s["id"], "number": s["number"], "reference": s["reference"]}
                    for s in sales
                    if row["id"] in s["shipments"]
                ],
                "updated_at": row["write_date"] or row["create_date"],
            }
            changes.append(_change("shipment.done", f"shipment/{row['id']}", row, data))
        return changes, last, full

    async def _stock(self, key: Key | None) -> tuple[list[Change], Key | None, bool]:
        warehouse = await self.warehouse()
        moves, last, full = await self.changed(
            "stock.move", [("state", "=", "done")], key, ["product"]
        )
        latest: dict[int, dict[str, Any]] = {}
        for move in moves:
            latest[move["product"]] = move  # the last move of each product in this page
        if not latest:
            return [], last, full
        products = await self.rpc.call(
            "model.product.product.read",
            list(latest),
            ["code", "name", "quantity", "forecast_quantity", "default_uom.symbol"],
            context={"locations": [warehouse]},
        )
        changes = []
        for product in products:
            move = latest[product["id"]]
            data = {
                "product": {
                    "id": product["id"],
                    "code": product["code"],
                    "name": product["name"],
                },
                "warehouse": self.warehouse_code,
                "quantity": product["quantity"],
                "forecast_quantity": product["forecast_quantity"],
                "unit": _get(product, "default_uom.", "symbol"),
                "updated_at": move["write_date"] or move["create_date"],
            }
            subject = f"stock/{self.warehouse_code}/{product['id']}"
            changes.append(_change("stock.level", subject, move, data))
        return changes, last, full

    async def _parties(self, key: Key | None) -> tuple[list[Change], Key | None, bool]:
        """Each party with its addresses and contact mechanisms read in the same call (Tryton
        reads a One2Many's records for ``field.subfield``), so in one transaction: a poll that
        overlaps an edit sees the party as it was before it or after it, never half of each."""
        rows, last, full = await self.changed(
            "party.party",
            [],
            key,
            [
                "code",
                "name",
                "addresses.party_name",
                "addresses.street",
                "addresses.postal_code",
                "addresses.city",
                "addresses.country.code",
                "contact_mechanisms.type",
                "contact_mechanisms.value",
            ],
        )
        changes = []
        for row in rows:
            mine = [c for c in row.get("contact_mechanisms.") or () if isinstance(c, dict)]
            data = {
                "id": row["id"],
                "code": row["code"],
                "name": row["name"],
                "email": next((c["value"] for c in mine if c["type"] == "email"), None),
                "phone": next((c["value"] for c in mine if c["type"] in ("phone", "mobile")), None),
                "addresses": [
                    {
                        "party_name": a.get("party_name"),
                        "street": a.get("street"),
                        "postal_code": a.get("postal_code"),
                        "city": a.get("city"),
                        "country": _get(a, "country.", "code"),
                    }
                    for a in row.get("addresses.") or ()
                    if isinstance(a, dict)
                ],
                "contact_mechanisms": [{"type": c["type"], "value": c["value"]} for c in mine],
                "created_at": row["create_date"],
                "updated_at": row["write_date"] or row["create_date"],
            }
            changes.append(_change("party.changed", f"party/{row['id']}", row, data))
        return changes, last, full

    async def warehouse(self) -> int:
        if self._warehouse is None:
            found = await self.rpc.call(
                "model.stock.location.search",
                [("code", "=", self.warehouse_code), ("type", "=", "warehouse")],
                0,
                1,
                None,
            )
            if not found:
                raise RequestRefused(
                    self.rpc.system, f"Tryton has no warehouse with code {self.warehouse_code!r}"
                )
            self._warehouse = int(found[0])
        return self._warehouse


def _key(row: dict[str, Any]) -> Key:
    stamp = plain(row["write_date"] or row["create_date"])
    return stamp, int(row["id"])


def _wire(stamp: dt.datetime) -> dict[str, Any]:
    return {
        "__class__": "datetime",
        "year": stamp.year,
        "month": stamp.month,
        "day": stamp.day,
        "hour": stamp.hour,
        "minute": stamp.minute,
        "second": stamp.second,
        "microsecond": stamp.microsecond,
    }


def _read_cursor(cursor: str | None) -> dict[str, Key]:
    if not cursor:
        return {}
    positions = {}
    for kind, (stamp, record_id) in json.loads(cursor).items():
        positions[kind] = (dt.datetime.fromisoformat(stamp), int(record_id))
    return positions


def _write_cursor(positions: dict[str, Key]) -> str | None:
    if not positions:
        return None
    return json.dumps(
        {k: [v[0].isoformat(), v[1]] for k, v in sorted(positions.items())}, separators=(",", ":")
    )


def _get(row: dict[str, Any], relation: str, field: str) -> Any:
    related = row.get(relation)
    return related.get(field) if isinstance(related, dict) else None


def _shipment(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "number": row.get("number"),
        "state": row.get("state", "done"),
        "tracking_reference": row.get("reference") or None,
        "effective_date": row.get("effective_date"),
    }


def _json(value: Any) -> Any:
    """Tryton's values as the raw event's JSON: decimals as exact text, dates and timestamps
    in ISO 8601 (timestamps in UTC, with Z)."""
    value = plain(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(Decimal(int(value)))
    if isinstance(value, float):
        return str(Decimal(repr(value)))
    if isinstance(value, list):
        return [_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    return value


def _change(kind: str, subject: str, row: dict[str, Any], data: dict[str, Any]) -> Change:
    stamp, record_id = _key(row)
    version = f"{stamp.isoformat()}/{record_id}"
    body = json.dumps(_json(data), separators=(",", ":"), ensure_ascii=False).encode()
    return Change(type=kind, subject=subject, version=version, data=body)
