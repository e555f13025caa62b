"""``GET /metrics``: the process's figures in Prometheus's text format (:mod:`hub.metrics`),
guarded like the ops API (the bearer token when ``HUB_OPS_TOKEN`` is set; without it, only on a
loopback listener). Served by the HTTP API and by the metrics listener (``HUB_METRICS_PORT``)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from hub.metrics import CONTENT_TYPE

from .deps import ProbeDep
from .ops import require_operator

router = APIRouter(tags=["metrics"])


@router.get("/metrics", dependencies=[Depends(require_operator)], response_class=Response)
async def metrics(hub: ProbeDep) -> Response:
    return Response(hub.metrics.expose(), media_type=CONTENT_TYPE)
