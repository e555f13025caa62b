"""The bottlecrm connector against a real BottleCRM (tests/support/bottlecrm.py): the
conformance suite, webhook signatures (forged, stale), the sink writing contacts and accounts
once however often it is given them, and check_connection's failures. What BottleCRM holds is
read back through its own REST API."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import pytest

import connectors
from connectors import CreatedId, Delivery, InboundEvent
from connectors.bottlecrm import BottleCrm, BottleCrmOptions, sign
from connectors.conformance import (
    check_problems,
    forgery_problems,
    idempotency_problems,
    spec_problems,
)
from hub.errors import BadSignature, DeliveryRejected, MalformedPayload
from tests.support.bottlecrm import BottleCrmServer

TOKEN_ENV = "HUB_TEST_BOTTLECRM_TOKEN"
SECRET_ENV = "HUB_TEST_BOTTLECRM_WEBHOOK_SECRET"


@pytest.fixture(autouse=True)
def _secrets(bottlecrm: BottleCrmServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, bottlecrm.token)
    monkeypatch.setenv(SECRET_ENV, bottlecrm.webhook_secret)


def build(bottlecrm: BottleCrmServer, **overrides: Any) -> BottleCrm:
    options = {
        "url": bottlecrm.url,
        "token": f"env:{TOKEN_ENV}",
        "webhook_secret": f"env:{SECRET_ENV}",
        **overrides,
    }
    return BottleCrm("bottlecrm", BottleCrm.Options.model_validate(options))


def delivery(data: dict[str, Any], event_id: str, route: str = "customers-to-crm") -> Delivery:
    return Delivery(event_id, "hub.customer.upserted", None, "corr", {}, data=data, route=route)


def contacts(bottlecrm: BottleCrmServer, email: str) -> list[dict[str, Any]]:
    listed = bottlecrm.api("GET", f"contacts/?email={email}")
    return [c for c in listed["results"] if c["email"].lower() == email.lower()]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_registered_with_a_complete_spec() -> None:
    assert connectors.get("bottlecrm") is BottleCrm
    assert spec_problems(BottleCrm) == []


async def test_forged_requests_are_refused(bottlecrm: BottleCrmServer) -> None:
    body = json.dumps({"id": "e-1", "event": "contact.created", "data": {"id": "c-1"}}).encode()
    headers = {
        "x-bottlecrm-signature": sign(bottlecrm.webhook_secret, body),
        "x-bottlecrm-event": "contact.created",
        "x-bottlecrm-delivery": "d-1",
    }
    assert await forgery_problems(build(bottlecrm), body, headers) == []


def test_stale_and_future_signatures_are_refused_within_a_configurable_tolerance(
    bottlecrm: BottleCrmServer,
) -> None:
    body = b'{"event":"contact.updated","data":{"id":"c-1"}}'
    now = int(time.time())
    strict = build(bottlecrm)  # 300 s by default
    lenient = build(bottlecrm, signature_tolerance_s=3600)
    for when in (now - 600, now + 600):
        headers = {"X-BottleCRM-Signature": sign(bottlecrm.webhook_secret, body, when)}
        with pytest.raises(BadSignature, match="more than 300s from now"):
            strict.verify(headers, body)
        lenient.verify(headers, body)
    fresh = {"X-BottleCRM-Signature": sign(bottlecrm.webhook_secret, body, now - 10)}
    strict.verify(fresh, body)
    with pytest.raises(BadSignature, match="no webhook secret configured"):
        build(bottlecrm, webhook_secret=None).verify(fresh, body)


def test_describe_names_event_subject_and_delivery_id(bottlecrm: BottleCrmServer) -> None:
    source = build(bottlecrm)
    headers = {"x-bottlecrm-event": "deal.won", "x-bottlecrm-delivery": "7c0e-d"}
    payload = {"id": "e-9", "event": "deal.won", "data": {"id": "deal-1", "stage": "WON"}}
    event = source.describe(headers, payload)
    assert (event.type, event.subject, event.delivery_id) == ("deal.won", "deal-1", "7c0e-d")
    with pytest.raises(MalformedPayload, match="does not match"):
        source.describe({"x-bottlecrm-event": "contact.created"}, payload)
    with pytest.raises(MalformedPayload, match="missing X-BottleCRM-Event"):
        source.describe({}, {"data": {}})


async def test_check_connection_passes_and_explains_each_failure(
    bottlecrm: BottleCrmServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked = await build(bottlecrm).check_connection()
    assert "reads contacts and accounts" in checked
    monkeypatch.setenv("HUB_TEST_BOTTLECRM_WRONG", "bcrm_pat_not-a-token-of-this-crm-0123")
    wrong_token = build(bottlecrm, token="env:HUB_TEST_BOTTLECRM_WRONG")
    unreachable = build(bottlecrm, url=f"http://127.0.0.1:{closed_port()}")
    not_crm = build(bottlecrm, url=f"{bottlecrm.url}/elsewhere")
    secrets = [bottlecrm.token, bottlecrm.webhook_secret, "bcrm_pat_not-a-token-of-this-crm-0123"]
    for failing, says in (
        (wrong_token, "refused the token (HTTP 403"),
        (unreachable, "cannot be reached"),
        (not_crm, "HTTP 404"),
    ):
        assert await check_problems(failing, secrets) == []
        with pytest.raises(Exception, match=says.replace("(", r"\(")):
            await failing.check_connection()


async def test_a_customer_delivered_twice_and_through_two_routes_is_one_contact(
    bottlecrm: BottleCrmServer,
) -> None:
    email = "grace.twice@example.com"
    doc = {
        "contact": {
            "refs": [{"system": "shop", "id": "42"}],
            "first_name": "Grace",
            "last_name": "Hopper",
            "email": email,
            "phone": "+15555550100",
            "organization": "Navy",
            "city": "Arlington",
        }
    }
    sink = build(bottlecrm)

    async def effects() -> int:
        return len(contacts(bottlecrm, email))

    assert (
        await idempotency_problems(sink, delivery(doc, "evt-twice"), effects, per_object=True) == []
    )
    (contact,) = contacts(bottlecrm, email)
    assert (contact["first_name"], contact["last_name"]) == ("Grace", "Hopper")
    detail = bottlecrm.api("GET", f"contacts/{contact['id']}/")
    held = detail.get("contact_obj") or detail
    assert held["phone"] == "+15555550100"
    assert held["organization"] == "Navy"
    assert held["city"] == "Arlington"
    # what the sink reports is what the crosswalk links: BottleCRM's id, typed
    await sink.open()
    try:
        result = await sink.deliver(delivery(doc, "evt-again"))
    finally:
        await sink.close()
    assert result.created == (CreatedId("customer", f"contact:{contact['id']}"),)


async def test_a_known_crm_id_updates_that_contact_even_when_the_email_changed(
    bottlecrm: BottleCrmServer,
) -> None:
    created = bottlecrm.api(
        "POST",
        "contacts/",
        {"first_name": "Alan", "last_name": "Turing", "email": "alan.old@example.com"},
    )
    doc = {
        "contact": {
            "refs": [{"system": "bottlecrm", "id": f"contact:{created['id']}"}],
            "first_name": "Alan",
            "last_name": "Turing",
            "email": "alan.new@example.com",
        }
    }
    sink = build(bottlecrm)
    await sink.open()
    try:
        result = await sink.deliver(delivery(doc, "evt-known"))
    finally:
        await sink.close()
    assert result.created == (CreatedId("customer", f"contact:{created['id']}"),)
    assert contacts(bottlecrm, "alan.old@example.com") == []
    (moved,) = contacts(bottlecrm, "alan.new@example.com")
    assert moved["id"] == created["id"]


async def test_an_account_is_found_by_name_and_a_contact_without_email_is_refused(
    bottlecrm: BottleCrmServer,
) -> None:
    sink = build(bottlecrm)
    doc = {"account": {"refs": [], "name": "Difference Engines Ltd", "email": "o@engines.example"}}
    await sink.open()
    try:
        first = await sink.deliver(delivery(doc, "evt-acc-1"))
        second = await sink.deliver(delivery(doc, "evt-acc-2"))  # another event, same account
        with pytest.raises(DeliveryRejected, match=r"contact\.email is empty"):
            await sink.deliver(delivery({"contact": {"first_name": "Nobody"}}, "evt-noemail"))
        with pytest.raises(DeliveryRejected, match="exactly one of contact, account"):
            await sink.deliver(delivery({"customer": {}}, "evt-wrong"))
    finally:
        await sink.close()
    assert first.created == second.created
    listed = bottlecrm.api("GET", "accounts/?name=Difference%20Engines")
    accounts = listed["active_accounts"]["open_accounts"]
    assert [a["id"] for a in accounts] == [first.created[0].external_id.removeprefix("account:")]


def test_what_is_compared_of_a_written_record_is_what_the_hub_hears_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """hub.sync compares the record the sink writes with its echo: not the refs that find it,
    but the address, which the connector reads for a contact's webhook."""
    monkeypatch.setenv("HUB_TEST_STATE_TOKEN", "bcrm_pat_0123456789abcdef")
    options = BottleCrmOptions(url="https://crm.example.com", token="env:HUB_TEST_STATE_TOKEN")
    sink = BottleCrm("bottlecrm", options)
    written = {
        "contact": {
            "refs": [{"system": "tryton", "id": "3"}],
            "first_name": "Ada",
            "last_name": "Lovelace",
            "email": "ada@example.com",
            "city": "London",
        }
    }
    echo = {
        "contact": {
            "refs": [{"system": "bottlecrm", "id": "contact:1"}],
            "first_name": "Ada",
            "last_name": "Lovelace",
            "email": "ada@example.com",
            "city": "London",
        }
    }
    assert sink.state_of(written) == sink.state_of(echo)
    assert sink.state_of(written)["contact"]["email"] == "ada@example.com"
    moved = {"contact": {**echo["contact"], "city": "Marylebone"}}
    assert sink.state_of(written) != sink.state_of(moved)


