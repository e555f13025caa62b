"""Delivery: canonical events -> one destination (a consumer group per destination).

Events of one partition are delivered in order. A transient failure (5xx, 429, timeout,
connection refused) is retried with capped exponential backoff and jitter, a bounded number of
times; a refusal (other 4xx) or exhausted retries make a dead letter. Successful deliveries are
recorded, so an event redelivered by Kafka after a crash is not sent twice.

(Retries here hold the partition; the failure-handling issue moves them to non-blocking retry
topics.)
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
from typing import TYPE_CHECKING, Any

from aiokafka import TopicPartition
from pydantic import SecretStr

from connectors import Delivery, Sink
from hub.config import OutboundRoute
from hub.deadletter import Stage, dead_letter
from hub.envelope import EnvelopeError, from_kafka, header_value
from hub.errors import DeliveryFailed, MappingFailed, ProcessingError, RouteConditionFailed

from .base import Worker

if TYPE_CHECKING:
    from hub.runtime import Hub

log = logging.getLogger(__name__)


class DeliveryWorker(Worker):
    def __init__(self, hub: Hub, destination: str, sink: Sink, routes: list[OutboundRoute]) -> None:
        super().__init__(hub.settings, hub.bootstrap)
        self.hub = hub
        self.destination = destination
        self.sink = sink
        self.routes = routes
        self.group = hub.settings.topic(f"deliver.{destination}")
        self.topics = sorted({hub.settings.canonical_topic(r.entity) for r in routes})
        self._entity_by_topic = {hub.settings.canonical_topic(r.entity): r.entity for r in routes}
        self.signature = self.signature_of(sink, routes)

    @staticmethod
    def signature_of(sink: Sink, routes: list[OutboundRoute]) -> tuple[str, str, tuple[str, ...]]:
        """What a running worker depends on: its connection's settings and its topics."""
        options = json.dumps(sink.options.model_dump(), default=_reveal, sort_keys=True)
        digest = hashlib.sha256(options.encode()).hexdigest()  # secrets compared, never kept
        return (sink.name, digest, tuple(sorted({r.entity for r in routes})))

    async def process(self, tp: TopicPartition, records: list[Any]) -> None:
        done = await self.hub.db.delivered(self.destination, [_ce_id(r) for r in records])
        pending: list[asyncio.Future[None]] = []
        for record in records:
            if _ce_id(record) in done:
                log.info("%s already delivered to %s; skipped", _ce_id(record), self.destination)
                continue
            future = await self.deliver_record(record)
            if future is not None:
                pending.append(future)
        await self.hub.publisher.wait(pending)

    async def deliver_record(self, record: Any) -> asyncio.Future[None] | None:
        hub = self.hub
        dlq = hub.settings.deadletter_topic
        try:
            event = from_kafka(record.key, record.value, record.headers)
            data = json.loads(event.data)
        except (EnvelopeError, ValueError) as exc:
            return dead_letter(
                hub.publisher,
                dlq,
                record,
                Stage.DELIVER,
                exc,
                context={"destination": self.destination},
            )
        entity = self._entity_by_topic.get(record.topic)
        for route in hub.config.outbound_for(self.destination):  # re-read: hot reload
            if route.entity != entity:
                continue
            meta = {"connection": self.destination, "event_id": event.id}
            try:
                if route.when is not None and not route.when(data, meta):
                    continue
            except (ValueError, TypeError, ArithmeticError) as exc:
                err = RouteConditionFailed(route.name, route.when.source if route.when else "", exc)
                return dead_letter(
                    hub.publisher,
                    dlq,
                    record,
                    Stage.ROUTE,
                    err,
                    context={"route": route.name, "destination": self.destination},
                )
            body = data
            if route.mapping is not None:
                mapping = hub.mappings.get(route.mapping)
                try:
                    if mapping is None:
                        raise MappingFailed(route.mapping, "(root)", None, "mapping is not loaded")
                    body = mapping.apply(
                        data, {"connection": self.destination, "event_id": event.id}, hub.resolver
                    )
                except ProcessingError as exc:
                    return dead_letter(
                        hub.publisher,
                        dlq,
                        record,
                        Stage.MAP,
                        exc,
                        context={"route": route.name, "destination": self.destination},
                    )
                if body is None:
                    continue
            delivery = Delivery(
                event_id=event.id,
                event_type=event.type,
                subject=event.subject,
                correlation_id=event.correlationid,
                data=body,
                headers=event.attributes(),
            )
            attempts, error = await self._with_retries(delivery)
            if error is not None:
                return dead_letter(
                    hub.publisher,
                    dlq,
                    record,
                    Stage.DELIVER,
                    error,
                    attempts=attempts,
                    context={"route": route.name, "destination": self.destination},
                )
        await hub.db.record_delivery(self.destination, event.id)
        return None

    async def _with_retries(self, delivery: Delivery) -> tuple[int, DeliveryFailed | None]:
        s = self.settings
        attempt = 0
        while True:
            attempt += 1
            try:
                await self.sink.deliver(delivery)
                log.info(
                    "delivered %s to %s (attempt %d)", delivery.event_id, self.destination, attempt
                )
                return attempt, None
            except DeliveryFailed as exc:
                if not exc.retriable or attempt >= s.delivery_max_attempts:
                    return attempt, exc
                delay = min(
                    s.delivery_backoff_max_s, s.delivery_backoff_initial_s * 2 ** (attempt - 1)
                )
                delay *= random.uniform(0.5, 1.0)  # jitter: spread retries of many workers
                log.warning(
                    "delivery of %s to %s failed (attempt %d/%d): %s; retrying in %.1fs",
                    delivery.event_id,
                    self.destination,
                    attempt,
                    s.delivery_max_attempts,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)


def _reveal(value: Any) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return str(value)


def _ce_id(record: Any) -> str:
    event_id = header_value(record.headers, "ce_id")
    return event_id or f"{record.topic}/{record.partition}/{record.offset}"
