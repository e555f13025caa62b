"""``/api/auth``: log in and out (a session cookie); ``/api/users``, ``/api/tokens`` and
``/api/audit`` for admins. The middleware :func:`audit_and_mask` writes every write's audit row
and masks personal data in the answers viewers get (see :mod:`hub.auth`)."""

from __future__ import annotations

import functools
import json
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint

from hub.auth import (
    ROLES,
    SESSION_COOKIE,
    SESSION_TTL,
    Auth,
    AuthError,
    PendingAudit,
    Principal,
    audit_body,
    mask,
)
from hub.db import Database

from .deps import ProbeDep
from .limits import App
from .ops import _check_content_type, _check_origin, require_operator, responses

log = logging.getLogger(__name__)

public = APIRouter(prefix="/api/auth", tags=["auth"])
router = APIRouter(
    prefix="/api",
    tags=["auth"],
    dependencies=[Depends(require_operator)],
    responses=responses(401, 403),
)
PrincipalDep = Annotated[Principal, Depends(require_operator)]


class Login(BaseModel):
    name: str = Field(max_length=256)
    password: str = Field(max_length=1024)


class NewUser(BaseModel):
    name: str
    password: str = Field(max_length=1024)
    role: str = "viewer"


class UserChange(BaseModel):
    role: str | None = None
    disabled: bool | None = None
    password: str | None = Field(None, max_length=1024, description="A new password")


class NewToken(BaseModel):
    name: str
    role: str = "viewer"


