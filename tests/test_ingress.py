"""Ingress refusals: each with its status and JSON body, and nothing written to Kafka.

Webhooks are a FastAPI route; the refusal tests run through the hub's HTTP server and through
the FastAPI app mounted alone."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest

from hub.api.app import create_api
from hub.broker import EmbeddedBroker

from .support.harness import (
    ORDER_BODY,
    HubFactory,
    config_text,
    post,
    shopify_headers,
    topic_records,
)


@pytest.fixture
async def hub(hubs: HubFactory):  # type: ignore[no-untyped-def]
    # Ingress only: these tests read the ingest topic themselves. 16 KiB limit for 413.
    return await hubs.start(None, roles=frozenset({"ingress"}), ingress_max_body_bytes=16 * 1024)


@pytest.fixture(params=["hub server", "FastAPI app alone"])
async def client(request: pytest.FixtureRequest, hub):  # type: ignore[no-untyped-def]
    if request.param == "hub server":
        transport: httpx.AsyncBaseTransport = httpx.AsyncHTTPTransport()
    else:
        transport = httpx.ASGITransport(app=create_api(hub))
    async with httpx.AsyncClient(transport=transport, timeout=30) as c:
        yield c


async def test_refusals_answer_with_status_and_json_and_store_nothing(hub, client) -> None:  # type: ignore[no-untyped-def]
    cases: list[tuple[str, bytes, dict[str, str], int, str]] = []
    good = shopify_headers(ORDER_BODY)

    cases.append(
        (
            "bad signature",
            ORDER_BODY,
            {**good, "x-shopify-hmac-sha256": "AAAA"},
            401,
            "bad_signature",
        )
    )
    cases.append(
        (
            "missing signature",
            ORDER_BODY,
            {k: v for k, v in good.items() if "hmac" not in k},
            401,
            "bad_signature",
        )
    )
    wrong_secret = shopify_headers(ORDER_BODY, secret="not-the-secret")
    cases.append(("wrong secret", ORDER_BODY, wrong_secret, 401, "bad_signature"))
    big = b'{"pad": "' + b"x" * (17 * 1024) + b'"}'
    cases.append(("too large", big, shopify_headers(big), 413, "payload_too_large"))
    broken = b'{"id": 1, "name": '
    cases.append(("malformed JSON", broken, shopify_headers(broken), 400, "malformed_payload"))
    # beyond Python's integer digit limit: json raises a plain ValueError (it was a 500)
    huge = b'{"id": 1, "n": ' + b"9" * 5000 + b"}"
    cases.append(("5,000-digit number", huge, shopify_headers(huge), 400, "malformed_payload"))
    text = b"id=1"
    cases.append(
        (
            "not JSON",
            text,
            {**shopify_headers(text), "content-type": "text/plain"},
            415,
            "unsupported_media_type",
        )
    )
    no_topic = {k: v for k, v in good.items() if k != "x-shopify-topic"}
    cases.append(("missing topic", ORDER_BODY, no_topic, 400, "malformed_payload"))

    for name, body, headers, status, code in cases:
        response = await post(hub, body, headers, client=client)
        assert response.status_code == status, name
        assert response.json()["error"] == code, name
        assert response.json()["message"], name

    unknown = await post(hub, ORDER_BODY, good, connection="nope", client=client)
    assert unknown.status_code == 404
    assert unknown.json()["error"] == "unknown_connection"

    assert await topic_records(hub.bootstrap, hub.settings.ingest_topic) == []

    # Control: the same request, correctly signed, is stored.
    accepted = await post(hub, ORDER_BODY, good, client=client)
    assert accepted.status_code == 202
    assert accepted.json()["status"] == "accepted"
    assert len(await topic_records(hub.bootstrap, hub.settings.ingest_topic)) == 1
    again = await post(hub, ORDER_BODY, good, client=client)
    assert again.status_code == 200
    assert again.json() == {"status": "duplicate", "id": accepted.json()["id"]}


async def test_chunked_body_over_the_limit_is_refused(hub, client) -> None:  # type: ignore[no-untyped-def]
    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(40):
            yield b"x" * 1024

    response = await client.post(
        f"{hub.base_url}/webhooks/shop",
        content=chunks(),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert await topic_records(hub.bootstrap, hub.settings.ingest_topic) == []


async def test_health_and_readiness(hub) -> None:  # type: ignore[no-untyped-def]
    async with httpx.AsyncClient(base_url=hub.base_url) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"broker": "ok", "database": "ok"}}


async def test_broker_down_gives_503_and_never_a_2xx(hubs: HubFactory) -> None:
    own = EmbeddedBroker()
    own.start()
    try:
        hubs.bootstrap = own.bootstrap_servers
        hub = await hubs.start(None, roles=frozenset({"ingress"}), ingress_publish_timeout_s=2.0)
        assert (await post(hub, ORDER_BODY, shopify_headers(ORDER_BODY))).status_code == 202
        own.stop()

        for i in range(3):
            response = await post(
                hub, ORDER_BODY, shopify_headers(ORDER_BODY, webhook_id=f"down-{i}")
            )
            assert response.status_code == 503
            assert response.json()["error"] == "broker_unavailable"
            assert response.headers["retry-after"]
        async with httpx.AsyncClient(base_url=hub.base_url) as client:
            ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["broker"] == "unavailable"
    finally:
        own.stop()


async def test_only_post_to_one_webhook_name_is_a_webhook(hub) -> None:  # type: ignore[no-untyped-def]
    async with httpx.AsyncClient(base_url=hub.base_url) as client:
        wrong_method = await client.get("/webhooks/shop")
        nested = await client.post("/webhooks/shop/extra", content=b"{}")
        empty = await client.post("/webhooks/", content=b"{}")
        docs = await client.get("/openapi.json")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"] == "method_not_allowed"
    assert nested.status_code == 404
    assert nested.json()["error"] == "not_found"
    assert empty.status_code == 404, empty.text
    assert "/webhooks/{connection}" in docs.json()["paths"]
    assert await topic_records(hub.bootstrap, hub.settings.ingest_topic) == []


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            b'{"id": 820982911946154508, "total": "1.10"}',
            {"id": 820982911946154508, "total": "1.10"},
        ),
        (b'{"a": NaN}', None),  # beyond strict JSON: json decides, as before orjson
        (b'\xef\xbb\xbf{"a": 1}', {"a": 1}),
        ('{"a": "é"}'.encode("utf-16"), {"a": "é"}),
    ],
)
def test_bodies_parse_as_json_did(body: bytes, expected: object) -> None:
    import json
    import math

    from hub.api.ingress import parse

    got = parse(body)
    if expected is None:
        assert math.isnan(got["a"]) and math.isnan(json.loads(body)["a"])
    else:
        assert got == expected == json.loads(body)


@pytest.mark.parametrize("body", [b'{"a": ', b"\xff\xfe\xfd", b"{'a': 1}", b""])
def test_malformed_bodies_are_refused_with_the_json_error(body: bytes) -> None:
    from hub.api.ingress import parse
    from hub.errors import MalformedPayload

    with pytest.raises(MalformedPayload, match="body is not valid JSON"):
        parse(body)


def _stream_a_header(port: int, total: int) -> tuple[int, bytes]:
    """Send a request whose one header is ``total`` bytes, 64 KiB at a time, until the server
    closes; then what it answered."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(b"POST /webhooks/shop HTTP/1.1\r\nhost: x\r\nx-big: ")
    chunk, sent = b"a" * 65536, 0
    try:
        while sent < total:
            sock.sendall(chunk)
            sent += len(chunk)
    except OSError:  # reset or broken pipe: the server closed
        pass
    answer = b""
    try:
        while data := sock.recv(65536):
            answer += data
    except OSError:
        pass
    sock.close()
    return sent, answer


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


