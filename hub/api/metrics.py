"""``GET /metrics``: the process's figures in Prometheus's text format (:mod:`hub.metrics`),
guarded like the ops API (the bearer token when ``HUB_OPS_TOKEN`` is set)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from hub.metrics import CONTENT_TYPE

from .deps import HubDep
from .ops import require_operator

router = APIRouter(tags=["metrics"])


@router.get("/metrics", dependencies=[Depends(require_operator)], response_class=Response)
async def metrics(hub: HubDep) -> Response:
    return Response(hub.metrics.expose(), media_type=CONTENT_TYPE)
