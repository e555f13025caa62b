"""Each destination's circuit, shared by every delivery process through the ``circuits`` table.

Each process keeps a :class:`hub.retry.CircuitBreaker` per destination and decides on its own
evidence (failures of different events, a probe's answer); the table carries the decisions
between processes:

- **On a change of its own** (it opened, reopened after a failed probe, or closed after a
  successful one) a process writes the row at once, in the same await as the attempt.
- **Every** ``HUB_BREAKER_SYNC_INTERVAL_S`` (and not per event) it reads the row. A circuit
  another process opened that is still open makes this one hold until the same time (its
  partitions pause, its events wait in Kafka); one another process closed closes here too.
  Each row version is taken over once, so a process does not take back its own write.

When the open time ends each process may let one probe through (so with N processes up to N
probes at once); the first answer decides for all. A worker that starts while the circuit is
open (a restart, a deploy, a new process) begins half-open: one probe, whose answer decides.
The last write wins: a process whose probe failed reopens the circuit even if another's
succeeded a moment before, and the next success closes it again. The ops API
(``/api/destinations``) reads the table, so every process answers the same, whichever runs the
destination's worker.

**An operator's pause** (``POST /api/destinations/<name>/pause``, ``.../resume``) is kept on the
same row, so it costs no read of its own: within ``HUB_BREAKER_SYNC_INTERVAL_S`` every delivery
process of the destination stops fetching (its partitions pause, events wait in Kafka, parked
events are not retried; what a worker had fetched already, one batch at most, is still sent),
and after a resume each carries on from where it stopped. Unlike an open circuit it does not
end by itself, and no probe is sent.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from .db import Database, circuits
from .retry import CircuitBreaker, now_utc

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pause:
    """An operator's pause of a destination: who, when, why."""

    by: str
    at: datetime
    reason: str | None

    def as_json(self) -> dict[str, Any]:
        return {"paused_by": self.by, "paused_at": self.at.isoformat(), "reason": self.reason}


@dataclass(frozen=True)
class CircuitView:
    state: str  # closed | open | half-open (open, and its time is up: a probe may go)
    next_probe_in_s: float
    opened_at: datetime | None
    open_until: datetime | None
    failures: int
    updated_by: str | None
    pause: Pause | None = None


class CircuitStore:
    """The ``circuits`` table."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def read(self, destination: str) -> dict[str, Any] | None:
        query = select(circuits).where(circuits.c.destination == destination)
        async with self.db.engine.connect() as conn:
            row = (await conn.execute(query)).first()
            return dict(row._mapping) if row is not None else None

    async def write(self, destination: str, values: dict[str, Any]) -> None:
        c = circuits.c
        async with self.db.engine.begin() as conn:
            result = await conn.execute(
                update(circuits).where(c.destination == destination).values(**values)
            )
            if not result.rowcount:
                await conn.execute(
                    self.db.insert_ignore(circuits), [{"destination": destination, **values}]
                )

    async def pause(
        self, destination: str, by: str, reason: str | None, instance: str
    ) -> tuple[Pause, bool]:
        """Pause ``destination`` for every process; the pause in force and whether this call
        made it (pausing a paused destination keeps the first pause: who, when and why)."""
        c = circuits.c
        now = now_utc()
        paused = {"paused_at": now, "paused_by": by, "pause_reason": reason}
        async with self.db.engine.begin() as conn:
            made = await conn.execute(
                update(circuits)
                .where(c.destination == destination, c.paused_at.is_(None))
                .values(**paused)
            )
            changed = bool(made.rowcount)
            if not changed:  # no row yet (a circuit never opened), or paused already
                closed = {"state": "closed", "failures": 0, "updated_at": now}
                new = {"destination": destination, **closed, "updated_by": instance, **paused}
                inserted = await conn.execute(self.db.insert_ignore(circuits).values(**new))
                changed = bool(inserted.rowcount)
            row = (await conn.execute(select(circuits).where(c.destination == destination))).one()
        pause = pause_of(dict(row._mapping))
        assert pause is not None
        return pause, changed

    async def resume(self, destination: str) -> Pause | None:
        """Lift ``destination``'s pause; the pause lifted (None: it was not paused)."""
        c = circuits.c
        async with self.db.engine.begin() as conn:
            row = (await conn.execute(select(circuits).where(c.destination == destination))).first()
            pause = pause_of(dict(row._mapping)) if row is not None else None
            if pause is not None:
                await conn.execute(
                    update(circuits)
                    .where(c.destination == destination)
                    .values(paused_at=None, paused_by=None, pause_reason=None)
                )
        return pause

    async def views(self) -> dict[str, CircuitView]:
        """Every destination's circuit as of now; a destination without a row is closed."""
        async with self.db.engine.connect() as conn:
            rows = [dict(r._mapping) for r in await conn.execute(select(circuits))]
        return {r["destination"]: view(r, now_utc()) for r in rows}


