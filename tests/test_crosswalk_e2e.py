"""Ids a destination assigns, end to end over Tansu: a CRM on 127.0.0.1 answers a create with
its id, the hub links it to the customer's golden id (hub/crosswalk.py)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from hub.crosswalk import Crosswalk
from hub.db import crosswalk, retries
from hub.mdm import DeterministicResolver
from hub.runtime import Hub

from .support.databases import database_url
from .support.harness import HubFactory, shopify_webhook, topic_records, until
from .support.threaded import serve

CUSTOMER_IN = """
description: Shopify customers/create -> canonical customer
source: {connector: shopify, event: customers/create}
target: {entity: customer}
fields:
  id: golden_id('customer', meta.connection, id)
  external_refs:
    - system: meta.connection
      id: str(id)
  email: lower(email)
  first_name: first_name
"""

# The CRM's webhooks come in through their own connection, whose system is the CRM's too.
CRM_CUSTOMER_IN = """
description: the CRM's customers/update webhook -> canonical customer
source: {connector: shopify, event: customers/update}
target: {entity: customer}
fields:
  id: golden_id('customer', meta.system, id)
  external_refs:
    - system: meta.system
      id: str(id)
  email: lower(email)
  first_name: first_name
"""

CUSTOMER_UPDATE_IN = CUSTOMER_IN.replace("customers/create", "customers/update")

# crm_id: the CRM's id of this customer, once the CRM reported one (the crosswalk's reverse
# lookup); the connection's update_path sends the event to it as an update.
CUSTOMER_OUT = """
description: canonical customer -> the CRM's customer document
source: {entity: customer}
target: {format: crm-customer}
fields:
  crm_id: external_id('customer', 'crm', id)
  name: first_name
  email: email
"""


@dataclass
class Crm:
    """A CRM's customer API: POST /customers creates one and answers its id (the same again
    for a request with a known Idempotency-Key); PUT /customers/{id} replaces it."""

    base: str = ""
    customers: dict[str, Any] = field(default_factory=dict)
    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    by_key: dict[str, str] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)  # the ce-id of each request

    async def create(self, request: Request) -> JSONResponse:
        body = json.loads(await request.body())
        self.requests.append(("POST", request.url.path, body))
        self.events.append(request.headers.get("ce-id", ""))
        key = request.headers.get("idempotency-key", "")
        if key not in self.by_key:
            self.by_key[key] = f"crm-{len(self.customers) + 1}"
            self.customers[self.by_key[key]] = body
        return JSONResponse({"id": self.by_key[key], "rev": "1"}, 201)

    async def replace(self, request: Request) -> JSONResponse:
        body = json.loads(await request.body())
        their_id = request.path_params["id"]
        self.requests.append(("PUT", request.url.path, body))
        self.events.append(request.headers.get("ce-id", ""))
        if their_id not in self.customers:
            return JSONResponse({"error": "no such customer"}, 404)
        self.customers[their_id] = body
        return JSONResponse({"id": their_id}, 200)


@pytest.fixture
def crm() -> Iterator[Crm]:
    app = Crm()
    routes = [
        Route("/customers", app.create, methods=["POST"]),
        Route("/customers/{id}", app.replace, methods=["PUT"]),
    ]
    with serve(Starlette(routes=routes), lifespan="off") as base:
        app.base = base
        yield app


def hub_yaml(mappings: Path, crm: Crm, crm_options: str = "") -> str:
    return f"""
mappings: {mappings}
connections:
  shop:
    connector: shopify
    options: {{webhook_secret: env:TEST_SHOPIFY_SECRET}}
  crmhooks:
    connector: shopify
    system: crm
    options: {{webhook_secret: env:TEST_SHOPIFY_SECRET}}
  crm:
    connector: http
    system: crm
    options:
      url: {crm.base}/customers
      result_id: /id
      result_version: /rev
      update_path: "{{crm_id}}"
{crm_options}
routes:
  - name: shop-customers-in
    from: shop
    mapping: shop/customer
  - name: shop-customer-updates-in
    from: shop
    mapping: shop/customer_update
  - name: crm-customers-in
    from: crmhooks
    mapping: crm/customer_in
  - name: customers-to-crm
    from: canonical.customer
    to: crm
    mapping: crm/customer
