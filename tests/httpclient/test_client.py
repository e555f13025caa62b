"""hub.httpclient against real servers on 127.0.0.1: a raw asyncio HTTP/1.1 server whose
answers each test scripts byte for byte, TLS with a throwaway CA (trustme), and a CONNECT proxy."""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
import trustme

from hub.httpclient import Client, ConnectFailed, HttpError, InvalidHeader

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


@dataclass
class Seen:
    head: str
    body: bytes
    connection: int  # which connection (1, 2, ...) it came on

    @property
    def target(self) -> str:
        return self.head.split(" ")[1]

    def header(self, name: str) -> str | None:
        for line in self.head.split("\r\n")[1:]:
            k, _, v = line.partition(":")
            if k.strip().lower() == name:
                return v.strip()
        return None


# What the server does with request n (1-based) of connection c: bytes to answer, or None to
# close the connection without a word.
Script = Callable[[Seen, int], Awaitable[bytes | None]]


@dataclass
class RawServer:
    script: Script
    tls: ssl.SSLContext | None = None
    close_after: bool = False  # close each connection after its first answer
    requests: list[Seen] = field(default_factory=list)
    connections: int = 0
    port: int = 0

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn, n = self.connections, 0
        try:
            while True:
                try:
                    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                except asyncio.IncompleteReadError:
                    return
                length = 0
                for line in head.split("\r\n"):
                    if line.lower().startswith("content-length:"):
                        length = int(line.split(":", 1)[1])
                seen = Seen(head, await reader.readexactly(length), conn)
                self.requests.append(seen)
                n += 1
                answer = await self.script(seen, n)
                if answer is None:
                    return
                writer.write(answer)
                await writer.drain()
                if self.close_after:
                    return
        except (ConnectionError, ssl.SSLError):
            return
        finally:
            writer.close()


def always(answer: bytes) -> Script:
    async def script(seen: Seen, n: int) -> bytes | None:
        return answer

    return script


@pytest.fixture
async def ok_server() -> AsyncIterator[RawServer]:
    async with RawServer(always(OK)) as s:
        yield s


async def test_one_write_per_request_and_keep_alive_reuses_the_connection(
    ok_server: RawServer,
) -> None:
    client = Client(f"http://127.0.0.1:{ok_server.port}/orders?x=1", timeout=10)
    try:
        for i in range(5):
            response = await client.request(
                "POST", [("content-type", "application/json"), ("x-n", str(i))], b'{"n": 1}'
            )
            assert (response.status, response.body) == (200, b"ok")
            assert response.headers["content-length"] == "2"
    finally:
        await client.close()
    assert ok_server.connections == 1
    assert [r.target for r in ok_server.requests] == ["/orders?x=1"] * 5
    first = ok_server.requests[0]
    assert first.head.startswith("POST /orders?x=1 HTTP/1.1\r\n")
    assert first.header("host") == f"127.0.0.1:{ok_server.port}"
    assert first.header("content-type") == "application/json"
    assert [r.header("x-n") for r in ok_server.requests] == ["0", "1", "2", "3", "4"]
    assert first.body == b'{"n": 1}'


async def test_requests_in_flight_get_their_own_connections(ok_server: RawServer) -> None:
    gate, all_in = asyncio.Event(), asyncio.Event()

    async def slow(seen: Seen, n: int) -> bytes | None:
        if len(ok_server.requests) == 4:
            all_in.set()
        await gate.wait()
        return OK

    ok_server.script = slow
    client = Client(f"http://127.0.0.1:{ok_server.port}/", timeout=10)
    try:
        tasks = [asyncio.create_task(client.request("PUT", [], b"x")) for _ in range(4)]
        await all_in.wait()  # four requests at the server at once, none answered yet
        gate.set()
        assert [r.status for r in await asyncio.gather(*tasks)] == [200] * 4
        await client.request("PUT", [], b"x")  # one of the four idle connections
    finally:
        await client.close()
    assert ok_server.connections == 4


async def test_a_reused_connection_closed_by_the_server_is_retried_once_on_a_new_one() -> None:
    async def close_on_second(seen: Seen, n: int) -> bytes | None:
        return OK if n == 1 else None  # the idle-timeout race: closed as the request came

    async with RawServer(close_on_second) as server:
        client = Client(f"http://127.0.0.1:{server.port}/", timeout=10)
        try:
            assert (await client.request("POST", [], b"1")).status == 200
            assert (await client.request("POST", [], b"2")).status == 200
        finally:
            await client.close()
    assert server.connections == 2
    assert [(r.body, r.connection) for r in server.requests] == [(b"1", 1), (b"2", 1), (b"2", 2)]


