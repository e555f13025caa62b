"""A whole hub (real broker, real HTTP ingress) with a BottleCRM connection: a contact created in
BottleCRM arrives as a signed webhook and becomes a canonical customer; a canonical customer is
written to BottleCRM as one contact however often it is delivered, and its id is linked in the
crosswalk. What BottleCRM holds and what it sent are read through its own API and delivery log.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from connectors.bottlecrm import sign
from hub.bus import Publisher
from hub.db import crosswalk, retries
from hub.envelope import CloudEvent
from hub.runtime import Hub
from tests.support.bottlecrm import BottleCrmServer
from tests.support.harness import HubFactory, post, until

ROOT = Path(__file__).resolve().parents[2]


def hub_yaml(bottlecrm: BottleCrmServer, outbox: Path) -> str:
    return f"""
mappings: {ROOT / "mappings"}
connections:
  bottlecrm:
    connector: bottlecrm
    options:
      url: {bottlecrm.url}
      token: env:HUB_TEST_BOTTLECRM_TOKEN
      webhook_secret: env:HUB_TEST_BOTTLECRM_WEBHOOK_SECRET
  outbox:
    connector: file
    options: {{path: {outbox}}}
routes:
  - name: crm-contacts-created
    from: bottlecrm
    mapping: bottlecrm/contact_created
  - name: crm-contacts-updated
    from: bottlecrm
    mapping: bottlecrm/contact_updated
  - name: crm-deals-won
    from: bottlecrm
    mapping: bottlecrm/deal_won
  - name: customers-to-outbox
    from: canonical.customer
    to: outbox
  - name: orders-to-outbox
    from: canonical.order
    to: outbox
  - name: customers-to-crm
    from: canonical.customer
    to: bottlecrm
    mapping: bottlecrm/customer_to_contact
    when: "'bottlecrm' not in pluck(external_refs, 'system')"
