"""Replaying dead letters into the stage where they failed, one or many (as a cancellable job).

Every replay is an attempt of its own, recorded before it is sent and carried by the replayed
record (``hub_replay_attempt``), so each outcome the hub learns goes to the attempt it belongs
to and none overwrites another. A replay without an edit sends what the last replay sent: the
last edited payload if there was one, else the original record."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from . import exactjson
from .canonical import validate
from .deadletters import ATTEMPT_HEADER, REPLAY_HEADER, REPLAY_HEADERS, Filter, new_attempt
from .envelope import from_kafka
from .errors import HubError, ProcessingError

if TYPE_CHECKING:
    from .ports import ReplayHub

UNCHANGED: Any = object()


class ReplayRefused(HubError):
    """A replay cannot be done as asked; ``status`` is the HTTP answer."""

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status = status
        self.code = code
        super().__init__(message)


async def replay(hub: ReplayHub, id_: str, payload: Any = UNCHANGED) -> dict[str, Any]:
    """Republish one dead letter; with ``payload``, that edited value after checking it."""
    row = await hub.deadletters.get(id_)
    if row is None:
        raise ReplayRefused(404, "not_found", f"no dead letter {id_}")
    topic, value, headers, edited = _prepare(hub, row, payload)
    attempt = new_attempt(id_, payload is not UNCHANGED, edited)
    await hub.deadletters.begin_replays([attempt])
    headers.append((ATTEMPT_HEADER, attempt["id"].encode()))
    try:
        await hub.publisher.wait([hub.publisher.send_raw(topic, row["key"], value, headers)])
    except HubError as exc:
        await hub.deadletters.replays_not_sent([attempt], str(exc))
        raise ReplayRefused(503, "broker_unavailable", f"not replayed: {exc}") from None
    await hub.deadletters.replays_sent([attempt])
    return {
        "id": id_,
        "status": "replayed",
        "topic": topic,
        "edited": attempt["edited"],
        "attempt": attempt["id"],
    }


def _prepare(
    hub: ReplayHub, row: dict[str, Any], payload: Any = UNCHANGED
) -> tuple[str, bytes | None, list[tuple[str, bytes]], bytes | None]:
    """The record a replay publishes: topic, value, headers (linking it to the dead letter),
    and the edited value it sends, if any (a new edit, else the last one)."""
    id_ = row["id"]
    if row["status"] == "discarded":
        raise ReplayRefused(409, "discarded", f"dead letter {id_} was discarded")
    headers = [(k, v.encode()) for k, v in row["headers"] if not k.startswith("hub_dlq_")]
    headers = [(k, v) for k, v in headers if k not in REPLAY_HEADERS]
    headers.append((REPLAY_HEADER, id_.encode()))
    edited = row["replayed_value"]
    if payload is not UNCHANGED:
        try:
            edited = json.dumps(payload, ensure_ascii=False).encode()
            check_edit(hub, row, headers, edited)
        except (RecursionError, exactjson.NestedTooDeeply):
            # json read it a few frames up the stack; it cannot write or read it here
            raise ReplayRefused(
                400, "malformed_payload", "the edited payload is nested too deeply"
            ) from None
    value = edited if edited is not None else row["value"]
    return row["source_topic"], value, headers, edited


def check_edit(
    hub: ReplayHub, row: dict[str, Any], headers: list[tuple[str, bytes]], value: bytes
) -> None:
    """An edited payload must pass the stage it goes back to, or the edit is refused."""
    topic = row["source_topic"]
    prefix = hub.settings.canonical_topic("")
    try:
        if topic.startswith(prefix):
            validate(topic.removeprefix(prefix), json.loads(value))
        elif topic == hub.settings.ingest_topic and row.get("mapping"):
            mapping = hub.mappings.get(row["mapping"])
            if mapping is None:
                raise ReplayRefused(
                    409, "mapping_gone", f"mapping {row['mapping']} is no longer loaded"
                )
            event = from_kafka(row["key"], value, headers)
            meta = {
                "connection": event.extensions.get("hubconnection", ""),
                "event_type": event.extensions.get("hubevent", ""),
                "event_id": event.id,
                "subject": event.subject,
            }
            # read as the mapper reads raw events: amounts as exact decimals
            data = exactjson.loads(value)
            result = mapping.apply(data, meta, hub.resolver)
            if result is not None and mapping.target_entity:
                validate(mapping.target_entity, result)
    except ProcessingError as exc:
        raise ReplayRefused(
            422, "edit_rejected", f"the edited payload still fails: {exc}"
        ) from None


@dataclass
class ReplayJob:
    id: str
    total: int
    done: int = 0
    failed: int = 0
    state: str = "running"  # running | finished | cancelled | failed
    errors: list[str] = field(default_factory=list)


class ReplayJobs:
    """Bulk replays run in the background; progress can be read and a job cancelled."""

    CHUNK = 200

    def __init__(self, hub: ReplayHub) -> None:
        self.hub = hub
        self.jobs: dict[str, ReplayJob] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    async def start(self, flt: Filter) -> ReplayJob:
        ids = await self.hub.deadletters.ids(flt)
        job = ReplayJob(str(uuid.uuid4()), len(ids))
        self.jobs[job.id] = job
        self._tasks[job.id] = asyncio.create_task(self._run(job, ids), name=f"replay-{job.id}")
        return job

    async def _run(self, job: ReplayJob, ids: list[str]) -> None:
        """In chunks: publish a chunk, wait for the broker's acks, mark it replayed; progress
        and cancellation take effect between chunks."""
        hub = self.hub
        for start in range(0, len(ids), self.CHUNK):
            if job.state == "cancelled":
                return
            chunk = ids[start : start + self.CHUNK]
            rows = await hub.deadletters.get_many(chunk)
            attempts: list[dict[str, Any]] = []
            records = []
            for id_ in chunk:
                try:
                    row = rows.get(id_)
                    if row is None:
                        raise ReplayRefused(404, "not_found", f"no dead letter {id_}")
                    topic, value, headers, edited = _prepare(hub, row)
                except HubError as exc:
                    job.failed += 1
                    if len(job.errors) < 20:
                        job.errors.append(f"{id_}: {exc}")
                    continue
                attempt = new_attempt(id_, False, edited, job.id)
                headers.append((ATTEMPT_HEADER, attempt["id"].encode()))
                attempts.append(attempt)
                records.append((topic, row["key"], value, headers))
            await hub.deadletters.begin_replays(attempts)
            try:
                await hub.publisher.wait([hub.publisher.send_raw(*r) for r in records])
            except HubError as exc:  # not acknowledged: not marked; the job stops here
                await hub.deadletters.replays_not_sent(attempts, str(exc))
                job.failed += len(attempts)
                job.errors.append(f"chunk from {chunk[0]}: {exc}")
                job.state = "failed"
                return
            await hub.deadletters.replays_sent(attempts)
            job.done += len(attempts)
        job.state = "finished"

    def cancel(self, job_id: str) -> ReplayJob | None:
        job = self.jobs.get(job_id)
        if job is not None and job.state == "running":
            job.state = "cancelled"
        return job

    async def wait(self, job_id: str) -> None:
        task = self._tasks.get(job_id)
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    async def close(self) -> None:
        for job in self.jobs.values():
            if job.state == "running":
                job.state = "cancelled"
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    @staticmethod
    def view(job: ReplayJob) -> dict[str, Any]:
        return asdict(job)
