"""Webhook receipts: which source deliveries are already stored, for deduplication at ingress.

Recent delivery ids are kept in memory (bounded), so a retry storm costs no database call;
new ids are looked up in the database -- lookups that arrive while one is running share the
next query (one ``IN (...)``: it halved ingress CPU per webhook in bench/pipeline) -- and
receipts are written behind in batches (one transaction per batch instead of one per webhook).

Losing the last batch in a crash is safe: the events themselves are in Kafka already, and
their ids are derived from the delivery id, so a redelivered webhook yields the same event id
and is deduplicated downstream.

With the embedded broker, a receipt says only that the event reached one run of Tansu
(``incarnation``, :mod:`hub.broker`), which keeps it in memory. Should that run end without its
records being saved (killed, crashed), :meth:`Receipts.void` makes its receipts no longer count:
the source's retry of a lost event is accepted and stored again, instead of being answered
``duplicate`` for an event nobody holds. Events that did get through are not repeated in a
destination: the retry carries the same deterministic event id. With an external Kafka there is
no incarnation and nothing is voided.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict

from .db import Database

log = logging.getLogger(__name__)

Key = tuple[str, str]
Receipt = tuple[str, str | None]
"""The event id, and the embedded broker's run that holds the event (None: external Kafka)."""


class Receipts:
    def __init__(self, db: Database, cache_size: int = 100_000, batch: int = 500) -> None:
        self.db = db
        self.cache_size = cache_size
        self.batch = batch
        self._cache: OrderedDict[Key, Receipt] = OrderedDict()
        self._pending: list[tuple[str, str, str, str | None]] = []
        self.incarnation: str | None = None  # the embedded broker's current run, if any
        self._voided: set[str | None] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lookups: dict[str, dict[str, list[asyncio.Future[Receipt | None]]]] = {}
        self._lookup_task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._writer(), name="receipts")

    async def seen(self, connection: str, delivery_id: str) -> str | None:
        """The event id of an earlier delivery with this id, if any (and still held)."""
        key = (connection, delivery_id)
        hit = self._cache.get(key)
        if hit is not None and hit[1] not in self._voided:
            self._cache.move_to_end(key)
            return hit[0]
        future: asyncio.Future[Receipt | None] = asyncio.get_running_loop().create_future()
        self._lookups.setdefault(connection, {}).setdefault(delivery_id, []).append(future)
        if self._lookup_task is None or self._lookup_task.done():
            self._lookup_task = asyncio.create_task(self._lookup(), name="receipt-lookups")
        found = await future
        if found is None or found[1] in self._voided:  # voided: its row is being removed
            return None
        self._remember(key, found)
        return found[0]

    async def _lookup(self) -> None:
        """Answer every waiting lookup, a query per connection and chunk of ids."""
        await asyncio.sleep(0)  # let the requests already in hand join this round
        while self._lookups:
            batch, self._lookups = self._lookups, {}
            for connection, waiting in batch.items():
                ids = list(waiting)
                for start in range(0, len(ids), self.batch):
                    chunk = ids[start : start + self.batch]
                    try:
                        rows = await self.db.webhook_events(connection, chunk)
                    except Exception as exc:  # each waiting request fails with it (a 5xx)
                        for delivery_id in chunk:
                            _settle(waiting[delivery_id], exc=exc)
                        continue
                    for delivery_id in chunk:
                        _settle(waiting[delivery_id], rows.get(delivery_id))

    def record(self, connection: str, delivery_id: str, event_id: str) -> None:
        incarnation = self.incarnation
        if incarnation in self._voided:
            return  # its broker has ended meanwhile, the event with it: it does not count
        self._remember((connection, delivery_id), (event_id, incarnation))
        self._pending.append((connection, delivery_id, event_id, incarnation))
        self._wake.set()

    async def void(self, incarnation: str) -> None:
        """The receipts of the embedded broker's run ``incarnation`` no longer count: it ended
        and what only it held is gone (see the module doc)."""
        self._voided.add(incarnation)
        self._pending = [row for row in self._pending if row[3] != incarnation]
        for key in [k for k, (_, run) in self._cache.items() if run == incarnation]:
            del self._cache[key]
        try:
            count = await self.db.forget_webhooks(incarnation)
        except Exception:
            log.exception(
                "could not remove the webhook receipts of the embedded broker's run %s: "
                "retries of its lost events are refused as duplicates after a restart",
                incarnation,
            )
            return
        if count:
            log.warning(
                "%d webhook receipt(s) of the ended embedded broker no longer count: a source "
                "that sends those webhooks again is answered 202 and they are stored again",
                count,
            )

    def _remember(self, key: Key, receipt: Receipt) -> None:
        self._cache[key] = receipt
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
            runs: dict[str | None, list[tuple[str, str, str]]] = {}
            for connection, delivery_id, event_id, incarnation in rows:
                if incarnation not in self._voided:
                    runs.setdefault(incarnation, []).append((connection, delivery_id, event_id))
            try:
                for incarnation, chunk in runs.items():
                    await self.db.record_webhooks(chunk, incarnation)
                    if incarnation is not None and incarnation in self._voided:  # voided meanwhile
                        await self.db.forget_webhooks(incarnation)
            except Exception:
                log.exception("could not record %d webhook receipt(s); retrying", len(rows))
                self._pending[:0] = rows
                await asyncio.sleep(1.0)
                return

    async def close(self) -> None:
        if self._lookup_task is not None:
            await asyncio.gather(self._lookup_task, return_exceptions=True)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.flush()


def _settle(
    futures: list[asyncio.Future[Receipt | None]],
    result: Receipt | None = None,
    exc: BaseException | None = None,
) -> None:
    for future in futures:
        if future.done():
            continue
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)
