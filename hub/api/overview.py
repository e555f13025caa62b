"""``GET /api/overview``: the dashboard's overview in one answer, from the figures ``/metrics``
exposes (the same registry, read the same way) and the dead-letter table."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from sqlalchemy import func, select

from hub.db import dead_letters

from .deps import HubDep
from .ops import destinations, require_operator, responses, sources

router = APIRouter(
    prefix="/api",
    tags=["ops"],
    dependencies=[Depends(require_operator)],
    responses=responses(401, 403),
)


@router.get("/overview")
async def overview(hub: HubDep) -> dict[str, Any]:
    """This process's counters and gauges as ``/metrics`` has them (``metrics``: name, labels,
    value; histograms as their count and sum), open dead letters by stage and error class,
    destinations' circuits and polling sources (as ``/api/destinations`` and ``/api/sources``).
    Rates are the difference of two answers over the time between them."""
    figures = []
    for family in hub.metrics.registry.collect():
        for sample in family.samples:
            if sample.name.endswith(("_bucket", "_created")):
                continue
            figures.append({"name": sample.name, "labels": sample.labels, "value": sample.value})
    c = dead_letters.c
    async with hub.db.engine.connect() as conn:
        rows = await conn.execute(
            select(c.stage, c.error_class, func.count())
            .where(c.status == "open")
            .group_by(c.stage, c.error_class)
            .order_by(func.count().desc())
        )
        open_letters = [{"stage": r[0], "error_class": r[1], "count": r[2]} for r in rows]
    return {
        "metrics": figures,
        "dead_letters": open_letters,
        "destinations": (await destinations(hub))["items"],
        "sources": (await sources(hub))["items"],
    }
