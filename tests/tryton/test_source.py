"""The Tryton polling source against a real Tryton: the cursor, the kinds of change, and the
mappings of mappings/tryton/ that turn them into canonical orders, inventory and customers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from connectors import Change, Delivery
from connectors.tryton import Tryton
from hub.mapping import load_mappings
from hub.mdm import DeterministicResolver
from tests.support.tryton import TrytonServer, setup

MAPPINGS = load_mappings(Path(__file__).resolve().parents[2] / "mappings")
PASSWORD_ENV = "HUB_TEST_TRYTON_PASSWORD"


@pytest.fixture(autouse=True)
def _password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, setup.HUB_PASSWORD)


def build(tryton: TrytonServer, **changes: Any) -> Tryton:
    options = {
        "url": tryton.url,
        "database": tryton.database,
        "login": setup.HUB_LOGIN,
        "password": f"env:{PASSWORD_ENV}",
        "settle_s": 0,  # what the test just wrote is polled at once (see the settle test)
        **changes,
    }
    return Tryton("erp", Tryton.Options.model_validate(options))


@pytest.fixture
async def connector(tryton: TrytonServer) -> AsyncIterator[Tryton]:
    c = build(tryton, poll=["sales", "shipments", "stock", "parties"], page_size=50)
    await c.open()
    try:
        yield c
    finally:
        await c.close()


async def drain(source: Tryton, cursor: str | None) -> tuple[list[Change], str | None]:
    """Poll until a page is not full, as the hub's poller does; every change and the cursor."""
    changes: list[Change] = []
    while True:
        page = await source.poll(cursor)
        changes += page.changes
        cursor = page.cursor if page.cursor is not None else cursor
        if not page.more:
            return changes, cursor


def mapped(mapping: str, change: Change) -> dict[str, Any]:
    out = MAPPINGS.get(mapping).apply(  # type: ignore[union-attr]
        json.loads(change.data), {"connection": "erp", "system": "tryton"}, DeterministicResolver()
    )
    assert out is not None
    return out


async def test_records_written_in_one_transaction_are_all_polled_across_pages(
    tryton: TrytonServer,
) -> None:
    """Three parties created by one call share their create_date to the microsecond; a page
    of two ends between them, and the next page starts after the second, by id."""
    source = build(tryton, poll=["parties"], page_size=2)
    try:
        _, cursor = await drain(source, None)  # what the template holds
        ids = tryton.rpc(
            "model.party.party.create", [{"name": f"Same second {i}"} for i in range(3)]
        )
        stamps = tryton.search_read("party.party", [("id", "in", ids)], ["create_date"])
        assert len({json.dumps(s["create_date"], sort_keys=True) for s in stamps}) == 1
        first = await source.poll(cursor)
        assert first.more and len(first.changes) == 2
        second = await source.poll(first.cursor)
        assert not second.more
        seen = [json.loads(c.data)["id"] for c in first.changes + second.changes]
        assert seen == ids
        third = await source.poll(second.cursor)
        assert third.changes == [] and third.cursor is None  # nothing new: cursor stays
        tryton.rpc("model.party.party.write", [ids[1]], {"name": "Renamed"})
        (renamed,) = (await source.poll(second.cursor)).changes
        assert json.loads(renamed.data)["name"] == "Renamed"
        assert renamed.subject == f"party/{ids[1]}"
        assert renamed.version != next(
            c.version for c in first.changes if c.subject == renamed.subject
        )
    finally:
        await source.close()


async def test_changes_younger_than_settle_s_wait_for_a_later_poll(tryton: TrytonServer) -> None:
    """A transaction that commits after a younger one has the older timestamp: the poll leaves
    the last settle_s seconds (by Tryton's clock) for later, and its cursor stays before them."""
    settled = build(tryton, poll=["parties"], settle_s=0)
    patient = build(tryton, poll=["parties"], settle_s=3600)
    try:
        _, cursor = await drain(settled, None)
        (party_id,) = tryton.rpc("model.party.party.create", [{"name": "Just now"}])
        waiting = await patient.poll(cursor)
        assert waiting.changes == [] and waiting.cursor is None
        (now,) = (await settled.poll(cursor)).changes
        assert json.loads(now.data)["id"] == party_id
    finally:
        await settled.close()
        await patient.close()


async def test_a_connection_that_polls_nothing_asks_tryton_nothing(tryton: TrytonServer) -> None:
    source = build(tryton, url="http://127.0.0.1:9")  # would fail if it called anything
    page = await source.poll(None)
    assert page.changes == [] and page.cursor is None