def view(row: dict[str, Any], now: datetime) -> CircuitView:
    until = _utc(row["open_until"])
    state, wait = "closed", 0.0
    if row["state"] == "open" and until is not None:
        wait = max(0.0, (until - now).total_seconds())
        state = "open" if wait > 0 else "half-open"
    return CircuitView(
        state=state,
        next_probe_in_s=wait,
        opened_at=_utc(row["opened_at"]),
        open_until=until,
        failures=row["failures"],
        updated_by=row["updated_by"],
        pause=pause_of(row),
    )


def pause_of(row: dict[str, Any]) -> Pause | None:
    at = _utc(row.get("paused_at"))
    if at is None:
        return None
    return Pause(row.get("paused_by") or "?", at, row.get("pause_reason"))


class SharedCircuit:
    """A destination's breaker kept in step with the table (see the module's docstring)."""

    def __init__(
        self,
        db: Database,
        destination: str,
        breaker: CircuitBreaker,
        instance: str,
        interval_s: float,
    ) -> None:
        self.store = CircuitStore(db)
        self.destination = destination
        self.breaker = breaker
        self.instance = instance
        self.interval_s = interval_s
        self._published = breaker.transitions
        self._seen: tuple[Any, ...] | None = None  # the row version last taken over or written
        self._read_at = float("-inf")
        self._started = False
        self.pause: Pause | None = None  # an operator's, as of the last read
        self.reads = 0  # round trips, for the figures in the docs and the tests
        self.writes = 0

    @property
    def started(self) -> bool:
        """Whether the row was read once (the pause and others' decisions are known)."""
        return self._started

    async def publish(self) -> None:
        """Write the breaker's own change, if it made one since the last write."""
        breaker = self.breaker
        if breaker.transitions == self._published:
            return
        self._published = breaker.transitions
        now = now_utc()
        if breaker.state == "closed":
            values: dict[str, Any] = {"state": "closed", "open_until": None, "failures": 0}
        else:
            values = {
                "state": "open",
                "opened_at": now,
                "open_until": now + timedelta(seconds=breaker.retry_in()),
                "open_s": breaker.current_open_s,
                "failures": breaker.threshold,
            }
        values.update(updated_at=now, updated_by=self.instance)
        self.writes += 1
        try:
            await self.store.write(self.destination, values)
        except Exception as exc:  # the others learn of it at the next change
            log.warning("%s: could not share the circuit's state: %s", self.destination, exc)
            return
        self._seen = _version(values)

    async def refresh(self) -> None:
        """Take over another process's decision, at most every ``interval_s``."""
        await self.publish()
        if time.monotonic() - self._read_at < self.interval_s:
            return
        self._read_at = time.monotonic()
        self.reads += 1
        try:
            row = await self.store.read(self.destination)
        except Exception as exc:  # go on with what this process knows
            log.warning("%s: could not read the shared circuit: %s", self.destination, exc)
            return
        first, self._started = not self._started, True
        self._take_pause(pause_of(row) if row is not None else None)
        if row is None or _version(row) == self._seen:
            return
        self._seen = _version(row)
        breaker = self.breaker
        now = now_utc()
        shared = view(row, now)
        if first and shared.state != "closed":
            # A worker that starts (a restart, a deploy) tries the destination once before it
            # holds: its probe closes the circuit for all, or reopens it for longer.
            log.warning(
                "%s: circuit left open by %s; probing once", self.destination, row["updated_by"]
            )
            breaker.hold(0.0, row["open_s"] or breaker.open_s)
        elif shared.state == "open" and shared.next_probe_in_s > breaker.retry_in():
            log.warning(
                "%s: circuit opened by %s; holding for %.1fs",
                self.destination,
                row["updated_by"],
                shared.next_probe_in_s,
            )
            breaker.hold(shared.next_probe_in_s, row["open_s"] or breaker.open_s)
        elif shared.state == "closed" and not breaker.closed:
            log.info("%s: circuit closed by %s", self.destination, row["updated_by"])
            breaker.reset()

    def _take_pause(self, pause: Pause | None) -> None:
        before, self.pause = self.pause, pause
        if pause is not None and before is None:
            log.warning(
                "%s: delivery paused by %s%s; events wait in Kafka until it is resumed",
                self.destination,
                pause.by,
                f" ({pause.reason})" if pause.reason else "",
            )
        elif pause is None and before is not None:
            log.warning("%s: delivery resumed", self.destination)


def _version(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["state"], _utc(row.get("open_until")), row["updated_by"])


def _utc(value: datetime | None) -> datetime | None:
    """SQLite gives back naive datetimes (stored as UTC)."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)
