"""Echo and loop prevention (hub/sync.py) end to end over Tansu, each route comparing its own
document: a shop, a CRM that reports its customers back (one name where the hub has two) and a
ledger that is only written. With real BottleCRM and Tryton: tests/bottlecrm/test_customer_sync.py.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from hub.runtime import Hub

from .support.harness import HubFactory, shopify_webhook, until
from .support.threaded import serve

SHOP_IN = """
description: the shop's customers -> canonical customer
source: {connector: shopify, event: customers/create}
target: {entity: customer}
fields:
  id: golden_id('customer', meta.system, id)
  external_refs:
    - {system: meta.system, id: str(id)}
  email: email
  first_name: first_name
  last_name: last_name
"""

# The CRM keeps one name per customer, and a company the hub does not write to it.
CRM_IN = """
description: the CRM's customers/update webhook -> canonical customer
source: {connector: shopify, event: customers/update}
target: {entity: customer}
fields:
  id: golden_id('customer', meta.system, id)
  external_refs:
    - {system: meta.system, id: str(id)}
  email: email
  last_name: name
  company: company
"""

CRM_OUT = """
description: canonical customer -> the CRM (one name)
source: {entity: customer}
target: {format: crm-customer}
fields:
  name: trim(concat(first_name, ' ', last_name))
  email: email
"""

LEDGER_OUT = """
description: canonical customer -> the ledger (names apart, and the company)
source: {entity: customer}
target: {format: ledger-customer}
fields:
  first_name: first_name
  last_name: last_name
  email: email
  company: company
"""


@dataclass
class System:
    """A customer API: POST /customers creates or updates one (by its e-mail) and answers its
    id."""

    name: str
    base: str = ""
    requests: list[tuple[str, Any]] = field(default_factory=list)
    ids: dict[str, str] = field(default_factory=dict)

    async def create(self, request: Request) -> JSONResponse:
        body = json.loads(await request.body())
        self.requests.append(("POST", body))
        self.ids.setdefault(body["email"], f"{self.name}-{len(self.ids) + 1}")
        return JSONResponse({"id": self.ids[body["email"]]}, 201)


def system(name: str) -> Iterator[System]:
    app = System(name)
    routes = [Route("/customers", app.create, methods=["POST"])]
    with serve(Starlette(routes=routes), lifespan="off") as base:
        app.base = base
        yield app


@pytest.fixture
def crm() -> Iterator[System]:
    yield from system("crm")


@pytest.fixture
def ledger() -> Iterator[System]:
    yield from system("ledger")


@pytest.fixture
def mappings(tmp_path: Path) -> Path:
    folder = tmp_path / "mappings"
    for name, text in {
        "shop/customer": SHOP_IN,
        "crm/customer_in": CRM_IN,
        "crm/customer": CRM_OUT,
        "ledger/customer": LEDGER_OUT,
    }.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.yaml").write_text(text)
    return folder


@pytest.fixture
async def hub(hubs: HubFactory, mappings: Path, crm: System, ledger: System) -> AsyncIterator[Hub]:
    config = f"""
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
    options: {{url: "{crm.base}/customers", result_id: /id}}
  ledger:
    connector: http
    system: ledger
    options: {{url: "{ledger.base}/customers", result_id: /id}}
routes:
  - {{name: shop-customers-in, from: shop, mapping: shop/customer}}
  - {{name: crm-customers-in, from: crmhooks, mapping: crm/customer_in}}
  - {{name: customers-to-crm, from: canonical.customer, to: crm, mapping: crm/customer,
      skip_origin: true}}
  - {{name: customers-to-ledger, from: canonical.customer, to: ledger, mapping: ledger/customer}}
"""
    yield await hubs.start(config=config)


async def webhook(hub: Hub, connection: str, topic: str, body: dict[str, Any]) -> None:
    await shopify_webhook(hub, body, topic, connection)


def dropped(hub: Hub, destination: str) -> float:
    return hub.metrics.value("hub_echoes_dropped_total", system="crm", destination=destination)


async def test_an_echo_is_written_nowhere_and_a_change_the_route_back_leaves_out_goes_on(
    hub: Hub, crm: System, ledger: System
) -> None:
    ada = {"id": 9001, "email": "ada@example.com", "first_name": "Ada", "last_name": "Lovelace"}
    await webhook(hub, "shop", "customers/create", ada)

    async def written() -> bool:
        return len(crm.requests) == 1 and len(ledger.requests) == 1

    await until(written)
    assert crm.requests == [("POST", {"name": "Ada Lovelace", "email": "ada@example.com"})]

    # The CRM's echo of the hub's write: one name where the ledger has two. It is the change
    # the ledger has already: not written to it (nor back to the CRM: skip_origin).
    echo = {"id": "crm-1", "email": "ada@example.com", "name": "Ada Lovelace"}
    await webhook(hub, "crmhooks", "customers/update", echo)

    async def echo_dropped() -> bool:
        return dropped(hub, "ledger") == 1

    await until(echo_dropped)
    # Saved again in the CRM, nothing the ledger gets changed: nothing new for the ledger.
    await webhook(hub, "crmhooks", "customers/update", echo)

    async def save_dropped() -> bool:
        return dropped(hub, "ledger") == 2

    await until(save_dropped)
    # The company changed in the CRM: a change the route back to the CRM does not write (it
    # compares equal there), and the ledger's route does: written to the ledger.
    await webhook(hub, "crmhooks", "customers/update", {**echo, "company": "Analytical"})

    async def to_ledger() -> bool:
        return len(ledger.requests) == 2

    await until(to_ledger)
    method, body = ledger.requests[1]
    assert (method, body["company"]) == ("POST", "Analytical")
    # and that change's own echo, once more the same: nothing new anywhere
    await webhook(hub, "crmhooks", "customers/update", {**echo, "company": "Analytical"})

    async def third_dropped() -> bool:
        return dropped(hub, "ledger") == 3

    await until(third_dropped)
    assert len(crm.requests) == 1
    assert len(ledger.requests) == 2
