"""``/api``: the operator's API — dead letters: list, inspect, replay (as is or edited),
replay in bulk with progress, discard; events parked for a retry; destinations' circuits and
pauses; polling sources' cursors.

Access: with ``HUB_OPS_TOKEN`` set, requests need ``Authorization: Bearer <token>``; without
it, the API answers only when the hub listens on a loopback address (the development default),
and only requests addressed to a loopback name or address (``Host``: no DNS rebinding).
Writes (POST, PUT, PATCH, DELETE), token or not, are refused when a browser says they come from
a page of another origin (``Origin``, ``Sec-Fetch-Site``) unless that origin is in
``HUB_OPS_ALLOWED_ORIGINS``, and take a body only as ``application/json``: the requests a
page elsewhere can send without a CORS preflight are refused.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from hub.auth import CSRF_HEADER, SESSION_COOKIE, Auth, Principal, audit_body, expect_write
from hub.circuits import CircuitStore
from hub.db import api_tokens, dead_letters, mdm_reviews, users
from hub.deadletters import Filter, decode_cursor, encode_cursor
from hub.polling import CursorStore
from hub.replay import UNCHANGED, ReplayRefused, replay
from hub.retry import RetryTable
from hub.settings import Settings
from hub.workers.delivery import DeliveryWorker

from .deps import HubDep, ProbeDep, listening_host

if TYPE_CHECKING:
    from hub.ports import ProbedHub

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MAX_OFFSET = 2**63 - 1  # the largest OFFSET SQLite and PostgreSQL (bigint) take
MAX_ROW_ID = 2**31 - 1  # an Integer primary key: 32 bits on PostgreSQL
STATUSES = ("open", "replayed", "discarded")


class OpsError(Exception):
    """A refusal of the ops API, answered as ``{"error": code, "message": message}``."""

    def __init__(self, status: int, message: str, code: str = "forbidden") -> None:
        self.status = status
        self.code = code
        self.message = message


class ErrorBody(BaseModel):
    error: str
    message: str


_MEANING = {
    400: "Bad filter or unparseable JSON body",
    401: "Missing or wrong bearer token, API token or session",
    403: "Refused: the role may not, a write from another web origin or without its CSRF "
    "token, or not a loopback Host without credentials",
    404: "No such item",
    409: "Not possible in the item's current state",
    415: "A write with a body that is not application/json",
    422: "Invalid parameter or body",
    503: "The broker did not acknowledge the replay",
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the refusals a route gives, all of them :class:`ErrorBody`."""
    return {s: {"model": ErrorBody, "description": _MEANING[s]} for s in statuses}


async def require_operator(request: Request, hub: ProbeDep) -> Principal:
    """Who asks (a session cookie, an API token, ``HUB_OPS_TOKEN``, or on a loopback hub
    without it, the local operator), whether their role may, and for writes the origin, the
    content type and a session's CSRF token. Stored as ``request.state.principal``."""
    principal = await _principal(request, hub)
    request.state.principal = principal
    if request.method in WRITES:
        _check_origin(request, hub.settings)
        _check_content_type(request)
        if principal.csrf is not None:
            given = request.headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(given.encode(), principal.csrf.encode()):
                raise OpsError(403, "missing or wrong CSRF token (X-CSRF-Token)", "csrf")
    needed = needed_role(request.method, request.url.path)
    if not principal.can(needed):
        raise OpsError(403, f"this needs the role {needed}; {principal.actor} is {principal.role}")
    if request.method in WRITES:
        # The audit row goes into the transaction of the first change the write makes
        # (hub.auth.expect_write); its status and answer are added once answered
        # (hub.api.auth.audit_and_mask). The body as FastAPI read it.
        path = request.url.path
        before = await _before(hub, path)
        body = await request.body()
        pending = expect_write(
            principal.actor,
            f"{request.method} {path.removeprefix('/api')}",
            path,
            before,
            {"request": audit_body(body)},
            request.client.host if request.client is not None else None,
        )
        request.state.audit = {"before": before, "body": body, "pending": pending}
    return principal