async def test_a_new_connection_closed_without_an_answer_is_an_error_not_retried() -> None:
    async def hang_up(seen: Seen, n: int) -> bytes | None:
        return None

    async with RawServer(hang_up) as server:
        client = Client(f"http://127.0.0.1:{server.port}/", timeout=10)
        try:
            with pytest.raises(HttpError, match="closed before a complete answer"):
                await client.request("POST", [], b"x")
        finally:
            await client.close()
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("answer", "body", "reused"),
    [
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
            b"abcde",
            True,
        ),
        (
            b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 7\r\ncontent-length: 4\r\n\r\ndown",
            b"down",
            True,
        ),
        (
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n",
            b"",
            True,
        ),
        (b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 1\r\n\r\nz", b"z", False),
        (b"HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\nz", b"z", False),
    ],
)
async def test_answers_are_read_whole_and_the_connection_kept_only_when_it_may_be(
    answer: bytes, body: bytes, reused: bool
) -> None:
    async with RawServer(always(answer)) as server:
        client = Client(f"http://127.0.0.1:{server.port}/", timeout=10)
        try:
            first = await client.request("POST", [], b"x")
            await client.request("POST", [], b"x")
        finally:
            await client.close()
    assert first.body == body
    assert first.status == int(answer.rsplit(b"HTTP/1.", 1)[1][2:5])
    assert server.connections == (1 if reused else 2)
    if first.status == 503:
        assert first.headers["retry-after"] == "7"


async def test_a_body_ended_by_closing_the_connection() -> None:
    answer = b"HTTP/1.1 500 Oops\r\n\r\nno length given"  # neither length nor chunks
    async with RawServer(always(answer), close_after=True) as server:
        client = Client(f"http://127.0.0.1:{server.port}/", timeout=10)
        try:
            response = await client.request("POST", [], b"x")
            again = await client.request("POST", [], b"y")
        finally:
            await client.close()
    assert (response.status, response.body) == (500, b"no length given")
    assert again.body == b"no length given"
    assert server.connections == 2


async def test_only_the_start_of_a_long_body_is_kept_and_a_huge_one_is_not_drained() -> None:
    long = b"a" * 10_000
    huge = b"b" * 3_000_000

    async def script(seen: Seen, n: int) -> bytes | None:
        body = long if seen.body == b"long" else huge
        return b"HTTP/1.1 400 Bad\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)

    async with RawServer(script) as server:
        client = Client(f"http://127.0.0.1:{server.port}/", timeout=10)
        try:
            first = await client.request("POST", [], b"long")
            second = await client.request("POST", [], b"huge")
            third = await client.request("POST", [], b"long")
        finally:
            await client.close()
    assert first.body == long[:4096] and second.body == huge[:4096] and third.status == 400
    # the 10 KB answer was drained and its connection reused; the 3 MB one was closed instead
    assert [r.connection for r in server.requests] == [1, 1, 2]


@pytest.mark.parametrize(
    "header",
    [
        ("x-evil", "a\r\nx-injected: 1"),
        ("x-evil", "a\nb"),
        ("x-nul", "a\0b"),
        ("bad name", "v"),
        ("", "v"),
        ("x:y", "v"),
    ],
)
async def test_headers_that_would_break_the_head_are_refused_and_nothing_is_sent(
    ok_server: RawServer, header: tuple[str, str]
) -> None:
    client = Client(f"http://127.0.0.1:{ok_server.port}/", timeout=10)
    try:
        with pytest.raises(InvalidHeader):
            await client.request("POST", [header], b"x")
        assert (await client.request("POST", [("x-fine", "grüße ü")], b"x")).status == 200
    finally:
        await client.close()
    [seen] = ok_server.requests
    assert seen.head.encode("latin-1").decode("utf-8").count("grüße ü") == 1


async def test_a_timeout_closes_the_connection_and_the_next_request_gets_a_new_one() -> None:
    release = asyncio.Event()

    async def stall_first(seen: Seen, n: int) -> bytes | None:
        if seen.body == b"slow":
            await release.wait()
        return OK

    async with RawServer(stall_first) as server:
        client = Client(f"http://127.0.0.1:{server.port}/", timeout=0.2)
        try:
            with pytest.raises(TimeoutError):
                await client.request("POST", [], b"slow")
            release.set()
            assert (await client.request("POST", [], b"fast")).status == 200
        finally:
            await client.close()
    assert [r.connection for r in server.requests] == [1, 2]


