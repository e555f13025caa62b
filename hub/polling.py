"""Polling sources: ask a system for its changes on a schedule, from a stored cursor.

One :class:`Poller` per polling connection runs in every process with the ingress role; a
lease in the ``poll_cursors`` table lets only one of them poll a connection at a time (the
others take over when its lease runs out). Each round:

1. read the connection's cursor;
2. ``poll(cursor)`` the connector: the changes after it, and the cursor after them;
3. publish every change to the ingest topic and wait until the broker has acknowledged all;
4. only then store the new cursor (if the lease is still ours).

A crash or a failure anywhere before step 4 leaves the cursor where it was, so the page is
polled again: nothing is skipped. Its changes get the same event ids again (connection,
subject, version), so the mapper and the destinations do not repeat their effect. A failed poll
or publish is tried again after a backoff that doubles up to the poll interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from connectors import Change, PollingSource

from .db import Database, poll_cursors
from .envelope import CloudEvent, derived_id, raw_event
from .errors import BrokerUnavailable, PollFailed
from .retry import now_utc

if TYPE_CHECKING:
    from .ports import PollerHub

log = logging.getLogger(__name__)


class CursorStore:
    """The ``poll_cursors`` table: each connection's cursor and who may poll it."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def lease(self, connection: str, owner: str, now: datetime, hold_s: float) -> bool:
        """Take or renew the right to poll ``connection`` until ``now + hold_s``; False while
        another owner's lease runs."""
        c = poll_cursors.c
        async with self.db.engine.begin() as conn:
            await conn.execute(self.db.insert_ignore(poll_cursors), [{"connection": connection}])
            result = await conn.execute(
                update(poll_cursors)
                .where(
                    c.connection == connection,
                    (c.owner == owner) | c.owner.is_(None) | (c.lease_until < now),
                )
                .values(owner=owner, lease_until=now + timedelta(seconds=hold_s))
            )
            return bool(result.rowcount)

    async def release(self, connection: str, owner: str) -> None:
        c = poll_cursors.c
        async with self.db.engine.begin() as conn:
            await conn.execute(
                update(poll_cursors)
                .where(c.connection == connection, c.owner == owner)
                .values(owner=None, lease_until=None)
            )

    async def all(self) -> dict[str, dict[str, Any]]:
        """Every connection's row: cursor, polled_at, owner, lease_until."""
        async with self.db.engine.connect() as conn:
            rows = await conn.execute(select(poll_cursors))
            return {r._mapping["connection"]: dict(r._mapping) for r in rows}

    async def cursor(self, connection: str) -> str | None:
        async with self.db.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(poll_cursors.c.cursor).where(poll_cursors.c.connection == connection)
                )
            ).first()
            return None if row is None else row[0]

    async def advance(self, connection: str, owner: str, cursor: str) -> bool:
        """Store the cursor, unless the lease went to another owner meanwhile."""
        c = poll_cursors.c
        async with self.db.engine.begin() as conn:
            result = await conn.execute(
                update(poll_cursors)
                .where(c.connection == connection, c.owner == owner)
                .values(cursor=cursor, polled_at=now_utc())
            )
            return bool(result.rowcount)


