"""The retry operator every stage shares (see :mod:`hub.retry` for the parts).

A ``RetryingWorker`` subclass implements :meth:`RetryingWorker.handle` for one record and
reports a retriable failure through :meth:`RetryingWorker.failed`, which parks the record (or
dead-letters it when its policy is spent). The base class owns what is the same in every stage:
the retry table, the keys waiting behind a parked event, the retry loop between batches, the
circuit breaker (optional) and dead letters with every attempt's time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiokafka import TopicPartition
from prometheus_client import Counter

from hub.deadletters import Stage, dead_letter
from hub.envelope import header_value, now_rfc3339
from hub.errors import ProcessingError
from hub.retry import CircuitBreaker, Parked, RetryPolicy, RetryQueue, later, now_utc

from .base import Worker

if TYPE_CHECKING:
    from hub.ports import WorkerHub

log = logging.getLogger(__name__)


class CircuitOpen(ProcessingError):
    """Not attempted: the destination's circuit breaker is open."""

    retriable = True

    def __init__(self, what: str, retry_in: float) -> None:
        super().__init__(f"{what}: circuit open; next probe in {retry_in:.1f}s")


@dataclass
class Outcome:
    """What became of one record: done, parked for a retry, or failed for good.

    ``futures`` are the broker writes (outputs, dead letters) the offset commit waits for."""

    done: bool = False
    parked: bool = False
    futures: list[asyncio.Future[None]] = field(default_factory=list)