"""


@pytest.fixture
async def hub(
    hubs: HubFactory,
    bottlecrm: BottleCrmServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Hub]:
    monkeypatch.setenv("HUB_TEST_BOTTLECRM_TOKEN", bottlecrm.token)
    monkeypatch.setenv("HUB_TEST_BOTTLECRM_WEBHOOK_SECRET", bottlecrm.webhook_secret)
    hub = await hubs.start(config=hub_yaml(bottlecrm, tmp_path / "outbox.jsonl"))
    bottlecrm.point_webhook(f"{hub.base_url}/webhooks/bottlecrm")
    try:
        yield hub
    finally:
        bottlecrm.point_webhook("http://127.0.0.1:9/hub-stopped", active=False)


def outbox(hub: Hub) -> list[dict[str, Any]]:
    path = Path(hub.config.connections["outbox"].options.path)  # type: ignore[attr-defined]
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


async def order_of_deal(hub: Hub, deal_id: object) -> dict[str, Any]:
    """The canonical order a won deal became, once it is in the outbox (exactly one)."""
    ref = {"system": "bottlecrm", "id": f"deal:{deal_id}"}

    def orders() -> list[dict[str, Any]]:
        return [e["data"] for e in outbox(hub) if ref in e["data"].get("external_refs", [])]

    async def arrived() -> bool:
        return bool(orders())

    await until(arrived)
    (order,) = orders()
    return order


def contacts(bottlecrm: BottleCrmServer, email: str) -> list[dict[str, Any]]:
    listed = bottlecrm.api("GET", f"contacts/?email={email}")
    return [c for c in listed["results"] if c["email"].lower() == email.lower()]


async def test_a_contact_created_in_bottlecrm_becomes_a_canonical_customer(
    hub: Hub, bottlecrm: BottleCrmServer
) -> None:
    # In a thread: BottleCRM sends the webhook to the hub (in this event loop) before answering.
    created = await asyncio.to_thread(
        bottlecrm.api,
        "POST",
        "contacts/",
        {
            "first_name": "Katherine",
            "last_name": "Johnson",
            "email": "Katherine.Johnson@Example.com",
            "phone": "+17575550123",
            "organization": "NASA",
        },
    )
    # BottleCRM sent it (Celery eager: before answering the create) and the hub took it.
    sent = [d for d in bottlecrm.deliveries() if d["event"] == "contact.created"]
    assert [(d["status"], d["response_status"]) for d in sent][-1:] == [("succeeded", 202)], (
        bottlecrm.log_tail()
    )

    def from_crm() -> list[dict[str, Any]]:
        ref = {"system": "bottlecrm", "id": f"contact:{created['id']}"}
        return [e["data"] for e in outbox(hub) if ref in e["data"]["external_refs"]]

    async def arrived() -> bool:
        return bool(from_crm())

    await until(arrived)
    (customer,) = from_crm()
    assert customer["id"] == hub.resolver.golden_id(
        "customer", "bottlecrm", f"contact:{created['id']}"
    )
    assert customer["email"] == "katherine.johnson@example.com"
    assert (customer["first_name"], customer["last_name"]) == ("Katherine", "Johnson")
    assert customer["company"] == "NASA"
    assert customer["phone"] == "+17575550123"
    # the route back to the CRM skipped it: still one contact with that e-mail
    assert len(await asyncio.to_thread(contacts, bottlecrm, "katherine.johnson@example.com")) == 1


async def test_a_canonical_customer_delivered_twice_is_one_contact_linked_in_the_crosswalk(
    hub: Hub, bottlecrm: BottleCrmServer
) -> None:
    customer = {
        "id": "cus_e2e_dorothy",
        "external_refs": [{"system": "shop", "id": "9001"}],
        "email": "dorothy.vaughan@example.com",
        "first_name": "Dorothy",
        "last_name": "Vaughan",
        "phone": "+17575550199",
    }
    events = [
        CloudEvent(
            id=event_id,
            source="/mappings/shopify/customers",
            type="hub.customer",
            data=json.dumps(customer).encode(),
            subject=customer["id"],
            key=customer["id"],
        )
        for event_id in ("cust-evt-1", "cust-evt-1", "cust-evt-2")  # redelivered, then changed
    ]
    publisher = Publisher(hub.settings, hub.bootstrap, 10.0)
    try:
        await publisher.wait(
            [publisher.send(hub.settings.canonical_topic("customer"), e) for e in events]
        )
    finally:
        await publisher.close()

    async def linked() -> list[Any]:
        return await hub.db.run(
            lambda conn: list(
                conn.execute(select(crosswalk).where(crosswalk.c.golden_id == customer["id"]))
            )
        )

    await until(linked)

    async def both_out() -> bool:
        return len([e for e in outbox(hub) if e["data"]["id"] == customer["id"]]) >= 2

    await until(both_out)  # the outbox saw both events, so the CRM route has had them too
    (contact,) = await asyncio.to_thread(contacts, bottlecrm, customer["email"])
    assert (contact["first_name"], contact["last_name"]) == ("Dorothy", "Vaughan")
    (link,) = await linked()
    assert (link.entity, link.system, link.external_id) == (
        "customer",
        "bottlecrm",
        f"contact:{contact['id']}",
    )


async def test_the_hub_refuses_forged_and_stale_webhooks_and_takes_a_redelivery_once(
    hub: Hub, bottlecrm: BottleCrmServer
) -> None:
    body = json.dumps(
        {
            "id": "3f2a-evt",
            "event": "contact.updated",
            "created_at": "2026-12-06T00:00:00Z",
            "org_id": "org-1",
            "data": {
                "id": "c-hub-1",
                "first_name": "Mary",
                "last_name": "Jackson",
                "email": "mary@example.com",
                "created_at": "2026-12-06T00:00:00Z",
                "updated_at": "2026-12-06T00:00:00Z",
            },
        }
    ).encode()
    headers = {
        "content-type": "application/json",
        "x-bottlecrm-event": "contact.updated",
        "x-bottlecrm-delivery": "delivery-hub-1",
    }
    secret = bottlecrm.webhook_secret
    forged = {**headers, "x-bottlecrm-signature": sign("whsec_not-the-secret-0123456789", body)}
    stale = {**headers, "x-bottlecrm-signature": sign(secret, body, int(time.time()) - 3600)}
    for refused in (forged, stale, headers):
        answer = await post(hub, body, refused, connection="bottlecrm")
        assert answer.status_code == 401, answer.text
    genuine = {**headers, "x-bottlecrm-signature": sign(secret, body)}
    first = await post(hub, body, genuine, connection="bottlecrm")
    assert first.status_code == 202, first.text
    # BottleCRM's retry of the same delivery: signed again, later, with the same delivery id
    again = {**headers, "x-bottlecrm-signature": sign(secret, body, int(time.time()) + 1)}
    second = await post(hub, body, again, connection="bottlecrm")
    assert second.status_code == 200
    assert second.json() == {"status": "duplicate", "id": first.json()["id"]}


async def test_a_deal_moved_to_won_becomes_a_pending_order_of_its_account(
    hub: Hub, bottlecrm: BottleCrmServer
) -> None:
    """As a sales person would: an account, a deal for it, then the deal moved to Closed Won.
    The deal.won webhook becomes a canonical order, pending (a quotation for the ERP)."""
    account = await asyncio.to_thread(
        bottlecrm.api, "POST", "accounts/", {"name": "Langley Research", "currency": "USD"}
    )
    deal = await asyncio.to_thread(
        bottlecrm.api,
        "POST",
        "opportunities/",
        {
            "name": "Wind tunnel time",
            "account": account["id"],
            "amount": "4200.00",
            "currency": "USD",
            "stage": "PROSPECTING",
        },
    )
    await asyncio.to_thread(
        bottlecrm.api,
        "PATCH",
        f"opportunities/{deal['id']}/",
        {"stage": "CLOSED_WON", "closed_on": "2026-12-06"},
    )
    won = [d for d in bottlecrm.deliveries() if d["event"] == "deal.won"]
    assert [(d["status"], d["response_status"]) for d in won] == [("succeeded", 202)], (
        bottlecrm.log_tail()
    )

    order = await order_of_deal(hub, deal["id"])
    assert order["status"] == "pending"
    assert order["number"] == "Wind tunnel time"
    assert (order["currency"], order["total"]) == ("USD", "4200.00")
    assert order["customer"]["id"] == hub.resolver.golden_id(
        "customer", "bottlecrm", f"account:{account['id']}"
    )
    assert [(line["name"], line["quantity"]) for line in order["lines"]] == [
        ("Wind tunnel time", "1")
    ]


async def test_a_won_deal_with_line_items_becomes_an_order_with_those_lines(
    hub: Hub, bottlecrm: BottleCrmServer
) -> None:
    """The deal.won webhook carries no lines; the connector reads them from BottleCRM's API
    before the event is stored, and each becomes an order line (a product's SKU with it)."""
    account = await asyncio.to_thread(
        bottlecrm.api, "POST", "accounts/", {"name": "Ames Aero", "currency": "EUR"}
    )
    created = await asyncio.to_thread(
        bottlecrm.api,
        "POST",
        "invoices/products/",
        {"name": "Sensor kit", "sku": "SENS-7", "price": "150.00", "currency": "EUR"},
    )
    product = created["product"]
    deal = await asyncio.to_thread(
        bottlecrm.api,
        "POST",
        "opportunities/",
        {
            "name": "Sensors for Ames",
            "account": account["id"],
            "amount": "999.00",
            "currency": "EUR",
            "stage": "PROSPECTING",
        },
    )
    for body in (
        {"product_id": product["id"], "quantity": "3", "unit_price": "150.00", "order": 1},
        {"name": "Installation", "quantity": "2", "unit_price": "80.50", "order": 2},
    ):
        await asyncio.to_thread(
            bottlecrm.api, "POST", f"opportunities/{deal['id']}/line-items/", body
        )
    await asyncio.to_thread(
        bottlecrm.api,
        "PATCH",
        f"opportunities/{deal['id']}/",
        {"stage": "CLOSED_WON", "closed_on": "2026-12-06"},
    )

    order = await order_of_deal(hub, deal["id"])
    assert order["status"] == "pending"
    assert [
        (line.get("sku"), line["name"], line["quantity"], line["unit_price"], line["total"])
        for line in order["lines"]
    ] == [
        ("SENS-7", "Sensor kit", "3.00", "150.00", "450.00"),
        (None, "Installation", "2.00", "80.50", "161.00"),
    ]


class Outage:
    """BottleCRM's API as the hub reaches it: down (nothing listens on the port) until
    :meth:`restore`, then forwarded to the real BottleCRM byte for byte."""

    def __init__(self, target: str) -> None:
        self.port = free_port()
        host, port = target.removeprefix("http://").split(":")
        self.target = (host, int(port.rstrip("/")))
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def restore(self) -> None:
        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            finally:
                writer.close()

        async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

        self.server = await asyncio.start_server(forward, "127.0.0.1", self.port)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_deal_won_webhook_is_accepted_while_bottlecrm_is_down_and_completed_after(
    hubs: HubFactory, bottlecrm: BottleCrmServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deal's lines are read from BottleCRM's API after the webhook is stored: while the
    API does not answer, the webhook is accepted all the same (202) and the event waits in the
    mapper's retries; once the API answers again it is completed and mapped, once."""
    monkeypatch.setenv("HUB_TEST_BOTTLECRM_TOKEN", bottlecrm.token)
    monkeypatch.setenv("HUB_TEST_BOTTLECRM_WEBHOOK_SECRET", bottlecrm.webhook_secret)
    account = await asyncio.to_thread(
        bottlecrm.api, "POST", "accounts/", {"name": "Glenn Research", "currency": "USD"}
    )
    deal = await asyncio.to_thread(
        bottlecrm.api,
        "POST",
        "opportunities/",
        {"name": "Icing tunnel", "account": account["id"], "amount": "640.00", "currency": "USD"},
    )
    outage = Outage(bottlecrm.url)
    config = hub_yaml(bottlecrm, tmp_path / "outbox.jsonl").replace(
        f"url: {bottlecrm.url}", f"url: {outage.url}"
    )
    config = config.replace(
        "    mapping: bottlecrm/deal_won\n",
        "    mapping: bottlecrm/deal_won\n"
        "    retry: {max_attempts: 1000, initial_delay: 50ms, max_delay: 200ms, max_total: 10m}\n",
    )
    hub = await hubs.start(config=config)
    bottlecrm.point_webhook(f"{hub.base_url}/webhooks/bottlecrm")
    try:
        await asyncio.to_thread(
            bottlecrm.api,
            "PATCH",
            f"opportunities/{deal['id']}/",
            {"stage": "CLOSED_WON", "closed_on": "2026-12-06"},
        )
        won = bottlecrm.sql(
            "SELECT status, response_status FROM webhook_delivery "
            "WHERE event = 'deal.won' AND payload->'data'->>'id' = %s",
            deal["id"],
        )
        assert [tuple(row) for row in won] == [("succeeded", 202)], bottlecrm.log_tail()

        async def waiting() -> bool:  # parked in the mapper's retries
            return bool(await parked(hub))

        await until(waiting)

        def orders() -> list[dict[str, Any]]:
            ref = {"system": "bottlecrm", "id": f"deal:{deal['id']}"}
            return [e["data"] for e in outbox(hub) if ref in e["data"].get("external_refs", [])]

        assert orders() == []
        await outage.restore()

        async def arrived() -> bool:
            return bool(orders())

        await until(arrived)
        (order,) = orders()
        assert order["number"] == "Icing tunnel"
        # completed from the API: the deal's account (read from accounts/<id>/) is its customer
        assert order["customer"]["id"] == hub.resolver.golden_id(
            "customer", "bottlecrm", f"account:{account['id']}"
        )

        async def done() -> bool:
            return not await parked(hub)

        await until(done)
        assert len(orders()) == 1
    finally:
        bottlecrm.point_webhook("http://127.0.0.1:9/hub-stopped", active=False)
        await outage.close()


async def parked(hub: Hub) -> list[Any]:
    return await hub.db.run(lambda conn: list(conn.execute(select(retries))))
