"""``/api/mdm`` (hub/api/mdm.py) on a real hub over HTTP, on SQLite and PostgreSQL: lookup,
golden record, search, the review queue, merge and unmerge with their events on the broker,
data-quality counts, the ops guard, hostile input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from hub.auth import Auth
from hub.crosswalk import Crosswalk
from hub.envelope import CloudEvent, header_value
from hub.mdm import DeterministicResolver
from hub.runtime import Hub

from .support.databases import hub_database_overrides  # noqa: F401  (fixture database_url)
from .support.harness import HubFactory, config_text, topic_records, until
from .test_mdm_service import ANNA, ANNA_CRM, MAYBE_ANNA, OTTO

ROOT = Path(__file__).resolve().parents[1]
MDM_CONFIG = f"mdm: {ROOT / 'examples' / 'mdm.yaml'}\n" + config_text(None)


async def api(
    hub: Hub,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    *,
    who: str | None = None,
    **kwargs: Any,
) -> httpx.Response:
    """A request to ``/api/mdm``: as the loopback operator, or logged in as steward ``who``."""
    async with httpx.AsyncClient(base_url=hub.base_url, timeout=30) as client:
        if who is not None:
            if not await _has(hub, who):
                await Auth(hub.db).add_user(who, PASSWORD, "steward")
            answer = await client.post("/api/auth/login", json={"name": who, "password": PASSWORD})
            assert answer.status_code == 200, answer.text
            headers = {**(headers or {}), "x-csrf-token": answer.json()["csrf"]}
        return await client.request(method, f"/api/mdm{path}", headers=headers, **kwargs)


PASSWORD = "correct horse battery"


async def _has(hub: Hub, name: str) -> bool:
    return any(u["name"] == name for u in await Auth(hub.db).users())


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


def refused(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "message"}, body
    return str(body["message"])


async def test_stewardship_round_trip(hubs: HubFactory, database_url: dict[str, str]) -> None:
    hub = await hubs.start(
        None, config=MDM_CONFIG, roles=frozenset({"ingress"}), kafka_partitions=3, **database_url
    )
    anna = await hub.mdm.resolve("customer", "shop", "1", ANNA)
    await hub.mdm.resolve("customer", "crm", "c-7", ANNA_CRM)
    maybe = await hub.mdm.match_record("customer", "crm", "c-8", MAYBE_ANNA)
    assert maybe.review_id is not None
    otto = await hub.mdm.resolve("customer", "shop", "2", {**OTTO, "email": "not an e-mail"})

    # lookup and golden record
    link = ok(
        await api(hub, "GET", "/customer/lookup", params={"system": "crm", "external_id": "c-7"})
    )
    assert (link["golden_id"], link["resolves_to"]) == (anna, anna)
    assert link["linked_by"].startswith("match:")
    refused(
        await api(hub, "GET", "/customer/lookup", params={"system": "crm", "external_id": "x"}),
        404,
    )
    record = ok(await api(hub, "GET", f"/customer/golden/{anna}"))
    assert record["status"] == "active"
    assert record["external_refs"] == [
        {"system": "shop", "id": "1"},
        {"system": "crm", "id": "c-7"},
    ]
    assert record["fields"]["phone"]["system"] == "shop"  # only the shop's record has one
    assert record["fields"]["phone"]["source_id"] == "1"
    assert [h["action"] for h in record["history"]] == ["link", "new"]  # newest first
    # c-7's deterministic id (published before MDM, perhaps) resolves to the golden record
    old = DeterministicResolver().golden_id("customer", "crm", "c-7")
    alias = ok(await api(hub, "GET", f"/customer/golden/{old}"))
    assert (alias["status"], alias["merged_into"], alias["resolves_to"]) == ("alias", anna, anna)
    refused(await api(hub, "GET", "/customer/golden/cus_nope"), 404)
    refused(await api(hub, "GET", "/planets/golden/x"), 404)

    # search, normalised as the matcher does
    found = ok(
        await api(hub, "GET", "/customer/search", params={"email": " ANNA.Mueller@example.com"})
    )
    assert [g["golden_id"] for g in found["items"]] == [anna]
    found = ok(await api(hub, "GET", "/customer/search", params={"name": "müller ANNA"}))
    assert anna in [g["golden_id"] for g in found["items"]]
    found = ok(await api(hub, "GET", "/customer/search", params={"phone": "+49 151 23456789"}))
    assert [g["golden_id"] for g in found["items"]] == [anna]
    found = ok(await api(hub, "GET", "/customer/search", params={"name": "Otto Müller"}))
    assert found["items"] == []

    # the review queue: accept as a match merges; the events go out on both keys
    queue = ok(await api(hub, "GET", "/reviews"))
    assert [t["id"] for t in queue["items"]] == [maybe.review_id] and queue["total"] == 1
    task = ok(await api(hub, "GET", f"/reviews/{maybe.review_id}"))
    assert task["candidates"][0]["golden_id"] == anna and task["explanation"]
    topic = hub.settings.canonical_topic("customer")
    await hub.publisher.publish(
        topic,
        CloudEvent(
            id="before", source="test", type="hub.customer", data=b"{}", key=maybe.golden_id
        ),
    )
    # the steward is who is logged in: a name in the body is refused, nothing decided
    refused_body = await api(
        hub, "POST", f"/reviews/{maybe.review_id}/accept", json={"steward": "mallory"}, who="ann"
    )
    assert "not a name given in the body" in refused(refused_body, 422)
    accepted = ok(
        await api(
            hub,
            "POST",
            f"/reviews/{maybe.review_id}/accept",
            json={"reason": "same", "steward": "ann"},  # one's own name is accepted
            who="ann",
        )
    )
    assert accepted["status"] == "accepted" and accepted["decided_by"] == "steward:ann"
    audit = await Auth(hub.db).audit_rows(10, None)
    assert [(a["actor"], a["action"]) for a in audit[:1]] == [
        ("user:ann", f"POST /mdm/reviews/{maybe.review_id}/accept")
    ]
    assert accepted["decision"]["merged_into"] == anna
    refused(await api(hub, "POST", f"/reviews/{maybe.review_id}/accept", json={}), 409)
    refused(await api(hub, "POST", f"/reviews/{maybe.review_id}/reject"), 409)
    assert ok(await api(hub, "GET", "/reviews"))["total"] == 0
    # the merged id keeps resolving, to the survivor; later events are keyed by it
    merged = ok(await api(hub, "GET", f"/customer/golden/{maybe.golden_id}"))
    assert (merged["status"], merged["merged_into"], merged["resolves_to"]) == (
        "merged",
        anna,
        anna,
    )
    after = await hub.mdm.resolve("customer", "crm", "c-8")
    assert after == anna
    await hub.publisher.publish(
        topic, CloudEvent(id="after", source="test", type="hub.customer", data=b"{}", key=after)
    )
    records = await topic_records(hub.bootstrap, topic)
    by_key: dict[str, list[str]] = {}
    for r in records:  # sorted by partition and offset: each key's order as consumers see it
        by_key.setdefault(r.key.decode(), []).append(header_value(r.headers, "ce_type") or "")
    assert by_key[maybe.golden_id] == ["hub.customer", "hub.customer.merged"]
    # the merge, the golden record it left (for the systems to follow), then the later event
    assert by_key[anna] == ["hub.customer.merged", "hub.customer", "hub.customer"]
    merge_event = next(
        r for r in records if header_value(r.headers, "ce_type") == "hub.customer.merged"
    )
    data = json.loads(merge_event.value)
    assert (data["survivor"], data["merged"]) == (anna, maybe.golden_id)
    assert data["actor"] == "steward:ann" and data["refs"] == [{"system": "crm", "id": "c-8"}]

    # unmerge through the API restores the crosswalk
    ok(await api(hub, "POST", "/customer/unmerge", json={"merged": maybe.golden_id}, who="bob"))
    assert await hub.mdm.resolve("customer", "crm", "c-8") == maybe.golden_id
    refused(await api(hub, "POST", "/customer/unmerge", json={"merged": maybe.golden_id}), 409)
    # a steward's merge, and its refusals
    ok(await api(hub, "POST", "/customer/merge", json={"survivor": anna, "merged": otto}))
    assert await hub.mdm.resolve("customer", "shop", "2") == anna
    refused(await api(hub, "POST", "/customer/merge", json={"survivor": anna, "merged": otto}), 409)
    refused(
        await api(hub, "POST", "/customer/merge", json={"survivor": anna, "merged": "cus_x"}), 404
    )
    refused(await api(hub, "POST", "/customer/merge", json={"survivor": anna, "merged": anna}), 409)
    unmerged = [
        r
        for r in await topic_records(hub.bootstrap, topic)
        if header_value(r.headers, "ce_type") == "hub.customer.unmerged"
    ]
    assert sorted(r.key.decode() for r in unmerged) == sorted([maybe.golden_id, anna])

    # reject keeps the record apart
    berta = {"first_name": "Berta", "last_name": "Klein", "email": "berta@example.de"}
    berta |= {"street": "Ringstr. 1", "postcode": "50667", "city": "Köln", "country": "DE"}
    await hub.mdm.resolve("customer", "shop", "3", {**berta, "date_of_birth": "1970-01-01"})
    maybe_berta = {"first_name": "Berta", "last_name": "Kleine", "email": "bk@example.net"}
    maybe_berta |= {"postcode": "50667", "date_of_birth": "1971-02-01"}
    again = await hub.mdm.match_record("customer", "pos", "p-1", maybe_berta)
    assert again.review_id is not None
    rejected = ok(await api(hub, "POST", f"/reviews/{again.review_id}/reject", who="bob"))
    assert rejected["status"] == "rejected" and rejected["decided_by"] == "steward:bob"
    assert await hub.mdm.resolve("customer", "pos", "p-1") == again.golden_id

    quality = ok(await api(hub, "GET", "/quality"))
    assert quality["golden_records"] == {"active": 4, "merged": 1, "aliases": 1}
    assert quality["review_tasks"] == {"open": 0, "accepted": 1, "rejected": 1}
    assert quality["merges"] == 2 and quality["unmerges"] == 1 and quality["duplicates_merged"] == 1
    assert quality["duplicates_linked"] == 1  # crm c-7 by score
    assert {"system": "shop", "field": "email", "records": 1} in quality["normalisation_failures"]
    customer_only = ok(await api(hub, "GET", "/quality", params={"entity": "product"}))
    assert customer_only["golden_records"] == {"active": 0, "merged": 0, "aliases": 0}


async def test_the_ops_guard_applies(hubs: HubFactory) -> None:
    hub = await hubs.start(
        None, config=MDM_CONFIG, roles=frozenset({"ingress"}), ops_token="s3cret"
    )
    anna = await hub.mdm.resolve("customer", "shop", "1", ANNA)
    otto = await hub.mdm.resolve("customer", "shop", "2", OTTO)
    refused(await api(hub, "GET", f"/customer/golden/{anna}"), 401)
    refused(await api(hub, "GET", "/quality", {"authorization": "Bearer wrong"}), 401)
    token = {"authorization": "Bearer s3cret"}
    body = {"survivor": anna, "merged": otto}
    evil = {**token, "origin": "https://evil.example"}
    refused(await api(hub, "POST", "/customer/merge", evil, json=body), 403)
    refused(
        await api(
            hub, "POST", "/customer/merge", {**token, "sec-fetch-site": "cross-site"}, json=body
        ),
        403,
    )
    form = {**token, "content-type": "text/plain"}
    refused(await api(hub, "POST", "/customer/merge", form, content=json.dumps(body)), 415)
    assert await hub.mdm.resolve("customer", "shop", "2") == otto  # nothing merged
    ok(await api(hub, "POST", "/customer/merge", token, json=body))
    assert await hub.mdm.resolve("customer", "shop", "2") == anna

    # every route is in the OpenAPI document, under the mdm tag, with the guard's refusals
    async with httpx.AsyncClient(base_url=hub.base_url) as client:
        paths = (await client.get("/openapi.json")).json()["paths"]
    mdm = {
        (method, path)
        for path, operations in paths.items()
        if path.startswith("/api/mdm")
        for method, operation in operations.items()
        if "mdm" in operation["tags"] and {"401", "403"} <= set(operation["responses"])
    }
    assert mdm == {
        ("get", "/api/mdm/{entity}/lookup"),
        ("get", "/api/mdm/{entity}/golden/{golden_id}"),
        ("get", "/api/mdm/{entity}/search"),
        ("get", "/api/mdm/reviews"),
        ("get", "/api/mdm/reviews/{review_id}"),
        ("post", "/api/mdm/reviews/{review_id}/accept"),
        ("post", "/api/mdm/reviews/{review_id}/reject"),
        ("post", "/api/mdm/{entity}/merge"),
        ("post", "/api/mdm/{entity}/unmerge"),
        ("get", "/api/mdm/quality"),
    }


HOSTILE = [
    "\x00",
    "a\x00b",
    "' OR 1=1 --",
    "%00",
    "ä" * 300,
    "x" * 5000,
    "../../etc",
    "😀",
    "\ud800",
]


async def test_hostile_input_is_never_a_500(hubs: HubFactory, database_url: dict[str, str]) -> None:
    hub = await hubs.start(None, config=MDM_CONFIG, roles=frozenset({"ingress"}), **database_url)
    anna = await hub.mdm.resolve("customer", "shop", "1", ANNA)
    await hub.mdm.match_record("customer", "crm", "c-8", MAYBE_ANNA)
    async with httpx.AsyncClient(base_url=hub.base_url, timeout=30) as client:
        tried = 0
        for bad in HOSTILE:
            safe = bad.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
            seg = quote(safe, safe="")
            requests: list[tuple[str, str, dict[str, Any]]] = [
                (
                    "GET",
                    "/api/mdm/customer/lookup",
                    {"params": {"system": safe, "external_id": safe}},
                ),
                ("GET", f"/api/mdm/customer/golden/{seg}", {}),
                ("GET", f"/api/mdm/{seg}/golden/x", {}),
                (
                    "GET",
                    "/api/mdm/customer/search",
                    {"params": {"name": safe, "email": safe, "phone": safe}},
                ),
                ("GET", "/api/mdm/reviews", {"params": {"status": safe, "entity": safe}}),
                ("GET", "/api/mdm/quality", {"params": {"entity": safe}}),
                ("POST", "/api/mdm/customer/merge", {"json": {"survivor": anna, "merged": safe}}),
                (
                    "POST",
                    "/api/mdm/customer/merge",
                    {"json": {"survivor": safe, "merged": anna, "reason": safe}},
                ),
                ("POST", "/api/mdm/customer/unmerge", {"json": {"merged": safe, "steward": safe}}),
                (
                    "POST",
                    "/api/mdm/reviews/1/accept",
                    {"json": {"golden_id": safe, "steward": "s"}},
                ),
                ("POST", "/api/mdm/reviews/1/accept", {"json": [safe]}),
                (
                    "POST",
                    "/api/mdm/reviews/1/reject",
                    {"content": safe.encode(), "headers": {"content-type": "application/json"}},
                ),
            ]
            for method, path, kwargs in requests:
                response = await client.request(method, path, **kwargs)
                assert response.status_code < 500, (method, path, bad, response.text)
                tried += 1
        assert tried == len(HOSTILE) * 12
    # nothing was changed by any of it
    assert (await hub.mdm.golden("customer", anna) or {})["status"] == "active"
    assert ok(await api(hub, "GET", "/reviews"))["total"] == 1


class Forgetful(DeterministicResolver):
    """A resolver with a cache to drop (as hub.mdm's CrosswalkResolver has)."""

    def __init__(self) -> None:
        self.forgotten = 0

    def forget(self) -> None:
        self.forgotten += 1


async def test_every_hub_process_drops_its_cache_on_a_merge(
    hubs: HubFactory, tmp_path: Path, database_url: dict[str, str]
) -> None:
    # two hubs on one database: a SQLite file both open, or the PostgreSQL database
    url = database_url.get("database_url", f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}")
    shared = {"database_url": url, "mdm_poll_s": 0.05}
    here, there = Forgetful(), Forgetful()
    hub = await hubs.start(
        None, config=MDM_CONFIG, roles=frozenset({"ingress"}), resolver=here, **shared
    )
    other = await hubs.start(
        None, config=MDM_CONFIG, roles=frozenset({"ingress"}), resolver=there, **shared
    )
    anna = await hub.mdm.resolve("customer", "shop", "1", ANNA)
    otto = await hub.mdm.resolve("customer", "shop", "2", OTTO)
    assert (here.forgotten, there.forgotten) == (0, 0)
    ok(await api(hub, "POST", "/customer/merge", json={"survivor": anna, "merged": otto}))
    assert here.forgotten >= 1  # at once, in the process that merged

    async def heard() -> bool:
        return there.forgotten >= 1

    await until(heard)
    assert await other.mdm.resolve("customer", "shop", "2") == anna


async def test_an_alias_or_merged_id_answers_what_it_stands_for(
    hubs: HubFactory, database_url: dict[str, str]
) -> None:
    """The golden page of an id that is no golden record of its own (an alias, a merged id)
    says where it comes from and what it resolves to, and that record can be read: an alias's
    history is the step that stored it, and a golden id known only to the crosswalk (an entity
    without matching) answers with its crosswalk rather than 404."""
    hub = await hubs.start(None, config=MDM_CONFIG, roles=frozenset({"ingress"}), **database_url)
    derived = DeterministicResolver().golden_id
    anna = await hub.mdm.resolve("customer", "shop", "1", ANNA)
    await hub.mdm.resolve("customer", "crm", "c-7", ANNA_CRM)  # linked by master data
    xwalk = Crosswalk(hub.db)
    await xwalk.link("customer", "erp", "p-5", anna, linked_by="sink:erp", reason="created")

    for system, external_id, action, actor in (
        ("crm", "c-7", "link", "match"),
        ("erp", "p-5", "alias", "sink:erp"),
    ):
        alias = ok(
            await api(hub, "GET", f"/customer/golden/{derived('customer', system, external_id)}")
        )
        assert (alias["status"], alias["resolves_to"]) == ("alias", anna)
        [step] = alias["history"]
        assert step["action"] == action and step["actor"].startswith(actor), step
        assert (step["detail"]["system"], step["detail"]["external_id"]) == (system, external_id)
        assert ok(await api(hub, "GET", f"/customer/golden/{alias['resolves_to']}"))["status"] == (
            "active"
        )

    # an order the shop sent, created in the ERP by the hub: no golden record, but a page
    order = derived("order", "shopify", "1001")
    await xwalk.link_many([("order", "shopify", "1001", order)], linked_by="source", reason="in")
    await xwalk.link("order", "tryton", "SO-5", order, linked_by="sink:erp", reason="created")
    alias = ok(await api(hub, "GET", f"/order/golden/{derived('order', 'tryton', 'SO-5')}"))
    assert (alias["status"], alias["resolves_to"]) == ("alias", order)
    linked = ok(await api(hub, "GET", f"/order/golden/{order}"))
    assert (linked["status"], linked["resolves_to"], linked["fields"]) == ("linked", order, {})
    assert linked["external_refs"] == [
        {"system": "shopify", "id": "1001"},
        {"system": "tryton", "id": "SO-5"},
    ]
    # it is no golden record to merge: refused, as an unknown id is
    otto = await hub.mdm.resolve("customer", "shop", "2", OTTO)
    refused(await api(hub, "POST", "/order/merge", json={"survivor": order, "merged": otto}), 404)
    refused(await api(hub, "GET", "/order/golden/ord_nope"), 404)
