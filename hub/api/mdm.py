"""``/api/mdm``: master data for stewards — look up by external id, a golden record whole
(crosswalk, field provenance, history), search, the review queue (accept as a match: merge;
reject: keep apart), merge, unmerge, data-quality counts (hub.mdm_service).

The same access rules as the rest of the ops API (:mod:`hub.api.ops`): the operator's token,
loopback only without one, no writes from pages of another origin, JSON bodies only. Writes
need the ``steward`` role; the steward a decision is recorded under is who is authenticated
(``steward:<user>``, ``steward:token:<id>``, ...), never a name given in the body, and each
write is audited like every other (:mod:`hub.api.auth`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, StringConstraints

from hub.auth import Principal
from hub.errors import MdmRefused
from hub.settings import ENTITIES

from .deps import HubDep
from .ops import MAX_OFFSET, MAX_ROW_ID, OpsError, require_operator, responses

router = APIRouter(
    prefix="/api/mdm",
    tags=["mdm"],
    dependencies=[Depends(require_operator)],
    responses=responses(401, 403),
)

_NO_NUL = r"^[^\x00]*$"  # PostgreSQL refuses NUL in text: refused here, not a 500 there
GoldenId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=_NO_NUL)]
System = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=_NO_NUL)]
ExternalId = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=_NO_NUL)]
Note = Annotated[str, StringConstraints(max_length=2000, pattern=_NO_NUL)]
Term = Annotated[str | None, Query(max_length=200, pattern=_NO_NUL)]
Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET)]
ReviewId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]
Steward = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=_NO_NUL)]
REVIEW_STATUSES = ("open", "accepted", "rejected")


def _entity(entity: Annotated[str, Path(max_length=32)]) -> str:
    if entity not in ENTITIES:
        raise OpsError(
            404, f"unknown entity {entity!r} (known: {', '.join(ENTITIES)})", "not_found"
        )
    return entity


EntityDep = Annotated[str, Depends(_entity)]


def _entity_filter(
    entity: Annotated[str | None, Query(max_length=32, description="Only this entity")] = None,
) -> str | None:
    if entity is not None and entity not in ENTITIES:
        raise OpsError(
            400,
            f"entity: expected one of {', '.join(ENTITIES)}, got {entity!r}",
            "invalid_filter",
        )
    return entity


EntityFilter = Annotated[str | None, Depends(_entity_filter)]


class Decision(BaseModel):
    steward: Steward | None = Field(
        None,
        description="Optional, and only the authenticated user's own name: who decides is who "
        "is authenticated (another name is refused, 422)",
    )
    reason: Note | None = None


class Accept(Decision):
    golden_id: GoldenId | None = Field(
        None, description="The candidate it is the same as (default: the best one)"
    )


class Merge(Decision):
    survivor: GoldenId
    merged: GoldenId


class Unmerge(Decision):
    merged: GoldenId


def _actor(request: Request, body: Decision | None) -> str:
    """The steward of a decision: the authenticated principal (set by the ops guard), as
    ``steward:<user>`` for a logged-in user, else ``steward:<actor>`` (``token:<id>``,
    ``ops-token``, ``local``). A ``steward`` in the body must be that user's own name."""
    principal: Principal = request.state.principal
    given = body.steward if body is not None else None
    if given is not None and given != principal.name:
        raise OpsError(
            422,
            f"steward: decisions are recorded under who is authenticated ({principal.actor}), "
            "not a name given in the body; leave steward out",
            "invalid_request",
        )
    return f"steward:{principal.actor.removeprefix('user:')}"


def _refused(exc: MdmRefused) -> JSONResponse:
    code = {404: "not_found", 409: "conflict", 422: "invalid_request"}.get(exc.status, "refused")
    return JSONResponse({"error": code, "message": str(exc)}, status_code=exc.status)


@router.get("/{entity}/lookup", responses=responses(404))
async def lookup(
    entity: EntityDep,
    hub: HubDep,
    system: Annotated[str, Query(min_length=1, max_length=64, pattern=_NO_NUL)],
    external_id: Annotated[str, Query(min_length=1, max_length=255, pattern=_NO_NUL)],
) -> JSONResponse:
    """The crosswalk row of ``external_id`` in ``system``: its golden id, who linked it, when
    and why, and ``resolves_to``: the active golden id (a merged one's survivor)."""
    link = await hub.mdm.lookup(entity, system, external_id)
    if link is None:
        return JSONResponse(
            {"error": "not_found", "message": f"{entity} {external_id!r} in {system} is not known"},
            status_code=404,
        )
    return JSONResponse(link)