async def test_a_contact_webhook_is_completed_with_the_address_the_api_shows(
    bottlecrm: BottleCrmServer,
) -> None:
    """BottleCRM's contact webhooks carry no address: the connector reads it before mapping,
    unless the record has one already (polled), and maps a deleted contact as it came."""
    created = bottlecrm.api(
        "POST",
        "contacts/",
        {
            "first_name": "Grace",
            "last_name": "Hopper",
            "email": "grace.address@example.com",
            "address_line": "1 Cobol Lane",
            "city": "Arlington",
            "postcode": "22201",
            "country": "US",
        },
    )
    source = build(bottlecrm)
    assert source.completes("contact.created") and source.completes("account.updated")
    assert not source.completes("lead.created")
    webhook = {"event": "contact.created", "data": {"id": created["id"], "first_name": "Grace"}}
    completed = await source.complete(InboundEvent("contact.created", created["id"], None), webhook)
    assert completed["data"] == {
        "id": created["id"],
        "first_name": "Grace",
        "address_line": "1 Cobol Lane",
        "city": "Arlington",
        "state": None,
        "postcode": "22201",
        "country": "US",
    }
    assert (
        await source.complete(InboundEvent("contact.updated", created["id"], None), completed)
        is None
    )
    bottlecrm.api("DELETE", f"contacts/{created['id']}/")
    assert (
        await source.complete(InboundEvent("contact.updated", created["id"], None), webhook) is None
    )


