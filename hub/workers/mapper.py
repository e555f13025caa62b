"""Mapper: raw events from the ingest topic -> mapped, validated canonical events.

For each raw event the inbound routes of its connection pick the mappings whose source event
matches; each output is validated against its canonical model and published to
``hub.canonical.<entity>`` keyed by its golden id. Failures become dead letters.
"""

from __future__ import annotations

import asyncio
import json
import logging
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from aiokafka import TopicPartition

from hub.canonical import validate
from hub.deadletter import Stage, dead_letter
from hub.deadletters import REPLAY_HEADER
from hub.envelope import CloudEvent, EnvelopeError, derived_id, from_kafka
from hub.errors import MappingFailed, ProcessingError, RouteConditionFailed

from .base import Worker

if TYPE_CHECKING:
    from hub.runtime import Hub

log = logging.getLogger(__name__)


class MapperWorker(Worker):
    def __init__(self, hub: Hub) -> None:
        super().__init__(hub.settings, hub.bootstrap)
        self.hub = hub
        self.group = hub.settings.topic("mapper")
        self.topics = [hub.settings.ingest_topic]

    async def process(self, tp: TopicPartition, records: list[Any]) -> None:
        pending: list[asyncio.Future[None]] = []
        for i, record in enumerate(records):
            pending.extend(self.map_record(record))
            if i % 16 == 15:
                await asyncio.sleep(0)  # mapping is CPU work: let ingress answer meanwhile
        await self.hub.publisher.wait(pending)

    def map_record(self, record: Any) -> list[asyncio.Future[None]]:
        hub = self.hub
        settings = hub.settings
        try:
            event = from_kafka(record.key, record.value, record.headers)
        except EnvelopeError as exc:
            return [
                dead_letter(hub.publisher, settings.deadletter_topic, record, Stage.INGEST, exc)
            ]
        connection = event.extensions.get("hubconnection", "")
        event_type = event.extensions.get("hubevent", "")
        try:
            payload = json.loads(event.data, parse_float=Decimal)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            err = EnvelopeError(f"data is not JSON: {exc}")
            return [
                dead_letter(hub.publisher, settings.deadletter_topic, record, Stage.INGEST, err)
            ]

        out: list[asyncio.Future[None]] = []
        routed = False
        mappings = hub.mappings
        for route in hub.config.inbound_for(connection):
            mapping = mappings.get(route.mapping)
            if mapping is None or (mapping.source_event and mapping.source_event != event_type):
                continue
            routed = True
            context = {
                "route": route.name,
                "mapping": mapping.name,
                "mapping_version": mapping.version,
            }
            meta = {
                "connection": connection,
                "event_type": event_type,
                "event_id": event.id,
                "subject": event.subject,
            }
            try:
                if route.when is not None and not route.when(payload, meta):
                    log.debug("%s not taken by route %s (when)", event.id, route.name)
                    continue
            except (ValueError, TypeError, ArithmeticError) as exc:
                failure = RouteConditionFailed(
                    route.name, route.when.source if route.when else "", exc
                )
                out.append(
                    dead_letter(
                        hub.publisher,
                        settings.deadletter_topic,
                        record,
                        Stage.ROUTE,
                        failure,
                        context=context,
                    )
                )
                continue
            try:
                result = mapping.apply(payload, meta, hub.resolver)
                if result is None:
                    log.info("%s dropped by mapping %s", event.id, mapping.name)
                    continue
                entity = mapping.target_entity or ""
                validate(entity, result)
            except MappingFailed as exc:
                out.append(
                    dead_letter(
                        hub.publisher,
                        settings.deadletter_topic,
                        record,
                        Stage.MAP,
                        exc,
                        context=context,
                    )
                )
                continue
            except ProcessingError as exc:
                out.append(
                    dead_letter(
                        hub.publisher,
                        settings.deadletter_topic,
                        record,
                        Stage.VALIDATE,
                        exc,
                        context=context,
                    )
                )
                continue
            golden = str(result["id"])
            canonical = event.derive(
                id=derived_id(event.id, route.name, mapping.name),
                source=f"/mappings/{mapping.name}",
                type=f"hub.{entity}",
                data=json.dumps(result, separators=(",", ":"), ensure_ascii=False).encode(),
                subject=golden,
                key=golden,
                extensions={
                    **event.extensions,
                    "hubroute": route.name,
                    "hubmapping": mapping.name,
                    "hubmappingversion": mapping.version,
                },
            )
            # A replayed event's outputs say so, so the dead letter can learn its outcome.
            replay = [(k, bytes(v)) for k, v in record.headers or () if k == REPLAY_HEADER]
            out.append(hub.publisher.send(settings.canonical_topic(entity), canonical, replay))
        if not routed:
            log.info("no route for %s from %s (%s); not mapped", event_type, connection, event.id)
        return out


__all__ = ["CloudEvent", "MapperWorker"]