async def test_an_order_shipped_in_tryton_is_polled_as_sale_shipment_and_stock(
    connector: Tryton, tryton: TrytonServer
) -> None:
    _, cursor = await drain(connector, None)
    order = {
        "party": {"code": "cus_poll", "name": "Polly"},
        "sale": {
            "reference": "ord_poll",
            "currency": "USD",
            "shipment_address": {"street": "1 Dock Road", "city": "Bristol", "country": "GB"},
            "lines": [
                {
                    "product": {"code": "POLL-1", "name": "Kettle"},
                    "quantity": "2",
                    "unit_price": "15",
                }
            ],
        },
    }
    await connector.deliver(Delivery("evt-poll", "t", None, "c", {}, order))
    changes, cursor = await drain(connector, cursor)
    (sale_change,) = [c for c in changes if c.type == "sale.changed"]
    confirmed = mapped("tryton/sale_to_order", sale_change)
    assert confirmed["status"] == "confirmed"
    assert [(line["sku"], line["quantity"], line["total"]) for line in confirmed["lines"]] == [
        ("POLL-1", "2", "30.00")
    ]
    assert confirmed["total"] == "30.00" and confirmed["currency"] == "USD"
    party_changes = [json.loads(c.data) for c in changes if c.type == "party.changed"]
    assert "cus_poll" in [p["code"] for p in party_changes]

    # the warehouse receives stock, then ships the sale with a tracking reference
    (product,) = tryton.search_read("product.product", [("code", "=", "POLL-1")], ["id"])
    (storage,) = tryton.search_read("stock.location", [("code", "=", "STO")], ["id"])
    (inventory,) = tryton.rpc(
        "model.stock.inventory.create",
        [
            {
                "location": storage["id"],
                "lines": [["create", [{"product": product["id"], "quantity": 10.0}]]],
            }
        ],
    )
    tryton.rpc("model.stock.inventory.confirm", [inventory])
    (sale,) = tryton.search_read("sale.sale", [("reference", "=", "ord_poll")], ["shipments"])
    (shipment,) = sale["shipments"]
    tryton.rpc("model.stock.shipment.out.write", [shipment], {"reference": "TRACK-123"})
    for step in ("assign_try", "pick", "pack", "do"):
        tryton.rpc(f"model.stock.shipment.out.{step}", [shipment])

    changes, cursor = await drain(connector, cursor)
    (done,) = [json.loads(c.data) for c in changes if c.type == "shipment.done"]
    assert done["tracking_reference"] == "TRACK-123"
    assert [s["reference"] for s in done["sales"]] == ["ord_poll"]
    (shipped,) = [c for c in changes if c.type == "sale.changed"]
    order_now = mapped("tryton/sale_to_order", shipped)
    assert order_now["status"] == "fulfilled"
    assert order_now["tags"] == ["tracking:TRACK-123"]
    (level,) = [
        c for c in changes if c.type == "stock.level" and c.subject.endswith(f"/{product['id']}")
    ]
    inventory_event = mapped("tryton/stock_to_inventory", level)
    assert (inventory_event["sku"], inventory_event["location"], inventory_event["on_hand"]) == (
        "POLL-1",
        setup.WAREHOUSE,
        "8",  # 10 received, 2 shipped
    )
    again, _ = await drain(connector, cursor)
    assert again == []  # nothing more happened


async def test_a_party_maps_to_a_canonical_customer(
    connector: Tryton, tryton: TrytonServer
) -> None:
    _, cursor = await drain(connector, None)
    tryton.rpc(
        "model.party.party.create",
        [
            {
                "name": "Marie Curie",
                "addresses": [
                    [
                        "create",
                        [{"street": "11 Rue Pierre", "city": "Paris", "postal_code": "75005"}],
                    ]
                ],
                "contact_mechanisms": [
                    ["create", [{"type": "email", "value": "marie@example.com"}]]
                ],
            }
        ],
    )
    changes, _ = await drain(connector, cursor)
    (change,) = [c for c in changes if c.type == "party.changed"]
    customer = mapped("tryton/party_to_customer", change)
    assert customer["email"] == "marie@example.com"
    assert customer["addresses"][0]["city"] == "Paris"
    assert customer["external_refs"] == [
        {"system": "tryton", "id": str(json.loads(change.data)["id"])}
    ]


async def test_a_party_and_its_addresses_and_contact_mechanisms_are_read_in_one_call(
    tryton: TrytonServer,
) -> None:
    """Each party comes with its addresses and contact mechanisms from the same search_read
    (one transaction in Tryton), so a poll that overlaps an edit never reports half of it. A
    page of parties takes the two searches of every kind (edited, then created), however many
    parties it holds: it took four before (the two, addresses, contact mechanisms)."""
    source = build(tryton, poll=["parties"])
    await source.open()
    try:
        _, cursor = await drain(source, None)
        tryton.rpc(
            "model.party.party.create",
            [
                {
                    "name": f"Lise Meitner {n}",
                    "addresses": [["create", [{"street": f"Hahn-Str. {n}", "city": "Berlin"}]]],
                    "contact_mechanisms": [
                        [
                            "create",
                            [
                                {"type": "email", "value": f"lise{n}@example.com"},
                                {"type": "phone", "value": f"+4930123456{n}"},
                            ],
                        ]
                    ],
                }
                for n in range(3)
            ],
        )
        calls: list[str] = []
        changes = source._changes  # the connection's RPC client, as the poll uses it
        assert changes is not None
        call = changes.rpc.call

        async def counted(method: str, *params: Any, **kwargs: Any) -> Any:
            calls.append(method)
            return await call(method, *params, **kwargs)

        changes.rpc.call = counted  # type: ignore[method-assign]
        page = await source.poll(cursor)
    finally:
        await source.close()
    # a poll asks Tryton's clock once, then each kind's searches
    assert calls == ["model.res.user.get_preferences", *["model.party.party.search_read"] * 2]
    parties = sorted(
        (json.loads(c.data) for c in page.changes if c.type == "party.changed"),
        key=lambda p: p["name"],
    )
    assert [(p["email"], p["phone"], p["addresses"][0]["street"]) for p in parties] == [
        (f"lise{n}@example.com", f"+4930123456{n}", f"Hahn-Str. {n}") for n in range(3)
    ]
