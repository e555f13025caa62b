"""``POST /webhooks/{connection}``: verify, deduplicate, store in Kafka, then answer 202.

The answer is 2xx only once the broker has acknowledged the raw event (acks=all): a source
that gets a 2xx may forget the event. Refusals are JSON ``{"error", "message"}`` with 401 (bad
signature), 404 (unknown connection), 413 (too large), 415 (not JSON), 400 (malformed JSON);
503 when the broker did not acknowledge: the source retries. What a webhook leaves out is read
from its system's API later, by the mapper (:meth:`connectors.base.WebhookSource.complete`), so
the system being down never makes ingress refuse its webhook.

Webhooks go through FastAPI's routing like every other request, so middleware (limits,
metrics, tracing, auth) sees them too. A plain ASGI handler in front of FastAPI once saved ~25%
of ingress CPU (bench/pipeline); issue #12 retired it as a speed-only shortcut.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from hub.canonical import decode
from hub.envelope import derived_id, new_id, raw_event
from hub.errors import (
    BrokerUnavailable,
    ConnectionIdle,
    MalformedPayload,
    PayloadTooLarge,
    UnknownConnection,
    UnsupportedMediaType,
    WebhookRejected,
)

from .deps import HubDep

if TYPE_CHECKING:
    from connectors import InboundEvent
    from hub.ports import IngressHub

log = logging.getLogger(__name__)
router = APIRouter(tags=["ingress"])

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Answer = tuple[int, dict[str, str], dict[str, str]]
"""Status, JSON body, extra headers."""

PREFIX = "/webhooks/"


async def accept(
    hub: IngressHub, connection: str, headers: Mapping[str, str], body: bytes
) -> Answer:
    """Everything a webhook request does once its body is read; refusals raise
    :class:`WebhookRejected`."""
    source = hub.config.webhook_source(connection)
    if source is None:
        if connection in hub.config.idle:
            raise ConnectionIdle(
                f"connection {connection!r} has no enabled route: its webhooks are not "
                "received until one is enabled"
            )
        raise UnknownConnection(f"no webhook connection named {connection!r}")
    source.verify(headers, body)
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise UnsupportedMediaType(f"expected application/json, got {content_type or 'nothing'}")
    payload = parse(body)
    inbound = source.describe(headers, payload)

    if inbound.delivery_id:
        event_id = derived_id("webhook", connection, inbound.delivery_id)
        if await hub.receipts.seen(connection, inbound.delivery_id) is not None:
            log.info("duplicate webhook %s on %s: already stored", inbound.delivery_id, connection)
            return 200, {"status": "duplicate", "id": event_id}, {}
    else:
        event_id = new_id()
    incoming = headers.get("traceparent")
    tracer = hub.tracer
    if tracer is None:
        return await store(
            hub, connection, source.name, inbound, event_id, body, incoming, source.system
        )
    attributes = {"hub.event_id": event_id, "hub.connection": connection}
    with tracer.span("hub.ingress", incoming, tracer.SERVER, attributes) as span:
        traceparent = tracer.traceparent(span)  # the event's next stage is its child
        stored = await store(
            hub, connection, source.name, inbound, event_id, body, traceparent, source.system
        )
        if stored[0] >= 500:
            tracer.failed(span, stored[1]["error"])
        return stored


async def store(
    hub: IngressHub,
    connection: str,
    connector: str,
    inbound: InboundEvent,
    event_id: str,
    body: bytes,
    traceparent: str | None,
    system: str | None = None,
) -> Answer:
    """Publish the raw event (acks=all), then record the receipt: 202, or 503. ``system``: the
    connection's (the event's origin system; default: the connector's name)."""
    event = raw_event(
        event_id, connection, connector, inbound.type, inbound.subject, body, traceparent, system
    )
    try:
        await hub.publisher.publish(hub.settings.ingest_topic, event)
    except BrokerUnavailable as exc:
        log.warning("webhook on %s not stored: %s", connection, exc)
        return (
            503,
            {"error": "broker_unavailable", "message": f"event not stored, retry later: {exc}"},
            {"Retry-After": "5"},
        )
    if inbound.delivery_id:
        hub.receipts.record(connection, inbound.delivery_id, event_id)
    hub.metrics.ingested.labels(connection).inc()
    log.info(
        "accepted %s %s from %s as %s", inbound.type, inbound.subject or "", connection, event_id
    )
    return 202, {"status": "accepted", "id": event_id}, {}


async def answer(
    hub: IngressHub, connection: str, headers: Mapping[str, str], receive: Receive
) -> Answer | None:
    """Read the body (up to the limit) off ASGI ``receive`` and :func:`accept` it; refusals
    become their JSON answer. None when the client went away before its body was read."""
    limit = hub.settings.ingress_max_body_bytes
    try:
        declared = headers.get("content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                raise MalformedPayload("invalid Content-Length header") from None
            if size > limit:
                raise PayloadTooLarge(f"body of {size} bytes is over the limit of {limit}")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None  # nothing stored, nobody to answer
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"body is over the limit of {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        return await accept(hub, connection, headers, b"".join(chunks))
    except WebhookRejected as exc:
        return exc.status_code, {"error": exc.code, "message": exc.message}, {}


def parse(body: bytes) -> Any:
    """The body as JSON, for the connector's ``describe``; the event keeps the bytes as sent.

    ``hub.canonical.decode``: orjson where it can (a 10 KB Shopify order: 13 us against json's
    36 us; parsing was a third of ingress CPU); what it refuses beyond strict UTF-8 JSON (NaN,
    a byte order mark, UTF-16) json decides, as before. orjson reads an integer beyond 64 bits
    as a float, so such an id would reach ``describe`` rounded (JavaScript could not read it
    either)."""
    try:
        return decode(body)
    except ValueError as exc:  # also UnicodeDecodeError, the digit limit, nesting too deep
        raise MalformedPayload(f"body is not valid JSON: {exc}") from None


@router.post(
    "/webhooks/{connection}",
    status_code=202,
    responses={
        200: {"description": "Duplicate delivery: already stored, nothing new written"},
        202: {"description": "Stored in the ingest topic"},
        400: {"description": "Malformed JSON"},
        401: {"description": "Bad or missing signature"},
        404: {"description": "Unknown connection, or one no enabled route uses"},
        413: {"description": "Body over the configured limit"},
        415: {"description": "Not a JSON body"},
        503: {"description": "Broker unavailable: nothing stored, retry later"},
    },
)
async def receive_webhook(connection: str, request: Request, hub: HubDep) -> Response:
    started = time.perf_counter()
    result = await answer(hub, connection, request.headers, request.receive)
    if result is None:
        return Response(status_code=400)  # the client is gone; this answer reaches nobody
    status, content, extra = result
    # Unknown connections are counted under one label: a scanner must not add label values.
    label = connection if hub.config.webhook_source(connection) is not None else "(unknown)"
    hub.metrics.webhooks.labels(label, str(status)).inc()
    hub.metrics.webhook_seconds.labels(label).observe(time.perf_counter() - started)
    return JSONResponse(content, status_code=status, headers=extra or None)
