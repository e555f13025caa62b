"""The ops API's edges: bounded integers, cross-site writes, filters, the OpenAPI document,
summaries, replay attempts. Real hubs over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx

from hub.runtime import Hub

from .support.databases import hub_database_overrides  # noqa: F401  (fixture database_url)
from .support.harness import HubFactory, RecordingSink, order_body, post, shopify_headers, until

HUGE = [2**31, 2**63, 10**19, 10**20, 10**22, -(2**63) - 1]


async def api(
    hub: Hub, method: str, path: str, headers: dict[str, str] | None = None, **kwargs: Any
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=hub.base_url, timeout=30) as client:
        return await client.request(method, f"/api{path}", headers=headers, **kwargs)


def assert_error(response: httpx.Response, *statuses: int) -> dict[str, Any]:
    assert response.status_code in statuses, (response.status_code, response.text)
    body: dict[str, Any] = response.json()
    assert set(body) == {"error", "message"}, body
    return body


async def dead_letters(hub: Hub, orders: range) -> list[dict[str, Any]]:
    """Unmappable orders (``on_hold``), sent through ingress; their dead letters once listed."""
    for n in orders:
        bad = order_body(n, financial_status="on_hold")
        assert (await post(hub, bad, shopify_headers(bad))).status_code == 202

    async def listed() -> bool:
        body = (await api(hub, "GET", "/deadletters", params={"status": "open"})).json()
        return bool(body["total"] == len(orders))

    await until(listed)
    return list((await api(hub, "GET", "/deadletters")).json()["items"])


def fill(template: str, values: dict[str, str]) -> str:
    """The path of ``template`` with its parameters from ``values`` (taken out of it)."""
    return re.sub(r"{(\w+)}", lambda m: values.pop(m[1]), template)


# -- 5: integers beyond the database's range -------------------------------------------------


async def test_huge_integers_are_refused_not_500(
    hubs: HubFactory, database_url: dict[str, str]
) -> None:
    hub = await hubs.start(None, roles=frozenset({"ingress"}), **database_url)
    for n in (10**19, 10**20, 10**21, 10**22):
        assert_error(await api(hub, "GET", "/deadletters", params={"offset": n}), 422)
        assert_error(await api(hub, "GET", "/retries", params={"offset": n}), 422)
        assert_error(await api(hub, "GET", "/deadletters", params={"limit": n}), 422)
        assert_error(await api(hub, "POST", f"/retries/{n}/retry-now"), 404, 422)
    # the largest offset the databases take is still an answer
    biggest = {"offset": 2**63 - 1}
    assert (await api(hub, "GET", "/deadletters", params=biggest)).json()["items"] == []
    assert (await api(hub, "GET", "/retries", params=biggest)).json()["items"] == []
    assert_error(await api(hub, "POST", f"/retries/{2**31 - 1}/retry-now"), 404)


async def test_no_route_answers_500_to_huge_integers(
    hubs: HubFactory, database_url: dict[str, str]
) -> None:
    """Every route of the OpenAPI document, every parameter of it a huge integer in turn."""
    hub = await hubs.start(None, roles=frozenset({"ingress"}), **database_url)
    async with httpx.AsyncClient(base_url=hub.base_url, timeout=30) as client:
        document = (await client.get("/openapi.json")).json()
        tried = 0
        for template, operations in document["paths"].items():
            for method, operation in operations.items():
                params = operation.get("parameters", [])
                names = [p["name"] for p in params]
                for target in names or [None]:
                    for n in HUGE:
                        values = {p: str(n) if p == target else "1" for p in names}
                        path = fill(template, values)
                        kwargs: dict[str, Any] = {"params": values}
                        if "requestBody" in operation:
                            kwargs["json"] = {"payload": n}
                        response = await client.request(method.upper(), path, **kwargs)
                        assert response.status_code < 500, (method, path, values, response.text)
                        tried += 1
        assert tried > 100


# -- 7: cross-site writes --------------------------------------------------------------------


EVIL = {"origin": "http://evil.example", "content-type": "text/plain"}


async def test_a_web_page_elsewhere_cannot_replay_or_discard(
    hubs: HubFactory, sink: RecordingSink
) -> None:
    hub = await hubs.start(sink.url)
    letters = await dead_letters(hub, range(8300, 8305))
    one = letters[0]["id"]

    # The attack as reported: a "simple" cross-site request, no preflight.
    attack = await api(hub, "POST", "/replays", EVIL, content=b"x")
    assert assert_error(attack, 403)["error"] == "forbidden"
    for method, path in (
        ("POST", f"/deadletters/{one}/discard"),
        ("POST", f"/deadletters/{one}/replay"),
    ):
        assert_error(await api(hub, method, path, EVIL), 403)
        assert_error(await api(hub, method, path, {"origin": "null"}), 403)
        # no Origin, but the browser says it is cross-site
        assert_error(await api(hub, method, path, {"sec-fetch-site": "cross-site"}), 403)
        # same port, other host; same host, other port
        other = {"origin": f"http://localhost.evil.example:{hub.port}"}
        assert_error(await api(hub, method, path, other), 403)
        assert_error(await api(hub, method, path, {"origin": "http://127.0.0.1:1"}), 403)
        # a body a form or a text/plain fetch sends, with no Origin at all
        for kind in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
            refused = await api(hub, method, path, {"content-type": kind}, content=b"{}")
            assert assert_error(refused, 415)["error"] == "unsupported_media_type"
        # a body with no content type (fetch of a Blob)
        assert_error(await api(hub, method, path, content=b"{}"), 415)
    # DNS rebinding: evil.example resolves to 127.0.0.1, so Origin and Host agree
    rebound = {"host": "evil.example", "origin": "http://evil.example"}
    assert_error(await api(hub, "POST", "/replays", rebound), 403)
    assert_error(await api(hub, "GET", "/deadletters", {"host": "evil.example"}), 403)

    assert (await api(hub, "GET", "/replays")).json()["total"] == 0  # no job started
    after = (await api(hub, "GET", "/deadletters")).json()["items"]
    assert [(x["status"], x["replays"]) for x in after] == [("open", 0)] * 5
    assert sink.attempts == []

    # The hub's own page (same origin) and curl (no Origin, no body) still work.
    own = {"origin": hub.base_url, "sec-fetch-site": "same-origin"}
    discarded = await api(hub, "POST", f"/deadletters/{one}/discard", own)
    assert discarded.status_code == 200, discarded.text
    second = f"/deadletters/{letters[1]['id']}"
    fixed = {**(await api(hub, "GET", second)).json()["payload"], "financial_status": "paid"}
    replayed = await api(hub, "POST", f"{second}/replay", own, json={"payload": fixed})
    assert replayed.status_code == 200, replayed.text
    by_name = {"host": f"localhost:{hub.port}", "origin": f"http://localhost:{hub.port}"}
    assert (await api(hub, "GET", "/deadletters", by_name)).status_code == 200
    job = await api(hub, "POST", "/replays")
    assert job.status_code == 202, job.text
    assert job.json()["total"] == 3


async def test_origin_checks_hold_with_a_token_and_an_allow_list(hubs: HubFactory) -> None:
    hub = await hubs.start(
        None,
        roles=frozenset({"ingress"}),
        ops_token="s3cret-token",
        ops_allowed_origins=["https://dash.example"],
    )
    token = {"authorization": "Bearer s3cret-token"}
    refused = await api(hub, "POST", "/retries/1/retry-now", {**token, **EVIL})
    assert_error(refused, 403)
    assert_error(
        await api(hub, "POST", "/retries/1/retry-now", {**token, "origin": "http://evil.example"}),
        403,
    )
    allowed = {**token, "origin": "https://dash.example", "sec-fetch-site": "cross-site"}
    assert_error(await api(hub, "POST", "/retries/1/retry-now", allowed), 404)  # let through
    # with a token, any Host (a proxy's name) is fine
    assert (await api(hub, "GET", "/retries", {**token, "host": "hub.internal"})).status_code == 200


# -- 9: filters, the OpenAPI document, Allow, summaries, replay attempts ---------------------


async def test_filters_are_checked(hubs: HubFactory) -> None:
    hub = await hubs.start(None, roles=frozenset({"ingress"}))
    for params in (
        {"status": "bogus"},
        {"until": "0.5"},
        {"since": "1700000000"},
        {"until": "2026-12-01"},  # a date, not a date-time
        {"since": "2026-12-01T10:00:00"},  # no offset
        {"until": "yesterday"},
    ):
        refused = await api(hub, "GET", "/deadletters", params=params)
        assert assert_error(refused, 400)["error"] == "invalid_filter", params
        assert_error(await api(hub, "POST", "/replays", params=params), 400)
    assert (await api(hub, "GET", "/replays")).json()["total"] == 0  # no job started
    for params in (
        {"status": "open", "since": "2026-12-01T10:00:00Z"},
        {"status": "discarded", "until": "2026-12-01T10:00:00.5+02:00"},
    ):
        assert (await api(hub, "GET", "/deadletters", params=params)).status_code == 200


async def test_the_openapi_document_lists_every_refusal(hubs: HubFactory) -> None:
    hub = await hubs.start(None, roles=frozenset({"ingress"}))
    async with httpx.AsyncClient(base_url=hub.base_url) as client:
        paths = (await client.get("/openapi.json")).json()["paths"]

    def statuses(path: str, method: str) -> set[str]:
        return set(paths[path][method]["responses"])

    assert {"400", "403", "404", "409", "415", "422"} <= statuses(
        "/api/deadletters/{id_}/replay", "post"
    )
    assert {"403", "404", "409", "415"} <= statuses("/api/deadletters/{id_}/discard", "post")
    assert {"400", "403", "415"} <= statuses("/api/replays", "post")
    assert {"400", "403"} <= statuses("/api/replays", "get")
    assert {"400", "403"} <= statuses("/api/deadletters", "get")
    assert {"403", "404"} <= statuses("/api/deadletters/{id_}", "get")
    assert {"403", "404"} <= statuses("/api/replays/{job_id}", "get")
    assert {"403", "404", "415"} <= statuses("/api/replays/{job_id}", "delete")
    assert {"403", "404", "415"} <= statuses("/api/retries/{id_}/retry-now", "post")
    unparseable = await api(
        hub,
        "POST",
        "/deadletters/x/replay",
        {"content-type": "application/json"},
        content=b"{nope",
    )
    assert assert_error(unparseable, 400)["error"] == "malformed_json"


async def test_allow_lists_every_method_of_a_path(hubs: HubFactory) -> None:
    hub = await hubs.start(None, roles=frozenset({"ingress"}))
    for method in ("OPTIONS", "PUT"):
        answer = await api(hub, method, "/replays/some-job")
        assert_error(answer, 405)
        assert set(answer.headers["allow"].split(", ")) == {"GET", "DELETE"}
    answer = await api(hub, "PUT", "/deadletters")
    assert answer.headers["allow"] == "GET"


async def test_the_list_is_a_summary_and_the_item_has_the_payload(
    hubs: HubFactory, sink: RecordingSink
) -> None:
    hub = await hubs.start(sink.url)
    (summary,) = await dead_letters(hub, range(8400, 8401))
    assert "payload" not in summary and "headers" not in summary
    item = (await api(hub, "GET", f"/deadletters/{summary['id']}")).json()
    assert item["payload"]["name"] == "#8400"
    whole = json.dumps(item["payload"]).encode()
    assert summary["payload_bytes"] >= len(whole) * 0.9
    assert len(summary["payload_preview"]) <= 200
    assert summary["payload_preview"].startswith("{")
    assert {k: item[k] for k in summary} == summary


async def test_every_replay_is_an_attempt_of_its_own(hubs: HubFactory, sink: RecordingSink) -> None:
    # The destination refuses the event twice (its first delivery and the first replay).
    sink.status_script = [422, 422]
    hub = await hubs.start(sink.url)
    body = order_body(8500)
    assert (await post(hub, body, shopify_headers(body))).status_code == 202

    async def listed() -> list[dict[str, Any]]:
        params = {"stage": "deliver"}
        return list((await api(hub, "GET", "/deadletters", params=params)).json()["items"])

    async def count(n: int) -> bool:
        return len(await listed()) == n

    await until(lambda: count(1))
    (letter,) = await listed()
    path = f"/deadletters/{letter['id']}"

    first = await api(hub, "POST", f"{path}/replay")
    assert first.status_code == 200, first.text
    await until(lambda: count(2))  # it failed again: a dead letter of its own

    async def outcome_of_first() -> bool:
        attempts = (await api(hub, "GET", path)).json()["replay_attempts"]
        return bool(attempts and attempts[0]["outcomes"])

    await until(outcome_of_first)
    # The destination is fixed now; the same dead letter, replayed again, as it was.
    second = await api(hub, "POST", f"{path}/replay")
    assert second.status_code == 200, second.text
    assert (await sink.next()).body["number"] == "#8500"

    async def delivered() -> bool:
        attempts = (await api(hub, "GET", path)).json()["replay_attempts"]
        return len(attempts) == 2 and bool(attempts[1]["outcomes"])

    await until(delivered)
    item = (await api(hub, "GET", path)).json()
    assert item["status"] == "replayed" and item["replays"] == 2
    one, two = item["replay_attempts"]
    assert (one["edited"], two["edited"]) == (False, False)
    assert one["outcomes"][0]["outcome"].startswith("failed again at deliver: dead letter ")
    assert two["outcomes"][0]["outcome"].startswith("delivered to erp at ")
    assert item["outcome"] == two["outcomes"][-1]["outcome"]
    assert one["replayed_at"] <= two["replayed_at"]

    # A replayed dead letter is not discarded.
    refused = await api(hub, "POST", f"{path}/discard")
    assert assert_error(refused, 409)["error"] == "replayed"
    assert (await api(hub, "GET", path)).json()["status"] == "replayed"


async def test_a_replay_after_an_edit_sends_the_edit_again(
    hubs: HubFactory, sink: RecordingSink
) -> None:
    hub = await hubs.start(sink.url)
    (letter,) = await dead_letters(hub, range(8600, 8601))
    path = f"/deadletters/{letter['id']}"
    payload = (await api(hub, "GET", path)).json()["payload"]
    fixed = {**payload, "financial_status": "paid"}
    assert (await api(hub, "POST", f"{path}/replay", json={"payload": fixed})).status_code == 200
    assert (await sink.next()).body["status"] == "paid"

    again = await api(hub, "POST", f"{path}/replay")
    assert again.status_code == 200, again.text
    # One more unmappable order after it: once its dead letter is listed, the mapper has done
    # the replay (one partition, in order) and the recorder has what it dead-lettered.
    later = order_body(8601, financial_status="on_hold")
    assert (await post(hub, later, shopify_headers(later))).status_code == 202

    async def listed() -> list[dict[str, Any]]:
        return list((await api(hub, "GET", "/deadletters")).json()["items"])

    async def later_listed() -> bool:
        return any(x["id"] != letter["id"] and not x["replay_of"] for x in await listed())

    await until(later_listed)
    # the edit went through the mapping again: it did not fail (no dead letter replaying it)
    assert [x for x in await listed() if x["replay_of"]] == []
    item = (await api(hub, "GET", path)).json()
    one, two = item["replay_attempts"]
    assert one["edited"] is True and one["payload"]["financial_status"] == "paid"
    assert two["edited"] is False and two["payload"]["financial_status"] == "paid"
    assert one["outcomes"][0]["outcome"].startswith("delivered to erp at ")
    assert item["payload"]["financial_status"] == "on_hold"  # the original, never changed
