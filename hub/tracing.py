"""W3C trace context (``traceparent``) carried with every event, so an OpenTelemetry backend
can show one trace per event from the webhook to each destination.

Ingress takes the ``traceparent`` of the webhook request when it is valid, and starts a new
trace otherwise (a poll always starts one). The raw event carries it as the CloudEvents
distributed-tracing extension (``ce_traceparent`` on Kafka); every event derived from it keeps
it; a destination gets ``traceparent`` with the same trace id and a span id of its own, so its
server spans join the trace. With ``HUB_OTEL_ENDPOINT`` the hub exports spans of its own
(:mod:`hub.telemetry`), and the span id a destination gets is that of its ``hub.deliver`` span.
"""

from __future__ import annotations

import re
import secrets
from contextvars import ContextVar

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


def valid(value: str | None) -> bool:
    """A version-00 traceparent with a non-zero trace and parent id (the spec's rules)."""
    if not value:
        return False
    match = _TRACEPARENT.match(value.strip().lower())
    if match is None:
        return False
    return match.group(1) != _ZERO_TRACE and match.group(2) != _ZERO_SPAN


def start(incoming: str | None = None) -> str:
    """``incoming`` if valid (lower-cased), else the traceparent of a new, sampled trace."""
    if incoming is not None and valid(incoming):
        return incoming.strip().lower()
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


calling: ContextVar[str | None] = ContextVar("calling", default=None)
"""The traceparent of the exported span calling a system just now (``hub.deliver``), if any."""


def child(traceparent: str) -> str:
    """What the hub sends on as the caller of a system: the span calling it when spans are
    exported (:data:`calling`, same trace), else the same trace with a new span id."""
    caller = calling.get()
    if caller is not None and caller[3:35] == traceparent[3:35]:
        return caller
    if not valid(traceparent):
        return start()
    _version, trace_id, _span, flags = traceparent.split("-")
    return f"00-{trace_id}-{secrets.token_hex(8)}-{flags}"


def trace_id(traceparent: str) -> str:
    return traceparent.split("-")[1]