"""


@pytest.fixture
def mappings(tmp_path: Path) -> Path:
    folder = tmp_path / "mappings"
    (folder / "shop").mkdir(parents=True)
    (folder / "crm").mkdir()
    (folder / "shop" / "customer.yaml").write_text(CUSTOMER_IN)
    (folder / "shop" / "customer_update.yaml").write_text(CUSTOMER_UPDATE_IN)
    (folder / "crm" / "customer.yaml").write_text(CUSTOMER_OUT)
    (folder / "crm" / "customer_in.yaml").write_text(CRM_CUSTOMER_IN)
    return folder


@pytest.fixture
async def hub(hubs: HubFactory, mappings: Path, crm: Crm) -> AsyncIterator[Hub]:
    yield await hubs.start(config=hub_yaml(mappings, crm))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def hub_on(
    request: pytest.FixtureRequest, hubs: HubFactory, mappings: Path, crm: Crm, tmp_path: Path
) -> AsyncIterator[Hub]:
    """The hub on its SQLite file or on a fresh PostgreSQL database."""
    async with database_url(request.param, tmp_path) as url:
        yield await hubs.start(config=hub_yaml(mappings, crm), database_url=url)


KEY = ("crm", "crm-1")


async def customer_webhook(
    hub: Hub,
    customer_id: int | str,
    first_name: str,
    connection: str = "shop",
    topic: str = "customers/create",
) -> None:
    body = {"id": customer_id, "email": f"C{customer_id}@Example.com", "first_name": first_name}
    await shopify_webhook(hub, body, topic, connection)


async def crosswalk_rows(hub: Hub) -> list[Any]:
    return await hub.db.run(lambda conn: list(conn.execute(select(crosswalk))))


async def parked_count(hub: Hub) -> int:
    return await hub.db.run(
        lambda conn: conn.execute(select(func.count()).select_from(retries)).scalar_one()
    )


async def test_the_id_a_destination_assigned_is_linked_to_the_golden_id(
    hub_on: Hub, crm: Crm
) -> None:
    hub = hub_on
    await customer_webhook(hub, 7001, "Ada")

    async def linked() -> bool:
        return bool(await crosswalk_rows(hub))

    await until(linked)
    [row] = await crosswalk_rows(hub)
    golden = DeterministicResolver().golden_id("customer", "shop", "7001")
    assert (row.entity, row.system, row.external_id, row.golden_id) == (
        "customer",
        "crm",  # the connection's system (hub.yaml), not its name
        "crm-1",
        golden,
    )
    assert (row.linked_by, row.version) == ("sink:crm", "1")
    assert crm.customers == {"crm-1": {"name": "Ada", "email": "c7001@example.com"}}
    assert hub.metrics.value("hub_crosswalk_links_total", destination="crm", outcome="linked") == 1
    # the id crm-1 derived before it was linked (what an event from the CRM carried until then)
    # is an alias of the golden id, with the step that stored it
    alias = await hub.mdm.golden("customer", DeterministicResolver().golden_id("customer", *KEY))
    assert alias is not None and (alias["status"], alias["resolves_to"]) == ("alias", golden)
    assert [(h["action"], h["actor"]) for h in alias["history"]] == [("alias", "sink:crm")]


async def test_a_link_that_fails_loses_nothing_and_resends_nothing(hub: Hub, crm: Crm) -> None:
    database = hub.settings.state_dir / "hub.db"
    with sqlite3.connect(database) as conn:  # links fail; reads (golden ids) still work
        conn.execute(
            "CREATE TRIGGER no_links BEFORE INSERT ON crosswalk "
            "BEGIN SELECT RAISE(ABORT, 'links refused'); END"
        )
    await customer_webhook(hub, 7002, "Grace")

    async def counted() -> bool:
        failed = hub.metrics.value("hub_crosswalk_links_total", destination="crm", outcome="failed")
        return failed == 1

    await until(counted)
    # a second customer goes through behind it; the first was recorded, not retried or resent
    await customer_webhook(hub, 7003, "Edsger")

    async def both() -> bool:
        return len(crm.requests) >= 2

    await until(both)

    async def recorded() -> bool:
        return len(await hub.db.delivered("crm", crm.events)) == 2

    await until(recorded)
    assert [(method, path) for method, path, _ in crm.requests] == [
        ("POST", "/customers"),
        ("POST", "/customers"),
    ]
    assert await parked_count(hub) == 0  # nothing parked for a retry
    assert (
        hub.metrics.value("hub_events_delivered_total", route="customers-to-crm", destination="crm")
        == 2
    )


async def test_an_id_linked_elsewhere_is_a_conflict_and_the_delivery_stands(
    hub: Hub, crm: Crm
) -> None:
    await Crosswalk(hub.db).link("customer", "crm", "crm-1", "cus_someone_else", linked_by="test")
    await customer_webhook(hub, 7004, "Barbara")

    async def counted() -> bool:
        return (
            hub.metrics.value("hub_crosswalk_links_total", destination="crm", outcome="conflict")
            == 1
        )

    await until(counted)
    assert await Crosswalk(hub.db).lookup("customer", "crm", "crm-1") == "cus_someone_else"

    async def recorded() -> bool:
        return len(await hub.db.delivered("crm", crm.events)) == 1

    await until(recorded)
    assert len(crm.requests) == 1


async def test_an_event_from_that_system_about_that_object_resolves_to_the_same_golden_id(
    hub: Hub, crm: Crm
) -> None:
    await customer_webhook(hub, 7005, "Ada")

    async def linked() -> bool:
        return bool(await crosswalk_rows(hub))

    await until(linked)
    golden = DeterministicResolver().golden_id("customer", "shop", "7005")
    # the mapper's cache forgets what this process learnt: the link is read from the database
    hub.resolver.forget()  # type: ignore[attr-defined]
    await customer_webhook(hub, "crm-1", "Ada L.", connection="crmhooks", topic="customers/update")
    topic = hub.settings.canonical_topic("customer")

    async def both_mapped() -> bool:
        return len(await topic_records(hub.bootstrap, topic)) == 2

    await until(both_mapped)
    records = await topic_records(hub.bootstrap, topic)
    assert [r.key.decode() for r in records] == [golden, golden]
    assert [json.loads(r.value)["first_name"] for r in records] == ["Ada", "Ada L."]


async def test_an_update_goes_to_the_id_the_destination_assigned_never_as_a_second_create(
    hub: Hub, crm: Crm
) -> None:
    await customer_webhook(hub, 7006, "Ada")

    async def linked() -> bool:
        return bool(await crosswalk_rows(hub))

    await until(linked)
    assert [(m, path) for m, path, _ in crm.requests] == [("POST", "/customers")]
    # the reverse lookup is read from the database, not from what this process learnt
    hub.resolver.forget()  # type: ignore[attr-defined]
    await customer_webhook(hub, 7006, "Ada L.", topic="customers/update")

    async def updated() -> bool:
        return len(crm.requests) >= 2

    await until(updated)

    async def recorded() -> bool:
        return len(await hub.db.delivered("crm", crm.events)) == 2

    await until(recorded)
    assert [(m, path) for m, path, _ in crm.requests] == [
        ("POST", "/customers"),
        ("PUT", "/customers/crm-1"),
    ]
    # the id addresses the request; the document sent is the customer's alone
    assert crm.customers == {"crm-1": {"name": "Ada L.", "email": "c7006@example.com"}}
    [row] = await crosswalk_rows(hub)
    assert (row.system, row.external_id) == ("crm", "crm-1")  # still one link
