"""Generic HTTP destination: POSTs each canonical event as JSON to a URL.

Each request carries ``Idempotency-Key`` (the event id) and the CloudEvents HTTP binary-mode
headers (``ce-id``, ``ce-type``, ...), so a receiver can deduplicate and trace it.

The client is aiohttp, not httpx: this is the hub's hottest path, and against a local sink with
16 requests in flight one aiohttp POST cost 77 µs of CPU where httpx cost 1,230 µs
(bench/README.md, "Delivery HTTP client").
"""

from __future__ import annotations

import email.utils
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from functools import cached_property
from typing import Literal

import aiohttp
from pydantic import Field, HttpUrl

from hub.errors import DeliveryRejected, DeliveryRetriable

from .base import ConnectorOptions, Delivery, Secret, Sink
from .registry import register

RETRIABLE_STATUS = frozenset({408, 425, 429})


class HttpOptions(ConnectorOptions):
    url: HttpUrl = Field(
        description="Where events are sent.", examples=["https://erp.example/api/orders"]
    )
    method: Literal["POST", "PUT"] = "POST"
    timeout_s: float = Field(10.0, gt=0, description="Timeout of one request.")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra, non-secret headers.")
    authorization: Secret | None = Field(
        None, description="Value of the Authorization header (env:NAME or file:PATH)."
    )


@register
class Http(Sink):
    name = "http"
    title = "HTTP endpoint"
    description = "Any HTTP endpoint that accepts JSON: one request per event."
    Options = HttpOptions
    options: HttpOptions

    _client: aiohttp.ClientSession | None = None
    _proxy: str | None = None

    async def open(self) -> None:
        self._client = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
            timeout=aiohttp.ClientTimeout(total=self.options.timeout_s),
            cookie_jar=aiohttp.DummyCookieJar(),  # no state from one delivery to the next
        )
        self._proxy = _env_proxy(self._url)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    @cached_property
    def _url(self) -> str:
        return str(self.options.url)

    async def deliver(self, delivery: Delivery) -> None:
        if self._client is None:
            await self.open()
        assert self._client is not None
        headers = {
            **self.options.headers,
            "content-type": "application/json",
            "idempotency-key": delivery.event_id,
            **{f"ce-{k}": v for k, v in delivery.headers.items()},
        }
        if self.options.authorization is not None:
            headers["authorization"] = self.options.authorization.get_secret_value()
        try:
            async with self._client.request(
                self.options.method,
                self._url,
                data=delivery.body,
                headers=headers,
                allow_redirects=False,
                proxy=self._proxy,
            ) as response:
                status = response.status
                text = "" if 200 <= status < 300 else await _text(response)
                retry_after = response.headers.get("retry-after")
        except TimeoutError:
            raise DeliveryRetriable(self.connection, "timed out") from None
        except aiohttp.ClientConnectorError as exc:
            raise DeliveryRetriable(self.connection, f"cannot connect: {exc.os_error}") from None
        except aiohttp.ClientError as exc:
            raise DeliveryRetriable(self.connection, f"{type(exc).__name__}: {exc}") from None
        if 200 <= status < 300:
            return
        detail = f"HTTP {status}: {text[:200]}"
        if self.options.authorization is not None:  # a destination may echo the header back
            detail = detail.replace(self.options.authorization.get_secret_value(), "***")
        if status >= 500 or status in RETRIABLE_STATUS:
            wait = _retry_after(retry_after)
            raise DeliveryRetriable(self.connection, detail, status, wait)
        raise DeliveryRejected(self.connection, detail, status)


def _env_proxy(url: str) -> str | None:
    """The proxy for ``url`` from HTTP_PROXY/HTTPS_PROXY/NO_PROXY, as httpx used them.

    Read once per connection: aiohttp's ``trust_env`` reads the environment and ~/.netrc on
    every request, which was a quarter of the delivery worker's CPU (bench/pipeline)."""
    parts = urllib.parse.urlsplit(url)
    if parts.hostname and urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get(parts.scheme)


async def _text(response: aiohttp.ClientResponse) -> str:
    """The start of an error response's body, for the dead letter (never more than 4 KiB)."""
    try:
        return (await response.content.read(4096)).decode("utf-8", "replace")
    except (aiohttp.ClientError, TimeoutError):
        return ""


def _retry_after(value: str | None) -> float | None:
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
