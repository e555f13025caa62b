"""Mapper: raw events from the ingest topic -> mapped, validated canonical events.

For each raw event the inbound routes of its connection pick the mappings whose source event
matches. An event whose webhook leaves something out is first completed from its system's API
(:meth:`connectors.WebhookSource.complete`, e.g. a deal's lines): while the system cannot be
read, the event is parked and tried again like a failed delivery (its route's ``retry:``).
Each output is validated against its canonical model and published to
``hub.canonical.<entity>`` keyed by its golden id. Failures become dead letters. Every canonical
event keeps the raw event's origin (``ce_hubconnection``, ``ce_hubsystem``), which mappings see
as ``meta.origin`` and ``meta.system``.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
import logging
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from aiokafka import TopicPartition
from sqlalchemy.exc import SQLAlchemyError

from connectors import InboundEvent
from hub import exactjson
from hub.canonical import encode, validate
from hub.config import InboundRoute
from hub.crosswalk import SOURCE
from hub.deadletters import REPLAY_HEADERS, Stage
from hub.envelope import (
    ORIGIN_CONNECTION,
    ORIGIN_SYSTEM,
    CloudEvent,
    EnvelopeError,
    derived_id,
    from_kafka,
    header_value,
)
from hub.errors import (
    CompletionFailed,
    MappingFailed,
    MasterDataUnavailable,
    ProcessingError,
    RequestFailed,
    RouteConditionFailed,
)
from hub.journal import mapped_rows
from hub.logs import log_context
from hub.mdm import CrosswalkResolver, Miss, resolve_ahead
from hub.retry import Parked

from .retrying import Outcome, RetryingWorker, event_id_of, order_key_of, record_fields

if TYPE_CHECKING:
    from hub.mapping.engine import CompiledMapping
    from hub.ports import MappingWorkerHub

log = logging.getLogger(__name__)

_Action = Callable[[], "asyncio.Future[None]"]
"""One output of a mapped event, done when called: its publication or its dead letter."""


class _Retriable(Exception):
    """A mapping failed in a way worth retrying (e.g. master data unavailable)."""

    def __init__(self, error: ProcessingError, route: InboundRoute, context: dict[str, str]):
        self.error = error
        self.route = route
        self.context = context


@dataclasses.dataclass(frozen=True)
class _Completed:
    """A record ready to map: as received, or completed from its system's API."""

    record: Any


