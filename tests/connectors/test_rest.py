"""The connectors' HTTP layer (connectors/rest.py, connectors/auth.py) against real HTTP and
HTTPS servers on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import socket
import ssl
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
import trustme
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connectors.auth import (
    ApiKeySpec,
    Basic,
    Bearer,
    HeaderAuth,
    OAuth2ClientCredentials,
    build_auth,
)
from connectors.http import HttpOptions
from connectors.rest import RestClient
from hub.errors import RequestRefused, RequestRetriable
from tests.support.threaded import serve

CLIENT_SECRET = "oauth-client-secret-do-not-leak"


@dataclass
class State:
    requests: list[dict[str, Any]] = field(default_factory=list)
    tokens_issued: int = 0
    expires_in: int = 3600
    revoked: set[str] = field(default_factory=set)
    token_status: int = 200


def app(state: State) -> Starlette:
    async def echo(request: Request) -> JSONResponse:
        seen = {
            "method": request.method,
            "path": request.url.path,
            "raw_path": request.scope["raw_path"].decode(),
            "query": dict(request.query_params),
            "headers": dict(request.headers),
            "body": (await request.body()).decode(),
        }
        state.requests.append(seen)
        return JSONResponse(seen)

    async def token(request: Request) -> JSONResponse:
        form = dict(urllib.parse.parse_qsl((await request.body()).decode()))
        state.requests.append({"path": "/oauth/token", "form": form, **dict(request.headers)})
        basic = request.headers.get("authorization", "")
        pair = base64.b64decode(basic.removeprefix("Basic ")).decode() if basic else ""
        client = pair or f"{form.get('client_id')}:{form.get('client_secret')}"
        if state.token_status != 200:
            return JSONResponse({"error": "temporarily_unavailable"}, state.token_status)
        if client != f"hub:{CLIENT_SECRET}" or form.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "invalid_client"}, 401)
        state.tokens_issued += 1
        return JSONResponse(
            {
                "access_token": f"tok-{state.tokens_issued}",
                "token_type": "Bearer",
                "expires_in": state.expires_in,
            }
        )

    async def protected(request: Request) -> JSONResponse:
        given = request.headers.get("authorization", "").removeprefix("Bearer ")
        state.requests.append({"path": "/protected", "token": given})
        if not given.startswith("tok-") or given in state.revoked:
            return JSONResponse({"error": "invalid_token"}, 401)
        return JSONResponse({"ok": given})

    async def status(request: Request) -> Response:
        code = int(request.path_params["code"])
        headers = {}
        if "retry_after" in request.query_params:
            headers["retry-after"] = request.query_params["retry_after"]
        body = {"error": "vat_id is invalid", "you_sent": request.headers.get("authorization")}
        return JSONResponse(body, code, headers=headers)

    async def not_json(_request: Request) -> Response:
        return Response("<html>maintenance</html>", 200, media_type="text/html")

    async def big(_request: Request) -> Response:
        return Response(b"x" * 200_000, 200)

    return Starlette(
        routes=[
            Route("/echo/{rest:path}", echo, methods=["GET", "POST", "PUT", "DELETE"]),
            Route("/oauth/token", token, methods=["POST"]),
            Route("/protected", protected),
            Route("/status/{code}", status, methods=["GET", "POST"]),
            Route("/not-json", not_json),
            Route("/big", big),
        ]
    )


@dataclass
class Server:
    base: str
    state: State


def _serve(state: State, **ssl_options: Any) -> Iterator[Server]:
    with serve(app(state), lifespan="off", **ssl_options) as base:
        yield Server(base, state)


@pytest.fixture
def server() -> Iterator[Server]:
    yield from _serve(State())


async def test_paths_placeholders_query_and_json_bodies(server: Server) -> None:
    client = RestClient("erp", f"{server.base}/echo/api/", headers={"X-Tenant": "acme"})
    try:
        answer = await client.request(
            "PUT",
            "customers/{id}",
            path_params={"id": "a/b?c d"},  # an id from another system cannot change the path
            params={"expand": "addresses", "limit": 5},
            json={"name": "Grüße", "total": "19.90"},
        )
    finally:
        await client.close()
    seen = answer.json()
    assert answer.status == 200
    assert seen["method"] == "PUT"
    assert seen["raw_path"] == "/echo/api/customers/a%2Fb%3Fc%20d"
    assert seen["query"] == {"expand": "addresses", "limit": "5"}
    assert json.loads(seen["body"]) == {"name": "Grüße", "total": "19.90"}
    assert seen["headers"]["content-type"] == "application/json"
    assert seen["headers"]["x-tenant"] == "acme"


@pytest.mark.parametrize(
    ("auth", "header", "value"),
    [
        (Bearer("t0k"), "authorization", "Bearer t0k"),
        (Basic("hub", "pw"), "authorization", "Basic " + base64.b64encode(b"hub:pw").decode()),
        (HeaderAuth("x-api-key", "k3y"), "x-api-key", "k3y"),
    ],
)
async def test_static_credentials_are_sent(
    server: Server, auth: Any, header: str, value: str
) -> None:
    client = RestClient("erp", f"{server.base}/echo/", auth=auth)
    try:
        seen = (await client.request("GET", "x")).json()
    finally:
        await client.close()
    assert seen["headers"][header] == value


def oauth(server: Server, clock: list[float] | None = None, **options: Any) -> RestClient:
    now = clock if clock is not None else [0.0]
    auth = OAuth2ClientCredentials(
        f"{server.base}/oauth/token",
        "hub",
        CLIENT_SECRET,
        scope="orders",
        clock=lambda: now[0],
        **options,
    )
    return RestClient("erp", server.base, auth=auth)


async def test_oauth2_one_token_for_concurrent_requests(server: Server) -> None:
    import asyncio

    client = oauth(server)
    try:
        answers = await asyncio.gather(*(client.request("GET", "protected") for _ in range(20)))
    finally:
        await client.close()
    assert {a.json()["ok"] for a in answers} == {"tok-1"}
    assert server.state.tokens_issued == 1
    [fetch] = [r for r in server.state.requests if r["path"] == "/oauth/token"]
    assert fetch["form"] == {"grant_type": "client_credentials", "scope": "orders"}


async def test_oauth2_client_secret_in_the_body_when_asked(server: Server) -> None:
    client = oauth(server, client_auth="body")
    try:
        assert (await client.request("GET", "protected")).json() == {"ok": "tok-1"}
    finally:
        await client.close()
    [fetch] = [r for r in server.state.requests if r["path"] == "/oauth/token"]
    assert fetch["form"]["client_secret"] == CLIENT_SECRET
    assert "authorization" not in fetch


async def test_oauth2_token_is_refreshed_a_little_before_it_expires(server: Server) -> None:
    server.state.expires_in = 600
    clock = [1000.0]
    client = oauth(server, clock, refresh_margin_s=60)
    try:
        assert (await client.request("GET", "protected")).json() == {"ok": "tok-1"}
        clock[0] = 1000.0 + 539  # 61 s left: still good
        assert (await client.request("GET", "protected")).json() == {"ok": "tok-1"}
        clock[0] = 1000.0 + 541  # 59 s left: inside the margin, a new token first
        assert (await client.request("GET", "protected")).json() == {"ok": "tok-2"}
    finally:
        await client.close()
    assert server.state.tokens_issued == 2


async def test_oauth2_a_401_fetches_a_new_token_and_tries_once_more(server: Server) -> None:
    client = oauth(server)
    try:
        assert (await client.request("GET", "protected")).json() == {"ok": "tok-1"}
        server.state.revoked.add("tok-1")  # revoked before its expiry
        assert (await client.request("GET", "protected")).json() == {"ok": "tok-2"}
        server.state.revoked.add("tok-2")
        server.state.revoked.add("tok-3")  # the new one is refused too: no endless loop
        with pytest.raises(RequestRefused, match="HTTP 401") as info:
            await client.request("GET", "protected")
    finally:
        await client.close()
    assert server.state.tokens_issued == 3
    protected = [r["token"] for r in server.state.requests if r["path"] == "/protected"]
    assert protected == ["tok-1", "tok-1", "tok-2", "tok-2", "tok-3"]
    assert "tok-3" not in str(info.value)


async def test_oauth2_token_endpoint_failures_are_classified(server: Server) -> None:
    client = oauth(server)
    server.state.token_status = 503
    try:
        with pytest.raises(RequestRetriable, match="cannot get an OAuth2 token: HTTP 503"):
            await client.request("GET", "protected")
    finally:
        await client.close()
    bad = RestClient(
        "erp",
        server.base,
        auth=OAuth2ClientCredentials(f"{server.base}/oauth/token", "hub", "wrong-secret-value"),
    )
    server.state.token_status = 200
    try:
        with pytest.raises(RequestRefused, match="invalid_client") as info:
            await bad.request("GET", "protected")
    finally:
        await bad.close()
    assert "wrong-secret-value" not in str(info.value)


@pytest.mark.parametrize("status", [500, 502, 503, 408, 425, 429])
async def test_server_errors_and_throttling_are_retriable(server: Server, status: int) -> None:
    client = RestClient("erp", server.base)
    try:
        with pytest.raises(RequestRetriable) as info:
            await client.request("POST", f"status/{status}")
    finally:
        await client.close()
    assert info.value.status == status
    assert info.value.retriable


async def test_retry_after_as_seconds_and_as_an_http_date(server: Server) -> None:
    client = RestClient("erp", server.base)
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    try:
        with pytest.raises(RequestRetriable) as seconds:
            await client.request("GET", "status/429", params={"retry_after": "7"})
        with pytest.raises(RequestRetriable) as date:
            await client.request("GET", "status/503", params={"retry_after": later})
    finally:
        await client.close()
    assert seconds.value.retry_after_s == 7.0
    assert date.value.retry_after_s is not None and 100 < date.value.retry_after_s <= 120


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422])
async def test_other_client_errors_are_refused_with_the_systems_message(
    server: Server, status: int
) -> None:
    client = RestClient("erp", server.base, auth=Bearer("echoed-token-value"))
    try:
        with pytest.raises(RequestRefused) as info:
            await client.request("POST", f"status/{status}", json={})
    finally:
        await client.close()
    assert info.value.status == status
    assert not info.value.retriable
    assert "vat_id is invalid" in str(info.value)
    assert "echoed-token-value" not in str(info.value)  # the system echoed it: masked
    assert "***" in str(info.value)


async def test_allowed_statuses_are_answers(server: Server) -> None:
    client = RestClient("erp", server.base)
    try:
        answer = await client.request("GET", "status/404", allow={404})
    finally:
        await client.close()
    assert answer.status == 404 and answer.json()["error"] == "vat_id is invalid"


async def test_an_answer_that_is_not_json_or_too_big_is_refused(server: Server) -> None:
    client = RestClient("erp", server.base, max_body_bytes=100_000)
    try:
        with pytest.raises(RequestRefused, match="not JSON: <html>maintenance</html>"):
            (await client.request("GET", "not-json")).json()
        with pytest.raises(RequestRefused, match="over 100000"):
            await client.request("GET", "big")
    finally:
        await client.close()


async def test_connection_refused_is_retriable() -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    client = RestClient("erp", f"http://127.0.0.1:{port}")
    try:
        with pytest.raises(RequestRetriable, match="cannot connect"):
            await client.request("GET")
    finally:
        await client.close()


def test_auth_options_are_validated_and_secrets_referenced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pydantic import ValidationError

    monkeypatch.setenv("TEST_KEY", "k3y-0123456789abcdef")
    spec = ApiKeySpec.model_validate({"type": "api_key", "header": "X-Key", "key": "env:TEST_KEY"})
    auth = build_auth(spec)
    assert isinstance(auth, HeaderAuth) and (auth.name, auth.value) == (
        "x-key",
        "k3y-0123456789abcdef",
    )
    url = "http://127.0.0.1:1/x"
    with pytest.raises(ValidationError, match="must not be written inline"):
        HttpOptions.model_validate({"url": url, "auth": {"type": "bearer", "token": "inline"}})
    with pytest.raises(ValidationError, match="does not match any of the expected tags"):
        HttpOptions.model_validate({"url": url, "auth": {"type": "kerberos"}})
    with pytest.raises(ValidationError, match="authorization or auth, not both"):
        HttpOptions.model_validate(
            {
                "url": url,
                "authorization": "env:TEST_KEY",
                "auth": {"type": "bearer", "token": "env:TEST_KEY"},
            }
        )


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_server(ca: trustme.CA, tmp_path: Path) -> Iterator[Server]:
    cert = ca.issue_cert("127.0.0.1")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    for pem in cert.cert_chain_pems[1:]:
        pem.write_to_path(str(certfile), append=True)
    cert.private_key_pem.write_to_path(str(keyfile))
    yield from _serve(State(), ssl_certfile=str(certfile), ssl_keyfile=str(keyfile))


async def test_https_is_verified_against_the_trust_store(
    tls_server: Server, ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unknown = RestClient("erp", f"{tls_server.base}/echo/")
    try:
        with pytest.raises(RequestRetriable, match="TLS failed"):
            await unknown.request("GET", "x")
    finally:
        await unknown.close()
    assert tls_server.state.requests == []

    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    trusted = RestClient("erp", f"{tls_server.base}/echo/")
    try:
        assert (await trusted.request("GET", "x")).json()["path"] == "/echo/x"
    finally:
        await trusted.close()
    assert ssl.get_default_verify_paths().cafile == str(bundle)
