"""The retry runtime shared by every stage: policy, parked events, circuit breaker.

A stage that hits a *retriable* failure (``ProcessingError.retriable``; decided by the error's
type, never its message) does not hold its partition: the event is **parked** in the database
table ``retries`` with the time of its next attempt, the consumer offset moves on, and the
worker's retry loop attempts it again when it is due (exponential backoff with jitter, within
the route's policy). Parked events survive restarts: the table is the durable copy until the
event is delivered or dead-lettered, and offsets are committed only after the row is written.

Per-key order, where a route asks for it (``ordered: true``, the default): while an event of a
key is parked, later events of the same key are parked *behind* it (not attempted), and are
released in order once it is through. Other keys flow.

A destination that is down trips its **circuit breaker**: the worker stops fetching (its
partitions are paused, so events wait in Kafka, not in the table), one probe is let through now
and then, and everything flows again once a probe succeeds. Failures while the breaker is open are
blamed on the destination, not on the event: they never exhaust an event's retries. Delivery
processes share each destination's circuit through the database (:mod:`hub.circuits`); the rate
limit is in :mod:`hub.ratelimit`.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, exists, func, select, update
from sqlalchemy.orm import aliased

from .db import Database, retries
from .deadletters.store import decode_payload

log = logging.getLogger(__name__)


def now_utc() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class RetryPolicy:
    """How long and how often a retriable failure is retried before it becomes a dead letter."""

    max_attempts: int = 8
    initial_delay_s: float = 1.0
    max_delay_s: float = 300.0
    max_total_s: float = 24 * 3600.0
    ordered: bool = True

    def delay(self, attempts: int, rng: random.Random | None = None) -> float:
        """Wait before attempt ``attempts + 1``: capped exponential, "equal jitter"
        (half fixed, half random), so many failed events do not come back at once."""
        base = min(self.max_delay_s, self.initial_delay_s * 2 ** max(0, attempts - 1))
        return float(base / 2 + (rng or random).uniform(0, base / 2))

    def exhausted(self, attempts: int, first_failed_at: datetime, now: datetime) -> bool:
        too_long = (now - first_failed_at).total_seconds() >= self.max_total_s
        return attempts >= self.max_attempts or too_long


@dataclass
class StoredRecord:
    """A Kafka record as the retry table keeps it (what dead_letter() and replay need)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


@dataclass
class Parked:
    """One row of the retry table: a record, where it failed, and its attempts so far."""

    id: int
    record: StoredRecord
    event_id: str
    stage: str
    route: str | None
    order_key: str | None
    attempts: int
    attempt_times: list[str]
    first_failed_at: datetime | None  # None: parked behind another event, not failed yet
    last_error: str | None
    error_class: str | None


