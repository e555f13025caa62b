"""Generic HTTP destination: POSTs each canonical event as JSON to a URL.

Each request carries ``Idempotency-Key`` (the event id) and the CloudEvents HTTP binary-mode
headers (``ce-id``, ``ce-type``, ...), so a receiver can deduplicate and trace it.
"""

from __future__ import annotations

import email.utils
import json
from datetime import UTC, datetime
from typing import Literal

import httpx
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

    _client: httpx.AsyncClient | None = None

    async def open(self) -> None:
        self._client = httpx.AsyncClient(timeout=self.options.timeout_s, follow_redirects=False)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

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
        body = json.dumps(delivery.data, separators=(",", ":"), ensure_ascii=False).encode()
        try:
            response = await self._client.request(
                self.options.method, str(self.options.url), content=body, headers=headers
            )
        except httpx.TimeoutException:
            raise DeliveryRetriable(self.connection, "timed out") from None
        except httpx.TransportError as exc:
            raise DeliveryRetriable(self.connection, f"{type(exc).__name__}: {exc}") from None
        status = response.status_code
        if 200 <= status < 300:
            return
        detail = f"HTTP {status}: {response.text[:200]}"
        if self.options.authorization is not None:  # a destination may echo the header back
            detail = detail.replace(self.options.authorization.get_secret_value(), "***")
        if status >= 500 or status in RETRIABLE_STATUS:
            wait = _retry_after(response.headers.get("retry-after"))
            raise DeliveryRetriable(self.connection, detail, status, wait)
        raise DeliveryRejected(self.connection, detail, status)


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
