"""The HTTP sink against a real HTTP server on 127.0.0.1 (uvicorn, in a thread)."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from connectors import CreatedId, Delivery, DeliveryResult, idempotency_key_for
from connectors.http import Http, HttpOptions, pick
from hub.envelope import HUB_NAMESPACE, CloudEvent
from hub.errors import DeliveryRejected, DeliveryRetriable
from tests.support.threaded import serve

SECRET = "Bearer s3cr3t-t0ken-do-not-leak"


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Recorder:
    """A tiny ASGI app: ``/status/<code>`` answers with that code; ``/retry-after/<value>``
    answers 429 with that Retry-After; ``/created`` answers 201 with a JSON body holding the
    id and version it assigned; ``/hang`` never answers
    until the client goes away; everything else is 200. Every request is recorded."""

    requests: list[Received] = field(default_factory=list)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path: str = scope["path"]
        self.requests.append(
            Received(
                scope["method"],
                path,
                {k.decode().lower(): v.decode() for k, v in scope["headers"]},
                body,
            )
        )
        if path == "/hang":
            # wait for the client to give up (http.disconnect); bounded so a bug cannot hang
            # the test session
            try:
                await asyncio.wait_for(receive(), 30)
            except TimeoutError:
                pass
            return
        if path == "/created":
            created = b'{"data": {"customer": {"id": 4711, "rev": "3-abc"}}, "ids": ["x"]}'
            await send(
                {
                    "type": "http.response.start",
                    "status": 201,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": created})
            return
        status = int(path.rsplit("/", 1)[1]) if path.startswith("/status/") else 200
        headers = [(b"content-type", b"text/plain")]
        if path.startswith("/retry-after/"):
            status = 429
            headers.append((b"retry-after", path.removeprefix("/retry-after/").encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": f"answer {status}".encode()})


@dataclass
class Server:
    base: str
    app: Recorder


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    app = Recorder()
    with serve(app, timeout_graceful_shutdown=1) as base:
        yield Server(base, app)


@pytest.fixture(autouse=True)
def _clear(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    server.app.requests.clear()
    monkeypatch.setenv("TEST_ERP_AUTH", SECRET)


def sink(url: str, **options: Any) -> Http:
    return Http("erp", HttpOptions.model_validate({"url": url, **options}))


def delivery(data: Any = None) -> Delivery:
    event = CloudEvent(
        id="evt-1",
        source="hub/mapper",
        type="hub.order.upserted",
        data=b"",
        subject="ord_1",
        correlationid="corr-1",
        causationid="raw-1",
        extensions={"hubentity": "order"},
    )
    return Delivery(
        event_id=event.id,
        event_type=event.type,
        subject=event.subject,
        correlation_id=event.correlationid,
        data={"id": "ord_1", "total": "19.90", "name": "Grüße"} if data is None else data,
        headers=event.attributes(),
        route="orders-to-erp",
    )


async def test_2xx_delivery_sends_json_with_idempotency_key_and_ce_headers(
    server: Server,
) -> None:
    http = sink(
        f"{server.base}/orders",
        authorization="env:TEST_ERP_AUTH",
        headers={"X-Tenant": "acme"},
    )
    try:
        await http.deliver(delivery())
    finally:
        await http.close()

    [req] = server.app.requests
    assert req.method == "POST"
    assert req.path == "/orders"
    assert json.loads(req.body) == {"id": "ord_1", "total": "19.90", "name": "Grüße"}
    assert req.headers["content-type"] == "application/json"
    # one key per event and route (connectors.base.idempotency_key_for), stable
    assert req.headers["idempotency-key"] == idempotency_key_for("evt-1", "orders-to-erp")
    assert req.headers["ce-id"] == "evt-1"
    assert req.headers["ce-type"] == "hub.order.upserted"
    assert req.headers["ce-source"] == "hub/mapper"
    assert req.headers["ce-specversion"] == "1.0"
    assert req.headers["ce-subject"] == "ord_1"
    assert req.headers["ce-correlationid"] == "corr-1"
    assert req.headers["ce-causationid"] == "raw-1"
    assert req.headers["ce-hubentity"] == "order"
    assert req.headers["authorization"] == SECRET
    assert req.headers["x-tenant"] == "acme"


def test_the_idempotency_key_is_the_documented_uuid5_of_event_and_route() -> None:
    expected = uuid.uuid5(HUB_NAMESPACE, "delivery\x1fevt-1\x1forders-to-erp")
    assert idempotency_key_for("evt-1", "orders-to-erp") == str(expected)
    assert idempotency_key_for("evt-1", "orders-to-crm") != str(expected)
    assert delivery().idempotency_key == str(expected)
    assert delivery().on_route("orders-to-crm").idempotency_key == idempotency_key_for(
        "evt-1", "orders-to-crm"
    )


async def test_put_and_no_authorization(server: Server) -> None:
    http = sink(f"{server.base}/orders/ord_1", method="PUT")
    await http.open()
    try:
        await http.deliver(delivery([1, 2]))
        await http.deliver(delivery({"x": None}))
    finally:
        await http.close()
    assert [(r.method, r.path) for r in server.app.requests] == [("PUT", "/orders/ord_1")] * 2
    assert "authorization" not in server.app.requests[0].headers
    assert json.loads(server.app.requests[0].body) == [1, 2]
    assert json.loads(server.app.requests[1].body) == {"x": None}


@pytest.mark.parametrize("status", [200, 201, 202, 204])
async def test_any_2xx_is_success(server: Server, status: int) -> None:
    http = sink(f"{server.base}/status/{status}")
    try:
        await http.deliver(delivery())
    finally:
        await http.close()
    assert len(server.app.requests) == 1


@pytest.mark.parametrize("status", [500, 502, 503, 408, 429])
async def test_server_errors_and_throttling_are_retriable(server: Server, status: int) -> None:
    http = sink(f"{server.base}/status/{status}", authorization="env:TEST_ERP_AUTH")
    try:
        with pytest.raises(DeliveryRetriable) as info:
            await http.deliver(delivery())
    finally:
        await http.close()
    err = info.value
    assert err.retriable is True
    assert err.status == status
    assert err.destination == "erp"
    assert f"HTTP {status}: answer {status}" in str(err)
    assert SECRET not in str(err)


@pytest.mark.parametrize(
    ("value", "wait"), [("7", 7.0), ("0", 0.0), ("99999", 3600.0), ("soon", None)]
)
async def test_retry_after_is_read_off_the_answer(
    server: Server, value: str, wait: float | None
) -> None:
    http = sink(f"{server.base}/retry-after/{value}")
    try:
        with pytest.raises(DeliveryRetriable) as info:
            await http.deliver(delivery())
    finally:
        await http.close()
    assert info.value.status == 429
    assert info.value.retry_after_s == wait


@pytest.mark.parametrize("status", [400, 401, 404, 409, 422])
async def test_other_client_errors_are_rejected(server: Server, status: int) -> None:
    http = sink(f"{server.base}/status/{status}", authorization="env:TEST_ERP_AUTH")
    try:
        with pytest.raises(DeliveryRejected) as info:
            await http.deliver(delivery())
    finally:
        await http.close()
    err = info.value
    assert err.retriable is False
    assert err.status == status
    assert SECRET not in str(err)


@pytest.mark.parametrize("status", [301, 302])
async def test_redirects_are_not_followed(server: Server, status: int) -> None:
    http = sink(f"{server.base}/status/{status}")
    try:
        with pytest.raises(DeliveryRejected):
            await http.deliver(delivery())
    finally:
        await http.close()
    assert len(server.app.requests) == 1


async def test_connection_refused_is_retriable() -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens on this port any more
    http = sink(f"http://127.0.0.1:{port}/orders", authorization="env:TEST_ERP_AUTH")
    try:
        with pytest.raises(DeliveryRetriable) as info:
            await http.deliver(delivery())
    finally:
        await http.close()
    assert info.value.status is None
    assert "cannot connect" in str(info.value)
    assert SECRET not in str(info.value)


async def test_timeout_is_retriable(server: Server) -> None:
    http = sink(f"{server.base}/hang", timeout_s=0.2, authorization="env:TEST_ERP_AUTH")
    try:
        with pytest.raises(DeliveryRetriable, match="timed out") as info:
            await http.deliver(delivery())
    finally:
        await http.close()
    assert info.value.status is None
    assert SECRET not in str(info.value)
    assert len(server.app.requests) == 1


async def test_a_header_that_would_split_the_request_is_rejected_and_nothing_sent(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_ERP_AUTH", "Bearer a\r\nx-injected: 1")  # a secret that is broken
    bad = delivery()
    bad.headers["subject"] = "ord_1\r\nx-injected: 1"  # e.g. an id taken from a source system
    http = sink(f"{server.base}/orders", authorization="env:TEST_ERP_AUTH")
    try:
        with pytest.raises(DeliveryRejected, match="header ce-subject") as info:
            await http.deliver(bad)
        with pytest.raises(DeliveryRejected, match="header authorization") as info2:
            await http.deliver(delivery())
    finally:
        await http.close()
    assert "x-injected" not in str(info.value) and "x-injected" not in str(info2.value)
    assert server.app.requests == []


def test_secret_is_not_in_repr_of_options(monkeypatch: pytest.MonkeyPatch) -> None:
    options = HttpOptions.model_validate(
        {"url": "http://127.0.0.1:1/x", "authorization": "env:TEST_ERP_AUTH"}
    )
    assert options.authorization is not None
    assert options.authorization.get_secret_value() == SECRET
    assert SECRET not in repr(options)
    assert SECRET not in str(options)
    assert "s3cr3t" not in options.model_dump_json()


def test_options_are_validated() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        HttpOptions.model_validate({"url": "not a url"})
    with pytest.raises(ValidationError):
        HttpOptions.model_validate({"url": "http://127.0.0.1/x", "method": "DELETE"})
    with pytest.raises(ValidationError):
        HttpOptions.model_validate({"url": "http://127.0.0.1/x", "timeout_s": 0})
    with pytest.raises(ValidationError, match="must not be written inline"):
        HttpOptions.model_validate({"url": "http://127.0.0.1/x", "authorization": "Bearer x"})


async def test_proxy_from_the_environment_is_used_and_no_proxy_is_honoured(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", server.base)  # our recorder plays the proxy
    http = sink("http://erp.invalid/orders")
    try:
        await http.deliver(delivery())
    finally:
        await http.close()
    [req] = server.app.requests
    assert req.path == "/orders"
    assert req.headers["host"] == "erp.invalid"

    monkeypatch.setenv("NO_PROXY", "erp.invalid")
    direct = sink("http://erp.invalid/orders")
    try:
        with pytest.raises(DeliveryRetriable, match="cannot connect"):
            await direct.deliver(delivery())
    finally:
        await direct.close()
    assert len(server.app.requests) == 1


@pytest.mark.parametrize(
    ("result_id", "result_version"),
    [("/data/customer/id", "/data/customer/rev"), ("data.customer.id", "data.customer.rev")],
)
async def test_the_id_the_destination_assigned_is_reported(
    server: Server, result_id: str, result_version: str
) -> None:
    http = sink(f"{server.base}/created", result_id=result_id, result_version=result_version)
    try:
        result = await http.deliver(delivery())
    finally:
        await http.close()
    # the entity comes from the canonical event's type (hub.order.upserted); ids are text
    assert result == DeliveryResult((CreatedId("order", "4711", "3-abc"),))


async def test_an_answer_without_the_id_is_a_delivery_that_reports_nothing(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    plain = sink(f"{server.base}/status/200", result_id="/id")  # text, not JSON
    elsewhere = sink(f"{server.base}/created", result_id="/data/nothing/here")
    not_an_id = sink(f"{server.base}/created", result_id="/data/customer")  # an object
    unasked = sink(f"{server.base}/created")  # no result_id: nothing read
    try:
        for http in (plain, elsewhere, not_an_id, unasked):
            assert await http.deliver(delivery()) is None
    finally:
        for http in (plain, elsewhere, not_an_id, unasked):
            await http.close()
    assert len(server.app.requests) == 4
    assert caplog.text.count("nothing linked") == 3


def test_pick_reads_json_pointers_and_dotted_paths() -> None:
    doc = {"a": {"b/c": [10, {"d~e": "x"}]}, "n": None}
    assert pick(doc, "/a/b~1c/1/d~0e") == "x"
    assert pick(doc, "/a/b~1c/0") == 10
    assert pick(doc, "a.b/c.0") == 10
    assert pick(doc, "/a/b~1c/2") is None
    assert pick(doc, "/a/b~1c/x") is None
    assert pick(doc, "n.m") is None
    assert pick(None, "/id") is None


async def test_update_path_sends_an_update_to_the_destinations_id_and_a_create_without_one(
    server: Server,
) -> None:
    http = sink(f"{server.base}/customers", update_path="{crm_id}", update_method="PATCH")
    try:
        await http.deliver(delivery({"crm_id": "c/42 ?x", "name": "Ada"}))  # an update
        await http.deliver(delivery({"crm_id": None, "name": "Bea"}))  # none known: a create
        await http.deliver(delivery({"name": "Cy"}))  # a create
        with pytest.raises(DeliveryRejected, match="cannot be a path segment"):
            await http.deliver(delivery({"crm_id": "..", "name": "Dee"}))
    finally:
        await http.close()
    sent = [(r.method, r.path, json.loads(r.body)) for r in server.app.requests]
    assert sent == [
        # the id is percent-encoded into the path (no query: '?' was encoded), and it is not
        # sent in the body
        ("PATCH", "/customers/c/42 ?x", {"name": "Ada"}),
        ("POST", "/customers", {"name": "Bea"}),
        ("POST", "/customers", {"name": "Cy"}),
    ]


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("customers", "names no field"),
        ("{crm.id}", "plain top-level name"),
        ("{crm_id!r}", "plain top-level name"),
        ("{crm_id", "not a path template"),
    ],
)
def test_a_bad_update_path_is_refused_when_the_config_loads(template: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HttpOptions.model_validate({"url": "https://crm.example/c", "update_path": template})
