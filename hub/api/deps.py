"""FastAPI dependencies: the running hub, taken from the app state."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from hub.ports import ApiHub


async def get_hub(request: Request) -> ApiHub:
    # async: a sync dependency would run in FastAPI's thread pool, a thread hop per request
    hub: ApiHub = request.app.state.hub
    return hub


HubDep = Annotated[ApiHub, Depends(get_hub)]