async def test_a_64_mib_header_is_refused_early_and_memory_stays_bounded(hub) -> None:  # type: ignore[no-untyped-def]
    """Issue 11, point 6: httptools read such a header whole (+60 MB RSS) before its 401."""
    import os

    assert hub.port
    before = _rss_kib(os.getpid())  # the hub serves in this process
    sent, answer = await asyncio.to_thread(_stream_a_header, hub.port, 64 * 1024 * 1024)
    assert sent < 64 * 1024 * 1024  # the server closed before the client had sent it all
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]  # uvicorn's answer (h11)
    assert _rss_kib(os.getpid()) - before < 16 * 1024  # KiB: well below 64 MiB

    # A head under the byte limit but with too many fields, or over it in one read: 431 JSON.
    async with httpx.AsyncClient(base_url=hub.base_url, timeout=30) as client:
        many = await client.post(
            "/webhooks/shop",
            content=ORDER_BODY,
            headers={**shopify_headers(ORDER_BODY), **{f"x-pad-{i}": "1" for i in range(100)}},
        )
        large = await client.post(
            "/webhooks/shop",
            content=ORDER_BODY,
            headers={**shopify_headers(ORDER_BODY), "x-pad": "a" * (70 * 1024)},
        )
    for refused in (many, large):
        assert refused.status_code in (431, 400), refused.text
    assert many.status_code == 431
    assert many.json()["error"] == "headers_too_large"
    if large.status_code == 431:  # arrived in one read; else uvicorn's 400 as above
        assert large.json()["error"] == "headers_too_large"
    assert await topic_records(hub.bootstrap, hub.settings.ingest_topic) == []

    # A real Shopify delivery, with what a proxy in front adds, still gets 202.
    headers = {
        **shopify_headers(ORDER_BODY),
        "user-agent": "Shopify-Captain-Hook",
        "accept": "*/*",
        "accept-encoding": "gzip;q=1.0,deflate;q=0.6,identity;q=0.3",
        "x-shopify-api-version": "2025-10",
        "x-shopify-triggered-at": "2026-12-05T09:00:00.123456789Z",
        "x-shopify-event-id": "98880550-7158-44d4-b7cd-2c97c8a091b5",
        "x-shopify-name": "orders-to-hub",
        "x-forwarded-for": "203.0.113.7, 198.51.100.2",
        "x-forwarded-proto": "https",
        "x-forwarded-host": "hub.example.com",
        "x-request-id": "5f2b1c9e-4b7a-4f0e-9a51-1d2e3f4a5b6c",
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    }
    async with httpx.AsyncClient(timeout=30) as client:
        ok = await post(hub, ORDER_BODY, headers, client=client)
    assert ok.status_code == 202, ok.text


