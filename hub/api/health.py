"""Liveness (``/healthz``, also ``/livez``) and readiness (``/readyz``: broker and database
answer). The HTTP API and the metrics listener (``HUB_METRICS_PORT``) both serve them."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from .deps import ProbeDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
@router.get("/livez")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(hub: ProbeDep) -> JSONResponse:
    broker, database = await asyncio.gather(hub.publisher.ping(), hub.db.ping())
    checks = {
        "broker": "ok" if broker else "unavailable",
        "database": "ok" if database else "unavailable",
    }
    ready = broker and database
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks},
        status_code=200 if ready else 503,
    )
