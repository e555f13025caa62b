"""The hub's own spans, exported to an OpenTelemetry backend over OTLP/HTTP: optional, off by
default (``HUB_OTEL_ENDPOINT``; the SDK is the ``otel`` extra: ``pip install 'hub[otel]'``).

Each event gets three kinds of span, in the trace its ``traceparent`` names (:mod:`hub.tracing`)::

    hub.ingress   SERVER    a webhook stored in the ingest topic; the child of the request's
                            traceparent, or the root of a new trace
                  CONSUMER  a change read by a poll: the root of its trace
    hub.map       CONSUMER  one inbound route mapping the raw event; child of hub.ingress
    hub.deliver   CLIENT    one attempt to hand a canonical event to a destination; child of
                            the hub.map that made the event; a destination called over HTTP
                            gets this span's traceparent, so its own spans hang below it

With export on, the ``traceparent`` an event carries on Kafka is the span of the stage that
published it, which is how the next stage's span finds its parent. Attributes name the event
and where it goes (``hub.event_id``, ``hub.connection``, ``hub.route``, ``hub.destination``,
...), never a payload or a secret.

Each hub has a tracer provider of its own (never the global one: hubs in one process, as in the
tests, keep their spans apart), flushed and shut down when the hub stops. The standard
``OTEL_*`` variables apply to what they configure: ``OTEL_EXPORTER_OTLP_TRACES_HEADERS`` (or
``OTEL_EXPORTER_OTLP_HEADERS``) for an API key, ``..._TIMEOUT``, ``..._COMPRESSION``,
``..._CERTIFICATE``, ``OTEL_SERVICE_NAME`` (default ``hub``), ``OTEL_RESOURCE_ATTRIBUTES``,
``OTEL_TRACES_SAMPLER`` (default: follow the caller's sampled flag) and ``OTEL_BSP_*``.
Without ``HUB_OTEL_ENDPOINT`` nothing is loaded, and each stage pays one ``None`` check.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, Problem
from .tracing import valid

if TYPE_CHECKING:
    from .settings import Settings

Attributes = Mapping[str, str | int | bool]


class Spans:
    """The hub's tracer, over a provider of its own."""

    def __init__(self, provider: Any) -> None:
        from opentelemetry import trace
        from opentelemetry.context import Context

        self._trace = trace
        self._root = Context()  # no parent, whatever span is current
        self._provider = provider
        self._tracer = provider.get_tracer("hub")
        self.SERVER = trace.SpanKind.SERVER
        self.CONSUMER = trace.SpanKind.CONSUMER
        self.CLIENT = trace.SpanKind.CLIENT

    @contextlib.contextmanager
    def span(
        self, name: str, parent: str | None, kind: Any, attributes: Attributes
    ) -> Iterator[Any]:
        """A span, the child of the ``parent`` traceparent (a new trace's root when that is
        missing or invalid); an exception leaving the block is recorded on it."""
        context = self._root
        if parent is not None and valid(parent):
            _version, trace_id, span_id, flags = parent.strip().lower().split("-")
            remote = self._trace.SpanContext(
                trace_id=int(trace_id, 16),
                span_id=int(span_id, 16),
                is_remote=True,
                trace_flags=self._trace.TraceFlags(int(flags, 16)),
            )
            context = self._trace.set_span_in_context(self._trace.NonRecordingSpan(remote))
        with self._tracer.start_as_current_span(
            name, context=context, kind=kind, attributes=attributes
        ) as span:
            yield span

    @staticmethod
    def traceparent(span: Any) -> str:
        """The W3C traceparent naming ``span``: what the event carries on, what a destination
        is sent."""
        c = span.get_span_context()
        return f"00-{c.trace_id:032x}-{c.span_id:016x}-{int(c.trace_flags):02x}"

    def failed(self, span: Any, error: BaseException | str) -> None:
        """Mark ``span`` failed (a dead letter, a refused or failed call): the error's class
        only, since its message may quote the payload."""
        what = error if isinstance(error, str) else type(error).__name__
        span.set_attribute("hub.error_class", what)
        span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, what))

    def flush(self, timeout_ms: int = 30_000) -> bool:
        """Export what has ended so far (blocking: call it off the event loop)."""
        return bool(self._provider.force_flush(timeout_ms))

    def shutdown(self) -> None:
        """Flush, then stop the exporter (blocking: call it off the event loop)."""
        self._provider.shutdown()


def from_settings(settings: Settings, roles: frozenset[str]) -> Spans | None:
    """The hub's tracer when ``HUB_OTEL_ENDPOINT`` is set, else None (nothing imported).

    Raises :class:`ConfigError` when it is set but the SDK or the exporter is not installed."""
    endpoint = settings.otel_endpoint
    if not endpoint:
        return None
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise ConfigError(
            [
                Problem(
                    "HUB_OTEL_ENDPOINT",
                    "",
                    f"is set, but the OpenTelemetry SDK cannot be loaded ({exc}): install the "
                    "hub with its otel extra (pip install 'hub[otel]'), or unset it",
                )
            ]
        ) from None
    resource = Resource.create({"hub.roles": ",".join(sorted(roles))})
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": "hub"}))
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return Spans(provider)
