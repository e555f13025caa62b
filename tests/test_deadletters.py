"""Dead letters end to end: recorded in the database, inspected, edited and replayed, in bulk."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from .support.harness import HubFactory, RecordingSink, order_body, post, shopify_headers


async def api(hub: Any, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=hub.base_url, timeout=30) as client:
        return await client.request(method, f"/api{path}", **kwargs)


async def until_listed(hub: Any, count: int, **params: str) -> list[dict[str, Any]]:
    """Wait for the recorder to have written ``count`` dead letters matching ``params``."""
    async with asyncio.timeout(60):
        while True:
            body = (await api(hub, "GET", "/deadletters", params=params)).json()
            if body["total"] >= count:
                return list(body["items"])
            await asyncio.sleep(0.1)


async def test_an_unmappable_order_is_fixed_by_an_edited_replay(
    hubs: HubFactory, sink: RecordingSink
) -> None:
    hub = await hubs.start(sink.url)
    bad = order_body(8001, financial_status="on_hold")
    accepted = await post(hub, bad, shopify_headers(bad, webhook_id="wh-8001"))
    assert accepted.status_code == 202

    (summary,) = await until_listed(hub, 1, status="open")
    assert "payload" not in summary  # a list gives summaries; the item has the payload
    letter = (await api(hub, "GET", f"/deadletters/{summary['id']}")).json()
    assert letter["stage"] == "map"
    assert letter["error_class"] == "MappingFailed"
    assert "field status" in letter["error"]
    assert letter["mapping"] == "shopify/orders_create"
    assert letter["connection"] == "shop"
    assert letter["correlation_id"] == accepted.json()["id"]
    assert letter["payload"] == json.loads(bad)

    # An edit that still fails is refused, and nothing is replayed.
    still_bad = {**letter["payload"], "financial_status": "on_hold_too"}
    refused = await api(
        hub, "POST", f"/deadletters/{letter['id']}/replay", json={"payload": still_bad}
    )
    assert refused.status_code == 422
    assert refused.json()["error"] == "edit_rejected"
    assert "field status" in refused.json()["message"]
    assert (await api(hub, "GET", f"/deadletters/{letter['id']}")).json()["status"] == "open"

    fixed = {**letter["payload"], "financial_status": "paid"}
    done = await api(hub, "POST", f"/deadletters/{letter['id']}/replay", json={"payload": fixed})
    assert done.status_code == 200, done.text
    assert done.json()["edited"] is True

    got = await sink.next()
    assert got.body["number"] == "#8001"
    assert got.body["status"] == "paid"
    assert got.headers["ce-correlationid"] == accepted.json()["id"]  # still one story

    async def outcome() -> str:
        return str((await api(hub, "GET", f"/deadletters/{letter['id']}")).json()["outcome"])

    async with asyncio.timeout(30):  # the delivery worker records it after the sink's 2xx
        while True:
            if (await outcome()).startswith("delivered to erp at "):
                break
            await asyncio.sleep(0.05)
    after = (await api(hub, "GET", f"/deadletters/{letter['id']}")).json()
    assert after["status"] == "replayed"
    assert after["replays"] == 1
    assert after["payload"]["financial_status"] == "on_hold"  # the original, kept for audit
    assert after["replayed_payload"]["financial_status"] == "paid"


async def test_bulk_replay_after_a_destination_refused_events(
    hubs: HubFactory, sink: RecordingSink
) -> None:
    n = 1000
    sink.status_script = [422] * n  # the destination refuses the first n, then accepts
    hub = await hubs.start(sink.url)

    async with httpx.AsyncClient(timeout=30) as client:

        async def send(i: int) -> None:
            body = order_body(9000 + i)
            response = await post(hub, body, shopify_headers(body), client=client)
            assert response.status_code == 202

        for start in range(0, n, 50):
            await asyncio.gather(*(send(i) for i in range(start, min(n, start + 50))))
    letters = await until_listed(hub, n, status="open", stage="deliver")
    assert {item["destination"] for item in letters} == {"erp"}

    job = (await api(hub, "POST", "/replays", params={"stage": "deliver"})).json()
    assert job["total"] == n
    await hub.replays.wait(job["id"])
    progress = (await api(hub, "GET", f"/replays/{job['id']}")).json()
    assert (progress["state"], progress["done"], progress["failed"]) == ("finished", n, 0)

    numbers = {(await sink.next()).body["number"] for _ in range(n)}
    assert numbers == {f"#{9000 + i}" for i in range(n)}
    assert (await api(hub, "GET", "/deadletters", params={"status": "open"})).json()["total"] == 0


async def test_discard_and_unknown_ids(hubs: HubFactory, sink: RecordingSink) -> None:
    hub = await hubs.start(sink.url)
    bad = order_body(8101, financial_status="on_hold")
    assert (await post(hub, bad, shopify_headers(bad))).status_code == 202
    (letter,) = await until_listed(hub, 1)
    assert (await api(hub, "POST", f"/deadletters/{letter['id']}/discard")).json()[
        "changed"
    ] is True
    refused = await api(hub, "POST", f"/deadletters/{letter['id']}/replay")
    assert refused.status_code == 409
    assert (await api(hub, "GET", "/deadletters/nope")).status_code == 404
    assert (await api(hub, "POST", "/deadletters/nope/replay")).status_code == 404


async def test_the_ops_api_needs_the_token_when_one_is_set(hubs: HubFactory) -> None:
    hub = await hubs.start(None, roles=frozenset({"ingress"}), ops_token="s3cret-token")
    denied = await api(hub, "GET", "/deadletters")
    assert denied.status_code == 401
    assert "s3cret" not in denied.text
    wrong = await api(hub, "GET", "/deadletters", headers={"authorization": "Bearer nope"})
    assert wrong.status_code == 401
    ok = await api(hub, "GET", "/deadletters", headers={"authorization": "Bearer s3cret-token"})
    assert ok.status_code == 200
    assert ok.json() == {"total": 0, "items": [], "next": None}