def needed_role(method: str, path: str) -> str:
    """The least role a request needs: admin for users, tokens and the audit log; for other
    writes steward under ``/api/mdm``, operator elsewhere; viewer for other reads."""
    if path.startswith(("/api/users", "/api/tokens", "/api/audit")):
        return "admin"
    if method not in WRITES:
        return "viewer"
    if path.startswith("/api/mdm"):
        return "steward"
    return "operator"


async def _principal(request: Request, hub: ProbedHub) -> Principal:
    settings = hub.settings
    token = settings.ops_token
    given = request.headers.get("authorization")
    if given is not None:
        if token is not None and hmac.compare_digest(
            given.encode(), f"Bearer {token.get_secret_value()}".encode()
        ):
            return Principal("ops-token", "admin")
        scheme, _, value = given.partition(" ")
        found = await Auth(hub.db).token(value.strip()) if scheme.lower() == "bearer" else None
        if found is None:
            raise OpsError(401, "missing or wrong bearer token")
        return found
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie is not None:
        found = await Auth(hub.db).session(cookie)
        if found is None:
            raise OpsError(401, "the session has expired or ended; log in again")
        return found
    if token is not None:
        raise OpsError(401, "missing or wrong bearer token")
    listening = listening_host(request)
    if not _loopback(listening):
        raise OpsError(
            403,
            "the ops API and /metrics are off on non-loopback addresses until HUB_OPS_TOKEN is set",
        )
    if not _loopback_host(request.headers.get("host"), listening):
        raise OpsError(
            403,
            "without HUB_OPS_TOKEN the ops API and /metrics answer only requests to a loopback "
            "address or to localhost",
        )
    return Principal("local", "admin")


_DEAD_LETTER_WRITE = re.compile(r"/api/deadletters/([^/]+)/[a-z-]+")
_USER_WRITE = re.compile(r"/api/users/([^/]+)")
_TOKEN_WRITE = re.compile(r"/api/tokens/([^/]+)")
_REVIEW_WRITE = re.compile(r"/api/mdm/reviews/([0-9]{1,9})/[a-z]+")


async def _before(hub: ProbedHub, path: str) -> Any:
    """What the audit log keeps as a write's "before": the state of what it changes — a dead
    letter's status and replays, a user (role, disabled), a token (role, revoked), a review
    task's status."""
    queries: list[tuple[re.Pattern[str], Any]] = [
        (
            _DEAD_LETTER_WRITE,
            lambda key: select(dead_letters.c.status, dead_letters.c.replays).where(
                dead_letters.c.id == key
            ),
        ),
        (
            _USER_WRITE,
            lambda key: select(users.c.name, users.c.role, users.c.disabled).where(
                users.c.name == key
            ),
        ),
        (
            _TOKEN_WRITE,
            lambda key: select(api_tokens.c.name, api_tokens.c.role, api_tokens.c.revoked_at).where(
                api_tokens.c.id == key
            ),
        ),
        (
            _REVIEW_WRITE,
            lambda key: select(mdm_reviews.c.status, mdm_reviews.c.golden_id).where(
                mdm_reviews.c.id == int(key)
            ),
        ),
    ]
    for pattern, query in queries:
        m = pattern.fullmatch(path)
        if m is None or "\x00" in m[1]:  # PostgreSQL refuses NUL in text
            continue
        async with hub.db.engine.connect() as conn:
            row = (await conn.execute(query(m[1]))).first()
        if row is None:
            return None
        return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row._mapping.items()}
    return None


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _loopback_host(header: str | None, listening: str) -> bool:
    """Whether a request's ``Host`` names this hub on loopback (a name that resolves
    elsewhere, say by DNS rebinding, does not). No ``Host``: not from a browser."""
    if header is None:
        return True
    name = urlsplit(f"//{header}").hostname or ""
    return _loopback(name) or name == listening.lower()