class Poller:
    """Polls one connection until stopped."""

    min_backoff_s = 1.0

    def __init__(
        self,
        hub: PollerHub,
        connection: str,
        source: PollingSource,
        clock: Callable[[], datetime] = now_utc,
    ) -> None:
        self.hub = hub
        self.connection = connection
        self.source = source
        self.store = CursorStore(hub.db)
        self.owner = uuid.uuid4().hex  # this process's poller, for the lease
        self.interval_s = source.options.poll_interval_s
        self.window = source.options.window()  # hub.schedule: None polls all day
        self.clock = clock  # given in tests, to be at any time of day
        self.polls = 0  # rounds that reached the source
        self.last_error: str | None = None  # of the last round; None once a round went through
        self.last_poll_at: datetime | None = None  # when the last round ended, well or not
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def hold_s(self) -> float:
        """How long a lease lasts: a few rounds, so a dead poller is replaced soon."""
        return max(30.0, 3 * self.interval_s)

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name=f"poll:{self.connection}")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 15)
            except TimeoutError:
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        try:
            await self.store.release(self.connection, self.owner)
        except Exception as exc:  # the lease then runs out by itself
            log.warning("%s: could not release the poll lease: %s", self.connection, exc)
        await self.source.close()

    async def run(self) -> None:
        self._backoff = self.min_backoff_s
        while not self._stopping.is_set():
            wait = await self.step()
            if wait > 0:
                try:
                    await asyncio.wait_for(self._stopping.wait(), wait)
                except TimeoutError:
                    pass

    _backoff = min_backoff_s
    _opened = False

    async def step(self) -> float:
        """One turn of the loop: a poll when the schedule allows it; how long to wait then.
        Outside the connection's ``poll_window`` nothing is asked: the wait is until it opens
        (at most an interval at a time, so a stop or a new configuration is seen)."""
        closed_for = self.window.wait_s(self.clock()) if self.window is not None else 0.0
        if closed_for > 0:
            if self.polls == 0 or self._was_open:
                log.info(
                    "%s: outside its poll window %s; polling again when it opens",
                    self.connection,
                    self.window,
                )
            self._was_open = False
            return min(closed_for, max(self.interval_s, 60.0))
        self._was_open = True
        try:
            if not self._opened:
                await self.source.open()
                self._opened = True
            if await self.store.lease(self.connection, self.owner, now_utc(), self.hold_s):
                try:
                    wait = await self.round()
                finally:
                    self.last_poll_at = now_utc()
            else:
                wait = self.interval_s  # another process polls it
            self._backoff = self.min_backoff_s
            self.last_error = None
        except (PollFailed, BrokerUnavailable) as exc:
            log.warning("%s: %s; polling again in %.0fs", self.connection, exc, self._backoff)
            self.last_error = str(exc)
            wait, self._backoff = self._backoff, min(self._backoff * 2, self.interval_s)
        except Exception as exc:
            log.exception("%s: polling failed; again in %.0fs", self.connection, self._backoff)
            self.last_error = f"{type(exc).__name__}: {exc}"
            wait, self._backoff = self._backoff, min(self._backoff * 2, self.interval_s)
        return wait

    _was_open = True

    async def round(self) -> float:
        """One poll; returns how long to wait before the next (0: a full page, go on)."""
        cursor = await self.store.cursor(self.connection)
        page = await self.source.poll(cursor)
        self.polls += 1
        if self.hub.tracer is None:
            await self.publish([self.event(c) for c in page.changes])
        else:
            await self._traced_publish(page.changes)
        if page.changes:
            self.hub.metrics.ingested.labels(self.connection).inc(len(page.changes))
        if page.cursor is not None and page.cursor != cursor:
            if not await self.store.advance(self.connection, self.owner, page.cursor):
                log.warning("%s: lost the poll lease; the new owner polls on", self.connection)
                return self.interval_s
        if page.changes:
            log.info("%s: %d change(s) stored", self.connection, len(page.changes))
        return 0.0 if page.more else self.interval_s

    async def publish(self, events: list[CloudEvent]) -> None:
        publisher = self.hub.publisher
        topic = self.hub.settings.ingest_topic
        await publisher.wait([publisher.send(topic, e) for e in events])

    async def _traced_publish(self, changes: list[Change]) -> None:
        """:meth:`publish` with a ``hub.ingress`` span per change (:mod:`hub.telemetry`), the
        root of that change's trace."""
        tracer = self.hub.tracer
        assert tracer is not None
        with contextlib.ExitStack() as spans:
            events = []
            for change in changes:
                event_id = self.event_id(change)
                attributes = {"hub.event_id": event_id, "hub.connection": self.connection}
                span = spans.enter_context(
                    tracer.span("hub.ingress", None, tracer.CONSUMER, attributes)
                )
                events.append(self.event(change, tracer.traceparent(span)))
            await self.publish(events)

    def event_id(self, change: Change) -> str:
        return derived_id("poll", self.connection, change.subject or "", change.version)

    def event(self, change: Change, traceparent: str | None = None) -> CloudEvent:
        """The raw event of a change; it starts a trace of its own unless ``traceparent``."""
        return raw_event(
            self.event_id(change),
            self.connection,
            self.source.name,
            change.type,
            change.subject,
            change.data,
            traceparent,
            self.source.system,
        )