async def test_connection_refused_and_garbage_answers() -> None:
    async with RawServer(always(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")) as server:
        port = server.port
        client = Client(f"http://127.0.0.1:{port}/", timeout=10)
        try:
            with pytest.raises(HttpError, match="invalid HTTP answer"):
                await client.request("POST", [], b"x")
        finally:
            await client.close()
    refused = Client(f"http://127.0.0.1:{port}/", timeout=10)  # the server has gone
    with pytest.raises(ConnectFailed):
        await refused.request("POST", [], b"x")
    with pytest.raises(ValueError, match="not an http"):
        Client("ftp://127.0.0.1/x")


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    return ctx


def client_tls(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


async def test_https_is_verified_against_the_trust_store(
    ca: trustme.CA, monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    async with RawServer(always(OK), tls=server_tls(ca)) as server:
        trusted = Client(f"https://127.0.0.1:{server.port}/tls", tls=client_tls(ca), timeout=10)
        try:
            assert (await trusted.request("POST", [], b"x")).status == 200
            assert (await trusted.request("POST", [], b"y")).status == 200
        finally:
            await trusted.close()
        untrusted = Client(f"https://127.0.0.1:{server.port}/tls", timeout=10)  # system CAs
        with pytest.raises(ConnectFailed, match="CERTIFICATE_VERIFY_FAILED"):
            await untrusted.request("POST", [], b"z")
    assert [(r.target, r.body, r.connection) for r in server.requests] == [
        ("/tls", b"x", 1),
        ("/tls", b"y", 1),
    ]
    assert server.requests[0].header("host") == f"127.0.0.1:{server.port}"


@dataclass
class ConnectProxy:
    """A CONNECT-only proxy: records each CONNECT head, then pipes bytes both ways."""

    heads: list[str] = field(default_factory=list)
    refuse: bool = False
    flood: bool = False  # answer CONNECT with an endless head
    port: int = 0

    async def __aenter__(self) -> ConnectProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        self.heads.append(head)
        if self.flood:
            writer.write(b"HTTP/1.1 200 OK\r\nx-pad: ")
            for _ in range(64):  # 256 KiB and never a blank line
                writer.write(b"a" * 4096)
                await writer.drain()
            writer.close()
            return
        if self.refuse:
            writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\ncontent-length: 0\r\n\r\n")
            writer.close()
            return
        host, port = head.split(" ")[1].rsplit(":", 1)
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            except ConnectionError:
                pass
            finally:
                w.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def test_https_through_a_proxy_goes_through_a_connect_tunnel(ca: trustme.CA) -> None:
    async with RawServer(always(OK), tls=server_tls(ca)) as server, ConnectProxy() as proxy:
        client = Client(
            f"https://127.0.0.1:{server.port}/via",
            proxy=f"http://us%40er:p%3Ass@127.0.0.1:{proxy.port}",
            tls=client_tls(ca),
            timeout=10,
        )
        try:
            assert (await client.request("POST", [], b"tunnelled")).status == 200
        finally:
            await client.close()
        proxy.refuse = True
        refused = Client(
            f"https://127.0.0.1:{server.port}/via",
            proxy=f"http://127.0.0.1:{proxy.port}",
            tls=client_tls(ca),
            timeout=10,
        )
        with pytest.raises(ConnectFailed, match="407"):
            await refused.request("POST", [], b"never")
    [connect, _] = proxy.heads
    assert connect.startswith(f"CONNECT 127.0.0.1:{server.port} HTTP/1.1\r\n")
    token = base64.b64encode(b"us@er:p:ss").decode()
    assert f"proxy-authorization: Basic {token}" in connect
    [seen] = server.requests  # the origin got the request, in origin form, and no credentials
    assert (seen.target, seen.body) == ("/via", b"tunnelled")
    assert seen.header("proxy-authorization") is None


async def test_plain_http_through_a_proxy_uses_the_absolute_form(ok_server: RawServer) -> None:
    client = Client(
        "http://erp.invalid:8080/orders", proxy=f"http://u:p@127.0.0.1:{ok_server.port}"
    )
    try:
        assert (await client.request("POST", [], b"x")).status == 200
    finally:
        await client.close()
    [seen] = ok_server.requests
    assert seen.target == "http://erp.invalid:8080/orders"
    assert seen.header("host") == "erp.invalid:8080"
    assert seen.header("proxy-authorization") == "Basic " + base64.b64encode(b"u:p").decode()


async def test_an_endless_answer_to_connect_is_refused(ca: trustme.CA) -> None:
    async with ConnectProxy(flood=True) as proxy:
        client = Client(
            "https://127.0.0.1:9/never",
            proxy=f"http://127.0.0.1:{proxy.port}",
            tls=client_tls(ca),
            timeout=10,
        )
        with pytest.raises(ConnectFailed, match="too long"):
            await client.request("POST", [], b"x")
    assert len(proxy.heads) == 1
