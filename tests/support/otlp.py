"""A real OTLP/HTTP trace receiver on 127.0.0.1: what an OpenTelemetry collector gets from the
hub, decoded from protobuf with opentelemetry-proto (the ``otel`` extra)."""

from __future__ import annotations

import gzip
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .threaded import serve

PATH = "/v1/traces"


@dataclass
class ReceivedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str  # "" for a root
    kind: int
    attributes: dict[str, Any]
    status_code: int  # 0 unset, 1 ok, 2 error
    resource: dict[str, Any]


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


@dataclass
class OtlpReceiver:
    """``with OtlpReceiver() as otlp:`` serves ``otlp.url`` until the block ends."""

    spans: list[ReceivedSpan] = field(default_factory=list)
    requests: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def __enter__(self) -> OtlpReceiver:
        self._serving = serve(Starlette(routes=[Route(PATH, self._export, methods=["POST"])]))
        self.url = self._serving.__enter__() + PATH
        return self

    def __exit__(self, *exc: object) -> None:
        self._serving.__exit__(None, None, None)

    async def _export(self, request: Request) -> Response:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
            ExportTraceServiceResponse,
        )

        body = await request.body()
        encoding = request.headers.get("content-encoding", "")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        if request.headers.get("content-type") != "application/x-protobuf":
            return Response(status_code=415)
        message = ExportTraceServiceRequest()
        message.ParseFromString(body)
        got = list(self._decode(message))
        with self._lock:
            self.requests += 1
            self.spans.extend(got)
        answer = ExportTraceServiceResponse().SerializeToString()
        return Response(answer, media_type="application/x-protobuf")

    @staticmethod
    def _decode(message: Any) -> Iterator[ReceivedSpan]:
        for resource_spans in message.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for s in scope_spans.spans:
                    yield ReceivedSpan(
                        name=s.name,
                        trace_id=s.trace_id.hex(),
                        span_id=s.span_id.hex(),
                        parent_span_id=s.parent_span_id.hex(),
                        kind=s.kind,
                        attributes={a.key: _value(a.value) for a in s.attributes},
                        status_code=s.status.code,
                        resource=resource,
                    )

    def received(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self.spans)

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        return [s for s in self.received() if s.trace_id == trace_id]
