"""The consume loop shared by workers: batch in, output acknowledged, then offsets committed.

A worker never commits an offset before the output for that record (canonical event, dead
letter or delivery) is acknowledged, so a crash at any point means redelivery, never loss.
Offsets of the batches done are committed together, at most every
``HUB_KAFKA_COMMIT_INTERVAL_MS`` (and when the worker stops): a commit per batch and partition
was a large part of the broker's CPU at moderate rates (bench/pipeline). A crash redelivers
what was done since the last commit; outputs carry deterministic ids and deliveries are
recorded, so that repeats no effect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from hub.bus import consumer
from hub.errors import BrokerUnavailable
from hub.settings import Settings

log = logging.getLogger(__name__)


class NotNow(Exception):
    """Raised by :meth:`Worker.process` for a batch it must not handle yet (its destination is
    paused): nothing of it is done or committed, and it is read again from its first record."""


class Worker:
    """Subclasses set ``group``/``topics`` and implement ``process`` for one partition's batch."""

    group: str
    topics: Sequence[str]
    poll_timeout_ms = 500

    def __init__(self, settings: Settings, bootstrap: str) -> None:
        self.settings = settings
        self.bootstrap = bootstrap
        self._consumer: AIOKafkaConsumer | None = None
        self._stopping = asyncio.Event()
        self.ready = asyncio.Event()
        self.assigned: set[TopicPartition] = set()
        self._done: dict[TopicPartition, int] = {}  # next offset to commit, per partition
        self._committed_at = 0.0
        self._broker_gone = False
        self.lag: dict[TopicPartition, int] = {}  # records not yet read, as of the last fetch
        self._lag_at = 0.0

    async def process(self, tp: TopicPartition, records: list[Any]) -> None:
        raise NotImplementedError

    # Hooks for workers with a retry loop (see hub.workers.delivery); no-ops by default.

    async def on_assignment(self, partitions: set[TopicPartition]) -> None:
        """Called before the first batch after the partitions assigned to us changed."""

    def paused(self) -> bool:
        """True while the worker must not fetch (e.g. its destination's circuit is open)."""
        return False

    async def housekeeping(self) -> None:
        """Called between batches (at least every poll interval): parked events, probes."""

    async def run(self) -> None:
        self._consumer = consumer(self.settings, self.bootstrap, self.group, self.topics)
        try:
            await self._consumer.start()
            log.info("%s consuming %s", self.group, ", ".join(self.topics))
            assigned: set[TopicPartition] = set()
            while not self._stopping.is_set():
                current = set(self._consumer.assignment())
                if current != assigned:
                    assigned = self.assigned = current
                    # Offsets of partitions gone to another member can no longer be committed:
                    # it reads those records again (and their effects are not repeated).
                    self._done = {tp: o for tp, o in self._done.items() if tp in current}
                    await self.on_assignment(assigned)
                if current:
                    if self.paused():
                        self._consumer.pause(*current)
                    else:
                        self._consumer.resume(*current)
                batch = await self._consumer.getmany(timeout_ms=self.poll_timeout_ms)
                if not self.ready.is_set() and self._consumer.assignment():
                    self.ready.set()
                if batch:
                    await asyncio.gather(*(self._one(tp, recs) for tp, recs in batch.items()))
                await self._note_lag(current)
                await self.housekeeping()
                if time.monotonic() - self._committed_at >= self._commit_interval_s:
                    await self._commit()
        finally:
            with contextlib.suppress(Exception):  # stopping: commit what is done, if we can
                await self._commit()
            await self._consumer.stop()
            self._consumer = None

    async def _note_lag(self, partitions: set[TopicPartition]) -> None:
        """The consumer lag per partition (end offset - position), once a second at most."""
        if self._consumer is None or time.monotonic() - self._lag_at < 1.0:
            return
        self._lag_at = time.monotonic()
        lag = {}
        for tp in partitions:
            end = self._consumer.highwater(tp)
            if end is not None:
                lag[tp] = max(end - await self._consumer.position(tp), 0)
        self.lag = lag

    @property
    def _commit_interval_s(self) -> float:
        return self.settings.kafka_commit_interval_ms / 1000

    async def _commit(self) -> None:
        self._committed_at = time.monotonic()
        if not self._done or self._consumer is None or self._broker_gone:
            return
        done, self._done = self._done, {}
        try:
            await self._consumer.commit({tp: OffsetAndMetadata(o, "") for tp, o in done.items()})
        except KafkaError as exc:
            # e.g. a partition moved to another member during a rebalance: it will read these
            # records again; outputs carry deterministic ids, so that is harmless.
            log.warning("%s: commit failed: %s", self.group, exc)

    async def _one(self, tp: TopicPartition, records: list[Any]) -> None:
        assert self._consumer is not None
        try:
            await self.process(tp, records)
        except BrokerUnavailable as exc:
            # Output not acknowledged: do not commit; read the batch again after a pause.
            log.warning(
                "%s: %s; retrying %s from offset %d", self.group, exc, tp, records[0].offset
            )
            self._consumer.seek(tp, records[0].offset)
            await asyncio.sleep(1.0)
            return
        except NotNow:
            self._consumer.seek(tp, records[0].offset)
            return
        self._done[tp] = records[-1].offset + 1

    def stop(self) -> None:
        self._stopping.set()

    def broker_gone(self) -> None:
        """The broker that held our group's offsets ended; a new one may take its address.
        Offsets of the records read from the old one mean nothing there: never commit them
        (a commit could skip the new broker's records). Stop the worker next."""
        self._broker_gone = True
        self._done = {}
