"""One HTTP listener in the hub's event loop: uvicorn on h11, with the request head limits.

The hub runs two kinds: the HTTP API (:func:`hub.api.app.create_app`) and, with
``HUB_METRICS_PORT``, the metrics listener (:func:`hub.api.app.create_metrics_app`). Both start
and stop here, so both keep the same limits.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import uvicorn


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the hub owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Listener:
    """Serves ``app`` on ``host:port`` (port 0: a free one, read back after :meth:`start`)."""

    def __init__(self, app: Any, host: str, port: int, *, max_header_bytes: int, name: str) -> None:
        self.host = host
        self.port = port
        self.name = name
        self._server = _Server(
            uvicorn.Config(
                app,
                host=host,
                port=port,
                log_config=None,
                lifespan="off",
                access_log=False,
                # h11 stops reading a head past this size (uvicorn answers 400 and closes);
                # httptools has no such limit: it read a 64 MiB header whole.
                http="h11",
                h11_max_incomplete_event_size=max_header_bytes,
            )
        )
        self.task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Until the socket listens; raises why it could not (port taken, ...)."""
        self.task = serving = asyncio.create_task(self._server.serve(), name=self.name)
        while not self._server.started:
            if serving.done():
                serving.result()
                raise RuntimeError(f"{self.name} server stopped while starting")
            await asyncio.sleep(0.02)
        sock = self._server.servers[0].sockets[0]
        self.port = int(sock.getsockname()[1])

    def stop(self) -> None:
        """Stop accepting and close once the requests in hand are answered (await ``task``)."""
        self._server.should_exit = True
