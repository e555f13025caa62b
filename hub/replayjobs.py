"""Bulk replays as jobs in the ``replay_jobs`` table, so every hub process answers the same.

A job runs in the process that started it (its ``instance``), in chunks of :attr:`CHUNK` dead
letters: publish a chunk, wait for the broker's acks, mark it replayed. Between chunks it
writes its progress and reads whether a cancel was asked, so ``DELETE /api/replays/{id}`` sent
to any process stops it before its next chunk (the chunk in hand finishes: its records are
already with the broker).

While a process runs jobs it renews their ``heartbeat_at`` every :attr:`HEARTBEAT_S` (and at
every chunk). A job still ``running`` whose heartbeat is older than :attr:`LEASE_S` lost its
process (killed, crashed, its database connection gone): it is shown ``abandoned``; nothing
resumes it (start a new job: the dead letters it did not replay are still open), and a cancel
marks it ``cancelled`` at once. A process that stops cleanly cancels its jobs ("the hub
stopped"). States shown: running, cancelling (asked, not yet stopped), finished, cancelled,
failed (the broker did not acknowledge a chunk), abandoned.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update

from .db import Database, replay_jobs
from .deadletters import ATTEMPT_HEADER, Filter, new_attempt
from .errors import HubError
from .replay import ReplayRefused, prepare
from .retry import now_utc

if TYPE_CHECKING:
    from .ports import ReplayHub

log = logging.getLogger(__name__)
MAX_ERRORS = 20


@dataclass
class Progress:
    done: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    def fail(self, count: int, why: str) -> None:
        self.failed += count
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(why)


class ReplayJobStore:
    """The ``replay_jobs`` table."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, job_id: str, flt: Filter, total: int, instance: str) -> None:
        now = now_utc()
        row = {
            "id": job_id,
            "filter": {k: _json(v) for k, v in asdict(flt).items() if v is not None},
            "status": "running",
            "total": total,
            "done": 0,
            "failed": 0,
            "errors": [],
            "started_at": now,
            "instance": instance,
            "heartbeat_at": now,
            "cancel_requested": False,
        }
        async with self.db.engine.begin() as conn:
            await conn.execute(replay_jobs.insert(), [row])

    async def progress(self, job_id: str, progress: Progress) -> bool:
        """Store the progress (and a heartbeat); True when a cancel was asked."""
        c = replay_jobs.c
        async with self.db.engine.begin() as conn:
            await conn.execute(
                update(replay_jobs)
                .where(c.id == job_id)
                .values(**asdict(progress), heartbeat_at=now_utc())
            )
            asked = await conn.execute(select(c.cancel_requested).where(c.id == job_id))
            return bool(asked.scalar_one_or_none())

    async def finish(self, job_id: str, status: str, progress: Progress, error: str | None) -> None:
        now = now_utc()
        async with self.db.engine.begin() as conn:
            await conn.execute(
                update(replay_jobs)
                .where(replay_jobs.c.id == job_id, replay_jobs.c.status == "running")
                .values(
                    **asdict(progress),
                    status=status,
                    error=error,
                    finished_at=now,
                    heartbeat_at=now,
                )
            )

    async def heartbeat(self, instance: str) -> None:
        c = replay_jobs.c
        async with self.db.engine.begin() as conn:
            await conn.execute(
                update(replay_jobs)
                .where(c.instance == instance, c.status == "running")
                .values(heartbeat_at=now_utc())
            )

    async def cancel(self, job_id: str, lease_s: float) -> None:
        """Ask the job's process to stop; a job whose process is gone is cancelled at once."""
        c = replay_jobs.c
        now = now_utc()
        async with self.db.engine.begin() as conn:
            await conn.execute(
                update(replay_jobs)
                .where(c.id == job_id, c.status == "running")
                .values(cancel_requested=True)
            )
            await conn.execute(
                update(replay_jobs)
                .where(
                    c.id == job_id,
                    c.status == "running",
                    c.heartbeat_at < now - timedelta(seconds=lease_s),
                )
                .values(
                    status="cancelled",
                    finished_at=now,
                    error="cancelled after its hub process stopped answering",
                )
            )

    async def get(self, job_id: str) -> dict[str, Any] | None:
        async with self.db.engine.connect() as conn:
            row = (
                await conn.execute(select(replay_jobs).where(replay_jobs.c.id == job_id))
            ).first()
            return dict(row._mapping) if row is not None else None

    async def search(
        self, status: str | None, limit: int, offset: int
    ) -> tuple[int, list[dict[str, Any]]]:
        c = replay_jobs.c
        where = [c.status == status] if status else []
        async with self.db.engine.connect() as conn:
            total = (
                await conn.execute(select(func.count()).select_from(replay_jobs).where(*where))
            ).scalar_one()
            rows = await conn.execute(
                select(replay_jobs)
                .where(*where)
                .order_by(c.started_at.desc(), c.id)
                .limit(limit)
                .offset(offset)
            )
            return int(total), [dict(r._mapping) for r in rows]