class RetryingWorker(Worker):
    """A worker whose retriable failures wait in the retry table instead of its partition."""

    stage: Stage
    poll_timeout_ms = 250

    def __init__(self, hub: WorkerHub, group: str, breaker: CircuitBreaker | None = None) -> None:
        super().__init__(hub.settings, hub.bootstrap)
        self.hub = hub
        self.group = group
        self.breaker = breaker
        self.queue = RetryQueue(hub.db, group)
        self.blocked: dict[str, int] = {}  # order key -> events of it parked (our partitions)
        self._next_retry_check = 0.0
        self._probe_from_stream = False  # half-open with nothing parked: probe with new events

    async def handle(self, record: Any, parked: Parked | None) -> Outcome:
        """Process one record; ``parked`` is its retry-table row when this is a retry."""
        raise NotImplementedError

    async def retried(self, parked: Parked, outcome: Outcome) -> None:
        """After a retry that did not park again, before its row is removed."""

    # -- consumer hooks ---------------------------------------------------------------------

    async def on_assignment(self, partitions: set[TopicPartition]) -> None:
        self.blocked = await self.queue.blocked_keys((tp.topic, tp.partition) for tp in partitions)
        self._next_retry_check = 0.0

    def paused(self) -> bool:
        breaker = self.breaker
        if breaker is None or breaker.closed:
            self._probe_from_stream = False
            return False
        return breaker.retry_in() > 0 or not self._probe_from_stream

    async def housekeeping(self) -> None:
        """Retry the parked events that are due (one probe while the circuit is half-open)."""
        if not self.assigned or time.monotonic() < self._next_retry_check:
            return
        self._next_retry_check = time.monotonic() + self.poll_timeout_ms / 1000
        breaker = self.breaker
        if breaker is not None and breaker.state == "open" and breaker.retry_in() > 0:
            return
        now = now_utc()
        due = await self.queue.due(((tp.topic, tp.partition) for tp in self.assigned), now)
        if breaker is not None and not breaker.closed:
            # Time for a probe: a parked event if there is one, else the next fresh one.
            self._probe_from_stream = not due
            due = due[:1]
        if not due:
            return
        due = await self.queue.claim(due, now)
        gate = asyncio.Semaphore(self.settings.delivery_concurrency)

        async def one(parked: Parked) -> None:
            async with gate:
                await self.retry(parked)

        await asyncio.gather(*(one(p) for p in due))

    async def retry(self, parked: Parked) -> None:
        """Process one parked event again; when it is through, release what waits behind it."""
        outcome = await self.handle(parked.record, parked)
        if outcome.parked:
            return  # its row now holds the next attempt
        await self.hub.publisher.wait(outcome.futures)
        await self.retried(parked, outcome)
        await self.queue.remove(parked)
        self._release(parked.order_key)

    # -- what handle() calls ----------------------------------------------------------------

    def waits_behind(self, key: str | None) -> bool:
        """True when an earlier event of this key is parked: this one must wait behind it."""
        return key is not None and bool(self.blocked.get(key))

    async def park_behind(self, record: Any, event_id: str, route: str | None, key: str) -> Outcome:
        await self._park(record, event_id, route, key, 0.0, None, 0, [])
        return Outcome(parked=True)

    async def failed(
        self,
        record: Any,
        event_id: str,
        error: ProcessingError,
        policy: RetryPolicy,
        *,
        key: str | None,
        parked: Parked | None,
        context: Mapping[str, str | None],
        stage: Stage | None = None,
    ) -> Outcome:
        """A retriable failure: park the event (or update its row), or dead-letter it when its
        policy is spent. Failures while the circuit is open are the destination's, not the
        event's: they are not counted against it."""
        breaker = self.breaker
        healthy = breaker is None or breaker.closed
        charged = healthy and not isinstance(error, CircuitOpen)
        attempts = (parked.attempts if parked else 0) + (1 if charged else 0)
        times = [*(parked.attempt_times if parked else [])]
        if not isinstance(error, CircuitOpen):
            times.append(now_rfc3339())
        first = parked.first_failed_at if parked and parked.first_failed_at else now_utc()
        if not isinstance(error, CircuitOpen):
            self._count(self.hub.metrics.failed, stage or self.stage, context, error)
        if charged and policy.exhausted(attempts, first, now_utc()):
            log.warning(
                "%s: %s: giving up after %d attempts: %s", self.group, event_id, attempts, error
            )
            return self.dead(record, stage or self.stage, error, context, attempts, times)
        wait = policy.delay(attempts) if healthy else breaker.retry_in() if breaker else 0.0
        wait = max(wait, getattr(error, "retry_after_s", None) or 0.0)
        log.info(
            "%s: %s failed (%s); attempt %d of %d in %.1fs",
            self.group,
            event_id,
            error,
            attempts + 1,
            policy.max_attempts,
            wait,
        )
        self._count(self.hub.metrics.parked, stage or self.stage, context)
        if parked is None:
            route = context.get("route")
            await self._park(record, event_id, route, key, wait, error, attempts, times)
        else:
            await self.queue.failed_again(parked, error, later(wait), charged)
        return Outcome(parked=True)

    def dead(
        self,
        record: Any,
        stage: Stage,
        error: BaseException,
        context: Mapping[str, str | None],
        attempts: int,
        times: list[str],
    ) -> Outcome:
        return Outcome(futures=[self.dead_letter(record, stage, error, context, attempts, times)])

    def dead_letter(
        self,
        record: Any,
        stage: Stage,
        error: BaseException,
        context: Mapping[str, str | None] | None = None,
        attempts: int = 1,
        times: Sequence[str] = (),
    ) -> asyncio.Future[None]:
        """Publish ``record`` whole to the dead-letter topic, with where and why it failed."""
        self._count(self.hub.metrics.dead_lettered, stage, context or {}, error)
        return dead_letter(
            self.hub.publisher,
            self.settings.deadletter_topic,
            record,
            stage,
            error,
            attempts=attempts,
            attempt_times=times,
            context=context,
        )

    def dead_now(
        self,
        record: Any,
        stage: Stage,
        error: BaseException,
        parked: Parked | None,
        context: Mapping[str, str | None],
    ) -> Outcome:
        """A fatal failure: a dead letter now, counting the attempts made before."""
        self._count(self.hub.metrics.failed, stage, context, error)
        attempts = (parked.attempts if parked else 0) + 1
        times = [*(parked.attempt_times if parked else []), now_rfc3339()]
        return self.dead(record, stage, error, context, attempts, times)

    # -- the table and the waiting keys -----------------------------------------------------

    async def _park(
        self,
        record: Any,
        event_id: str,
        route: str | None,
        key: str | None,
        wait: float,
        error: BaseException | None,
        attempts: int,
        times: list[str],
    ) -> None:
        if key is not None:
            self.blocked[key] = self.blocked.get(key, 0) + 1  # before the await: no race
        await self.queue.park(
            record,
            event_id=event_id,
            stage=self.stage.value,
            route=route,
            order_key=key,
            next_attempt_at=later(wait),
            attempts=attempts,
            attempt_times=times,
            error=error,
        )

    def _count(
        self,
        counter: Counter,
        stage: Stage,
        context: Mapping[str, str | None],
        error: BaseException | None = None,
    ) -> None:
        labels = [stage.value, context.get("route") or "", context.get("destination") or ""]
        if error is not None:
            labels.append(type(error).__name__)
        counter.labels(*labels).inc()

    def _release(self, key: str | None) -> None:
        if key is None:
            return
        left = self.blocked.get(key, 0) - 1
        if left > 0:
            self.blocked[key] = left
        else:
            self.blocked.pop(key, None)


def event_id_of(record: Any) -> str:
    """The record's event id (``ce_id``), or where it sits when it has none."""
    return (
        header_value(record.headers, "ce_id")
        or f"{record.topic}/{record.partition}/{record.offset}"
    )


def order_key_of(record: Any) -> str | None:
    """The Kafka key as text: events with the same key keep their order through retries."""
    return record.key.decode(errors="replace") if record.key is not None else None


def record_fields(record: Any) -> dict[str, str | None]:
    """The log fields of a record, read off its headers (before it is decoded). The route is
    left to the stage, which knows which of its routes is at work."""
    return {
        "event_id": event_id_of(record),
        "correlation_id": header_value(record.headers, "ce_correlationid"),
        "connection": header_value(record.headers, "ce_hubconnection"),
    }
