"""Builds the FastAPI application around a running :class:`hub.runtime.Hub`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from hub import __version__
from hub.auth import AuditFailed, audit_in_transactions
from hub.errors import WebhookRejected

from . import auth, connections, health, ingress, mdm, metrics, ops, orders, overview, ui
from .limits import HeaderLimits

if TYPE_CHECKING:
    from hub.ports import ApiHub, ProbedHub


def create_app(hub: ApiHub) -> HeaderLimits:
    """The hub's ASGI app: request heads over the limits refused (431), everything else
    through FastAPI's routing, webhooks included."""
    s = hub.settings
    audit_in_transactions(hub.db)  # a write's audit row commits with the write
    app = auth.AuditAndMask(create_api(hub), hub.db)  # type: ignore[arg-type]
    return HeaderLimits(app, s.http_max_header_bytes, s.http_max_headers)


def create_metrics_app(hub: ProbedHub) -> HeaderLimits:
    """The metrics listener's app (``HUB_METRICS_PORT``): ``/metrics``, ``/livez``
    (``/healthz``) and ``/readyz`` only, with the same limits, guard and error bodies."""
    s = hub.settings
    app = FastAPI(
        title="hub metrics", version=__version__, openapi_url=None, docs_url=None, redoc_url=None
    )
    app.state.hub = hub
    app.state.listening_host = s.metrics_host
    app.include_router(health.router)
    app.include_router(metrics.router)
    handle_errors(app)
    return HeaderLimits(app, s.http_max_header_bytes, s.http_max_headers)


def create_api(hub: ApiHub) -> FastAPI:
    app = FastAPI(title="hub", version=__version__, docs_url="/docs", redoc_url=None)
    app.state.hub = hub
    app.state.listening_host = hub.settings.http_host
    app.include_router(health.router)
    app.include_router(ingress.router)
    app.include_router(ops.router)
    app.include_router(mdm.router)
    app.include_router(overview.router)
    app.include_router(connections.router)
    app.include_router(orders.router)
    app.include_router(auth.public)
    app.include_router(auth.router)
    app.include_router(metrics.router)
    app.include_router(ui.router)
    handle_errors(app)
    return app


def handle_errors(app: FastAPI) -> None:
    """Every refusal as ``{"error", "message"}`` with its status."""

    @app.exception_handler(ops.OpsError)
    async def refused(_request: Request, exc: ops.OpsError) -> JSONResponse:
        return JSONResponse({"error": exc.code, "message": exc.message}, status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # The same {"error", "message"} shape as every other refusal (unknown path: 404 ...).
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            # Starlette's Allow names the methods of the first route that matched the path only
            headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(app, request))}
        return JSONResponse(
            {"error": code, "message": str(exc.detail)},
            status_code=exc.status_code,
            headers=headers,
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            return JSONResponse(
                {"error": "malformed_json", "message": "the body is not valid JSON"},
                status_code=400,
            )
        errors = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        return JSONResponse({"error": "invalid_request", "message": errors}, status_code=422)

    @app.exception_handler(AuditFailed)
    async def not_audited(_request: Request, exc: AuditFailed) -> JSONResponse:
        return JSONResponse({"error": "audit_failed", "message": str(exc)}, status_code=503)

    @app.exception_handler(WebhookRejected)
    async def rejected(_request: Request, exc: WebhookRejected) -> JSONResponse:
        return JSONResponse(
            {"error": exc.code, "message": exc.message}, status_code=exc.status_code
        )


def allowed_methods(app: FastAPI, request: Request) -> list[str]:
    """Every method some route of ``app`` takes at the request's path."""
    allowed = []
    for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"):
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] == Match.FULL for route in app.router.routes):
            allowed.append(method)
    return allowed
