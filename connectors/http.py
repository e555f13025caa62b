"""Generic HTTP destination: sends each canonical event as JSON to a URL.

Each request carries ``Idempotency-Key`` (the event id) and the CloudEvents HTTP binary-mode
headers (``ce-id``, ``ce-type``, ...), so a receiver can deduplicate and trace it. Requests go
through the connectors' HTTP layer (:mod:`connectors.rest`), which classifies failures.
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, HttpUrl, model_validator

from hub import tracing
from hub.errors import ConnectionCheckFailed, RequestFailed, delivery_failed

from .auth import AuthSpec, HeaderAuth, build_auth
from .base import ConnectorOptions, Delivery, Secret, Sink
from .registry import register
from .rest import RestClient


class HttpOptions(ConnectorOptions):
    url: HttpUrl = Field(
        description="Where events are sent.", examples=["https://erp.example/api/orders"]
    )
    method: Literal["POST", "PUT"] = Field("POST", description="HTTP method of each request.")
    timeout_s: float = Field(10.0, gt=0, description="Timeout of one request.")
    connect_timeout_s: float | None = Field(
        None, gt=0, description="Timeout of opening a connection (default: timeout_s)."
    )
    max_connections: int = Field(
        100, ge=1, le=10_000, description="Connections kept open to the destination at most."
    )
    headers: dict[str, str] = Field(default_factory=dict, description="Extra, non-secret headers.")
    authorization: Secret | None = Field(
        None,
        description="Value of the Authorization header, sent as is (env:NAME or file:PATH).",
    )
    auth: AuthSpec | None = Field(
        None,
        description="Credentials: bearer, basic, api_key or oauth2_client_credentials "
        "(see connectors/auth.py). Instead of authorization.",
    )

    @model_validator(mode="after")
    def _one_kind_of_credentials(self) -> Self:
        if self.authorization is not None and self.auth is not None:
            raise ValueError("set authorization or auth, not both")
        return self


@register
class Http(Sink):
    name = "http"
    title = "HTTP endpoint"
    description = "Any HTTP endpoint that accepts JSON: one request per event."
    Options = HttpOptions
    options: HttpOptions

    _client: RestClient | None = None

    async def open(self) -> None:
        o = self.options
        credentials = build_auth(o.auth)
        if o.authorization is not None:
            credentials = HeaderAuth("authorization", o.authorization.get_secret_value())
        self._client = RestClient(
            self.connection,
            str(o.url),
            auth=credentials,
            headers=o.headers,
            timeout_s=o.timeout_s,
            connect_timeout_s=o.connect_timeout_s,
            max_connections=o.max_connections,
        )
        await self._client.open()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def check_connection(self) -> str:
        """A HEAD request to the URL: any answer but 401/403 shows the endpoint reachable (TLS
        included) and the credentials not refused; nothing is written."""
        await self.open()
        assert self._client is not None
        try:
            answer = await self._client.request("HEAD", allow=range(300, 600))
        except RequestFailed as exc:
            raise ConnectionCheckFailed(
                f"{self.options.url} cannot be reached: {exc.reason}; check the URL, that the "
                "endpoint is up, and any proxy (HTTPS_PROXY, NO_PROXY)"
            ) from None
        finally:
            await self.close()
        if answer.status in (401, 403):
            raise ConnectionCheckFailed(
                f"{self.options.url} refused the credentials (HTTP {answer.status}); check "
                "the connection's authorization or auth option and the secret it refers to"
            )
        return f"{self.options.url} answered HEAD with HTTP {answer.status}"

    async def deliver(self, delivery: Delivery) -> None:
        if self._client is None:
            await self.open()
        assert self._client is not None
        headers = {f"ce-{k}": v for k, v in delivery.headers.items()}
        headers["content-type"] = "application/json"
        headers["idempotency-key"] = delivery.event_id
        trace = delivery.headers.get("traceparent")
        if trace:  # the destination's spans join the event's trace (hub/tracing.py)
            headers["traceparent"] = tracing.child(trace)
        try:
            await self._client.request(self.options.method, content=delivery.body, headers=headers)
        except RequestFailed as exc:
            raise delivery_failed(exc) from None