def client_ip(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def _refusal(exc: AuthError) -> JSONResponse:
    return JSONResponse({"error": exc.code, "message": exc.message}, status_code=exc.status)


@public.post("/login", responses=responses(403, 415, 422))
async def login(body: Login, request: Request, hub: ProbeDep) -> Response:
    """Log in: sets the session cookie (HttpOnly, SameSite=Strict, Secure over HTTPS) and
    answers the user's role and the session's CSRF token, which every write must carry in
    ``X-CSRF-Token``. 401 for a wrong name or password, 429 after too many failures."""
    _check_origin(request, hub.settings)
    _check_content_type(request)
    try:
        cookie, who = await Auth(hub.db).login(body.name, body.password, client_ip(request))
    except AuthError as exc:
        return _refusal(exc)
    answer = JSONResponse({"name": who.name, "role": who.role, "csrf": who.csrf})
    answer.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=int(SESSION_TTL.total_seconds()),
        path="/",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    return answer


@router.get("/auth/me")
async def me(who: PrincipalDep) -> dict[str, Any]:
    """Who the request is from, its role, and (a session's) the CSRF token its writes carry."""
    return {"actor": who.actor, "name": who.name, "role": who.role, "csrf": who.csrf}


@router.post("/auth/logout")
async def logout(request: Request, hub: ProbeDep) -> Response:
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie is not None:
        await Auth(hub.db).logout(cookie)
    answer = JSONResponse({"logged_out": cookie is not None})
    answer.delete_cookie(SESSION_COOKIE, path="/")
    return answer


@router.get("/users")
async def list_users(hub: ProbeDep) -> dict[str, Any]:
    return {"items": await Auth(hub.db).users(), "roles": list(ROLES)}


@router.post("/users", status_code=201, responses=responses(409, 415, 422))
async def add_user(body: NewUser, hub: ProbeDep) -> Response:
    try:
        return JSONResponse(
            await Auth(hub.db).add_user(body.name, body.password, body.role), status_code=201
        )
    except AuthError as exc:
        return _refusal(exc)


@router.patch("/users/{name}", responses=responses(404, 415, 422))
async def change_user(name: str, body: UserChange, hub: ProbeDep) -> Response:
    """Change a user's role, disable (``"disabled": true``) or enable them, or reset their
    password (``"password"``). A change ends the user's sessions."""
    try:
        _before, after = await Auth(hub.db).set_user(
            name, role=body.role, disabled=body.disabled, password=body.password
        )
    except AuthError as exc:
        return _refusal(exc)
    return JSONResponse(after)


@router.get("/tokens")
async def list_tokens(hub: ProbeDep) -> dict[str, Any]:
    """API tokens, without their values (only their SHA-256 is kept)."""
    return {"items": await Auth(hub.db).tokens()}


@router.post("/tokens", status_code=201, responses=responses(415, 422))
async def create_token(body: NewToken, who: PrincipalDep, hub: ProbeDep) -> Response:
    """A new API token for scripts (``Authorization: Bearer <token>``): the answer is the only
    time its value is shown."""
    try:
        made = await Auth(hub.db).create_token(body.name, body.role, who.actor)
    except AuthError as exc:
        return _refusal(exc)
    return JSONResponse(made, status_code=201)


@router.delete("/tokens/{id_}", responses=responses(404, 415))
async def revoke_token(id_: str, hub: ProbeDep) -> Response:
    if not await Auth(hub.db).revoke_token(id_):
        return JSONResponse({"error": "not_found", "message": f"no token {id_}"}, status_code=404)
    return JSONResponse({"id": id_, "revoked": True})


@router.get("/audit")
async def audit(
    hub: ProbeDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> dict[str, Any]:
    """Every write, newest first: who, when, what, before and after. Next page:
    ``before=<the last item's id>`` (keyset)."""
    items = await Auth(hub.db).audit_rows(limit, before)
    return {"items": items, "next": items[-1]["id"] if len(items) == limit else None}


# -- the middleware: audit every write, mask answers for viewers ---------------------------------


class AuditAndMask:
    """ASGI middleware for ``/api/`` requests only (webhooks skip it, at no cost): see
    :func:`audit_and_mask`."""

    def __init__(self, app: App, db: Database) -> None:
        self.app = app
        self.api = BaseHTTPMiddleware(app, dispatch=functools.partial(audit_and_mask, db))  # type: ignore[arg-type]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/api/"):
            await self.api(scope, receive, send)
        else:
            await self.app(scope, receive, send)


async def audit_and_mask(
    db: Database, request: Request, call_next: RequestResponseEndpoint
) -> Response:
    """After a request the ops guard let through: a write's audit row (its request body and
    answer, secrets redacted); a viewer's JSON answer with personal data masked."""
    response = await call_next(request)
    principal: Principal | None = getattr(request.state, "principal", None)
    pending = getattr(request.state, "audit", None)
    if principal is None or (pending is None and principal.role != "viewer"):
        return response
    if response.headers.get("content-type", "").split(";")[0] != "application/json":
        if pending is not None:
            await _audit(db, request, principal, pending, response.status_code, None)
        return response
    raw = b"".join([chunk async for chunk in response.body_iterator])  # type: ignore[attr-defined]
    headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
    if pending is not None:
        await _audit(db, request, principal, pending, response.status_code, raw)
    if principal.role == "viewer":
        try:
            raw = json.dumps(mask(json.loads(raw)), ensure_ascii=False).encode()
        except ValueError:
            pass
    out = Response(raw, status_code=response.status_code, headers=headers)
    return out


async def _audit(
    db: Database,
    request: Request,
    who: Principal,
    pending: dict[str, Any],
    status: int,
    answer: bytes | None,
) -> None:
    """The write's audit row gets its status and answer. Written already in the write's own
    transaction (hub.auth.expect_write) when the write changed a row; else, for a write that
    succeeded without changing a row here (a connection check), written now."""
    body: bytes = pending.get("body", b"")
    after = {"status": status, "request": audit_body(body), "answer": audit_body(answer or b"")}
    written: PendingAudit | None = pending.get("pending")
    path = request.url.path
    try:
        if written is not None and written.id is not None:
            await Auth(db).complete_audit(written, after)
        elif status < 300:
            await Auth(db).audit(
                who.actor,
                f"{request.method} {path.removeprefix('/api')}",
                path,
                pending.get("before"),
                after,
                request.client.host if request.client is not None else None,
            )
    except Exception:
        log.exception("could not write the audit row of %s %s", request.method, path)
