"""Customers kept in sync both ways between a real BottleCRM and a real Tryton by a whole hub
running examples/crm-erp.yaml (issue 15, flow 1), and the echo and loop prevention that keeps
one edit from coming back as a new change (hub/sync.py).

Every write the hub makes to either system is counted (the sinks' deliveries, per golden id),
and BottleCRM's own webhook log shows every save of the contact. A change has been through
the hub, and its echoes too, when a later change made in the same system after it (a
*barrier*: another contact, another party) has come out of the hub: webhooks are sent in
order of the saves, and a Tryton poll reads parties in order of their change."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from connectors.base import Delivery, DeliveryResult
from hub.mdm import DeterministicResolver
from hub.runtime import Hub
from tests.bottlecrm.crm_erp import example_hub
from tests.support.bottlecrm import BottleCrmServer
from tests.support.harness import HubFactory, until
from tests.support.tryton import TrytonServer

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.tryton


class Writes:
    """The hub's writes to each system, per golden id (counted around the sinks)."""

    def __init__(self, hub: Hub) -> None:
        self.count: Counter[tuple[str, str]] = Counter()
        for name in ("bottlecrm", "tryton"):
            sink = hub.config.connections[name]
            sink.deliver = self._counting(name, sink.deliver)  # type: ignore[attr-defined]

    def _counting(
        self, system: str, deliver: Callable[[Delivery], Any]
    ) -> Callable[[Delivery], Any]:
        async def counted(delivery: Delivery) -> DeliveryResult | None:
            self.count[(system, str(delivery.subject))] += 1
            result: DeliveryResult | None = await deliver(delivery)
            return result

        return counted

    def of(self, golden: str) -> dict[str, int]:
        return {s: self.count[(s, golden)] for s in ("bottlecrm", "tryton")}


@pytest.fixture
async def hub(
    hubs: HubFactory,
    bottlecrm: BottleCrmServer,
    tryton: TrytonServer,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Hub]:
    async with example_hub("crm-erp.yaml", hubs, bottlecrm, tryton, monkeypatch) as hub:
        yield hub


def party(tryton: TrytonServer, email: str) -> dict[str, Any] | None:
    """The party with this e-mail, its name, e-mail and phone (None: none yet)."""
    found = tryton.search_read(
        "party.contact_mechanism", [("type", "=", "email"), ("value", "=", email)], ["party"]
    )
    if not found:
        return None
    (row,) = tryton.search_read("party.party", [("id", "=", found[0]["party"])], ["code", "name"])
    mechanisms = tryton.search_read(
        "party.contact_mechanism", [("party", "=", row["id"])], ["type", "value"]
    )
    values = {m["type"]: m["value"] for m in mechanisms}
    return {**row, "email": values.get("email"), "phone": values.get("phone")}


async def crm_barrier(hub: Hub, bottlecrm: BottleCrmServer, tryton: TrytonServer) -> None:
    """A contact created in BottleCRM now has arrived in Tryton: what BottleCRM sent before
    it has been through the hub."""
    email = f"barrier-{uuid.uuid4().hex[:8]}@example.com"
    await asyncio.to_thread(
        bottlecrm.api,
        "POST",
        "contacts/",
        {"first_name": "B", "last_name": "Arrier", "email": email},
    )

    async def arrived() -> bool:
        return await asyncio.to_thread(party, tryton, email) is not None

    await until(arrived)


async def tryton_barrier(hub: Hub, bottlecrm: BottleCrmServer, tryton: TrytonServer) -> None:
    """A party created in Tryton now has arrived in BottleCRM: every party change before it
    has been polled and through the hub."""
    email = f"barrier-{uuid.uuid4().hex[:8]}@example.com"
    await asyncio.to_thread(
        tryton.rpc,
        "model.party.party.create",
        [
            {
                "name": "Tryton Barrier",
                "contact_mechanisms": [["create", [{"type": "email", "value": email}]]],
            }
        ],
    )

    async def arrived() -> bool:
        listed = await asyncio.to_thread(bottlecrm.api, "GET", f"contacts/?email={email}")
        return bool(listed["results"])

    await until(arrived)


