"""Generic HTTP destination: sends each canonical event as JSON to a URL.

Each request carries ``Idempotency-Key`` (one per event and route:
:func:`connectors.base.idempotency_key_for`) and the CloudEvents HTTP binary-mode headers
(``ce-id`` is the event id, ``ce-type``, ...), so a receiver can deduplicate and trace it.
Requests go through the connectors' HTTP layer (:mod:`connectors.rest`), which classifies
failures.

With ``update_path`` an event about an object the destination already has is sent as an
update: the path (joined to ``url``) names fields of the mapped document in braces, which an
outbound mapping fills with the destination's id (``external_id()``, the crosswalk's reverse
lookup)::

    url: https://crm.example/customers      # a create: POST https://crm.example/customers
    update_path: "{crm_id}"                 # an update: PUT https://crm.example/customers/c-42

When every field the path names has a value, the request is ``update_method`` (PUT) to that
path, each value percent-encoded as one path segment, and those fields are left out of the body;
otherwise it is ``method`` (POST) to ``url``, a create.

With ``result_id`` (a JSON pointer ``/data/id`` or a dotted path ``data.id`` into the answer's
JSON body) the id the destination assigned is reported to the hub, which links it to the event's
golden id (:mod:`hub.crosswalk`); ``result_version`` likewise for the object's version. An
answer without it (no body, not JSON, no such field) is still a delivery: it reports nothing,
and says so in the log.
"""

from __future__ import annotations

import json
import logging
import re
import string
from typing import Any, Literal, Self

from pydantic import Field, HttpUrl, field_validator, model_validator

from hub import tracing
from hub.errors import ConnectionCheckFailed, DeliveryRejected, RequestFailed, delivery_failed

from .auth import AuthSpec, HeaderAuth, build_auth
from .base import ConnectorOptions, CreatedId, Delivery, DeliveryResult, Secret, Sink
from .registry import register
from .rest import Response, RestClient

log = logging.getLogger(__name__)


class HttpOptions(ConnectorOptions):
    url: HttpUrl = Field(
        description="Where events are sent.", examples=["https://erp.example/api/orders"]
    )
    method: Literal["POST", "PUT"] = Field(
        "POST", description="HTTP method of each request (of a create, with update_path)."
    )
    update_path: str | None = Field(
        None,
        description="Where an update goes, joined to url: {field} names a top-level field of "
        "the mapped document (e.g. filled by external_id()). When every named field has a "
        "value, the event is sent with update_method to this path, without those fields; "
        "otherwise with method to url (a create).",
        examples=["{crm_id}", "/api/customers/{crm_id}"],
    )
    update_method: Literal["PUT", "PATCH", "POST"] = Field(
        "PUT", description="HTTP method of an update (with update_path)."
    )
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

    result_id: str | None = Field(
        None,
        description="Where the answer's JSON body holds the id the destination assigned: a JSON "
        "pointer or a dotted path. The hub links it to the event's golden id (crosswalk).",
        examples=["/id", "data.customer.id"],
    )
    result_version: str | None = Field(
        None,
        description="Where the answer's JSON body holds the object's version, if it has one "
        "(same syntax as result_id).",
        examples=["/version"],
    )

    @model_validator(mode="after")
    def _one_kind_of_credentials(self) -> Self:
        if self.authorization is not None and self.auth is not None:
            raise ValueError("set authorization or auth, not both")
        return self

    @field_validator("update_path")
    @classmethod
    def _update_path(cls, value: str | None) -> str | None:
        if value is not None:
            path_fields(value)  # raises ValueError saying what is wrong
        return value


_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def path_fields(template: str) -> tuple[str, ...]:
    """The fields ``{name}`` of a path template, in order; ValueError for a template that is
    not one (no field, a field that is not a plain name, a stray brace)."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"{template!r} is not a path template: {exc}") from None
    names: list[str] = []
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if not _FIELD.match(name) or spec or conversion:
            raise ValueError(
                f"{{{name}}} in {template!r}: a field must be a plain top-level name of the "
                "mapped document, e.g. {crm_id}"
            )
        names.append(name)
    if not names:
        raise ValueError(f"{template!r} names no field: e.g. '{{crm_id}}'")
    return tuple(dict.fromkeys(names))


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

    async def deliver(self, delivery: Delivery) -> DeliveryResult | None:
        if self._client is None:
            await self.open()
        assert self._client is not None
        headers = {f"ce-{k}": v for k, v in delivery.headers.items()}
        headers["content-type"] = "application/json"
        headers["idempotency-key"] = delivery.idempotency_key
        trace = delivery.headers.get("traceparent")
        if trace:  # the destination's spans join the event's trace (hub/tracing.py)
            headers["traceparent"] = tracing.child(trace)
        method, path, params, body = self._request_of(delivery)
        try:
            answer = await self._client.request(
                method, path, path_params=params, content=body, headers=headers
            )
        except RequestFailed as exc:
            raise delivery_failed(exc) from None
        if self.options.result_id is None:
            return None
        return self._result(delivery, answer)

    def _request_of(self, delivery: Delivery) -> tuple[str, str, dict[str, str] | None, bytes]:
        """Method, path, path parameters and body: an update to ``update_path`` when the
        mapped document has every field it names, else a create with ``method`` to ``url``.
        The fields the path names are not sent in the body either way."""
        o = self.options
        document = delivery.data if o.update_path is not None else None
        if not isinstance(document, dict):
            return o.method, "", None, delivery.body
        fields = path_fields(o.update_path or "")
        values = {name: _scalar(document.get(name)) for name in fields}
        rest = {k: v for k, v in document.items() if k not in values}
        body = json.dumps(rest, separators=(",", ":"), ensure_ascii=False).encode()
        known = {name: v for name, v in values.items() if v is not None}
        if len(known) < len(fields):
            return o.method, "", None, body if len(rest) < len(document) else delivery.body
        for name, value in known.items():
            if value in (".", ".."):  # would climb the path, however encoded
                raise DeliveryRejected(
                    self.connection, f"{name} is {value!r}, which cannot be a path segment"
                )
        return o.update_method, o.update_path or "", known, body

    def _result(self, delivery: Delivery, answer: Response) -> DeliveryResult | None:
        """The id (and version) the destination assigned, read from its answer."""
        o = self.options
        assert o.result_id is not None
        try:
            body = answer.json() if answer.body else None
        except RequestFailed:
            body = None
        external_id = _scalar(pick(body, o.result_id))
        if external_id is None:
            log.warning(
                "%s: the answer to %s (HTTP %s) has no id at %s; nothing linked",
                self.connection,
                delivery.event_id,
                answer.status,
                o.result_id,
            )
            return None
        version = _scalar(pick(body, o.result_version)) if o.result_version else None
        entity = delivery.event_type.removeprefix("hub.").split(".", 1)[0]
        return DeliveryResult((CreatedId(entity, external_id, version),))


def pick(document: Any, path: str) -> Any:
    """The value at ``path`` in a parsed JSON document: a JSON pointer (RFC 6901, ``/a/0/b``)
    or a dotted path (``a.0.b``); None where there is no such value."""
    if path.startswith("/"):
        steps = [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]
    else:
        steps = path.split(".")
    value = document
    for step in steps:
        if isinstance(value, dict):
            value = value.get(step)
        elif isinstance(value, list) and step.isdigit() and int(step) < len(value):
            value = value[int(step)]
        else:
            return None
    return value


def _scalar(value: Any) -> str | None:
    """An id as text: a string or an integer (not a boolean, an object or an empty string)."""
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        return None
    return str(value)
