"""Builds the FastAPI application around a running :class:`hub.runtime.Hub`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from hub import __version__
from hub.errors import WebhookRejected

from . import health, ingress, ops

if TYPE_CHECKING:
    from hub.runtime import Hub


def create_app(hub: Hub) -> FastAPI:
    app = FastAPI(title="hub", version=__version__, docs_url="/docs", redoc_url=None)
    app.state.hub = hub
    app.include_router(health.router)
    app.include_router(ingress.router)
    app.include_router(ops.router)

    @app.exception_handler(ops.OpsDenied)
    async def denied(_request: Request, exc: ops.OpsDenied) -> JSONResponse:
        return JSONResponse({"error": "forbidden", "message": exc.message}, status_code=exc.status)

    @app.exception_handler(WebhookRejected)
    async def rejected(_request: Request, exc: WebhookRejected) -> JSONResponse:
        return JSONResponse(
            {"error": exc.code, "message": exc.message}, status_code=exc.status_code
        )

    return app
