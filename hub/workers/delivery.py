"""Delivery: canonical events -> one destination (a consumer group per destination).

Events of different keys are delivered concurrently (``HUB_DELIVERY_CONCURRENCY`` per
partition), events of one key one after the other. A refusal (e.g. HTTP 4xx other than 408/425/
429) makes a dead letter at once. A retriable failure (5xx, 429, timeout, connection refused)
does not hold the partition: the event is parked in the retry table (:mod:`hub.retry`) and tried
again after a backoff, within its route's ``retry:`` policy; later events of the same key wait
behind it when the route is ``ordered`` (the default), other keys flow. Exhausted retries make a
dead letter with every attempt's time.

Each destination has a circuit breaker and, if configured, a rate limit (``limits:`` on its
connection). While the circuit is open the worker stops fetching, so events wait in Kafka,
nothing is retried in a storm, and nothing is dead-lettered for the outage.

Successful deliveries are recorded, so an event redelivered by Kafka after a crash is not sent
twice; the destination also gets the event id as ``Idempotency-Key``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiokafka import TopicPartition
from pydantic import SecretStr

from connectors import Delivery, Sink
from hub.config import LimitsSpec, OutboundRoute
from hub.deadletter import Stage, dead_letter
from hub.deadletters import REPLAY_HEADER
from hub.envelope import EnvelopeError, from_kafka, header_value, now_rfc3339
from hub.errors import (
    DeliveryFailed,
    DeliveryRetriable,
    MappingFailed,
    ProcessingError,
    RouteConditionFailed,
)
from hub.retry import CircuitBreaker, Parked, RateLimiter, RetryPolicy, RetryQueue, later, now_utc

from .base import Worker

if TYPE_CHECKING:
    from hub.runtime import Hub

log = logging.getLogger(__name__)


class CircuitOpen(DeliveryRetriable):
    """Not attempted: the destination's circuit breaker is open."""

    def __init__(self, destination: str, retry_in: float) -> None:
        super().__init__(destination, f"circuit open; next probe in {retry_in:.1f}s")


@dataclass
class _Outcome:
    """What became of one record: delivered, parked for a retry, or dead-lettered."""

    delivered: bool = False
    parked: bool = False
    dead_letter: asyncio.Future[None] | None = None


