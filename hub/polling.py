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

    def __init__(self, hub: PollerHub, connection: str, source: PollingSource) -> None:
        self.hub = hub
        self.connection = connection
        self.source = source
        self.store = CursorStore(hub.db)
        self.owner = uuid.uuid4().hex  # this process's poller, for the lease
        self.interval_s = source.options.poll_interval_s
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
        backoff = self.min_backoff_s
        opened = False
        while not self._stopping.is_set():
            try:
                if not opened:
                    await self.source.open()
                    opened = True
                if await self.store.lease(self.connection, self.owner, now_utc(), self.hold_s):
                    try:
                        wait = await self.round()
                    finally:
                        self.last_poll_at = now_utc()
                else:
                    wait = self.interval_s  # another process polls it
                backoff = self.min_backoff_s
                self.last_error = None
            except (PollFailed, BrokerUnavailable) as exc:
                log.warning("%s: %s; polling again in %.0fs", self.connection, exc, backoff)
                self.last_error = str(exc)
                wait, backoff = backoff, min(backoff * 2, self.interval_s)
            except Exception as exc:
                log.exception("%s: polling failed; again in %.0fs", self.connection, backoff)
                self.last_error = f"{type(exc).__name__}: {exc}"
                wait, backoff = backoff, min(backoff * 2, self.interval_s)
            if wait > 0:
                try:
                    await asyncio.wait_for(self._stopping.wait(), wait)
                except TimeoutError:
                    pass

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