class ReplayJobs:
    """Starts jobs in this process; reads and cancels any process's jobs."""

    CHUNK = 200
    HEARTBEAT_S = 5.0
    LEASE_S = 30.0

    def __init__(self, hub: ReplayHub) -> None:
        self.hub = hub
        self.store = ReplayJobStore(hub.db)
        self.instance = hub.db.instance
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stopping = False
        self._heartbeat: asyncio.Task[None] | None = None

    async def start(self, flt: Filter) -> dict[str, Any]:
        ids = await self.hub.deadletters.ids(flt)
        job_id = str(uuid.uuid4())
        await self.store.create(job_id, flt, len(ids), self.instance)
        self._tasks[job_id] = asyncio.create_task(self._run(job_id, ids), name=f"replay-{job_id}")
        if self._heartbeat is None or self._heartbeat.done():
            self._heartbeat = asyncio.create_task(self._beat(), name="replay-heartbeat")
        job = await self.get(job_id)
        assert job is not None
        return job

    async def get(self, job_id: str) -> dict[str, Any] | None:
        row = await self.store.get(job_id)
        return self.view(row) if row is not None else None

    async def search(
        self, status: str | None = None, limit: int = 100, offset: int = 0
    ) -> tuple[int, list[dict[str, Any]]]:
        total, rows = await self.store.search(status, limit, offset)
        return total, [self.view(r) for r in rows]

    async def cancel(self, job_id: str) -> dict[str, Any] | None:
        await self.store.cancel(job_id, self.LEASE_S)
        return await self.get(job_id)

    async def _run(self, job_id: str, ids: list[str]) -> None:
        hub = self.hub
        progress = Progress()
        status, error = "finished", None
        try:
            for start in range(0, len(ids), self.CHUNK):
                if await self.store.progress(job_id, progress):
                    status = "cancelled"
                    break
                if self._stopping:
                    status, error = "cancelled", "the hub stopped"
                    break
                chunk = ids[start : start + self.CHUNK]
                rows = await hub.deadletters.get_many(chunk)
                attempts: list[dict[str, Any]] = []
                records = []
                for id_ in chunk:
                    try:
                        row = rows.get(id_)
                        if row is None:
                            raise ReplayRefused(404, "not_found", f"no dead letter {id_}")
                        topic, value, headers, edited = prepare(hub, row)
                    except HubError as exc:
                        progress.fail(1, f"{id_}: {exc}")
                        continue
                    attempt = new_attempt(id_, False, edited, job_id)
                    headers.append((ATTEMPT_HEADER, attempt["id"].encode()))
                    attempts.append(attempt)
                    records.append((topic, row["key"], value, headers))
                await hub.deadletters.begin_replays(attempts)
                try:
                    await hub.publisher.wait([hub.publisher.send_raw(*r) for r in records])
                except HubError as exc:  # not acknowledged: not marked; the job stops here
                    await hub.deadletters.replays_not_sent(attempts, str(exc))
                    progress.fail(len(attempts), f"chunk from {chunk[0]}: {exc}")
                    status, error = "failed", str(exc)
                    break
                await hub.deadletters.replays_sent(attempts)
                progress.done += len(attempts)
        except Exception as exc:
            log.exception("replay job %s failed", job_id)
            status, error = "failed", f"{type(exc).__name__}: {exc}"
        finally:
            try:
                await self.store.finish(job_id, status, progress, error)
            except Exception as exc:  # its heartbeat stops: it shows as abandoned
                log.error("replay job %s: could not record its end: %s", job_id, exc)

    async def _beat(self) -> None:
        """Renew the heartbeat of this process's running jobs while there are any."""
        while any(not t.done() for t in self._tasks.values()):
            await asyncio.sleep(self.HEARTBEAT_S)
            try:
                await self.store.heartbeat(self.instance)
            except Exception as exc:  # the next beat tries again
                log.warning("replay jobs' heartbeat: %s", exc)

    async def wait(self, job_id: str) -> None:
        task = self._tasks.get(job_id)
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    async def close(self) -> None:
        self._stopping = True
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)

    def view(self, row: dict[str, Any]) -> dict[str, Any]:
        """A job as the API shows it; ``state`` says what became of it."""
        state = row["status"]
        beat = _utc(row["heartbeat_at"])
        if state == "running":
            if now_utc() - beat > timedelta(seconds=self.LEASE_S):
                state = "abandoned"
            elif row["cancel_requested"]:
                state = "cancelling"
        return {
            "id": row["id"],
            "state": state,
            "total": row["total"],
            "done": row["done"],
            "failed": row["failed"],
            "errors": row["errors"],
            "error": row["error"],
            "filter": row["filter"],
            "started_at": _utc(row["started_at"]).isoformat(),
            "finished_at": _iso(row["finished_at"]),
            "heartbeat_at": beat.isoformat(),
            "instance": row["instance"],
            "cancel_requested": row["cancel_requested"],
        }


def _json(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _utc(value: datetime) -> datetime:
    """SQLite gives back naive datetimes (stored as UTC)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _iso(value: datetime | None) -> str | None:
    return _utc(value).isoformat() if value is not None else None
