"""``POST /webhooks/{connection}``: verify, deduplicate, store in Kafka, then answer 202.

The answer is 2xx only once the broker has acknowledged the raw event (acks=all): a source
that gets a 2xx may forget the event. Refusals are JSON ``{"error", "message"}`` with 401 (bad
signature), 404 (unknown connection), 413 (too large), 415 (not JSON), 400 (malformed JSON);
503 when the broker did not acknowledge (the source retries).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from hub.envelope import CloudEvent, derived_id, new_id
from hub.errors import (
    BrokerUnavailable,
    MalformedPayload,
    PayloadTooLarge,
    UnknownConnection,
    UnsupportedMediaType,
)

from .deps import HubDep

log = logging.getLogger(__name__)
router = APIRouter(tags=["ingress"])


@router.post(
    "/webhooks/{connection}",
    status_code=202,
    responses={
        200: {"description": "Duplicate delivery: already stored, nothing new written"},
        202: {"description": "Stored in the ingest topic"},
        400: {"description": "Malformed JSON"},
        401: {"description": "Bad or missing signature"},
        404: {"description": "Unknown connection"},
        413: {"description": "Body over the configured limit"},
        415: {"description": "Not a JSON body"},
        503: {"description": "Broker unavailable: nothing stored, retry later"},
    },
)
async def receive_webhook(connection: str, request: Request, hub: HubDep) -> JSONResponse:
    source = hub.config.webhook_source(connection)
    if source is None:
        raise UnknownConnection(f"no webhook connection named {connection!r}")
    body = await _read_body(request, hub.settings.ingress_max_body_bytes)
    headers = request.headers
    source.verify(headers, body)
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise UnsupportedMediaType(f"expected application/json, got {content_type or 'nothing'}")
    try:
        payload: Any = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedPayload(f"body is not valid JSON: {exc}") from None
    inbound = source.describe(headers, payload)

    if inbound.delivery_id:
        event_id = derived_id("webhook", connection, inbound.delivery_id)
        if await hub.receipts.seen(connection, inbound.delivery_id) is not None:
            log.info("duplicate webhook %s on %s: already stored", inbound.delivery_id, connection)
            return JSONResponse({"status": "duplicate", "id": event_id}, status_code=200)
    else:
        event_id = new_id()

    event = CloudEvent(
        id=event_id,
        source=f"/connections/{connection}",
        type=f"{source.name}.{inbound.type}",
        subject=inbound.subject,
        data=body,
        key=f"{connection}/{inbound.subject}" if inbound.subject else connection,
        extensions={"hubconnection": connection, "hubevent": inbound.type},
    )
    try:
        await hub.publisher.publish(hub.settings.ingest_topic, event)
    except BrokerUnavailable as exc:
        log.warning("webhook on %s not stored: %s", connection, exc)
        return JSONResponse(
            {"error": "broker_unavailable", "message": f"event not stored, retry later: {exc}"},
            status_code=503,
            headers={"Retry-After": "5"},
        )
    if inbound.delivery_id:
        hub.receipts.record(connection, inbound.delivery_id, event_id)
    log.info(
        "accepted %s %s from %s as %s", inbound.type, inbound.subject or "", connection, event_id
    )
    return JSONResponse({"status": "accepted", "id": event_id}, status_code=202)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise PayloadTooLarge(f"body of {int(declared)} bytes is over the limit of {limit}")
        except ValueError:
            raise MalformedPayload("invalid Content-Length header") from None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
