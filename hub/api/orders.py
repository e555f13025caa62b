"""``/api/orders``: follow one order across systems (:mod:`hub.journal`).

``GET /api/orders/{ref}`` names the order by its golden id, any system's id of it or its
number, and answers its golden id, every system's id, its steps in time order and its dead
letters. ``GET /api/orders?email=`` lists the orders of a customer's e-mail. The same access
rules as the rest of the ops API (:mod:`hub.api.ops`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query

from .deps import HubDep
from .ops import OpsError, require_operator, responses

router = APIRouter(
    prefix="/api",
    tags=["orders"],
    dependencies=[Depends(require_operator)],
    responses=responses(401, 403),
)

_NO_NUL = r"^[^\x00]*$"  # PostgreSQL refuses NUL in text: refused here, not a 500 there


@router.get("/orders/{ref}", responses=responses(404, 409))
async def order(
    ref: Annotated[str, Path(min_length=1, max_length=255, pattern=_NO_NUL)], hub: HubDep
) -> dict[str, Any]:
    """One order's journey. ``ref`` is its golden id (``ord_…``), any system's id of it (the
    shop's order id, the ERP's sale id) or its number (``#1001``, URL-encoded: ``%231001``).

    The answer: ``golden_id``, ``number``, ``status`` (the latest seen), ``email`` (its
    customer's), ``ids`` (``[{system, id, from}]``: every system's id of it, ``from`` saying how
    the hub knows: ``sink:<connection>``, ``received``, ``delivered``), ``events`` in time order
    (``{at, step, status, summary, ...}``; steps ``received``, ``mapped``, ``delivered``,
    ``dead_letter``) and ``dead_letters`` (``{id, href, failed_at, stage, status, error, ...}``).
    A ``ref`` that names several orders (a number two shops both use) is a 409 listing them."""
    found = await hub.journal.golden_ids(ref)
    if not found:
        raise OpsError(404, f"no order is known as {ref!r}", "not_found")
    if len(found) > 1:
        raise OpsError(
            409,
            f"{ref!r} names {len(found)} orders: ask by golden id, one of {', '.join(found[:20])}",
            "ambiguous",
        )
    return await hub.journal.journey(found[0])


@router.get("/orders", responses=responses(400))
async def orders(
    hub: HubDep,
    email: Annotated[
        str, Query(min_length=3, max_length=255, pattern=_NO_NUL, description="Any case")
    ],
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """The orders of the customer with this e-mail, latest first: ``items`` of ``{golden_id,
    number, status, last_at}``."""
    return {"items": await hub.journal.by_email(email, limit)}