async def test_a_deal_comment_delivered_twice_is_one_comment_and_bad_ones_are_refused(
    bottlecrm: BottleCrmServer,
) -> None:
    deal = bottlecrm.api(
        "POST", "opportunities/", {"name": "Comet probe", "amount": "10.00", "currency": "USD"}
    )
    sink = build(bottlecrm)
    doc = {"deal": {"id": f"deal:{deal['id']}", "comment": "Sale SO42 in Tryton"}}
    await sink.open()
    try:
        first = await sink.deliver(delivery(doc, "evt-deal-1", route="sale-numbers-to-crm"))
        second = await sink.deliver(delivery(doc, "evt-deal-2", route="sale-numbers-to-crm"))
        with pytest.raises(DeliveryRejected, match=r"deal\.id is empty"):
            await sink.deliver(delivery({"deal": {"comment": "x"}}, "evt-deal-3"))
        with pytest.raises(DeliveryRejected, match=r"deal\.comment is empty"):
            await sink.deliver(delivery({"deal": {"id": deal["id"]}}, "evt-deal-4"))
        with pytest.raises(DeliveryRejected, match="does not exist"):
            gone = {"deal": {"id": "deal:00000000-0000-0000-0000-000000000000", "comment": "x"}}
            await sink.deliver(delivery(gone, "evt-deal-5"))
    finally:
        await sink.close()
    assert first.created == second.created == (CreatedId("order", f"deal:{deal['id']}"),)
    shown = bottlecrm.api("GET", f"opportunities/{deal['id']}/")
    assert [c["comment"] for c in shown["comments"]] == ["Sale SO42 in Tryton"]
