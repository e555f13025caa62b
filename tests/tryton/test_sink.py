"""The Tryton sink against a real Tryton: canonical events go through the mappings of
mappings/tryton/ (as an outbound route applies them) and the sink writes what they say.
Everything is read back through Tryton's own JSON-RPC (tests/support/tryton.py)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from connectors import CreatedId, Delivery, DeliveryResult
from connectors.conformance import check_problems, idempotency_problems, spec_problems
from connectors.tryton import Tryton
from hub.errors import DeliveryRejected, DeliveryRetriable
from hub.mapping import load_mappings
from hub.mdm import DeterministicResolver
from tests.support.tryton import TrytonServer, setup

MAPPINGS = load_mappings(Path(__file__).resolve().parents[2] / "mappings")
PASSWORD_ENV = "HUB_TEST_TRYTON_PASSWORD"


@pytest.fixture(autouse=True)
def _password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, setup.HUB_PASSWORD)
    monkeypatch.setenv("HUB_TEST_TRYTON_WRONG", "not-the-password-0123456")


def options(tryton: TrytonServer, **changes: Any) -> dict[str, Any]:
    return {
        "url": tryton.url,
        "database": tryton.database,
        "login": setup.HUB_LOGIN,
        "password": f"env:{PASSWORD_ENV}",
        **changes,
    }


def build(tryton: TrytonServer, **changes: Any) -> Tryton:
    return Tryton("erp", Tryton.Options.model_validate(options(tryton, **changes)))


@pytest.fixture
async def sink(tryton: TrytonServer) -> AsyncIterator[Tryton]:
    connector = build(tryton)
    await connector.open()
    try:
        yield connector
    finally:
        await connector.close()


def delivery(mapping: str, canonical: dict[str, Any], event_id: str | None = None) -> Delivery:
    """What the delivery worker hands the sink for a route with ``mapping``."""
    body = MAPPINGS.get(mapping).apply(canonical, {"connection": "erp"}, DeterministicResolver())  # type: ignore[union-attr]
    assert body is not None
    event_id = event_id or f"evt-{uuid.uuid4().hex[:8]}"
    return Delivery(event_id, "hub.x.upserted", canonical["id"], "corr", {"id": event_id}, body)


def customer(golden: str, **changes: Any) -> dict[str, Any]:
    return {
        "id": golden,
        "external_refs": [{"system": "shop", "id": golden}],
        "email": f"{golden}@example.com",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "phone": "+4915112345678",
        "addresses": [
            {
                "name": "Ada Lovelace",
                "line1": "12 Analytical Row",
                "city": "London",
                "postal_code": "N1 9GU",
                "country": "GB",
            }
        ],
        **changes,
    }


def order(golden: str, customer_id: str, sku: str, **changes: Any) -> dict[str, Any]:
    return {
        "id": golden,
        "external_refs": [{"system": "shop", "id": golden}],
        "number": f"#{golden}",
        "status": "paid",
        "currency": "EUR",
        "created_at": "2026-11-22T10:15:00Z",
        "customer": {"id": customer_id, "email": "grace@example.com", "first_name": "Grace"},
        "shipping_address": {
            "name": "Grace Hopper",
            "line1": "1 Cobol Lane",
            "city": "Arlington",
            "postal_code": "22201",
            "country": "US",
        },
        "billing_address": {"name": "Grace Hopper", "line1": "2 Billing Way", "country": "US"},
        "lines": [
            {"line_id": "1", "sku": sku, "name": "Mug", "quantity": "3", "unit_price": "4.50"},
            {
                "line_id": "2",
                "sku": f"{sku}-B",
                "name": "Tray",
                "quantity": "1",
                "unit_price": "20",
            },
        ],
        "subtotal": "33.50",
        "total": "33.50",
        **changes,
    }


def parties(tryton: TrytonServer, code: str) -> list[dict[str, Any]]:
    return tryton.search_read(
        "party.party", [("code", "=", code)], ["name", "addresses", "contact_mechanisms"]
    )


def sales(tryton: TrytonServer, reference: str) -> list[dict[str, Any]]:
    return tryton.search_read(
        "sale.sale",
        [("reference", "=", reference)],
        [
            "state",
            "shipment_state",
            "party.code",
            "currency.code",
            "lines",
            "shipments",
            "shipment_address.street",
            "shipment_address.city",
            "invoice_address.street",
            "total_amount",
        ],
    )


def test_the_options_spec_is_complete() -> None:
    assert spec_problems(Tryton) == []


async def test_a_customer_delivered_twice_is_one_party(sink: Tryton, tryton: TrytonServer) -> None:
    event = delivery("tryton/customer_to_party", customer("cus_twice"))
    first = await sink.deliver(event)
    second = await sink.deliver(event)
    (party,) = parties(tryton, "cus_twice")
    assert party["name"] == "Ada Lovelace"
    assert first == second == DeliveryResult((CreatedId("customer", str(party["id"])),))
    assert len(party["addresses"]) == 1
    (address,) = tryton.search_read(
        "party.address", [("party", "=", party["id"])], ["street", "city", "country.code"]
    )
    assert (address["street"], address["city"], address["country."]["code"]) == (
        "12 Analytical Row",
        "London",
        "GB",
    )
    contacts = tryton.search_read(
        "party.contact_mechanism", [("party", "=", party["id"])], ["type", "value"]
    )
    assert sorted((c["type"], c["value"]) for c in contacts) == [
        ("email", "cus_twice@example.com"),
        ("phone", "+4915112345678"),
    ]


async def test_a_changed_customer_updates_the_same_party(
    sink: Tryton, tryton: TrytonServer
) -> None:
    await sink.deliver(delivery("tryton/customer_to_party", customer("cus_moves")))
    moved = customer("cus_moves", last_name="King", phone="+441632960961")
    moved["addresses"].append({"line1": "3 Ockham Park", "city": "Ripley", "country": "GB"})
    await sink.deliver(delivery("tryton/customer_to_party", moved))
    (party,) = parties(tryton, "cus_moves")
    assert party["name"] == "Ada King"
    assert len(party["addresses"]) == 2
    # the changed phone replaced the party's (it would otherwise stay in front of the new one)
    mechanisms = tryton.search_read(
        "party.contact_mechanism", [("party", "=", party["id"])], ["type", "value"]
    )
    assert sorted((m["type"], m["value"]) for m in mechanisms) == [
        ("email", "cus_moves@example.com"),
        ("phone", "+441632960961"),
    ]


async def test_a_customers_new_first_address_becomes_the_partys_first_and_the_old_stays(
    sink: Tryton, tryton: TrytonServer
) -> None:
    """The party's first address is Tryton's default (a new sale's) and the one it is polled
    with: a customer who moved has the new one first; the old one stays for the sales that
    shipped there."""
    await sink.deliver(delivery("tryton/customer_to_party", customer("cus_first")))
    moved = customer("cus_first")
    moved["addresses"] = [{"line1": "3 Ockham Park", "city": "Ripley", "country": "GB"}]
    await sink.deliver(delivery("tryton/customer_to_party", moved))
    await sink.deliver(delivery("tryton/customer_to_party", moved))  # again: nothing moves
    (party,) = parties(tryton, "cus_first")
    rows = tryton.search_read("party.address", [("party", "=", party["id"])], ["street"])
    first = customer("cus_first")["addresses"][0]["line1"]
    assert [row["street"] for row in rows] == ["3 Ockham Park", first]


async def test_a_product_is_upserted_by_its_sku(sink: Tryton, tryton: TrytonServer) -> None:
    product = {
        "id": "prd_lamp",
        "external_refs": [{"system": "shop", "id": "9"}],
        "sku": "LAMP-1",
        "name": "Lamp",
        "price": "30.00",
    }
    first = await sink.deliver(delivery("tryton/product_to_product", product))
    again = await sink.deliver(
        delivery("tryton/product_to_product", {**product, "name": "Desk lamp", "price": "35"})
    )
    (row,) = tryton.search_read(
        "product.product",
        [("code", "=", "LAMP-1")],
        ["name", "list_price_used"],
    )
    assert first == again == DeliveryResult((CreatedId("product", str(row["id"])),))
    assert row["name"] == "Desk lamp"
    assert Decimal(row["list_price_used"]["decimal"]) == Decimal("35")


async def test_an_order_becomes_a_confirmed_sale_once(sink: Tryton, tryton: TrytonServer) -> None:
    event = delivery("tryton/order_to_sale", order("ord_once", "cus_grace", "MUG-ONCE"))
    first = await sink.deliver(event)
    second = await sink.deliver(event)  # redelivered: found, not created again
    (sale,) = sales(tryton, "ord_once")
    assert first == second == DeliveryResult((CreatedId("order", str(sale["id"])),))
    assert sale["state"] == "processing"  # confirmed, and its processing ran
    assert sale["party."]["code"] == "cus_grace"
    assert sale["currency."]["code"] == "EUR"
    assert sale["shipment_address."]["street"] == "1 Cobol Lane"
    assert sale["invoice_address."]["street"] == "2 Billing Way"
    assert len(sale["shipments"]) == 1
    lines = tryton.search_read(
        "sale.line", [("sale", "=", sale["id"])], ["product.code", "quantity", "unit_price"]
    )
    assert sorted(
        (line["product."]["code"], line["quantity"], line["unit_price"]["decimal"])
        for line in lines
    ) == [("MUG-ONCE", 3.0, "4.50"), ("MUG-ONCE-B", 1.0, "20")]
    assert Decimal(sale["total_amount"]["decimal"]) == Decimal("33.50")
    products = tryton.search_read("product.product", [("code", "like", "MUG-ONCE%")], ["id"])
    assert len(products) == 2
    (party,) = parties(tryton, "cus_grace")
    assert len(party["addresses"]) == 2  # shipment and invoice addresses, each once


async def test_a_pending_order_is_a_quotation_until_it_comes_again_confirmed(
    sink: Tryton, tryton: TrytonServer
) -> None:
    """A pending order (a deal won in a CRM) is left a quotation, with its number, however often
    it is delivered; delivered again with another status it is confirmed, still one sale."""
    pending = order("ord_quote", "cus_quote", "MUG-QUOTE", status="pending")
    first = await sink.deliver(delivery("tryton/order_to_sale", pending))
    await sink.deliver(delivery("tryton/order_to_sale", pending))
    (sale,) = sales(tryton, "ord_quote")
    assert first == DeliveryResult((CreatedId("order", str(sale["id"])),))
    assert sale["state"] == "quotation"
    assert len(sale["lines"]) == 2 and not sale["shipments"]
    (numbered,) = tryton.search_read("sale.sale", [("id", "=", sale["id"])], ["number"])
    assert numbered["number"]  # Tryton numbers a sale when it is quoted
    confirmed = order("ord_quote", "cus_quote", "MUG-QUOTE", status="confirmed")
    await sink.deliver(delivery("tryton/order_to_sale", confirmed))
    (sale,) = sales(tryton, "ord_quote")
    assert sale["state"] == "processing"


async def test_a_second_order_reuses_the_party_and_products(
    sink: Tryton, tryton: TrytonServer
) -> None:
    await sink.deliver(delivery("tryton/order_to_sale", order("ord_a", "cus_repeat", "CUP")))
    await sink.deliver(delivery("tryton/order_to_sale", order("ord_b", "cus_repeat", "CUP")))
    assert len(parties(tryton, "cus_repeat")) == 1
    assert len(tryton.search_read("product.product", [("code", "=", "CUP")], ["id"])) == 1
    assert len(sales(tryton, "ord_a")) == len(sales(tryton, "ord_b")) == 1


async def test_a_sale_left_half_way_is_confirmed_on_redelivery(
    sink: Tryton, tryton: TrytonServer
) -> None:
    """A crash after Tryton created the sale, before it was quoted and confirmed: the event
    delivered again finds the draft and takes it on, without a second sale."""
    event = delivery("tryton/order_to_sale", order("ord_half", "cus_half", "HALF"))
    writer = sink._writer
    assert writer is not None
    party_id = await writer.upsert_party(event.data["party"])
    draft_id = await writer._create_sale(event.data["sale"], "ord_half", party_id)  # then "crash"
    (draft,) = sales(tryton, "ord_half")
    assert draft["state"] == "draft"
    assert await sink.deliver(event) == DeliveryResult((CreatedId("order", str(draft_id)),))
    (sale,) = sales(tryton, "ord_half")
    assert (sale["id"], sale["state"]) == (draft_id, "processing")


async def test_a_cancelled_order_cancels_the_sale(sink: Tryton, tryton: TrytonServer) -> None:
    placed = order("ord_cancel", "cus_cancel", "CANCEL")
    await sink.deliver(delivery("tryton/order_to_sale", placed))
    cancelled = {**placed, "status": "cancelled"}
    await sink.deliver(delivery("tryton/order_to_sale", cancelled))
    await sink.deliver(delivery("tryton/order_to_sale", cancelled))  # again: nothing more
    (sale,) = sales(tryton, "ord_cancel")
    # Tryton cannot cancel a sale in processing: its shipment and invoice are cancelled and
    # the sale shows the exception for someone to handle
    assert sale["shipment_state"] == "exception"
    shipments = tryton.search_read(
        "stock.shipment.out", [("id", "in", sale["shipments"])], ["state"]
    )
    assert [s["state"] for s in shipments] == ["cancelled"]
    invoices = tryton.search_read("account.invoice", [("sales", "=", sale["id"])], ["state"])
    assert [i["state"] for i in invoices] == ["cancelled"]


async def test_an_order_cancelled_before_it_reached_tryton_creates_no_sale(
    sink: Tryton, tryton: TrytonServer
) -> None:
    gone = order("ord_never", "cus_never", "NEVER", status="cancelled")
    assert await sink.deliver(delivery("tryton/order_to_sale", gone)) == DeliveryResult()
    assert sales(tryton, "ord_never") == []


async def test_trytons_validation_error_is_a_rejection_naming_its_message(
    sink: Tryton, tryton: TrytonServer
) -> None:
    document = {"product": {"code": "ODD-1", "name": "Odd", "type": "nonsense"}}
    with pytest.raises(DeliveryRejected) as rejected:
        await sink.deliver(Delivery("evt-odd", "t", None, "c", {}, document))
    assert "the mapped document's product: model.product.template.create: Tryton UserError" in (
        str(rejected.value)
    )  # the part of the document, the call, and Tryton's own message naming its field and value
    assert '"nonsense"' in str(rejected.value)
    assert tryton.search_read("product.product", [("code", "=", "ODD-1")], ["id"]) == []


async def test_a_missing_product_is_a_rejection_naming_the_line(tryton: TrytonServer) -> None:
    strict = build(tryton, create_products=False)
    try:
        with pytest.raises(DeliveryRejected) as rejected:
            await strict.deliver(
                delivery("tryton/order_to_sale", order("ord_nop", "cus_nop", "NO-SUCH-SKU"))
            )
    finally:
        await strict.close()
    assert "sale.lines[0].product.code 'NO-SUCH-SKU' is no product in Tryton" in str(rejected.value)
    assert tryton.search_read("sale.sale", [("reference", "=", "ord_nop")], ["id"]) == []
    assert tryton.search_read("product.product", [("code", "=", "NO-SUCH-SKU")], ["id"]) == []


async def test_an_unknown_currency_is_a_rejection_naming_it(sink: Tryton) -> None:
    odd = order("ord_xxx", "cus_xxx", "XXX", currency="XTS")
    with pytest.raises(DeliveryRejected) as rejected:
        await sink.deliver(delivery("tryton/order_to_sale", odd))
    assert "currency 'XTS'" in str(rejected.value)


async def test_a_document_without_a_party_code_is_rejected_naming_the_field(
    sink: Tryton,
) -> None:
    event = Delivery("evt-x", "t", None, "c", {}, {"party": {"name": "No code"}})
    with pytest.raises(DeliveryRejected) as rejected:
        await sink.deliver(event)
    assert "party.code is missing" in str(rejected.value)


async def test_an_unreachable_tryton_is_retriable(tryton: TrytonServer) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = build(tryton, url=f"http://127.0.0.1:{port}")
    try:
        with pytest.raises(DeliveryRetriable):
            await down.deliver(delivery("tryton/customer_to_party", customer("cus_down")))
    finally:
        await down.close()


async def test_an_expired_session_logs_in_again(sink: Tryton, tryton: TrytonServer) -> None:
    await sink.deliver(delivery("tryton/customer_to_party", customer("cus_s1")))
    rpc = sink._rpc
    assert rpc is not None and rpc._authorization is not None
    tryton.call("common.db.logout", authorization=rpc._authorization)  # the session is gone
    await sink.deliver(delivery("tryton/customer_to_party", customer("cus_s2")))
    assert len(parties(tryton, "cus_s2")) == 1


async def test_conformance_idempotency(tryton: TrytonServer) -> None:
    event = delivery("tryton/customer_to_party", customer("cus_conformance"))

    async def effects() -> int:
        return len(parties(tryton, "cus_conformance"))

    assert await idempotency_problems(build(tryton), event, effects, per_object=True) == []


async def test_check_connection_passes_and_says_what_it_checked(tryton: TrytonServer) -> None:
    said = await build(tryton).check_connection()
    assert "logged in" in said and "sale" in said


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"password": "env:HUB_TEST_TRYTON_WRONG"}, "refused the login"),
        ({"warehouse": "NOPE"}, "no warehouse with code 'NOPE'"),
        ({"account_category": "Nope"}, "no accounting product category named 'Nope'"),
        ({"url": "http://127.0.0.1:9"}, "cannot be reached"),
    ],
)
async def test_check_connection_failures_say_what_to_fix(
    tryton: TrytonServer, changes: dict[str, Any], expected: str
) -> None:
    """(An unknown database is not among them: trytond answers it with a 404 only after its
    connection pool's 30 s timeout.)"""
    connector = build(tryton, **changes)
    assert await check_problems(connector, [setup.HUB_PASSWORD, "not-the-password-0123456"]) == []
    from hub.errors import ConnectionCheckFailed

    with pytest.raises(ConnectionCheckFailed) as failed:
        await build(tryton, **changes).check_connection()
    assert expected in str(failed.value)


def test_hub_connectors_check_runs_the_example_against_tryton(
    tryton: TrytonServer, tmp_path: Path
) -> None:
    """examples/tryton.yaml, pointed at this Tryton, passes `hub check` and
    `hub connectors check erp`; with a wrong password the check fails and says so."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    text = (root / "examples/tryton.yaml").read_text()
    text = text.replace("url: http://127.0.0.1:8000", f"url: {tryton.url}")
    text = text.replace("database: tryton", f"database: {tryton.database}")
    text = text.replace("mappings: ../mappings", f"mappings: {root / 'mappings'}")
    config = tmp_path / "hub.yaml"
    config.write_text(text)

    def hub(*args: str, password: str) -> subprocess.CompletedProcess[str]:
        env = dict(
            os.environ,
            SHOPIFY_WEBHOOK_SECRET="example-webhook-secret-0123",
            SHOPIFY_ADMIN_TOKEN="example-admin-token-0123456",
            TRYTON_PASSWORD=password,
        )
        return subprocess.run(
            [sys.executable, "-m", "hub.cli", *args, "-c", str(config)],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )

    checked = hub("check", password=setup.HUB_PASSWORD)
    assert checked.returncode == 0, checked.stderr
    assert "route orders-to-tryton: canonical.order -> erp" in checked.stdout
    ok = hub("connectors", "check", "erp", password=setup.HUB_PASSWORD)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith("ok    erp (tryton): logged in to")
    wrong = hub("connectors", "check", "erp", password="not-the-password-0123456")
    assert wrong.returncode == 1
    assert "FAIL  erp (tryton):" in wrong.stdout and "refused the login 'hub'" in wrong.stdout
    assert "not-the-password" not in wrong.stdout


async def test_two_deliveries_of_one_customer_at_once_make_one_party(
    tryton: TrytonServer,
) -> None:
    """Both search before either creates; the party code is unique in Tryton, so the loser's
    create is refused and it takes the winner's party."""
    import asyncio

    first, second = build(tryton), build(tryton)
    try:
        event = delivery("tryton/customer_to_party", customer("cus_race"))
        results = await asyncio.gather(first.deliver(event), second.deliver(event))
    finally:
        await first.close()
        await second.close()
    (party,) = parties(tryton, "cus_race")
    assert results[0] == results[1] == DeliveryResult((CreatedId("customer", str(party["id"])),))
