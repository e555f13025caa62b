"""The HTTP layer every connector uses to talk to its system, on aiohttp.

One :class:`RestClient` per connection: a base URL, default headers, credentials
(:mod:`connectors.auth`), explicit timeouts and a connection limit, and every failure classified
once into :class:`hub.errors.RequestFailed`::

    client = RestClient("erp", "https://erp.example/api/", auth=Bearer(token), timeout_s=10)
    await client.open()
    answer = await client.request(
        "PUT", "customers/{id}", path_params={"id": their_id}, json={"name": "Ada"}
    )
    answer.json()

- 2xx is an answer, read whole (up to ``max_body_bytes``). So is any status the caller lists in
  ``allow`` (a 404 that means "no such customer").
- 408, 425, 429 and 5xx, timeouts, refused, reset and TLS-failed connections are
  :class:`~hub.errors.RequestRetriable`; the server's ``Retry-After`` is honoured as given (an
  integer of seconds or an HTTP date, capped at an hour), without jitter.
- Every other status is a :class:`~hub.errors.RequestRefused` that keeps the system's own
  message (``HTTP 422: {"error": "vat_id is invalid"}``). A header that would split the request
  is refused before anything is sent. Redirects are not followed.
- A 401 to an OAuth2 token fetches a new token and tries once more.
- The values of the credentials never appear in an error, even when the system echoes them.
- TLS is verified against the system's trust store (``SSL_CERT_FILE`` and ``SSL_CERT_DIR``
  apply); ``HTTP_PROXY``, ``HTTPS_PROXY`` and ``NO_PROXY`` are read when the client opens.

Why aiohttp and not httpx: on the delivery path one POST to a local sink with 16 in flight costs
aiohttp ~100-145 µs of CPU and httpx ~1,500-2,000 µs (``make bench-client``): httpcore's pool
checks every pooled connection with a ``select()`` call on each request. At the ~2,000 events/s
the pipeline sustains on two cores, httpx alone would need more than both cores. The hub's own
HTTP/1.1 client that this replaces cost ~35 µs, but TLS, proxies, HTTP parsing and their
security fixes are not ours to keep.
"""

from __future__ import annotations

import email.utils
import json as jsonlib
import ssl
import urllib.parse
import urllib.request
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy

from hub.canonical import decode
from hub.errors import RequestFailed, RequestRefused, RequestRetriable

from .auth import Auth

RETRIABLE_STATUS = frozenset({408, 425, 429})
_UNSET: Any = object()


