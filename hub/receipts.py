"""Webhook receipts: which source deliveries are already stored, for deduplication at ingress.

Recent delivery ids are kept in memory (bounded), so a retry storm costs no database call;
new ids are looked up in the database, and receipts are written behind in batches (one
transaction per batch instead of one per webhook).

Losing the last batch in a crash is safe: the events themselves are in Kafka already, and
their ids are derived from the delivery id, so a redelivered webhook yields the same event id
and is deduplicated downstream.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict

from .db import Database

log = logging.getLogger(__name__)

Key = tuple[str, str]


class Receipts:
    def __init__(self, db: Database, cache_size: int = 100_000, batch: int = 500) -> None:
        self.db = db
        self.cache_size = cache_size
        self.batch = batch
        self._cache: OrderedDict[Key, str] = OrderedDict()
        self._pending: list[tuple[str, str, str]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._writer(), name="receipts")

    async def seen(self, connection: str, delivery_id: str) -> str | None:
        """The event id of an earlier delivery with this id, if any."""
        key = (connection, delivery_id)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        found = await self.db.webhook_event(connection, delivery_id)
        if found is not None:
            self._remember(key, found)
        return found

    def record(self, connection: str, delivery_id: str, event_id: str) -> None:
        self._remember((connection, delivery_id), event_id)
        self._pending.append((connection, delivery_id, event_id))
        self._wake.set()

    def _remember(self, key: Key, event_id: str) -> None:
        self._cache[key] = event_id
        self._cache.move_to_end(key)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    async def _writer(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(0.02)  # gather what arrives meanwhile into one transaction
            await self.flush()

    async def flush(self) -> None:
        while self._pending:
            rows, self._pending = self._pending[: self.batch], self._pending[self.batch :]
            try:
                await self.db.record_webhooks(rows)
            except Exception:
                log.exception("could not record %d webhook receipt(s); retrying", len(rows))
                self._pending[:0] = rows
                await asyncio.sleep(1.0)
                return

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.flush()
