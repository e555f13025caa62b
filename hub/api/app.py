"""Builds the FastAPI application around a running :class:`hub.runtime.Hub`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from hub import __version__
from hub.errors import WebhookRejected

from . import health, ingress, metrics, ops

if TYPE_CHECKING:
    from hub.runtime import Hub


def create_app(hub: Hub) -> ingress.WebhookFastPath:
    """The hub's ASGI app: webhooks on the fast path, the rest through FastAPI."""
    return ingress.WebhookFastPath(hub, create_api(hub))


def create_api(hub: Hub) -> FastAPI:
    app = FastAPI(title="hub", version=__version__, docs_url="/docs", redoc_url=None)
    app.state.hub = hub
    app.include_router(health.router)
    app.include_router(ingress.router)
    app.include_router(ops.router)
    app.include_router(metrics.router)

    @app.exception_handler(ops.OpsDenied)
    async def denied(_request: Request, exc: ops.OpsDenied) -> JSONResponse:
        return JSONResponse({"error": "forbidden", "message": exc.message}, status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # The same {"error", "message"} shape as every other refusal (unknown path: 404 ...).
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(
            {"error": code, "message": str(exc.detail)},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        return JSONResponse({"error": "invalid_request", "message": errors}, status_code=422)

    @app.exception_handler(WebhookRejected)
    async def rejected(_request: Request, exc: WebhookRejected) -> JSONResponse:
        return JSONResponse(
            {"error": exc.code, "message": exc.message}, status_code=exc.status_code
        )

    return app