def _origin(url: str) -> tuple[str, str, int] | None:
    """Scheme, host and port of an origin or URL; None for ``null`` or anything unparseable."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def _check_origin(request: Request, settings: Settings) -> None:
    origin = request.headers.get("origin")
    allowed = origin is not None and _origin(origin) in {
        _origin(o) for o in settings.ops_allowed_origins
    }
    if allowed:
        return
    if origin is not None:
        own = _origin(f"{request.url.scheme}://{request.headers.get('host', '')}")
        if own is None or _origin(origin) != own:
            raise OpsError(
                403,
                "a web page of another origin may not change anything here; a dashboard "
                "served elsewhere needs its origin in HUB_OPS_ALLOWED_ORIGINS",
            )
    if request.headers.get("sec-fetch-site", "").lower() == "cross-site":
        raise OpsError(403, "a cross-site request may not change anything here")


def _check_content_type(request: Request) -> None:
    """A body only as JSON; no content type only without a body. Forms and text/plain are
    what a page elsewhere can send without asking first (a CORS "simple request")."""
    kind = request.headers.get("content-type")
    if kind is not None:
        media = kind.split(";")[0].strip().lower()
        if media == "application/json" or (
            media.startswith("application/") and media.endswith("+json")
        ):
            return
        raise OpsError(
            415, f"expected application/json, got {media or 'nothing'}", "unsupported_media_type"
        )
    length = request.headers.get("content-length", "0").strip()
    if "transfer-encoding" in request.headers or length not in ("", "0"):
        raise OpsError(415, "a body needs content-type: application/json", "unsupported_media_type")


router = APIRouter(
    prefix="/api",
    tags=["ops"],
    dependencies=[Depends(require_operator)],
    responses=responses(401, 403),
)


class ReplayBody(BaseModel):
    payload: Any = None


_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})"
)
_TIME = "RFC 3339 date-time with its offset, e.g. 2026-12-01T00:00:00Z"


def _time(name: str, text: str | None) -> datetime | None:
    if text is None:
        return None
    if _RFC3339.fullmatch(text.upper()):
        try:
            return datetime.fromisoformat(text.upper()).astimezone(UTC)
        except (ValueError, OverflowError):
            pass
    raise OpsError(400, f"{name}: expected an {_TIME}, got {text!r}", "invalid_filter")


def _filter(
    status: Annotated[str | None, Query(description=f"One of {', '.join(STATUSES)}")] = None,
    stage: str | None = None,
    connection: str | None = None,
    destination: str | None = None,
    error_class: str | None = None,
    since: Annotated[str | None, Query(description=f"Failed at or after: {_TIME}")] = None,
    until: Annotated[str | None, Query(description=f"Failed before: {_TIME}")] = None,
    q: Annotated[
        str | None,
        Query(max_length=200, description="Free text in the payload or the error, any case"),
    ] = None,
    correlation_id: str | None = None,
) -> Filter:
    if status is not None and status not in STATUSES:
        raise OpsError(
            400, f"status: expected one of {', '.join(STATUSES)}, got {status!r}", "invalid_filter"
        )
    return Filter(
        status,
        stage,
        connection,
        destination,
        error_class,
        _time("since", since),
        _time("until", until),
        q or None,
        correlation_id,
    )


FilterDep = Annotated[Filter, Depends(_filter)]


Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET)]
Limit = Annotated[int, Query(ge=1, le=1000)]
# an item's id in a path: PostgreSQL refuses NUL in text, so it is refused here (422)
ItemId = Annotated[str, Path(max_length=255, pattern=r"^[^\x00]*$")]


@router.get("/deadletters", responses=responses(400))
async def list_dead_letters(
    hub: HubDep,
    flt: FilterDep,
    limit: Limit = 100,
    offset: Offset = 0,
    after: Annotated[
        str | None,
        Query(max_length=400, description="The ``next`` of the page before (keyset pages)"),
    ] = None,
) -> dict[str, Any]:
    """Dead letters, newest first, as summaries: the payload's size and first characters
    (``payload_bytes``, ``payload_preview``); the item has the payload. Page with
    ``after=<next>`` (keyset: as fast on the 1000th page as on the first) or ``offset``."""
    cursor = None
    if after is not None:
        cursor = decode_cursor(after)
        if cursor is None:
            raise OpsError(400, "after: not a cursor this API gave (its next)", "invalid_filter")
    total, items = await hub.deadletters.search(flt, limit, offset, cursor)
    nxt = None
    if len(items) == limit:
        last = items[-1]
        nxt = encode_cursor(datetime.fromisoformat(last["failed_at"]), last["id"])
    return {"total": total, "items": items, "next": nxt}


@router.get("/deadletters/{id_}", responses=responses(404))
async def get_dead_letter(id_: ItemId, hub: HubDep) -> JSONResponse:
    """One dead letter whole: payload, headers, the last edit sent, every replay attempt
    with its outcomes."""
    item = await hub.deadletters.item(id_)
    if item is None:
        return _error(404, "not_found", f"no dead letter {id_}")
    return JSONResponse(item)


@router.post("/deadletters/{id_}/replay", responses=responses(400, 404, 409, 415, 503))
async def replay_dead_letter(
    id_: ItemId, hub: HubDep, body: ReplayBody | None = None
) -> JSONResponse:
    """Replay as it is, or with ``{"payload": ...}``: an edited value, checked first (422 when
    it still fails). Without a payload, the last edited payload is sent again if there is
    one, else the original. Every replay is an attempt of its own."""
    payload = body.payload if body is not None and "payload" in body.model_fields_set else UNCHANGED
    try:
        return JSONResponse(await replay(hub, id_, payload))
    except ReplayRefused as exc:
        return _error(exc.status, exc.code, str(exc))


@router.post("/deadletters/{id_}/discard", responses=responses(404, 409, 415))
async def discard_dead_letter(id_: ItemId, hub: HubDep) -> JSONResponse:
    """Discard an open dead letter (again: nothing changes); a replayed one is 409."""
    changed, status = await hub.deadletters.discard(id_)
    if status is None:
        return _error(404, "not_found", f"no dead letter {id_}")
    if status == "replayed":
        return _error(
            409,
            "replayed",
            f"dead letter {id_} was replayed; its replay attempts say what became of it",
        )
    return JSONResponse({"id": id_, "status": status, "changed": changed})


@router.post("/replays", status_code=202, responses=responses(400, 415))
async def start_bulk_replay(hub: HubDep, flt: FilterDep) -> dict[str, Any]:
    """Replay every dead letter matching the filter (default: status=open), as a job that this
    process runs and any process reports on (``GET /api/replays/{id}``) or cancels."""
    if flt.status is None:
        flt.status = "open"
    return await hub.replays.start(flt)


JOB_STATUSES = ("running", "finished", "cancelled", "failed")


@router.get("/replays", responses=responses(400))
async def list_bulk_replays(
    hub: HubDep,
    status: Annotated[str | None, Query(description=f"One of {', '.join(JOB_STATUSES)}")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    """Bulk replay jobs of every hub process, newest first. A running job whose process
    stopped answering shows ``state: abandoned``; one asked to stop, ``cancelling``."""
    if status is not None and status not in JOB_STATUSES:
        raise OpsError(
            400,
            f"status: expected one of {', '.join(JOB_STATUSES)}, got {status!r}",
            "invalid_filter",
        )
    total, items = await hub.replays.search(status, limit, offset)
    return {"total": total, "items": items}


@router.get("/replays/{job_id}", responses=responses(404))
async def bulk_replay_progress(job_id: ItemId, hub: HubDep) -> JSONResponse:
    job = await hub.replays.get(job_id)
    if job is None:
        return _error(404, "not_found", f"no replay job {job_id}")
    return JSONResponse(job)


@router.delete("/replays/{job_id}", responses=responses(404, 415))
async def cancel_bulk_replay(job_id: ItemId, hub: HubDep) -> JSONResponse:
    """Stop a job before its next chunk (``cancelling`` until its process stops it; a job whose
    process is gone is ``cancelled`` at once). An ended job is left as it is."""
    job = await hub.replays.cancel(job_id)
    if job is None:
        return _error(404, "not_found", f"no replay job {job_id}")
    return JSONResponse(job)


@router.get("/retries")
async def list_parked(
    hub: HubDep,
    worker: str | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    """Events parked for a retry (oldest first), with attempts, next attempt and last error.
    ``worker`` is a consumer group, e.g. ``hub.deliver.erp`` or ``hub.mapper``."""
    total, rows = await RetryTable(hub.db).search(worker, limit, offset)
    return {"total": total, "items": rows}


@router.post("/retries/{id_}/retry-now", responses=responses(404, 415))
async def retry_parked_now(
    id_: Annotated[int, Path(ge=1, le=MAX_ROW_ID)], hub: HubDep
) -> JSONResponse:
    """Make a parked event due now; it is retried within a poll interval (its key's order is
    kept: an event waiting behind another still waits)."""
    if not await RetryTable(hub.db).retry_now(id_):
        return _error(404, "not_found", f"no parked event {id_}")
    return JSONResponse({"id": id_, "status": "due"})


@router.get("/destinations")
async def destinations(hub: HubDep) -> dict[str, Any]:
    """Each destination: its circuit as every delivery process shares it (``closed``, ``open``,
    or ``half-open``: open and its time up, a probe may go; who decided it last and when) and
    parked events; ``keys_waiting`` when its worker runs in this process."""
    parked = await RetryTable(hub.db).counts()
    shared = await CircuitStore(hub.db).views()
    running = {w.destination: w for w in hub.workers if isinstance(w, DeliveryWorker)}
    out = []
    for name in sorted(hub.config.sinks()):
        worker = running.get(name)
        circuit = shared.get(name)
        out.append(
            {
                "name": name,
                "routes": [r.name for r in hub.config.outbound_for(name)],
                "circuit": circuit.state if circuit is not None else "closed",
                "next_probe_in_s": round(circuit.next_probe_in_s, 3) if circuit else 0.0,
                "circuit_opened_at": _iso(circuit.opened_at) if circuit else None,
                "circuit_changed_by": circuit.updated_by if circuit else None,
                "parked": parked.get(hub.settings.delivery_group(name), 0),
                "keys_waiting": len(worker.blocked) if worker is not None else None,
                "pause": circuit.pause.as_json() if circuit and circuit.pause else None,
            }
        )
    return {"items": out, "mapper_parked": parked.get(hub.settings.mapper_group, 0)}


class PauseBody(BaseModel):
    """Why: shown with the pause in ``/api/destinations``, the log and the audit log."""

    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(None, max_length=500)


DestinationName = Annotated[str, Path(min_length=1, max_length=64)]


@router.post("/destinations/{name}/pause", responses=responses(404, 415, 422))
async def pause_destination(
    name: DestinationName, hub: HubDep, request: Request, body: PauseBody | None = None
) -> JSONResponse:
    """Stop sending to a destination from every hub process until it is resumed (say, the ERP's
    maintenance window): its events wait in Kafka, none is dead-lettered and no retry is spent;
    parked events wait too. Takes effect within ``HUB_BREAKER_SYNC_INTERVAL_S``; what a worker
    had fetched already, one batch at most, is still sent. Pausing a paused destination keeps
    the first pause (``changed``: false)."""
    if name not in hub.config.sinks():
        return _error(404, "not_found", f"no destination {name}")
    who: Principal = request.state.principal
    pause, changed = await CircuitStore(hub.db).pause(
        name, who.actor, body.reason if body is not None else None, hub.db.instance
    )
    return JSONResponse({"name": name, "pause": pause.as_json(), "changed": changed})


@router.post("/destinations/{name}/resume", responses=responses(404, 415))
async def resume_destination(name: DestinationName, hub: HubDep) -> JSONResponse:
    """Send to a paused destination again: each process carries on from the event it stopped
    at, within ``HUB_BREAKER_SYNC_INTERVAL_S``. ``lifted``: the pause ended (null: there was
    none)."""
    if name not in hub.config.sinks():
        return _error(404, "not_found", f"no destination {name}")
    lifted = await CircuitStore(hub.db).resume(name)
    return JSONResponse(
        {"name": name, "pause": None, "lifted": lifted.as_json() if lifted else None}
    )


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