async def test_a_webhook_to_a_connection_no_enabled_route_uses_is_refused(
    hubs: HubFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its secret is not read (it need not be set): nothing could verify the request, nor
    take the event. 404 says so, and the sender tries again later."""
    monkeypatch.delenv("TEST_OLD_SHOP_SECRET", raising=False)
    config = config_text(None).replace(
        "routes:",
        "  old-shop:\n    connector: shopify\n"
        "    options: {webhook_secret: env:TEST_OLD_SHOP_SECRET}\nroutes:",
    ) + (
        "  - name: old-shop-orders-in\n    from: old-shop\n"
        "    mapping: shopify/orders_create\n    enabled: false\n"
    )
    hub = await hubs.start(config=config, roles=frozenset({"ingress"}))
    assert set(hub.config.idle) == {"old-shop"}
    refused = await post(hub, ORDER_BODY, shopify_headers(ORDER_BODY), connection="old-shop")
    assert refused.status_code == 404
    assert refused.json() == {
        "error": "connection_idle",
        "message": "connection 'old-shop' has no enabled route: its webhooks are not received "
        "until one is enabled",
    }
    assert await topic_records(hub.bootstrap, hub.settings.ingest_topic) == []
    accepted = await post(hub, ORDER_BODY, shopify_headers(ORDER_BODY))
    assert accepted.status_code == 202
