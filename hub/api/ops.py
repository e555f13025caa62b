"""``/api``: the operator's API — dead letters: list, inspect, replay (as is or edited),
replay in bulk with progress, discard; events parked for a retry; destinations' circuits;
polling sources' cursors.

Access: with ``HUB_OPS_TOKEN`` set, requests need ``Authorization: Bearer <token>``; without
it, the API answers only when the hub listens on a loopback address (the development default).
"""

from __future__ import annotations

import hmac
import ipaddress
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from hub.deadletters import Filter, public
from hub.polling import CursorStore
from hub.replay import UNCHANGED, ReplayJobs, ReplayRefused, replay
from hub.retry import RetryTable
from hub.workers.delivery import DeliveryWorker

from .deps import HubDep


class OpsDenied(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message


def require_operator(request: Request, hub: HubDep) -> None:
    token = hub.settings.ops_token
    if token is not None:
        given = request.headers.get("authorization", "")
        expected = f"Bearer {token.get_secret_value()}"
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise OpsDenied(401, "missing or wrong bearer token")
        return
    if not _loopback(hub.settings.http_host):
        raise OpsDenied(
            403, "the ops API is off on non-loopback addresses until HUB_OPS_TOKEN is set"
        )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


router = APIRouter(prefix="/api", tags=["ops"], dependencies=[Depends(require_operator)])


class ReplayBody(BaseModel):
    payload: Any = None


def _filter(
    status: str | None = None,
    stage: str | None = None,
    connection: str | None = None,
    destination: str | None = None,
    error_class: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Filter:
    return Filter(status, stage, connection, destination, error_class, since, until)


FilterDep = Annotated[Filter, Depends(_filter)]


@router.get("/deadletters")
async def list_dead_letters(
    hub: HubDep,
    flt: FilterDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    total, rows = await hub.deadletters.search(flt, limit, offset)
    return {"total": total, "items": [public(r) for r in rows]}


@router.get("/deadletters/{id_}")
async def get_dead_letter(id_: str, hub: HubDep) -> JSONResponse:
    row = await hub.deadletters.get(id_)
    if row is None:
        return _error(404, "not_found", f"no dead letter {id_}")
    return JSONResponse(public(row))


@router.post("/deadletters/{id_}/replay")
async def replay_dead_letter(id_: str, hub: HubDep, body: ReplayBody | None = None) -> JSONResponse:
    """Replay as it is, or with ``{"payload": ...}``: an edited value, checked first."""
    payload = body.payload if body is not None and "payload" in body.model_fields_set else UNCHANGED
    try:
        return JSONResponse(await replay(hub, id_, payload))
    except ReplayRefused as exc:
        return _error(exc.status, exc.code, str(exc))


@router.post("/deadletters/{id_}/discard")
async def discard_dead_letter(id_: str, hub: HubDep) -> JSONResponse:
    if await hub.deadletters.get(id_) is None:
        return _error(404, "not_found", f"no dead letter {id_}")
    changed = await hub.deadletters.discard(id_)
    return JSONResponse({"id": id_, "status": "discarded", "changed": changed})


@router.post("/replays", status_code=202)
async def start_bulk_replay(hub: HubDep, flt: FilterDep) -> dict[str, Any]:
    """Replay every dead letter matching the filter (default: status=open)."""
    if flt.status is None:
        flt.status = "open"
    return ReplayJobs.view(await hub.replays.start(flt))


@router.get("/replays/{job_id}")
async def bulk_replay_progress(job_id: str, hub: HubDep) -> JSONResponse:
    job = hub.replays.jobs.get(job_id)
    if job is None:
        return _error(404, "not_found", f"no replay job {job_id}")
    return JSONResponse(ReplayJobs.view(job))


@router.delete("/replays/{job_id}")
async def cancel_bulk_replay(job_id: str, hub: HubDep) -> JSONResponse:
    job = hub.replays.cancel(job_id)
    if job is None:
        return _error(404, "not_found", f"no replay job {job_id}")
    return JSONResponse(ReplayJobs.view(job))


@router.get("/retries")
async def list_parked(
    hub: HubDep,
    worker: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    """Events parked for a retry (oldest first), with attempts, next attempt and last error.
    ``worker`` is a consumer group, e.g. ``hub.deliver.erp`` or ``hub.mapper``."""
    total, rows = await RetryTable(hub.db).search(worker, limit, offset)
    return {"total": total, "items": rows}


@router.post("/retries/{id_}/retry-now")
async def retry_parked_now(id_: int, hub: HubDep) -> JSONResponse:
    """Make a parked event due now; it is retried within a poll interval (its key's order is
    kept: an event waiting behind another still waits)."""
    if not await RetryTable(hub.db).retry_now(id_):
        return _error(404, "not_found", f"no parked event {id_}")
    return JSONResponse({"id": id_, "status": "due"})


@router.get("/destinations")
async def destinations(hub: HubDep) -> dict[str, Any]:
    """Each destination: its circuit (when its worker runs in this process) and parked events."""
    parked = await RetryTable(hub.db).counts()
    running = {w.destination: w for w in hub.workers if isinstance(w, DeliveryWorker)}
    out = []
    for name in sorted(hub.config.sinks()):
        worker = running.get(name)
        breaker = worker.breaker if worker is not None else None
        out.append(
            {
                "name": name,
                "routes": [r.name for r in hub.config.outbound_for(name)],
                "circuit": breaker.state if breaker is not None else None,
                "next_probe_in_s": round(breaker.retry_in(), 3) if breaker is not None else None,
                "parked": parked.get(hub.settings.delivery_group(name), 0),
                "keys_waiting": len(worker.blocked) if worker is not None else None,
            }
        )
    return {"items": out, "mapper_parked": parked.get(hub.settings.mapper_group, 0)}


@router.get("/sources")
async def sources(hub: HubDep) -> dict[str, Any]:
    """Each polling connection: its stored cursor, when it last moved, who holds the lease, and
    (when its poller runs in this process) its polls and last error."""
    rows = await CursorStore(hub.db).all()
    out = []
    for name, source in sorted(hub.config.polling_sources().items()):
        row = rows.get(name, {})
        poller = hub.pollers.get(name)
        until = row.get("lease_until")
        out.append(
            {
                "name": name,
                "connector": source.name,
                "cursor": row.get("cursor"),
                "cursor_moved_at": _iso(row.get("polled_at")),
                "polled_here": poller is not None and row.get("owner") == poller.owner,
                "lease_until": _iso(until),
                "polls": poller.polls if poller is not None else None,
                "last_error": poller.last_error if poller is not None else None,
            }
        )
    return {"items": out}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status)
