"""Generic HTTP destination: POSTs each canonical event as JSON to a URL.

Each request carries ``Idempotency-Key`` (the event id) and the CloudEvents HTTP binary-mode
headers (``ce-id``, ``ce-type``, ...), so a receiver can deduplicate and trace it.

The client is the hub's own lean HTTP/1.1 client (``hub.httpclient``): this is the hub's hottest
path, and against a local sink with 16 requests in flight one POST costs it ~31-35 µs of CPU
where aiohttp cost ~86-104 µs and httpx ~1,300-1,500 µs (``make bench-client``; bench/README.md).
"""

from __future__ import annotations

import email.utils
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from functools import cached_property
from typing import Literal

from pydantic import Field, HttpUrl

from hub.errors import DeliveryRejected, DeliveryRetriable
from hub.httpclient import Client, ConnectFailed, HttpError, InvalidHeader

from .base import ConnectorOptions, Delivery, Secret, Sink
from .registry import register

RETRIABLE_STATUS = frozenset({408, 425, 429})


class HttpOptions(ConnectorOptions):
    url: HttpUrl = Field(
        description="Where events are sent.", examples=["https://erp.example/api/orders"]
    )
    method: Literal["POST", "PUT"] = Field("POST", description="HTTP method of each request.")
    timeout_s: float = Field(10.0, gt=0, description="Timeout of one request.")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra, non-secret headers.")
    authorization: Secret | None = Field(
        None, description="Value of the Authorization header sent with each request."
    )


@register
class Http(Sink):
    name = "http"
    title = "HTTP endpoint"
    description = "Any HTTP endpoint that accepts JSON: one request per event."
    Options = HttpOptions
    options: HttpOptions

    _client: Client | None = None

    async def open(self) -> None:
        self._client = Client(
            str(self.options.url), timeout=self.options.timeout_s, proxy=_env_proxy(self._url)
        )
        self._fixed = [*self.options.headers.items(), ("content-type", "application/json")]

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
        headers = [
            *self._fixed,
            ("idempotency-key", delivery.event_id),
            *((f"ce-{k}", v) for k, v in delivery.headers.items()),
        ]
        secret = self.options.authorization
        if secret is not None:
            headers.append(("authorization", secret.get_secret_value()))
        try:
            response = await self._client.request(self.options.method, headers, delivery.body)
        except TimeoutError:
            raise DeliveryRetriable(self.connection, "timed out") from None
        except ConnectFailed as exc:
            raise DeliveryRetriable(self.connection, f"cannot connect: {exc}") from None
        except HttpError as exc:
            raise DeliveryRetriable(self.connection, str(exc)) from None
        except InvalidHeader as exc:  # never the secret's value: the message names the header
            raise DeliveryRejected(self.connection, f"cannot send: {exc}") from None
        status = response.status
        if 200 <= status < 300:
            return
        text = response.body.decode("utf-8", "replace")
        detail = f"HTTP {status}: {text[:200]}"
        if secret is not None:  # a destination may echo the header back
            detail = detail.replace(secret.get_secret_value(), "***")
        if status >= 500 or status in RETRIABLE_STATUS:
            wait = _retry_after(response.headers.get("retry-after"))
            raise DeliveryRetriable(self.connection, detail, status, wait)
        raise DeliveryRejected(self.connection, detail, status)


def _env_proxy(url: str) -> str | None:
    """The proxy for ``url`` from HTTP_PROXY/HTTPS_PROXY/NO_PROXY, as httpx used them.

    Read once per connection, not per request (aiohttp's ``trust_env`` did that, and it was a
    quarter of the delivery worker's CPU in bench/pipeline)."""
    parts = urllib.parse.urlsplit(url)
    if parts.hostname and urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get(parts.scheme)


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
