"""Tryton (ERP and supply chain): a sink for parties, products and sales, and a polling
source of sales, shipments, stock levels and parties (:mod:`.source`).

Speaks Tryton's JSON-RPC (``/<database>/rpc/``, :mod:`.rpc`) rather than its REST API: JSON-RPC
is what Tryton's own clients use, so every model method (``quote``, ``confirm``, ``cancel``,
``search_read`` with a context) is there without extra configuration, and a password login
works on any Tryton; the REST API needs a user application key validated by an administrator
in Tryton first. See docs/connectors/tryton.md.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, HttpUrl

from hub.errors import ConnectionCheckFailed, PollFailed, RequestFailed, delivery_failed

from ..base import (
    CreatedId,
    Delivery,
    DeliveryResult,
    Page,
    PollingOptions,
    PollingSource,
    Secret,
    Sink,
)
from ..registry import register
from .rpc import LoginRefused, TrytonRpc
from .source import TrytonChanges
from .writer import TrytonWriter

REQUIRED_MODULES = ("party", "product", "company", "stock", "account_invoice", "sale")


class TrytonOptions(PollingOptions):
    url: HttpUrl = Field(
        description="Tryton server's base URL (without the database).",
        examples=["https://tryton.example.com"],
    )
    database: str = Field(
        min_length=1, description="Tryton database to use.", examples=["production"]
    )
    login: str = Field(
        min_length=1, description="Tryton user the hub logs in as.", examples=["hub"]
    )
    password: Secret = Field(description="That user's password (env:NAME or file:PATH).")
    warehouse: str = Field(
        "WH", min_length=1, description="Code of the warehouse sales are shipped from."
    )
    account_category: str = Field(
        "Hub products",
        min_length=1,
        description="Name of the accounting product category given to products the hub creates.",
    )
    unit: str = Field(
        "u", min_length=1, description="Symbol of the unit given to products the hub creates."
    )
    create_products: bool = Field(
        True,
        description="Create a product missing in Tryton when an order line names it (false: "
        "such an order is refused, naming the code).",
    )
    language: str = Field("en", min_length=2, description="Language of Tryton's messages.")
    timeout_s: float = Field(30.0, gt=0, description="Timeout of one call to Tryton.")
    poll: list[Literal["sales", "shipments", "stock", "parties"]] = Field(
        default_factory=list,
        description="What to poll Tryton for (none: the connection is only written to): sales "
        "(sale.changed), shipments done (shipment.done), stock levels in the warehouse "
        "(stock.level), parties (party.changed).",
        examples=[["sales", "shipments", "stock"]],
    )
    page_size: int = Field(
        100, ge=1, le=1000, description="Records of each kind read by one poll at most."
    )
    settle_s: float = Field(
        5.0,
        ge=0,
        description="Changes younger than this, by Tryton's clock, wait for a later poll, so "
        "a transaction that commits after a younger one is not skipped.",
    )


@register
class Tryton(Sink, PollingSource):
    name = "tryton"
    title = "Tryton"
    description = (
        "Tryton ERP over JSON-RPC: upserts parties, products and sales (quoted and confirmed, "
        "or cancelled) from the documents of mappings/tryton/, and polls sales, shipments, "
        "stock levels and parties."
    )
    Options = TrytonOptions
    options: TrytonOptions

    _rpc: TrytonRpc | None = None
    _writer: TrytonWriter | None = None
    _changes: TrytonChanges | None = None

    def _client(self) -> TrytonRpc:
        o = self.options
        return TrytonRpc(
            self.connection,
            str(o.url),
            o.database,
            o.login,
            o.password.get_secret_value(),
            timeout_s=o.timeout_s,
            language=o.language,
        )

    async def open(self) -> None:
        if self._rpc is not None:
            return
        o = self.options
        self._rpc = self._client()
        await self._rpc.open()
        self._writer = TrytonWriter(
            self._rpc,
            warehouse=o.warehouse,
            account_category=o.account_category,
            unit=o.unit,
            create_products=o.create_products,
        )
        self._changes = TrytonChanges(self._rpc, o.poll, o.warehouse, o.page_size, o.settle_s)

    async def close(self) -> None:
        rpc, self._rpc, self._writer, self._changes = self._rpc, None, None, None
        if rpc is not None:
            await rpc.close()

    async def check_connection(self) -> str:
        """Logs in, reads the activated modules and looks up the warehouse and account
        category; writes nothing."""
        o = self.options
        where = f"{o.url} database {o.database!r}"
        rpc = self._client()
        await rpc.open()
        try:
            try:
                await rpc.login()
            except LoginRefused as exc:
                raise ConnectionCheckFailed(f"{where}: {exc.reason}") from None
            except RequestFailed as exc:
                hint = (
                    "check that the database exists and that trytond serves it (-d)"
                    if exc.status == 404
                    else "check the URL, that trytond is up, and any proxy"
                )
                raise ConnectionCheckFailed(
                    f"{where} cannot be reached: {exc.reason}; {hint}"
                ) from None
            try:
                rows = await rpc.call(
                    "model.ir.module.search_read",
                    [("state", "=", "activated")],
                    0,
                    None,
                    None,
                    ["name"],
                )
                missing = sorted(set(REQUIRED_MODULES) - {r["name"] for r in rows})
                if missing:
                    raise ConnectionCheckFailed(
                        f"{where}: the modules {', '.join(missing)} are not activated; activate "
                        "them in Tryton (trytond-admin -u MODULE --activate-dependencies)"
                    )
                warehouses = await rpc.call(
                    "model.stock.location.search",
                    [("code", "=", o.warehouse), ("type", "=", "warehouse")],
                    0,
                    1,
                    None,
                )
                categories = await rpc.call(
                    "model.product.category.search",
                    [("name", "=", o.account_category), ("accounting", "=", True)],
                    0,
                    1,
                    None,
                )
            except RequestFailed as exc:
                raise ConnectionCheckFailed(
                    f"{where}: logged in as {o.login!r} but cannot read the modules, "
                    f"warehouses and categories: {exc.reason}; give the user the sale, stock "
                    "and product groups"
                ) from None
            if not warehouses:
                raise ConnectionCheckFailed(
                    f"{where}: no warehouse with code {o.warehouse!r}; set the warehouse option "
                    "to one of Tryton's warehouse codes"
                )
            if not categories:
                raise ConnectionCheckFailed(
                    f"{where}: no accounting product category named {o.account_category!r}; "
                    "create it in Tryton or set the account_category option"
                )
        finally:
            await rpc.close()
        return (
            f"logged in to {where} as {o.login!r}; modules {', '.join(REQUIRED_MODULES)} "
            f"activated; warehouse {o.warehouse!r} and category {o.account_category!r} found"
        )

    async def poll(self, cursor: str | None) -> Page:
        """The records changed after ``cursor`` (see :mod:`.source`); nothing when the
        connection's ``poll`` option names no kind."""
        if not self.options.poll:
            return Page([], None)
        if self._changes is None:
            await self.open()
        assert self._changes is not None
        try:
            return await self._changes.poll(cursor)
        except RequestFailed as exc:
            raise PollFailed(self.connection, exc.reason) from None

    async def deliver(self, delivery: Delivery) -> DeliveryResult:
        if self._writer is None:
            await self.open()
        assert self._writer is not None
        try:
            written = await self._writer.write(delivery.data)
        except RequestFailed as exc:
            raise delivery_failed(exc) from None
        # The ids reported are linked to the event's golden id: a sale to the order's, a party
        # to the customer's (the party of an order is found by its code, not reported).
        created: list[CreatedId] = []
        if written.sale:
            created.append(CreatedId("order", str(written.sale)))
        elif written.product and "sale" not in delivery.data:
            created.append(CreatedId("product", str(written.product)))
        elif written.party and "sale" not in delivery.data:
            created.append(CreatedId("customer", str(written.party)))
        return DeliveryResult(tuple(created))


__all__ = ["Tryton", "TrytonOptions"]
