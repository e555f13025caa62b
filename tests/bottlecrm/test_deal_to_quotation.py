"""Issue 15, flow 3, between a real BottleCRM and a real Tryton with examples/crm-erp.yaml: a
deal moved to won in the CRM becomes a quotation in Tryton for the account's party, with the
deal's lines; Tryton's sale number comes back to the deal as a comment, read back through
BottleCRM's API. Runs examples/crm-deals.yaml."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from hub.mdm import DeterministicResolver
from hub.runtime import Hub
from tests.bottlecrm.crm_erp import example_hub
from tests.support.bottlecrm import BottleCrmServer
from tests.support.harness import HubFactory, until
from tests.support.tryton import TrytonServer

pytestmark = pytest.mark.tryton
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def hub(
    hubs: HubFactory,
    bottlecrm: BottleCrmServer,
    tryton: TrytonServer,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Hub]:
    async with example_hub("crm-deals.yaml", hubs, bottlecrm, tryton, monkeypatch) as hub:
        yield hub


def comments(bottlecrm: BottleCrmServer, deal_id: str) -> list[str]:
    shown = bottlecrm.api("GET", f"opportunities/{deal_id}/")
    return [c["comment"] for c in shown["comments"]]


async def test_a_won_deal_becomes_a_quotation_whose_number_shows_on_the_deal(
    hub: Hub, bottlecrm: BottleCrmServer, tryton: TrytonServer
) -> None:
    api = bottlecrm.api
    account = await asyncio.to_thread(
        api,
        "POST",
        "accounts/",
        {
            "name": "Glenn Avionics",
            "currency": "EUR",
            "address_line": "21000 Brookpark Rd",
            "city": "Cleveland",
            "postcode": "44135",
            "country": "US",
        },
    )
    created = await asyncio.to_thread(
        api,
        "POST",
        "invoices/products/",
        {"name": "Gyro unit", "sku": "GYRO-3", "price": "310.00", "currency": "EUR"},
    )
    deal = await asyncio.to_thread(
        api,
        "POST",
        "opportunities/",
        {
            "name": "Gyros for Glenn",
            "account": account["id"],
            "amount": "1050.00",
            "currency": "EUR",
            "stage": "PROSPECTING",
        },
    )
    for body in (
        {"product_id": created["product"]["id"], "quantity": "3", "unit_price": "310.00"},
        {"name": "Calibration", "quantity": "1", "unit_price": "120.00"},
    ):
        await asyncio.to_thread(api, "POST", f"opportunities/{deal['id']}/line-items/", body)
    await asyncio.to_thread(
        api,
        "PATCH",
        f"opportunities/{deal['id']}/",
        {"stage": "CLOSED_WON", "closed_on": "2026-12-06"},
    )
    ids = DeterministicResolver()
    golden_order = ids.golden_id("order", "bottlecrm", f"deal:{deal['id']}")
    golden_party = ids.golden_id("customer", "bottlecrm", f"account:{account['id']}")

    def sales() -> list[dict[str, Any]]:
        return tryton.search_read(
            "sale.sale",
            [("reference", "=", golden_order)],
            ["state", "number", "party.code", "currency.code", "total_amount"],
        )

    async def quoted() -> bool:  # created as a draft, then quoted
        return [s["state"] for s in await asyncio.to_thread(sales)] == ["quotation"]

    await until(quoted)
    (sale,) = sales()
    assert sale["state"] == "quotation"
    assert sale["party."]["code"] == golden_party
    (party,) = tryton.search_read("party.party", [("code", "=", golden_party)], ["name"])
    assert party["name"] == "Glenn Avionics"
    assert sale["currency."]["code"] == "EUR"
    lines = tryton.search_read(
        "sale.line",
        [("sale", "=", sale["id"])],
        ["product.code", "description", "quantity", "unit_price"],
    )
    assert sorted(
        (line["description"], line["quantity"], Decimal(line["unit_price"]["decimal"]))
        for line in lines
    ) == [("Calibration", 1.0, Decimal("120")), ("Gyro unit", 3.0, Decimal("310"))]
    assert Decimal(sale["total_amount"]["decimal"]) == Decimal("1050.00")
    assert sale["number"]

    wanted = f"Sale {sale['number']} in Tryton"

    async def noted() -> bool:
        return wanted in await asyncio.to_thread(comments, bottlecrm, deal["id"])

    await until(noted)
    # the sale is polled again when it changes; the deal has the number once
    assert comments(bottlecrm, deal["id"]).count(wanted) == 1
    (sale,) = sales()
    assert sale["state"] == "quotation"  # still not confirmed
