"""JSON nested deeper than the parsers go (issue 11, point 4), validly signed, through a real hub.

orjson stops at 1,024 levels; beyond that json (and msgspec, the mapper's reader) raise
RecursionError, which is no ValueError: it was a 500 at ingress. Now: a body ingress cannot read
is a 400 and nothing is stored; a body ingress reads but the mapper cannot (orjson reads 1,000
levels, msgspec does not) is a dead letter, and the worker goes on; the ops API lists it and
refuses a deep edited payload with a JSON 4xx."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from hub.runtime import Hub

from .support.harness import (
    HubFactory,
    order_body,
    post,
    shopify_headers,
    topic_records,
    until,
)


def nested(kind: str, depth: int) -> bytes:
    if kind == "arrays":
        return b"[" * depth + b"1" + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


async def api(hub: Hub, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=hub.base_url, timeout=60) as client:
        return await client.request(method, f"/api{path}", **kwargs)


async def dead_letters(hub: Hub, count: int) -> list[dict[str, Any]]:
    async with asyncio.timeout(60):
        while True:
            response = await api(hub, "GET", "/deadletters", params={"status": "open"})
            assert response.status_code == 200, response.text
            if response.json()["total"] >= count:
                return list(response.json()["items"])
            await asyncio.sleep(0.1)


@pytest.mark.parametrize("kind", ["arrays", "objects"])
async def test_deeply_nested_webhooks_are_refused_or_dead_lettered_never_a_500(
    hubs: HubFactory, kind: str
) -> None:
    hub = await hubs.start(None)

    deepest = nested(kind, 100_000)
    refused = await post(hub, deepest, shopify_headers(deepest))
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"] == "malformed_payload"
    assert "nested too deeply" in refused.json()["message"]

    # orjson reads 1,000 levels, so ingress stores it; the mapper's reader does not.
    deep = nested(kind, 1_000)
    accepted = await post(hub, deep, shopify_headers(deep, webhook_id=f"deep-{kind}"))
    assert accepted.status_code == 202, accepted.text
    (letter,) = await dead_letters(hub, 1)
    assert letter["stage"] == "ingest"
    assert "nested too deeply" in letter["error"]
    assert letter["event_id"] == accepted.json()["id"]
    full = await api(hub, "GET", f"/deadletters/{letter['id']}")
    assert full.status_code == 200, full.text

    # An edited payload nested about as deep as the API's JSON reader goes is refused with a
    # JSON 4xx, never a 500 (at 925 levels json.loads read it and json.dumps did not), and
    # nothing is replayed. Edits of a dead letter whose mapping refuses them: nothing passes.
    unmappable = order_body(4241, financial_status="on_hold")
    assert (await post(hub, unmappable, shopify_headers(unmappable))).status_code == 202
    letters = await dead_letters(hub, 2)
    (mapped_letter,) = [item for item in letters if item["stage"] == "map"]
    for depth in [*range(880, 1_001), 100_000]:
        edit = b'{"payload":' + nested(kind, depth) + b"}"
        answer = await api(
            hub,
            "POST",
            f"/deadletters/{mapped_letter['id']}/replay",
            content=edit,
            headers={"content-type": "application/json"},
        )
        assert 400 <= answer.status_code < 500, (depth, answer.text)
        assert answer.json()["error"], depth
    after = await api(hub, "GET", f"/deadletters/{mapped_letter['id']}")
    assert (after.json()["status"], after.json()["replays"]) == ("open", 0)

    # The mapper went on: a normal order after them is mapped.
    body = order_body(4242)
    assert (await post(hub, body, shopify_headers(body))).status_code == 202

    async def mapped() -> bool:
        topic = hub.settings.canonical_topic("order")
        return len(await topic_records(hub.bootstrap, topic)) == 1

    await until(mapped)
    ingested = await topic_records(hub.bootstrap, hub.settings.ingest_topic)
    assert [r.value for r in ingested] == [deep, unmappable, body]  # not the 100,000 levels
