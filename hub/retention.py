"""Retention: rows of the tables that grow with every event are deleted when old enough.

- ``webhook_receipts`` after ``HUB_RECEIPTS_RETENTION`` (default 7 days). A receipt is what
  answers a source's retry ``duplicate``; once it is gone, a retry of that webhook is accepted
  again. So it must outlive every source's retry window (Shopify retries for 48 hours; the
  settings refuse less than 2 days). A webhook accepted again after that gets the same event
  id (derived from its delivery id), and its delivery record keeps it from reaching a
  destination twice: so delivery records must be kept at least as long as receipts.
- ``deliveries`` after ``HUB_DELIVERIES_RETENTION`` (default 30 days), and replay jobs that
  long after their last sign of life (ended or abandoned, :mod:`hub.replayjobs`). A delivery
  record keeps an event redelivered by Kafka or replayed from being sent again; past the
  retention an event that old reaching the worker again would be sent again (with the same
  ``Idempotency-Key``).

Every ``HUB_RETENTION_INTERVAL`` each hub process deletes, in batches of :attr:`BATCH` rows
(one short transaction each, so no lock is held long and ingress never waits on a big delete),
until a batch finds fewer. Deleting is idempotent: processes running it at the same time only
find less to do. The time columns are indexed (``ix_*_received_at``, ``ix_*_delivered_at``).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Table, delete, select, tuple_

from .db import Database, deliveries, order_journal, replay_jobs, webhook_receipts
from .retry import now_utc
from .settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rule:
    """Delete rows of ``table`` whose ``column`` is older than ``keep_s`` (0: keep for ever)."""

    table: Table
    column: str
    keep_s: float


def rules(settings: Settings) -> list[Rule]:
    return [
        Rule(webhook_receipts, "received_at", settings.receipts_retention),
        Rule(deliveries, "delivered_at", settings.deliveries_retention),
        Rule(order_journal, "at", settings.deliveries_retention),  # hub.journal
        # a running job's heartbeat is never that old: only ended or abandoned jobs go
        Rule(replay_jobs, "heartbeat_at", settings.deliveries_retention),
    ]


class Retention:
    BATCH = 1000

    def __init__(self, db: Database, settings: Settings, batch: int | None = None) -> None:
        self.db = db
        self.settings = settings
        self.batch = batch or self.BATCH
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.settings.retention_interval > 0:
            self._task = asyncio.create_task(self._loop(), name="retention")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                deleted = await self.run_once()
                if any(deleted.values()):
                    log.info("retention: deleted %s", deleted)
            except Exception as exc:  # the next round tries again
                log.warning("retention: %s: %s", type(exc).__name__, exc)
            await asyncio.sleep(self.settings.retention_interval)

    async def run_once(self, now: datetime | None = None) -> dict[str, int]:
        """Delete what is older than its retention; returns how many rows per table."""
        now = now or now_utc()
        out = {}
        for rule in rules(self.settings):
            if rule.keep_s > 0:
                cutoff = now - timedelta(seconds=rule.keep_s)
                out[rule.table.name] = await self.purge(rule, cutoff)
        return out

    async def purge(self, rule: Rule, cutoff: datetime) -> int:
        """Delete ``rule``'s rows older than ``cutoff``, :attr:`batch` rows per transaction."""
        table = rule.table
        key = tuple_(*table.primary_key.columns)
        old = (
            select(*table.primary_key.columns)
            .where(table.c[rule.column] < cutoff)
            .limit(self.batch)
        )
        query = delete(table).where(key.in_(old))
        total = 0
        while True:
            count = await self.db.run(lambda conn: conn.execute(query).rowcount)
            total += count
            if count < self.batch:
                return total
            await asyncio.sleep(0)  # let the per-event writes in between batches