@dataclass(frozen=True, slots=True)
class Response:
    """A system's whole answer."""

    system: str
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes
    url: str

    def json(self) -> Any:
        try:
            return decode(self.body)
        except (ValueError, RecursionError):
            raise RequestRefused(
                self.system, f"HTTP {self.status}: the answer is not JSON: {_excerpt(self.body)}"
            ) from None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class RestClient:
    def __init__(
        self,
        system: str,
        base_url: str,
        *,
        auth: Auth | None = None,
        headers: Mapping[str, str] | None = None,
        timeout_s: float = 10.0,
        connect_timeout_s: float | None = None,
        max_connections: int = 100,
        max_body_bytes: int = 32 * 1024 * 1024,
    ) -> None:
        self.system = system  # the connection's name, in every error
        self.base_url = base_url
        self.auth = auth
        self.headers = {k.lower(): v for k, v in (headers or {}).items()}
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.max_connections = max_connections
        self.max_body_bytes = max_body_bytes
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[str, str | None] = {}

    async def open(self) -> None:
        if self._session is not None:
            return
        # The proxy is looked up once per origin, not per request: aiohttp's trust_env reads
        # the environment on every request (a quarter of the delivery worker's CPU).
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.max_connections, ssl=_tls()),
            timeout=aiohttp.ClientTimeout(
                total=self.timeout_s, sock_connect=self.connect_timeout_s
            ),
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
        )

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def url(self, path: str = "", path_params: Mapping[str, object] | None = None) -> str:
        """``path`` joined to the base URL (an absolute URL is taken as it is); each
        ``{name}`` is filled from ``path_params``, percent-encoded, so an id from another
        system cannot change the path."""
        if path_params:
            path = path.format_map(
                {k: urllib.parse.quote(str(v), safe="") for k, v in path_params.items()}
            )
        if path.startswith(("http://", "https://")):
            return path
        if not path:
            return self.base_url
        return f"{self.base_url.rstrip('/')}/{path.lstrip('/')}"

    async def request(
        self,
        method: str,
        path: str = "",
        *,
        path_params: Mapping[str, object] | None = None,
        params: Mapping[str, str | int | float] | None = None,
        json: Any = _UNSET,
        content: bytes | None = None,
        form: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        allow: Collection[int] = (),
        authenticate: bool = True,
    ) -> Response:
        """Send one request; the answer if its status is 2xx or in ``allow``, else
        :class:`~hub.errors.RequestFailed`."""
        if self._session is None:
            await self.open()
        url = self.url(path, path_params)
        all_headers = dict(self.headers)
        if headers:
            all_headers.update((k.lower(), v) for k, v in headers.items())
        data: Any = content
        if json is not _UNSET:
            data = _json_bytes(json)
            all_headers.setdefault("content-type", "application/json")
        elif form is not None:
            data = urllib.parse.urlencode(form)
            all_headers.setdefault("content-type", "application/x-www-form-urlencoded")
        for attempt in (1, 2):
            sent = dict(all_headers)
            if authenticate and self.auth is not None:
                sent.update(await self.auth.headers(self))
            _check_headers(self.system, sent)
            response = await self._send(method, url, params, data, sent)
            if (
                response.status == 401
                and attempt == 1
                and authenticate
                and self.auth is not None
                and self.auth.rejected()
            ):
                continue  # the token was refused: one more try with a new one
            break
        if 200 <= response.status < 300 or response.status in allow:
            return response
        raise self._failure(response)

    async def _send(
        self,
        method: str,
        url: str,
        params: Mapping[str, str | int | float] | None,
        data: Any,
        headers: dict[str, str],
    ) -> Response:
        assert self._session is not None
        try:
            async with self._session.request(
                method,
                url,
                params=params,
                data=data,
                headers=headers,
                allow_redirects=False,
                proxy=self._proxy(url),
            ) as answer:
                body = await self._read(answer)
                return Response(self.system, answer.status, answer.headers, body, url)
        except TimeoutError:
            raise RequestRetriable(self.system, f"timed out after {self.timeout_s:g}s") from None
        except aiohttp.ClientSSLError as exc:
            raise RequestRetriable(self.system, f"TLS failed: {self._mask(str(exc))}") from None
        except aiohttp.ClientConnectorError as exc:
            reason = exc.os_error.strerror or str(exc.os_error)
            raise RequestRetriable(self.system, f"cannot connect: {reason}") from None
        except aiohttp.InvalidURL as exc:
            raise RequestRefused(self.system, f"invalid URL {exc}") from None
        except aiohttp.ClientError as exc:
            message = self._mask(str(exc) or type(exc).__name__)
            raise RequestRetriable(self.system, message) from None

    async def _read(self, answer: aiohttp.ClientResponse) -> bytes:
        declared = answer.content_length
        if declared is not None and declared > self.max_body_bytes:
            raise RequestRefused(
                self.system, f"answer of {declared} bytes is over {self.max_body_bytes}"
            )
        chunks: list[bytes] = []
        size = 0
        async for chunk in answer.content.iter_chunked(65536):
            size += len(chunk)
            if size > self.max_body_bytes:
                raise RequestRefused(self.system, f"answer is over {self.max_body_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def _failure(self, response: Response) -> RequestFailed:
        detail = self._mask(f"HTTP {response.status}: {_excerpt(response.body)}")
        if response.status >= 500 or response.status in RETRIABLE_STATUS:
            wait = retry_after(response.headers.get("retry-after"))
            return RequestRetriable(self.system, detail, response.status, wait)
        return RequestRefused(self.system, detail, response.status)

    def _mask(self, text: str) -> str:
        for secret in self.auth.secrets if self.auth is not None else ():
            if secret:
                text = text.replace(secret, "***")
        return text

    def _proxy(self, url: str) -> str | None:
        parts = urllib.parse.urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        if origin not in self._proxies:
            self._proxies[origin] = env_proxy(url)
        return self._proxies[origin]


def _tls() -> ssl.SSLContext:
    """The system's trust store, as OpenSSL finds it (SSL_CERT_FILE, SSL_CERT_DIR apply)."""
    return ssl.create_default_context()


def env_proxy(url: str) -> str | None:
    """The proxy for ``url`` from HTTP_PROXY/HTTPS_PROXY/NO_PROXY (credentials in its URL)."""
    parts = urllib.parse.urlsplit(url)
    if parts.hostname and urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get(parts.scheme)


def _check_headers(system: str, headers: Mapping[str, str]) -> None:
    """A header that would split the request (a line break from a source system's id, a
    broken secret) is refused before anything is sent; the message names it, never its value."""
    for name, value in headers.items():
        if any(c in name for c in "\r\n\0:") or any(c in value for c in "\r\n\0"):
            raise RequestRefused(system, f"cannot send: header {name} has a line break or NUL")


def _json_bytes(value: Any) -> bytes:
    return jsonlib.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _excerpt(body: bytes, limit: int = 500) -> str:
    text = " ".join(body.decode("utf-8", "replace").split())
    return text if len(text) <= limit else text[:limit] + "…"


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), capped at 1 hour."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return min(max(seconds, 0.0), 3600.0)


__all__ = ["RETRIABLE_STATUS", "Response", "RestClient", "env_proxy", "retry_after"]
