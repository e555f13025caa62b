"""FastAPI dependencies: the running hub, taken from the app state."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from hub.ports import ApiHub, ProbedHub


async def get_hub(request: Request) -> ApiHub:
    # async: a sync dependency would run in FastAPI's thread pool, a thread hop per request
    hub: ApiHub = request.app.state.hub
    return hub


async def get_probed(request: Request) -> ProbedHub:
    hub: ProbedHub = request.app.state.hub
    return hub


HubDep = Annotated[ApiHub, Depends(get_hub)]
ProbeDep = Annotated[ProbedHub, Depends(get_probed)]
"""What health and metrics need: also served by the metrics listener, whose hub is no ApiHub."""


def listening_host(request: Request) -> str:
    """The address the app's listener was told to listen on (``HUB_HTTP_HOST`` for the HTTP
    API, ``HUB_METRICS_HOST`` for the metrics listener): the operator guard depends on it."""
    host: str = request.app.state.listening_host
    return host
