"""Mapper: raw events from the ingest topic -> mapped, validated canonical events.

For each raw event the inbound routes of its connection pick the mappings whose source event
matches; each output is validated against its canonical model and published to
``hub.canonical.<entity>`` keyed by its golden id. Failures become dead letters. Every canonical
event keeps the raw event's origin (``ce_hubconnection``, ``ce_hubsystem``), which mappings see
as ``meta.origin`` and ``meta.system``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from aiokafka import TopicPartition

from hub import exactjson
from hub.canonical import encode, validate
from hub.config import InboundRoute
from hub.deadletters import REPLAY_HEADERS, Stage
from hub.envelope import ORIGIN_SYSTEM, CloudEvent, EnvelopeError, derived_id, from_kafka
from hub.errors import MappingFailed, ProcessingError, RouteConditionFailed
from hub.logs import log_context
from hub.retry import Parked

from .retrying import Outcome, RetryingWorker, event_id_of, order_key_of, record_fields

if TYPE_CHECKING:
    from hub.mapping.engine import CompiledMapping
    from hub.ports import MappingWorkerHub

log = logging.getLogger(__name__)


class _Retriable(Exception):
    """A mapping failed in a way worth retrying (e.g. master data unavailable)."""

    def __init__(self, error: ProcessingError, route: InboundRoute, context: dict[str, str]):
        self.error = error
        self.route = route
        self.context = context


class MapperWorker(RetryingWorker):
    """Mapping and validation are CPU work with fatal failures, except a retriable
    ProcessingError (a master-data lookup that is unavailable): that one is parked and retried
    like a failed delivery, and later events of its key wait behind it."""

    stage = Stage.MAP
    hub: MappingWorkerHub

    def __init__(self, hub: MappingWorkerHub) -> None:
        super().__init__(hub, hub.settings.mapper_group)
        self.topics = [hub.settings.ingest_topic]

    async def process(self, tp: TopicPartition, records: list[Any]) -> None:
        pending: list[asyncio.Future[None]] = []
        for i, record in enumerate(records):
            if self.blocked and (key := order_key_of(record)) and self.waits_behind(key):
                await self.park_behind(record, event_id_of(record), None, key)
                continue
            try:
                pending.extend(self.map_record(record))
            except _Retriable as r:
                outcome = await self._failed(record, r, None)
                pending.extend(outcome.futures)
            if i % 16 == 15:
                await asyncio.sleep(0)  # mapping is CPU work: let ingress answer meanwhile
        await self.hub.publisher.wait(pending)

    async def handle(self, record: Any, parked: Parked | None) -> Outcome:
        try:
            return Outcome(done=True, futures=self.map_record(record))
        except _Retriable as r:
            return await self._failed(record, r, parked)

    async def _failed(self, record: Any, r: _Retriable, parked: Parked | None) -> Outcome:
        policy = r.route.policy(self.settings)
        key = order_key_of(record) if policy.ordered else None
        return await self.failed(
            record, event_id_of(record), r.error, policy, key=key, parked=parked, context=r.context
        )

    def map_record(self, record: Any) -> list[asyncio.Future[None]]:
        with log_context(**record_fields(record)):
            return self._map_record(record)

    def _map_record(self, record: Any) -> list[asyncio.Future[None]]:
        hub = self.hub
        try:
            event = from_kafka(record.key, record.value, record.headers)
        except EnvelopeError as exc:
            return [self.dead_letter(record, Stage.INGEST, exc)]
        connection = event.extensions.get("hubconnection", "")
        event_type = event.extensions.get("hubevent", "")
        try:
            payload = exactjson.loads(event.data)
        except ValueError as exc:  # not JSON, not UTF-8, or an integer beyond the digit limit
            err = EnvelopeError(f"data is not JSON: {exc}")
            return [self.dead_letter(record, Stage.INGEST, err)]

        out: list[asyncio.Future[None]] = []
        routed = False
        mappings = hub.mappings
        tracer = hub.tracer
        for route in hub.config.inbound_for(connection):
            mapping = mappings.get(route.mapping)
            if mapping is None or (mapping.source_event and mapping.source_event != event_type):
                continue
            routed = True
            if tracer is None:
                future, _error = self._map_route(record, event, payload, route, mapping, None)
            else:
                attributes = {
                    "hub.event_id": event.id,
                    "hub.connection": connection,
                    "hub.route": route.name,
                    "hub.mapping": mapping.name,
                }
                parent = event.extensions.get("traceparent")
                with tracer.span("hub.map", parent, tracer.CONSUMER, attributes) as span:
                    traceparent = tracer.traceparent(span)  # the canonical event's parent span
                    future, error = self._map_route(
                        record, event, payload, route, mapping, traceparent
                    )
                    if error is not None:
                        tracer.failed(span, error)
            if future is not None:
                out.append(future)
        if not routed:
            log.info("no route for %s from %s (%s); not mapped", event_type, connection, event.id)
        return out

    def _map_route(
        self,
        record: Any,
        event: CloudEvent,
        payload: Any,
        route: InboundRoute,
        mapping: CompiledMapping,
        traceparent: str | None,
    ) -> tuple[asyncio.Future[None] | None, BaseException | None]:
        """One inbound route's output for a raw event: the canonical event published, a dead
        letter (with its error), or nothing (not taken, or dropped by the mapping).
        ``traceparent``: the event's own, unless spans are exported (:mod:`hub.telemetry`)."""
        hub = self.hub
        connection = event.extensions.get("hubconnection", "")
        # An event stored before origins were carries no system: its connection's, as now.
        system = event.extensions.get(ORIGIN_SYSTEM) or hub.config.system_of(connection)
        context = {
            "route": route.name,
            "mapping": mapping.name,
            "mapping_version": mapping.version,
        }
        meta = {
            "connection": connection,
            "origin": connection,
            "system": system,
            "event_type": event.extensions.get("hubevent", ""),
            "event_id": event.id,
            "subject": event.subject,
        }
        try:
            if route.when is not None and not route.when(payload, meta):
                log.debug("%s not taken by route %s (when)", event.id, route.name)
                return None, None
        except (ValueError, TypeError, ArithmeticError) as exc:
            failure = RouteConditionFailed(route.name, route.when.source if route.when else "", exc)
            return self.dead_letter(record, Stage.ROUTE, failure, context), failure
        try:
            result = mapping.apply(payload, meta, hub.resolver)
            if result is None:
                log.info("%s dropped by mapping %s", event.id, mapping.name)
                return None, None
            entity = mapping.target_entity or ""
            validate(entity, result)
        except MappingFailed as exc:
            return self.dead_letter(record, Stage.MAP, exc, context), exc
        except ProcessingError as exc:
            if exc.retriable:  # e.g. master data unavailable: the whole event waits
                raise _Retriable(exc, route, context) from exc
            return self.dead_letter(record, Stage.VALIDATE, exc, context), exc
        golden = str(result["id"])
        extensions = {
            **event.extensions,  # the origin (hubconnection, hubsystem) among them
            "hubroute": route.name,
            "hubmapping": mapping.name,
            "hubmappingversion": mapping.version,
        }
        if system:
            extensions[ORIGIN_SYSTEM] = system
        if traceparent is not None:
            extensions["traceparent"] = traceparent
        canonical = event.derive(
            id=derived_id(event.id, route.name, mapping.name),
            source=f"/mappings/{mapping.name}",
            type=f"hub.{entity}",
            data=encode(result),
            subject=golden,
            key=golden,
            extensions=extensions,
        )
        # A replayed event's outputs say so, so the dead letter can learn its outcome.
        replay = [(k, bytes(v)) for k, v in record.headers or () if k in REPLAY_HEADERS]
        future = hub.publisher.send(hub.settings.canonical_topic(entity), canonical, replay)
        hub.metrics.mapped.labels(route.name, entity).inc()
        return future, None


__all__ = ["CloudEvent", "MapperWorker"]
