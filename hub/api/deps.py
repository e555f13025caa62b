"""FastAPI dependencies: the running hub, taken from the app state."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request

if TYPE_CHECKING:
    from hub.runtime import Hub


async def get_hub(request: Request) -> Hub:
    # async: a sync dependency would run in FastAPI's thread pool, a thread hop per request
    hub: Hub = request.app.state.hub
    return hub


HubDep = Annotated["Hub", Depends(get_hub)]