class RetryQueue:
    """The ``retries`` table for one worker (its consumer group)."""

    def __init__(self, db: Database, worker: str) -> None:
        self.db = db
        self.worker = worker

    async def park(
        self,
        record: Any,
        *,
        event_id: str,
        stage: str,
        route: str | None,
        order_key: str | None,
        next_attempt_at: datetime,
        attempts: int = 0,
        attempt_times: Sequence[str] = (),
        error: BaseException | None = None,
    ) -> None:
        """Write one record to the table (a second park of the same event is ignored)."""
        now = now_utc()
        row = {
            "worker": self.worker,
            "event_id": event_id,
            "stage": stage,
            "route": route,
            "order_key": order_key,
            "source_topic": record.topic,
            "source_partition": record.partition,
            "source_offset": record.offset,
            "key": record.key,
            "value": record.value,
            "headers": [[k, bytes(v or b"").hex()] for k, v in (record.headers or ())],
            "attempts": attempts,
            "attempt_times": list(attempt_times),
            "first_failed_at": now if error is not None else None,
            "next_attempt_at": next_attempt_at,
            "last_error": str(error)[:2000] if error is not None else None,
            "error_class": type(error).__name__ if error is not None else None,
            "parked_at": now,
        }
        async with self.db.engine.begin() as conn:
            await conn.execute(self.db.insert_ignore(retries), row)

    async def blocked_keys(self, partitions: Iterable[tuple[str, int]]) -> dict[str, int]:
        """Order keys with parked events in these partitions, and how many each."""
        wanted = set(partitions)
        if not wanted:
            return {}
        c = retries.c
        async with self.db.engine.connect() as conn:
            rows = await conn.execute(
                select(c.source_topic, c.source_partition, c.order_key, func.count())
                .where(c.worker == self.worker, c.order_key.is_not(None))
                .group_by(c.source_topic, c.source_partition, c.order_key)
            )
            out: dict[str, int] = {}
            for topic, partition, key, count in rows:
                if (topic, partition) in wanted:
                    out[key] = out.get(key, 0) + int(count)
            return out

    async def due(
        self, partitions: Iterable[tuple[str, int]], now: datetime, limit: int = 200
    ) -> list[Parked]:
        """Parked events whose time has come and that wait behind nothing (oldest first)."""
        wanted = set(partitions)
        if not wanted:
            return []
        c = retries.c
        earlier = aliased(retries)
        ahead = exists().where(
            and_(
                earlier.c.worker == c.worker,
                earlier.c.order_key == c.order_key,
                earlier.c.id < c.id,
            )
        )
        async with self.db.engine.connect() as conn:
            rows = await conn.execute(
                select(retries)
                .where(c.worker == self.worker, c.next_attempt_at <= now, ~ahead)
                .order_by(c.id)
                .limit(limit)
            )
            out = []
            for r in rows:
                m = r._mapping
                if (m["source_topic"], m["source_partition"]) not in wanted:
                    continue
                out.append(_parked(m))
            return out

    async def claim(self, due: list[Parked], now: datetime, hold_s: float = 120.0) -> list[Parked]:
        """The due events this worker may attempt now: each is moved ``hold_s`` ahead, and only
        the worker whose update did that attempts it. During a rebalance the old and the new
        owner of a partition can both find a row due; without a claim both would send it. A
        worker that dies mid-attempt leaves the row due again after ``hold_s``."""
        claimed = []
        until = now + timedelta(seconds=hold_s)
        async with self.db.engine.begin() as conn:
            for parked in due:
                result = await conn.execute(
                    update(retries)
                    .where(retries.c.id == parked.id, retries.c.next_attempt_at <= now)
                    .values(next_attempt_at=until)
                )
                if result.rowcount:
                    claimed.append(parked)
        return claimed

    async def failed_again(
        self, parked: Parked, error: BaseException, next_attempt_at: datetime, charged: bool
    ) -> None:
        """Record a failed attempt; ``charged`` says whether it counts against the policy."""
        parked.attempt_times.append(now_utc().isoformat())
        if parked.first_failed_at is None:
            parked.first_failed_at = now_utc()
        if charged:
            parked.attempts += 1
        async with self.db.engine.begin() as conn:
            await conn.execute(
                update(retries)
                .where(retries.c.id == parked.id)
                .values(
                    attempts=parked.attempts,
                    attempt_times=parked.attempt_times,
                    first_failed_at=parked.first_failed_at,
                    next_attempt_at=next_attempt_at,
                    last_error=str(error)[:2000],
                    error_class=type(error).__name__,
                )
            )

    async def remove(self, parked: Parked) -> None:
        async with self.db.engine.begin() as conn:
            await conn.execute(delete(retries).where(retries.c.id == parked.id))

    async def count(self) -> int:
        async with self.db.engine.connect() as conn:
            return int(
                (
                    await conn.execute(
                        select(func.count())
                        .select_from(retries)
                        .where(retries.c.worker == self.worker)
                    )
                ).scalar_one()
            )