class DeliveryWorker(Worker):
    poll_timeout_ms = 250

    def __init__(self, hub: Hub, destination: str, sink: Sink, routes: list[OutboundRoute]) -> None:
        super().__init__(hub.settings, hub.bootstrap)
        s = hub.settings
        self.hub = hub
        self.destination = destination
        self.sink = sink
        self.routes = routes
        self.group = s.topic(f"deliver.{destination}")
        self.topics = sorted({s.canonical_topic(r.entity) for r in routes})
        self._entity_by_topic = {s.canonical_topic(r.entity): r.entity for r in routes}
        limits = hub.config.limits.get(destination) or LimitsSpec()
        self.signature = self.signature_of(sink, routes, limits)
        cb = limits.circuit_breaker
        self.breaker = CircuitBreaker(
            threshold=cb.failures if cb else s.breaker_failures,
            open_s=float(cb.open_for) if cb else s.breaker_open_s,
            max_open_s=float(cb.max_open_for) if cb else s.breaker_max_open_s,
        )
        self.limiter = RateLimiter(limits.rate, limits.burst) if limits.rate else None
        self.queue = RetryQueue(hub.db, self.group)
        self.blocked: dict[str, int] = {}  # order key -> events of it parked (our partitions)
        self._next_retry_check = 0.0
        self._probe_from_stream = False  # half-open with nothing parked: probe with new events

    @staticmethod
    def signature_of(
        sink: Sink, routes: list[OutboundRoute], limits: LimitsSpec | None = None
    ) -> tuple[str, str, tuple[str, ...]]:
        """What a running worker depends on: its connection's settings, limits and topics."""
        options = json.dumps(sink.options.model_dump(), default=_reveal, sort_keys=True)
        options += (limits or LimitsSpec()).model_dump_json()
        digest = hashlib.sha256(options.encode()).hexdigest()  # secrets compared, never kept
        return (sink.name, digest, tuple(sorted({r.entity for r in routes})))

    # -- the consumer path ------------------------------------------------------------------

    async def on_assignment(self, partitions: set[TopicPartition]) -> None:
        self.blocked = await self.queue.blocked_keys((tp.topic, tp.partition) for tp in partitions)
        self._next_retry_check = 0.0

    def paused(self) -> bool:
        breaker = self.breaker
        if breaker.closed:
            self._probe_from_stream = False
            return False
        return breaker.retry_in() > 0 or not self._probe_from_stream

    async def process(self, tp: TopicPartition, records: list[Any]) -> None:
        done = await self.hub.db.delivered(self.destination, [_ce_id(r) for r in records])
        by_key: dict[Any, list[Any]] = defaultdict(list)
        for record in records:
            if _ce_id(record) in done:
                log.info("%s already delivered to %s; skipped", _ce_id(record), self.destination)
                continue
            by_key[record.key if record.key is not None else _ce_id(record)].append(record)
        gate = asyncio.Semaphore(self.settings.delivery_concurrency)
        delivered: list[str] = []
        dead: list[asyncio.Future[None]] = []

        async def one_key(group: list[Any]) -> None:
            async with gate:
                for record in group:  # one key: strictly one after the other
                    outcome = await self.handle(record, None)
                    if outcome.delivered:
                        delivered.append(_ce_id(record))
                    if outcome.dead_letter is not None:
                        dead.append(outcome.dead_letter)

        await asyncio.gather(*(one_key(g) for g in by_key.values()))
        await self.hub.db.record_deliveries(self.destination, delivered)
        await self.hub.publisher.wait(dead)

    # -- the retry path ---------------------------------------------------------------------

    async def housekeeping(self) -> None:
        if not self.assigned or time.monotonic() < self._next_retry_check:
            return
        self._next_retry_check = time.monotonic() + self.poll_timeout_ms / 1000
        if self.breaker.state == "open" and self.breaker.retry_in() > 0:
            return
        due = await self.queue.due(((tp.topic, tp.partition) for tp in self.assigned), now_utc())
        if not self.breaker.closed:
            # Time for a probe: a parked event if there is one, else the next fresh one.
            self._probe_from_stream = not due
            due = due[:1]
        if not due:
            return
        gate = asyncio.Semaphore(self.settings.delivery_concurrency)

        async def retry(parked: Parked) -> None:
            async with gate:
                await self.retry(parked)

        await asyncio.gather(*(retry(p) for p in due))

    async def retry(self, parked: Parked) -> None:
        """Attempt one parked event again; on success release the events behind it."""
        if parked.event_id in await self.hub.db.delivered(self.destination, [parked.event_id]):
            outcome = _Outcome(delivered=True)  # delivered before a crash, row not yet removed
        else:
            outcome = await self.handle(parked.record, parked)
        if outcome.parked:
            return  # still waiting: the row was updated with its next attempt
        if outcome.dead_letter is not None:
            await self.hub.publisher.wait([outcome.dead_letter])
        if outcome.delivered:
            await self.hub.db.record_deliveries(self.destination, [parked.event_id])
        await self.queue.remove(parked)
        self._release(parked.order_key)

    # -- one record -------------------------------------------------------------------------

    async def handle(self, record: Any, parked: Parked | None) -> _Outcome:
        """Deliver one record through every enabled route of this destination that takes it.

        ``parked`` is the retry-table row when this is a retry, else None (a fresh record)."""
        hub = self.hub
        try:
            event = from_kafka(record.key, record.value, record.headers)
            data = json.loads(event.data)
        except (EnvelopeError, ValueError) as exc:
            return self._dead(record, Stage.DELIVER, exc, parked)
        entity = self._entity_by_topic.get(record.topic)
        routes = [r for r in hub.config.outbound_for(self.destination) if r.entity == entity]
        order_key = record.key.decode(errors="replace") if record.key is not None else None
        meta = {"connection": self.destination, "event_id": event.id}

        taken: list[tuple[OutboundRoute, Any]] = []
        for route in routes:  # re-read each time: hot reload
            try:
                if route.when is not None and not route.when(data, meta):
                    continue
            except (ValueError, TypeError, ArithmeticError) as exc:
                err = RouteConditionFailed(route.name, route.when.source if route.when else "", exc)
                return self._dead(record, Stage.ROUTE, err, parked, route)
            body = data
            if route.mapping is not None:
                mapping = hub.mappings.get(route.mapping)
                try:
                    if mapping is None:
                        raise MappingFailed(route.mapping, "(root)", None, "mapping is not loaded")
                    body = mapping.apply(data, meta, hub.resolver)
                except ProcessingError as exc:
                    return self._dead(record, Stage.MAP, exc, parked, route)
                if body is None:
                    continue
            taken.append((route, body))
        if not taken:
            return _Outcome(delivered=False)

        policy = taken[0][0].policy(self.settings)
        ordered = any(r.policy(self.settings).ordered for r, _ in taken)
        key = order_key if ordered else None
        if parked is None and key is not None and self.blocked.get(key):
            # An earlier event of this key waits for a retry: wait behind it, in order.
            await self._park(record, event.id, taken[0][0], key, later(0), None, 0, [])
            return _Outcome(parked=True)

        for route, body in taken:
            delivery = Delivery(
                event_id=event.id,
                event_type=event.type,
                subject=event.subject,
                correlation_id=event.correlationid,
                data=body,
                headers=event.attributes(),
            )
            error = await self._attempt(delivery)
            if error is None:
                continue
            if not error.retriable:
                return self._dead(record, Stage.DELIVER, error, parked, route)
            return await self._failed(record, event.id, route, key, policy, error, parked)
        replay_of = header_value(record.headers, REPLAY_HEADER)
        if replay_of:
            await hub.deadletters.set_outcome(
                replay_of, f"delivered to {self.destination} at {now_rfc3339()}"
            )
        return _Outcome(delivered=True)

    async def _attempt(self, delivery: Delivery) -> DeliveryFailed | None:
        breaker = self.breaker
        if not breaker.allow():
            return CircuitOpen(self.destination, breaker.retry_in())
        if self.limiter is not None:
            await self.limiter.acquire()
        try:
            await self.sink.deliver(delivery)
        except DeliveryFailed as exc:
            if exc.retriable:
                breaker.failure(delivery.event_id)
            else:
                breaker.success()  # it answered: it is up, it just refuses this event
            return exc
        breaker.success()
        log.debug("delivered %s to %s", delivery.event_id, self.destination)
        return None

    async def _failed(
        self,
        record: Any,
        event_id: str,
        route: OutboundRoute,
        key: str | None,
        policy: RetryPolicy,
        error: DeliveryFailed,
        parked: Parked | None,
    ) -> _Outcome:
        """A retriable failure: park (or re-park) the event, or dead-letter it if its policy
        is spent. Failures while the circuit is open are the destination's, not the event's:
        they are not counted."""
        charged = self.breaker.closed and not isinstance(error, CircuitOpen)
        attempts = (parked.attempts if parked else 0) + (1 if charged else 0)
        times = [*(parked.attempt_times if parked else [])]
        if not isinstance(error, CircuitOpen):
            times.append(now_rfc3339())
        first = parked.first_failed_at if parked and parked.first_failed_at else now_utc()
        if charged and policy.exhausted(attempts, first, now_utc()):
            log.warning(
                "%s to %s: giving up after %d attempts: %s",
                event_id,
                self.destination,
                attempts,
                error,
            )
            return self._dead(record, Stage.DELIVER, error, parked, route, attempts, times)
        wait = self.breaker.retry_in() if not self.breaker.closed else policy.delay(attempts)
        wait = max(wait, error.retry_after_s or 0.0)
        log.info(
            "%s to %s failed (%s); attempt %d of %d in %.1fs",
            event_id,
            self.destination,
            error,
            attempts + 1,
            policy.max_attempts,
            wait,
        )
        if parked is None:
            await self._park(record, event_id, route, key, later(wait), error, attempts, times)
        else:
            await self.queue.failed_again(parked, error, later(wait), charged)
        return _Outcome(parked=True)

    async def _park(
        self,
        record: Any,
        event_id: str,
        route: OutboundRoute,
        key: str | None,
        when: Any,
        error: BaseException | None,
        attempts: int,
        times: list[str],
    ) -> None:
        if key is not None:
            self.blocked[key] = self.blocked.get(key, 0) + 1  # before the await: no race
        await self.queue.park(
            record,
            event_id=event_id,
            stage=Stage.DELIVER.value,
            route=route.name,
            order_key=key,
            next_attempt_at=when,
            attempts=attempts,
            attempt_times=times,
            error=error,
        )

    def _release(self, key: str | None) -> None:
        if key is None:
            return
        left = self.blocked.get(key, 0) - 1
        if left > 0:
            self.blocked[key] = left
        else:
            self.blocked.pop(key, None)

    def _dead(
        self,
        record: Any,
        stage: Stage,
        error: BaseException,
        parked: Parked | None,
        route: OutboundRoute | None = None,
        attempts: int | None = None,
        times: list[str] | None = None,
    ) -> _Outcome:
        if attempts is None:
            attempts = (parked.attempts if parked else 0) + 1
        if times is None:
            times = [*(parked.attempt_times if parked else []), now_rfc3339()]
        future = dead_letter(
            self.hub.publisher,
            self.settings.deadletter_topic,
            record,
            stage,
            error,
            attempts=attempts,
            attempt_times=times,
            context={
                "route": route.name if route else None,
                "destination": self.destination,
            },
        )
        return _Outcome(dead_letter=future)


def _reveal(value: Any) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return str(value)


def _ce_id(record: Any) -> str:
    event_id = header_value(record.headers, "ce_id")
    return event_id or f"{record.topic}/{record.partition}/{record.offset}"