async def test_a_contact_created_then_edited_in_the_crm_is_written_to_tryton_once_each(
    hub: Hub, bottlecrm: BottleCrmServer, tryton: TrytonServer
) -> None:
    writes = Writes(hub)
    created = await asyncio.to_thread(
        bottlecrm.api,
        "POST",
        "contacts/",
        {
            "first_name": "Katherine",
            "last_name": "Johnson",
            "email": "katherine.johnson@example.com",
            "phone": "+17575550123",
            "organization": "NASA",
        },
    )
    golden = DeterministicResolver().golden_id("customer", "bottlecrm", f"contact:{created['id']}")

    async def in_tryton() -> bool:
        found = await asyncio.to_thread(party, tryton, "katherine.johnson@example.com")
        return found is not None and found["phone"] == "+17575550123"

    await until(in_tryton)
    await asyncio.to_thread(
        bottlecrm.api, "PATCH", f"contacts/{created['id']}/", {"phone": "+17575550188"}
    )

    async def edited() -> bool:
        found = await asyncio.to_thread(party, tryton, "katherine.johnson@example.com")
        return found is not None and found["phone"] == "+17575550188"

    await until(edited)
    await crm_barrier(hub, bottlecrm, tryton)
    await tryton_barrier(hub, bottlecrm, tryton)  # Tryton's echoes polled and dropped too

    found = await asyncio.to_thread(party, tryton, "katherine.johnson@example.com")
    assert found is not None
    assert (found["code"], found["name"]) == (golden, "Katherine Johnson")
    # the party is linked to the same golden customer as the contact
    assert hub.resolver.golden_id("customer", "tryton", str(found["id"])) == golden
    # one write to Tryton per edit in the CRM (create, phone), none back to the CRM
    assert writes.of(golden) == {"bottlecrm": 0, "tryton": 2}
    # BottleCRM saved the contact only when its user did
    assert bottlecrm.saves(created["id"]) == ["contact.created", "contact.updated"]
    assert hub.metrics.echoes_dropped.labels("tryton", "bottlecrm")._value.get() >= 1


async def test_a_party_edited_in_tryton_updates_the_crm_contact_and_stops(
    hub: Hub, bottlecrm: BottleCrmServer, tryton: TrytonServer
) -> None:
    writes = Writes(hub)
    created = await asyncio.to_thread(
        bottlecrm.api,
        "POST",
        "contacts/",
        {"first_name": "Dorothy", "last_name": "Vaughan", "email": "dorothy@example.com"},
    )
    golden = DeterministicResolver().golden_id("customer", "bottlecrm", f"contact:{created['id']}")

    async def in_tryton() -> bool:
        return await asyncio.to_thread(party, tryton, "dorothy@example.com") is not None

    await until(in_tryton)
    # Its creation polled back (and dropped as an echo) before the edit: the writes counted
    # below are the edit's alone.
    await tryton_barrier(hub, bottlecrm, tryton)
    found = await asyncio.to_thread(party, tryton, "dorothy@example.com")
    assert found is not None
    before = dict(writes.of(golden))
    saved_before = len(bottlecrm.saves(created["id"]))
    # In Tryton, as its client does: the party's name and a phone in one write.
    await asyncio.to_thread(
        tryton.rpc,
        "model.party.party.write",
        [found["id"]],
        {
            "name": "Dorothy Johnson Vaughan",
            "contact_mechanisms": [["create", [{"type": "phone", "value": "+17575550100"}]]],
        },
    )

    async def in_crm() -> bool:
        now = await asyncio.to_thread(bottlecrm.contact, created["id"])
        return now.get("phone") == "+17575550100"

    await until(in_crm)
    await tryton_barrier(hub, bottlecrm, tryton)
    await crm_barrier(hub, bottlecrm, tryton)
    await tryton_barrier(hub, bottlecrm, tryton)

    now = await asyncio.to_thread(bottlecrm.contact, created["id"])
    assert (now["first_name"], now["last_name"]) == ("Dorothy", "Johnson Vaughan")
    after = writes.of(golden)
    # one write to the CRM for the edit; its echo was not written back to Tryton
    assert (after["bottlecrm"] - before["bottlecrm"], after["tryton"] - before["tryton"]) == (1, 0)
    assert bottlecrm.saves(created["id"])[saved_before:] == ["contact.updated"]


async def test_an_edit_in_both_systems_at_nearly_the_same_time_ends_in_the_later_one(
    hub: Hub, bottlecrm: BottleCrmServer, tryton: TrytonServer
) -> None:
    """The party's name is changed in Tryton, then the contact's in BottleCRM a moment later
    (before Tryton's change is polled): both end with the CRM's, the later edit."""
    created = await asyncio.to_thread(
        bottlecrm.api,
        "POST",
        "contacts/",
        {"first_name": "Mary", "last_name": "Jackson", "email": "mary.jackson@example.com"},
    )

    async def in_tryton() -> bool:
        return await asyncio.to_thread(party, tryton, "mary.jackson@example.com") is not None

    await until(in_tryton)
    await tryton_barrier(hub, bottlecrm, tryton)
    found = await asyncio.to_thread(party, tryton, "mary.jackson@example.com")
    assert found is not None
    await asyncio.to_thread(
        tryton.rpc, "model.party.party.write", [found["id"]], {"name": "Mary W. Jackson"}
    )
    await asyncio.to_thread(
        bottlecrm.api, "PATCH", f"contacts/{created['id']}/", {"last_name": "Winston Jackson"}
    )
    await tryton_barrier(hub, bottlecrm, tryton)
    await crm_barrier(hub, bottlecrm, tryton)
    await tryton_barrier(hub, bottlecrm, tryton)

    now = await asyncio.to_thread(bottlecrm.contact, created["id"])
    found = await asyncio.to_thread(party, tryton, "mary.jackson@example.com")
    assert found is not None
    assert (now["first_name"], now["last_name"]) == ("Mary", "Winston Jackson")
    assert found["name"] == "Mary Winston Jackson"