class RetryTable:
    """The whole ``retries`` table, as operators see it (every worker's parked events)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def search(
        self, worker: str | None = None, limit: int = 100, offset: int = 0
    ) -> tuple[int, list[dict[str, Any]]]:
        c = retries.c
        where = [c.worker == worker] if worker else []
        async with self.db.engine.connect() as conn:
            total = (
                await conn.execute(select(func.count()).select_from(retries).where(*where))
            ).scalar_one()
            rows = await conn.execute(
                select(retries).where(*where).order_by(c.id).limit(limit).offset(offset)
            )
            return int(total), [_public(r._mapping) for r in rows]

    async def counts(self) -> dict[str, int]:
        """Parked events per worker (consumer group)."""
        c = retries.c
        async with self.db.engine.connect() as conn:
            rows = await conn.execute(select(c.worker, func.count()).group_by(c.worker))
            return {w: int(n) for w, n in rows}

    async def retry_now(self, id_: int) -> bool:
        """Make a parked event due now (e.g. after the destination was fixed)."""
        async with self.db.engine.begin() as conn:
            result = await conn.execute(
                update(retries).where(retries.c.id == id_).values(next_attempt_at=now_utc())
            )
            return bool(result.rowcount)


def _public(m: Any) -> dict[str, Any]:
    out = {k: v for k, v in m.items() if k not in ("key", "value", "headers")}
    for k in ("first_failed_at", "next_attempt_at", "parked_at"):
        if isinstance(out.get(k), datetime):
            out[k] = out[k].isoformat()
    out["key"] = m["key"].decode(errors="replace") if m["key"] is not None else None
    out["payload"] = decode_payload(m["value"])
    out["waiting_behind"] = m["first_failed_at"] is None  # not failed itself: waits for its key
    return out


def _parked(m: Any) -> Parked:
    first = m["first_failed_at"]
    if first is not None and first.tzinfo is None:
        first = first.replace(tzinfo=UTC)
    return Parked(
        id=m["id"],
        record=StoredRecord(
            topic=m["source_topic"],
            partition=m["source_partition"],
            offset=m["source_offset"],
            key=m["key"],
            value=m["value"],
            headers=[(k, bytes.fromhex(v)) for k, v in m["headers"]],
        ),
        event_id=m["event_id"],
        stage=m["stage"],
        route=m["route"],
        order_key=m["order_key"],
        attempts=m["attempts"],
        attempt_times=list(m["attempt_times"] or []),
        first_failed_at=first,
        last_error=m["last_error"],
        error_class=m["error_class"],
    )


@dataclass
class CircuitBreaker:
    """Per destination. Opens after ``threshold`` consecutive retriable failures of *different*
    events (one poison event failing again and again is that event's problem, not the
    destination's); stays open ``open_s`` (doubling while probes fail, up to ``max_open_s``);
    then lets one probe through (half-open); a success closes it."""

    threshold: int = 5
    open_s: float = 5.0
    max_open_s: float = 300.0
    state: str = "closed"  # closed | open | half-open
    _failed_events: set[str] = field(default_factory=set)
    _open_until: float = 0.0
    _current_open_s: float = 0.0
    _probing: bool = False
    transitions: int = 0  # opened or closed by its own evidence (not by hold/reset)

    @property
    def closed(self) -> bool:
        return self.state == "closed"

    def retry_in(self) -> float:
        """Seconds until a probe may be tried (0 when closed or half-open)."""
        if self.state != "open":
            return 0.0
        return max(0.0, self._open_until - time.monotonic())

    def allow(self) -> bool:
        """May an attempt be made now? In half-open, only one at a time (the probe)."""
        if self.state == "open" and time.monotonic() >= self._open_until:
            self.state = "half-open"
            self._probing = False
        if self.state == "closed":
            return True
        if self.state == "half-open" and not self._probing:
            self._probing = True
            return True
        return False

    def success(self) -> None:
        self._failed_events.clear()
        self._probing = False
        if self.state != "closed":
            log.info("circuit closed: the destination answers again")
            self.state = "closed"
            self._current_open_s = 0.0
            self.transitions += 1

    def failure(self, event_id: str) -> None:
        self._probing = False
        if self.state == "half-open":
            self._open(min(self.max_open_s, max(self.open_s, self._current_open_s * 2)))
            return
        if self.state == "open":
            return
        self._failed_events.add(event_id)
        if len(self._failed_events) >= self.threshold:
            self._open(self.open_s)

    @property
    def current_open_s(self) -> float:
        """How long the circuit was last opened for (it doubles while probes fail)."""
        return self._current_open_s

    def hold(self, seconds: float, open_s: float) -> None:
        """Open for ``seconds`` more, as another process decided (``open_s`` its length)."""
        self.state = "open"
        self._current_open_s = open_s
        self._open_until = time.monotonic() + seconds
        self._failed_events.clear()
        self._probing = False

    def reset(self) -> None:
        """Closed, as another process decided (its probe succeeded)."""
        self.state = "closed"
        self._current_open_s = 0.0
        self._failed_events.clear()
        self._probing = False

    def _open(self, seconds: float) -> None:
        self.state = "open"
        self._current_open_s = seconds
        self._open_until = time.monotonic() + seconds
        self._failed_events.clear()
        self.transitions += 1
        log.warning("circuit open for %.1fs: the destination keeps failing", seconds)


def later(seconds: float) -> datetime:
    return now_utc() + timedelta(seconds=seconds)


__all__ = [
    "CircuitBreaker",
    "Parked",
    "RetryPolicy",
    "RetryQueue",
    "RetryTable",
    "StoredRecord",
    "later",
    "now_utc",
]