class MapperWorker(RetryingWorker):
    """Mapping and validation are CPU work with fatal failures, except a retriable
    ProcessingError (a master-data lookup that is unavailable): that one is parked and retried
    like a failed delivery, and later events of its key wait behind it."""

    stage = Stage.MAP
    hub: MappingWorkerHub

    def __init__(self, hub: MappingWorkerHub) -> None:
        super().__init__(hub, hub.settings.mapper_group)
        self.topics = [hub.settings.ingest_topic]
        # (entity, system, id, golden id): the ids objects came in under, to link (see _link)
        self._to_link: list[tuple[str, str, str, str]] = []

    async def process(self, tp: TopicPartition, records: list[Any]) -> None:
        """Map the batch, then publish its outputs in order. With a crosswalk resolver the
        batch is mapped collecting the answers not cached (hub.mdm); they are loaded in one
        query, and only the events the crosswalk answered differently for are mapped again."""
        resolver = self.hub.resolver
        collecting = resolver if isinstance(resolver, CrosswalkResolver) else None
        prepared: list[tuple[Any, list[_Action] | _Retriable | None, set[Miss]]] = []
        wanted: set[Miss] = set()
        for i, record in enumerate(records):
            misses: set[Miss] = set()
            actions: list[_Action] | _Retriable | None = None  # None: parked behind its key
            if not (self.blocked and (key := order_key_of(record)) and self.waits_behind(key)):
                completed = await self._completed(record)
                if not isinstance(completed, _Completed):
                    prepared.append((record, completed, misses))
                    continue
                record = completed.record
                try:
                    if collecting is None:
                        actions = self.prepare(record)
                    else:
                        actions = collecting.collect(partial(self.prepare, record), misses)
                        wanted |= misses
                except _Retriable as r:
                    actions = r
            prepared.append((record, actions, misses))
            if i % 16 == 15:
                await asyncio.sleep(0)  # mapping is CPU work: let ingress answer meanwhile
        changed: set[Miss] | None = set()
        if collecting is not None and wanted:
            try:
                changed = await collecting.load(wanted)
            except MasterDataUnavailable as exc:
                log.warning("%s; the events that need it are parked", exc)
                changed = None  # every event with a miss is mapped again, and parks
        pending: list[asyncio.Future[None]] = []
        for record, actions, misses in prepared:
            if self.blocked and (key := order_key_of(record)) and self.waits_behind(key):
                await self.park_behind(record, event_id_of(record), None, key)
                continue
            if actions is None:  # was behind a parked event that has gone through since
                completed = await self._completed(record)
                if isinstance(completed, _Completed):
                    record = completed.record
                else:
                    actions = completed
            if actions is None or (misses and (changed is None or misses & changed)):
                try:  # not collecting now: an answer still missing parks the event
                    actions = self.prepare(record)
                except _Retriable as r:
                    actions = r
            if isinstance(actions, _Retriable):
                pending.extend((await self._failed(record, actions, None)).futures)
                continue
            pending.extend(action() for action in actions)
        await self.hub.publisher.wait(pending)
        await self._link()

    async def handle(self, record: Any, parked: Parked | None) -> Outcome:
        completed = await self._completed(record)
        if isinstance(completed, _Retriable):
            return await self._failed(record, completed, parked)
        if not isinstance(completed, _Completed):
            return Outcome(done=True, futures=[action() for action in completed])
        record = completed.record
        try:
            actions = await resolve_ahead(self.hub.resolver, lambda: self.prepare(record))
        except _Retriable as r:
            return await self._failed(record, r, parked)
        futures = [action() for action in actions]
        await self._link()
        return Outcome(done=True, futures=futures)

    async def _completed(self, record: Any) -> _Completed | _Retriable | list[_Action]:
        """``record`` with what its webhook leaves out read from its system's API, when its
        connection's source :meth:`~connectors.WebhookSource.completes` its type; a
        :class:`_Retriable` while the system cannot be read; a dead letter when it refuses."""
        connection = header_value(record.headers, f"ce_{ORIGIN_CONNECTION}") or ""
        source = self.hub.config.webhook_source(connection)
        event_type = header_value(record.headers, "ce_hubevent") or ""
        if source is None or not source.completes(event_type):
            return _Completed(record)
        try:
            event = from_kafka(record.key, record.value, record.headers)
            payload = exactjson.loads(event.data)
        except (EnvelopeError, ValueError):
            return _Completed(record)  # mapping makes its dead letter
        with log_context(**record_fields(record)):
            try:
                completed = await source.complete(
                    InboundEvent(type=event_type, subject=event.subject, delivery_id=None), payload
                )
            except RequestFailed as exc:
                error = CompletionFailed(connection, event_type, exc)
                routes = self.hub.config.inbound_for(connection)
                context = {"route": routes[0].name} if routes else {}
                if error.retriable and routes:
                    log.warning("%s; tried again later", error)
                    return _Retriable(error, routes[0], context)
                return [partial(self.dead_letter, record, Stage.MAP, error, context)]
        if completed is None:
            return _Completed(record)
        value = json.dumps(completed, separators=(",", ":")).encode()
        if dataclasses.is_dataclass(record) and not isinstance(record, type):
            return _Completed(dataclasses.replace(record, value=value))
        copied = copy.copy(record)
        copied.value = value
        return _Completed(copied)

    async def _link(self) -> None:
        """Link the ids the objects just published came in under to their golden ids (the
        entry of their ``external_refs`` whose system is the event's origin system), so an
        outbound mapping's ``external_id()`` finds them: the shop's order id for the order
        polled back from the ERP. One statement for the batch; only ids the resolver does not
        already know linked. A failure is logged: the next event about the object tries again."""
        links, self._to_link = self._to_link, []
        resolver = self.hub.resolver
        if not links or not isinstance(resolver, CrosswalkResolver):
            return
        try:
            stored = await resolver.crosswalk.link_many(
                links, linked_by=SOURCE, reason="the id the object came in under"
            )
        except (OSError, SQLAlchemyError) as exc:
            log.warning(
                "linking %d source id(s) in the crosswalk failed (%s: %s); tried again with "
                "the next event about them",
                len(links),
                type(exc).__name__,
                exc,
            )
            return
        for link in stored:
            resolver.learn(link)

    async def _failed(self, record: Any, r: _Retriable, parked: Parked | None) -> Outcome:
        policy = r.route.policy(self.settings)
        key = order_key_of(record) if policy.ordered else None
        return await self.failed(
            record, event_id_of(record), r.error, policy, key=key, parked=parked, context=r.context
        )

    def map_record(self, record: Any) -> list[asyncio.Future[None]]:
        """Map ``record`` and publish its outputs (raises :class:`_Retriable`)."""
        return [action() for action in self.prepare(record)]

    def prepare(self, record: Any) -> list[_Action]:
        """What mapping ``record`` yields, not yet done: each output's publication or dead
        letter (raises :class:`_Retriable`)."""
        with log_context(**record_fields(record)):
            return self._map_record(record)

    def _map_record(self, record: Any) -> list[_Action]:
        hub = self.hub
        try:
            event = from_kafka(record.key, record.value, record.headers)
        except EnvelopeError as exc:
            return [partial(self.dead_letter, record, Stage.INGEST, exc)]
        connection = event.extensions.get("hubconnection", "")
        event_type = event.extensions.get("hubevent", "")
        try:
            payload = exactjson.loads(event.data)
        except ValueError as exc:  # not JSON, not UTF-8, or an integer beyond the digit limit
            err = EnvelopeError(f"data is not JSON: {exc}")
            return [partial(self.dead_letter, record, Stage.INGEST, err)]

        out: list[_Action] = []
        routed = False
        mappings = hub.mappings
        tracer = hub.tracer
        for route in hub.config.inbound_for(connection):
            mapping = mappings.get(route.mapping)
            if mapping is None or (
                mapping.source_events and event_type not in mapping.source_events
            ):
                continue
            routed = True
            if tracer is None:
                action, _error = self._map_route(record, event, payload, route, mapping, None)
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
                    action, error = self._map_route(
                        record, event, payload, route, mapping, traceparent
                    )
                    if error is not None:
                        tracer.failed(span, error)
            if action is not None:
                out.append(action)
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
    ) -> tuple[_Action | None, BaseException | None]:
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
            return partial(self.dead_letter, record, Stage.ROUTE, failure, context), failure
        try:
            result = mapping.apply(payload, meta, hub.resolver)
            if result is None:
                log.info("%s dropped by mapping %s", event.id, mapping.name)
                return None, None
            entity = mapping.target_entity or ""
            if isinstance(hub.resolver, CrosswalkResolver):  # MDM: match on it, all its refs
                result = hub.resolver.complete(entity, result)
            validate(entity, result)
        except MappingFailed as exc:
            return partial(self.dead_letter, record, Stage.MAP, exc, context), exc
        except ProcessingError as exc:
            if exc.retriable:  # e.g. master data unavailable: the whole event waits
                raise _Retriable(exc, route, context) from exc
            return partial(self.dead_letter, record, Stage.VALIDATE, exc, context), exc
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
        journal = (
            mapped_rows(event, canonical, result, route.name, connection, system)
            if entity == "order"
            else None
        )
        links = self._source_links(entity, system, golden, result)
        return partial(self._publish, entity, canonical, replay, route.name, journal, links), None

    def _source_links(
        self, entity: str, system: str | None, golden: str, result: dict[str, Any]
    ) -> list[tuple[str, str, str, str]]:
        """The output's own ids in its origin system not yet known linked to ``golden``."""
        resolver = self.hub.resolver
        if not system or not isinstance(resolver, CrosswalkResolver):
            return []
        out = []
        for ref in result.get("external_refs") or ():
            if isinstance(ref, dict) and ref.get("system") == system and ref.get("id"):
                their = str(ref["id"])
                if resolver.linked(entity, system, their) != golden:
                    out.append((entity, system, their, golden))
        return out

    def _publish(
        self,
        entity: str,
        event: CloudEvent,
        headers: list[tuple[str, bytes]],
        route: str,
        journal: list[dict[str, Any]] | None = None,
        links: list[tuple[str, str, str, str]] | None = None,
    ) -> asyncio.Future[None]:
        sent = self.hub.publisher.send(self.settings.canonical_topic(entity), event, headers)
        self.hub.metrics.mapped.labels(route, entity).inc()
        if links:
            self._to_link.extend(links)
        if journal:  # an order's steps, for /api/orders (hub.journal)
            self.hub.journal.note(journal)
        return sent


__all__ = ["CloudEvent", "MapperWorker"]