@router.get("/{entity}/golden/{golden_id}", responses=responses(404))
async def golden(
    entity: EntityDep,
    hub: HubDep,
    golden_id: Annotated[str, Path(max_length=64, pattern=_NO_NUL)],
) -> JSONResponse:
    """A golden record: status (``merged`` ones, and ``alias`` ones, the deterministic id of a
    record linked to another golden record, name ``merged_into`` and ``resolves_to``; an
    alias's history is the step that stored it), fields with their provenance (value, system,
    source id, time, rule), the crosswalk, the history newest first, its open review tasks. A
    golden id only the crosswalk knows (an entity without matching) is ``linked``: its
    crosswalk, no fields."""
    record = await hub.mdm.golden(entity, golden_id)
    if record is None:
        return JSONResponse(
            {"error": "not_found", "message": f"no {entity} golden record {golden_id!r}"},
            status_code=404,
        )
    return JSONResponse(record)


@router.get("/{entity}/search", responses=responses(404))
async def search(
    entity: EntityDep,
    hub: HubDep,
    name: Term = None,
    email: Term = None,
    phone: Term = None,
    limit: Limit = 50,
) -> dict[str, Any]:
    """Golden records whose source records match every term, normalised as the matcher
    normalises (``name``: each word a first name, last name or company)."""
    terms = {k: v for k, v in {"name": name, "email": email, "phone": phone}.items() if v}
    return {"items": await hub.mdm.search(entity, terms, limit)}


@router.get("/reviews", responses=responses(400))
async def list_reviews(
    hub: HubDep,
    status: Annotated[str | None, Query(description="open, accepted or rejected")] = "open",
    entity: EntityFilter = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    """The review queue, oldest first (default: open tasks), each with its candidates and the
    best one's explanation field by field."""
    if status is not None and status not in REVIEW_STATUSES:
        raise OpsError(
            400,
            f"status: expected one of {', '.join(REVIEW_STATUSES)}, got {status!r}",
            "invalid_filter",
        )
    total, items = await hub.mdm.reviews(status, entity, limit, offset)
    return {"total": total, "items": items}


@router.get("/reviews/{review_id}", responses=responses(404))
async def get_review(review_id: ReviewId, hub: HubDep) -> JSONResponse:
    task = await hub.mdm.review(review_id)
    if task is None:
        return JSONResponse(
            {"error": "not_found", "message": f"no review task {review_id}"}, status_code=404
        )
    return JSONResponse(task)


@router.post("/reviews/{review_id}/accept", responses=responses(404, 409, 415))
async def accept_review(
    review_id: ReviewId, hub: HubDep, request: Request, body: Accept | None = None
) -> JSONResponse:
    """The record is the same as the candidate (``golden_id``, default the best): its golden
    record is merged into the candidate's (``customer.merged`` is published)."""
    try:
        task = await hub.mdm.accept(
            review_id,
            actor=_actor(request, body),
            golden_id=body.golden_id if body is not None else None,
            reason=body.reason if body is not None else None,
        )
    except MdmRefused as exc:
        return _refused(exc)
    return JSONResponse(task)


@router.post("/reviews/{review_id}/reject", responses=responses(404, 409, 415))
async def reject_review(
    review_id: ReviewId, hub: HubDep, request: Request, body: Decision | None = None
) -> JSONResponse:
    """The record is not the candidates: it keeps its own golden record."""
    try:
        task = await hub.mdm.reject(
            review_id, actor=_actor(request, body), reason=body.reason if body is not None else None
        )
    except MdmRefused as exc:
        return _refused(exc)
    return JSONResponse(task)


@router.post("/{entity}/merge", responses=responses(404, 409, 415))
async def merge(entity: EntityDep, hub: HubDep, request: Request, body: Merge) -> JSONResponse:
    """Merge golden record ``merged`` into ``survivor``: its crosswalk rows move, its id
    resolves to the survivor, ``<entity>.merged`` is published on both ids' keys, then the
    survivor as a canonical ``<entity>`` for the linked systems to follow."""
    try:
        history_id = await hub.mdm.merge(
            entity, body.survivor, body.merged, actor=_actor(request, body), reason=body.reason
        )
    except MdmRefused as exc:
        return _refused(exc)
    return JSONResponse(
        {"survivor": body.survivor, "merged": body.merged, "history_id": history_id}
    )


@router.post("/{entity}/unmerge", responses=responses(404, 409, 415))
async def unmerge(entity: EntityDep, hub: HubDep, request: Request, body: Unmerge) -> JSONResponse:
    """Undo the last merge of ``merged``: the crosswalk as it was before it. ``merged`` may
    be the alias of a record linked by matching (a link step's ``detail.alias``): the record
    gets its own golden record again, under that id. ``<entity>.unmerged`` is published, then
    both golden records as canonical ``<entity>`` events for the linked systems to follow."""
    try:
        history_id = await hub.mdm.unmerge(
            entity, body.merged, actor=_actor(request, body), reason=body.reason
        )
    except MdmRefused as exc:
        return _refused(exc)
    return JSONResponse({"merged": body.merged, "history_id": history_id})


@router.get("/quality", responses=responses(400))
async def quality(hub: HubDep, entity: EntityFilter = None) -> dict[str, Any]:
    """Data-quality counts: golden records, duplicates found, linked and merged, review tasks
    by status, source records that failed normalisation by system and field."""
    return await hub.mdm.quality(entity)