async def test_a_lead_reaches_tryton_only_once_converted_through_the_contact_it_becomes(
    hub: Hub, bottlecrm: BottleCrmServer, tryton: TrytonServer
) -> None:
    """A lead is not a customer yet: its webhooks change nothing in Tryton. Converting it in
    the CRM creates a contact (BottleCRM sends contact.created), which becomes a party once."""
    writes = Writes(hub)
    email = "grace.hopper@example.com"
    lead = {
        "title": "COBOL compilers",
        "first_name": "Grace",
        "last_name": "Hopper",
        "email": email,
        "phone": "+12025550147",
    }
    created = await asyncio.to_thread(bottlecrm.api, "POST", "leads/", lead)
    await asyncio.to_thread(
        bottlecrm.api, "PATCH", f"leads/{created['id']}/", {"description": "Met at a fair"}
    )
    await crm_barrier(hub, bottlecrm, tryton)  # the lead's webhooks have been through the hub
    assert await asyncio.to_thread(party, tryton, email) is None

    converted = await asyncio.to_thread(
        bottlecrm.api, "PUT", f"leads/{created['id']}/", {**lead, "status": "converted"}
    )
    assert converted["contact_id"], converted

    async def in_tryton() -> bool:
        return await asyncio.to_thread(party, tryton, email) is not None

    await until(in_tryton)
    await crm_barrier(hub, bottlecrm, tryton)
    await tryton_barrier(hub, bottlecrm, tryton)

    found = await asyncio.to_thread(party, tryton, email)
    assert found is not None
    golden = DeterministicResolver().golden_id(
        "customer", "bottlecrm", f"contact:{converted['contact_id']}"
    )
    assert (found["code"], found["name"], found["phone"]) == (
        golden,
        "Grace Hopper",
        "+12025550147",
    )
    assert writes.of(golden) == {"bottlecrm": 0, "tryton": 1}
    assert set(bottlecrm.saves(created["id"])) >= {"lead.created", "lead.updated"}


def streets(tryton: TrytonServer, party_id: int) -> list[str]:
    """The streets of the party's addresses, in Tryton's order."""
    rows = tryton.search_read("party.address", [("party", "=", party_id)], ["street"])
    return [row["street"] for row in rows]


async def test_a_contacts_address_reaches_the_party_and_a_move_is_written_once(
    hub: Hub, bottlecrm: BottleCrmServer, tryton: TrytonServer
) -> None:
    """The address is not in BottleCRM's webhooks: the connector reads it from the API. A
    party keeps the addresses it had (a sale may ship to them); the CRM keeps the contact's
    new one, also when the party is edited in Tryton afterwards."""
    writes = Writes(hub)
    email = "grace.moves@example.com"
    created = await asyncio.to_thread(
        bottlecrm.api,
        "POST",
        "contacts/",
        {
            "first_name": "Grace",
            "last_name": "Hopper",
            "email": email,
            "address_line": "1 Cobol Lane",
            "city": "Arlington",
            "postcode": "22201",
            "country": "US",
        },
    )
    golden = DeterministicResolver().golden_id("customer", "bottlecrm", f"contact:{created['id']}")

    async def party_streets() -> list[str]:
        found = await asyncio.to_thread(party, tryton, email)
        return [] if found is None else await asyncio.to_thread(streets, tryton, found["id"])

    async def in_tryton() -> bool:
        return await party_streets() == ["1 Cobol Lane"]

    await until(in_tryton)
    await tryton_barrier(hub, bottlecrm, tryton)
    await asyncio.to_thread(
        bottlecrm.api,
        "PATCH",
        f"contacts/{created['id']}/",
        {"address_line": "2 Navy Yard", "city": "Washington", "postcode": "20374"},
    )

    async def moved() -> bool:
        return "2 Navy Yard" in await party_streets()

    await until(moved)
    await tryton_barrier(hub, bottlecrm, tryton)
    await crm_barrier(hub, bottlecrm, tryton)
    assert writes.of(golden) == {"bottlecrm": 0, "tryton": 2}
    assert await party_streets() == ["2 Navy Yard", "1 Cobol Lane"]  # the new one first

    # edited in Tryton now (its name): the CRM gets the name and keeps the contact's address
    found = await asyncio.to_thread(party, tryton, email)
    assert found is not None
    await asyncio.to_thread(
        tryton.rpc, "model.party.party.write", [found["id"]], {"name": "Grace Brewster Hopper"}
    )

    async def renamed() -> bool:
        now = await asyncio.to_thread(bottlecrm.contact, created["id"])
        return now["last_name"] == "Brewster Hopper"

    await until(renamed)
    await tryton_barrier(hub, bottlecrm, tryton)
    await crm_barrier(hub, bottlecrm, tryton)

    now = await asyncio.to_thread(bottlecrm.contact, created["id"])
    assert (now["address_line"], now["city"], now["postcode"]) == (
        "2 Navy Yard",
        "Washington",
        "20374",
    )
    assert writes.of(golden) == {"bottlecrm": 1, "tryton": 2}
