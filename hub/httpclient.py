"""A lean HTTP/1.1 client for one origin: the delivery hot path.

Each event the hub delivers is one request, so the client's own CPU is paid per event. aiohttp
cost ~86-104 us of CPU per POST against a local sink where this client costs ~31-35 us (same
sink, 16 in flight: ``make bench-client``, bench/README.md); aiohttp was half of the delivery
worker's CPU in bench/pipeline's profile.

What it does, and nothing more:

* one origin (scheme, host, port) per client, HTTP/1.1 keep-alive, one request at a time per
  connection (no pipelining), as many connections as requests in flight; idle ones are kept
  up to ``max_idle``;
* the request is written with one ``write`` (head and body together): on a VM each socket write
  that wakes another process is a large part of a small request's cost;
* responses are parsed by httptools (llhttp, the parser uvicorn uses): Content-Length, chunked,
  or read until the server closes; the body is kept up to ``keep_body`` bytes (an error text
  for the dead letter) and the rest read and dropped, up to ``max_body``, beyond which the
  connection is closed instead of drained;
* TLS with the system's trust store (``ssl.create_default_context``: ``SSL_CERT_FILE`` and
  ``SSL_CERT_DIR`` are honoured), and an HTTP proxy: absolute-form requests for ``http://``,
  a ``CONNECT`` tunnel for ``https://``; credentials in the proxy URL go in
  ``Proxy-Authorization``;
* one timeout for the whole exchange (connect included); a connection that timed out or failed
  is closed, never reused;
* a request that failed on a *reused* connection before any byte of an answer arrived (the
  server closed the idle connection as the request went out) is sent once more on a new
  connection, as browsers do. Only then: a request may otherwise reach a server twice only
  through the caller's retry, which carries the same idempotency key.

Redirects are not followed, cookies are not kept.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from typing import cast

import httptools


class HttpError(Exception):
    """The exchange failed: no complete answer was read."""


class ConnectFailed(HttpError):
    """No connection could be made (refused, unreachable, DNS, TLS handshake, proxy refused)."""


class InvalidHeader(ValueError):
    """A header name or value that cannot be sent (a line break, a NUL, a bad name)."""


@dataclass(slots=True)
class Response:
    status: int
    headers: dict[str, str]  # names in lower case; a repeated header keeps its last value
    body: bytes  # the first ``keep_body`` bytes


@dataclass(frozen=True, slots=True)
class _Origin:
    scheme: str
    host: str
    port: int
    authority: str  # for the Host header


def _origin(url: str) -> tuple[_Origin, str]:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    default = 443 if parts.scheme == "https" else 80
    port = parts.port or default
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    authority = shown if port == default else f"{shown}:{port}"
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return _Origin(parts.scheme, host, port, authority), target


@cache
def _default_tls() -> ssl.SSLContext:
    return ssl.create_default_context()


_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_NAMES: set[str] = set()  # names already checked: a sink sends the same few every time


def encode_headers(headers: Iterable[tuple[str, str]]) -> bytes:
    """``name: value`` lines; refuses what would split or end the head (header injection).

    Names are checked once each. Values are checked on the joined text: with one CR and one LF
    per line, no value holds either (checking each value in Python cost 9x)."""
    pairs = list(headers)
    for name, _ in pairs:
        if name not in _NAMES:
            if not name or not _TOKEN.issuperset(name):
                raise InvalidHeader(f"invalid header name {name!r}")
            if len(_NAMES) < 1024:
                _NAMES.add(name)
    text = "".join([f"{name}: {value}\r\n" for name, value in pairs])
    n = len(pairs)
    if text.count("\n") != n or text.count("\r") != n or "\0" in text:
        bad = next(k for k, v in pairs if "\r" in v or "\n" in v or "\0" in v)
        raise InvalidHeader(f"header {bad} holds a line break or NUL")
    return text.encode("utf-8")


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection; one exchange at a time."""

    def __init__(self, keep_body: int, max_body: int) -> None:
        self.keep_body = keep_body
        self.max_body = max_body
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.waiter: asyncio.Future[Response] | None = None
        self.tunnel: asyncio.Future[bytes] | None = None  # the answer to CONNECT
        self._tunnel_buf = b""
        self._reset()

    def _reset(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.kept = 0
        self.read = 0
        self.answered = False  # any byte of the answer arrived
        self.head_done = False
        self.reusable = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport, but have its methods
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self._tunnel_data(data)
            return
        self.answered = True
        if self.waiter is None or self.waiter.done():
            self.close()  # bytes nobody asked for: the connection is out of step
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(HttpError(f"invalid HTTP answer: {exc}"))
            self.close()

    def eof_received(self) -> bool:
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.transport = None
        if self.tunnel is not None and not self.tunnel.done():
            self.tunnel.set_exception(ConnectFailed("the proxy closed the connection"))
        if self.waiter is None or self.waiter.done():
            return
        if (
            self.head_done
            and "content-length" not in self.headers
            and ("transfer-encoding" not in self.headers)
        ):
            self._complete()  # a body delimited by the end of the connection
            return
        reason = f": {exc}" if exc else ""
        self._fail(HttpError(f"connection closed before a complete answer{reason}"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.head_done = True

    def on_body(self, chunk: bytes) -> None:
        self.read += len(chunk)
        if self.kept < self.keep_body:
            piece = chunk[: self.keep_body - self.kept]
            self.body.append(piece)
            self.kept += len(piece)
        if self.read > self.max_body:  # not worth draining: answer now, then close
            self._complete()
            self.close()

    def on_message_complete(self) -> None:
        if 100 <= self.parser.get_status_code() < 200:  # 1xx (103 Early Hints): the answer follows
            self.headers, self.head_done = {}, False
            return
        self.reusable = self.parser.should_keep_alive()
        self._complete()

    # the exchange
    def _complete(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            status = self.parser.get_status_code()
            self.waiter.set_result(Response(status, self.headers, b"".join(self.body)))

    def _fail(self, exc: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    def send(self, data: bytes) -> asyncio.Future[Response]:
        assert self.transport is not None
        self._reset()
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self.waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    # CONNECT through a proxy
    def _tunnel_data(self, data: bytes) -> None:
        assert self.tunnel is not None
        if self.tunnel.done():
            return
        self._tunnel_buf += data
        if b"\r\n\r\n" in self._tunnel_buf:
            self.tunnel.set_result(self._tunnel_buf)
        elif len(self._tunnel_buf) > 65536:
            self.tunnel.set_exception(ConnectFailed("the proxy's answer to CONNECT is too long"))


@dataclass
class Client:
    """HTTP/1.1 to the origin of ``url``; ``proxy`` is an ``http://`` proxy URL or None."""

    url: str
    timeout: float = 10.0
    proxy: str | None = None
    tls: ssl.SSLContext | None = None  # None: the system's trust store
    keep_body: int = 4096
    max_body: int = 1 << 20
    max_idle: int = 64
    _idle: list[_Connection] = field(default_factory=list, init=False, repr=False)
    _closed: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        self.origin, self.target = _origin(self.url)
        self._proxy_auth: str | None = None
        self._proxy_origin: _Origin | None = None
        if self.proxy:
            self._proxy_origin, _ = _origin(self.proxy)
            parts = urllib.parse.urlsplit(self.proxy)
            if parts.username is not None:
                user = urllib.parse.unquote(parts.username)
                password = urllib.parse.unquote(parts.password or "")
                token = base64.b64encode(f"{user}:{password}".encode()).decode()
                self._proxy_auth = f"Basic {token}"
        # absolute-form through a plain proxy; origin-form directly and inside a tunnel
        absolute = self._proxy_origin is not None and self.origin.scheme == "http"
        target = f"http://{self.origin.authority}{self.target}" if absolute else self.target
        self._request_target = target
        self._extra = [("host", self.origin.authority)]
        if absolute and self._proxy_auth:
            self._extra.append(("proxy-authorization", self._proxy_auth))

    async def request(
        self, method: str, headers: Iterable[tuple[str, str]], body: bytes
    ) -> Response:
        """Send one request to the client's URL; the answer, whatever its status.

        Raises ``ConnectFailed``, ``HttpError``, ``TimeoutError`` or ``InvalidHeader``."""
        head = [
            f"{method} {self._request_target} HTTP/1.1\r\ncontent-length: {len(body)}\r\n".encode(),
            encode_headers(self._extra),
            encode_headers(headers),
            b"\r\n",
        ]
        data = b"".join(head) + body
        async with asyncio.timeout(self.timeout):
            while self._idle:
                conn = self._idle.pop()
                if conn.closed:
                    continue
                try:
                    return await self._exchange(conn, data)
                except HttpError:
                    if conn.answered:
                        raise
                    # the server closed this idle connection as the request went out
                    break
            return await self._exchange(await self._connect(), data)

    async def _exchange(self, conn: _Connection, data: bytes) -> Response:
        try:
            response = await conn.send(data)
        except BaseException:
            conn.close()
            raise
        if conn.reusable and not conn.closed and not self._closed:
            if len(self._idle) < self.max_idle:
                self._idle.append(conn)
                return response
        conn.close()
        return response

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        origin = self.origin
        tls = (self.tls or _default_tls()) if origin.scheme == "https" else None
        hop = self._proxy_origin or origin
        hop_tls = (self.tls or _default_tls()) if hop.scheme == "https" else None

        def factory() -> _Connection:
            return _Connection(self.keep_body, self.max_body)

        try:
            transport, conn = await loop.create_connection(
                factory,
                hop.host,
                hop.port,
                ssl=hop_tls,
                server_hostname=hop.host if hop_tls else None,
            )
        except OSError as exc:  # refused, unreachable, DNS, TLS handshake (ssl.SSLError)
            raise ConnectFailed(str(exc) or type(exc).__name__) from exc
        if self._proxy_origin is not None and tls is not None:
            try:
                await self._tunnel(conn)
                new = await loop.start_tls(transport, conn, tls, server_hostname=origin.host)
            except BaseException:
                conn.close()
                raise
            if new is None:
                raise ConnectFailed("the TLS handshake through the proxy failed")
            conn.transport = new
        return conn

    async def _tunnel(self, conn: _Connection) -> None:
        assert conn.transport is not None
        lines = [("host", self.origin.authority)]
        if self._proxy_auth:
            lines.append(("proxy-authorization", self._proxy_auth))
        conn.tunnel = asyncio.get_running_loop().create_future()
        conn.transport.write(
            f"CONNECT {self.origin.authority} HTTP/1.1\r\n".encode()
            + encode_headers(lines)
            + b"\r\n"
        )
        answer = await conn.tunnel
        conn.tunnel = None
        status_line = answer.split(b"\r\n", 1)[0].decode("latin-1")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[1].startswith("2"):
            raise ConnectFailed(f"the proxy refused the tunnel: {status_line[:100]}")

    async def close(self) -> None:
        self._closed = True
        while self._idle:
            self._idle.pop().close()


__all__ = ["Client", "ConnectFailed", "HttpError", "InvalidHeader", "Response", "encode_headers"]
