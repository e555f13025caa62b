"""The running hub: broker (embedded or external), database, publisher, HTTP server, workers.

``Hub`` is used by ``hub up`` and, in-process, by the tests::

    async with Hub(settings, config, mappings) as hub:
        ...  # hub.base_url answers; workers consume
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

import uvicorn

from .api.app import create_app
from .broker import EmbeddedBroker
from .bus import Publisher, ensure_topics
from .config import HubConfig
from .db import Database
from .mapping import MappingSet
from .mdm import DeterministicResolver, IdResolver
from .settings import Settings
from .workers.base import Worker
from .workers.delivery import DeliveryWorker
from .workers.mapper import MapperWorker

log = logging.getLogger(__name__)


ROLES = frozenset({"ingress", "workers"})
"""ingress: the HTTP server (webhooks, health); workers: mapper and delivery consumers.
One process runs both by default; in production they can be scaled apart."""


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the hub owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Hub:
    def __init__(
        self,
        settings: Settings,
        config: HubConfig,
        mappings: MappingSet,
        resolver: IdResolver | None = None,
        roles: frozenset[str] = ROLES,
    ) -> None:
        unknown = roles - ROLES
        if unknown or not roles:
            raise ValueError(f"roles must be among {sorted(ROLES)}, got {sorted(roles)}")
        self.roles = roles
        self.settings = settings
        self.config = config
        self.mappings = mappings
        self.resolver: IdResolver = resolver or DeterministicResolver()
        self.broker: EmbeddedBroker | None = None
        self.bootstrap = settings.kafka_bootstrap_servers
        self.db = Database(settings.database_url)
        self._publisher: Publisher | None = None
        self.workers: list[Worker] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._server: _Server | None = None
        self.port: int = settings.http_port

    @property
    def publisher(self) -> Publisher:
        assert self._publisher is not None, "hub not started"
        return self._publisher

    @property
    def base_url(self) -> str:
        return f"http://{self.settings.http_host}:{self.port}"

    async def start(self) -> None:
        s = self.settings
        if s.embedded_broker:
            self.broker = EmbeddedBroker(binary=s.tansu_binary, log_file=s.state_dir / "tansu.log")
            await asyncio.to_thread(self.broker.start)
            self.bootstrap = self.broker.bootstrap_servers
            log.info(
                "no HUB_KAFKA_BOOTSTRAP_SERVERS: using the embedded broker at %s", self.bootstrap
            )
        await self._retry("create topics", lambda: ensure_topics(s, self.bootstrap, s.all_topics()))
        await self.db.start()
        self._publisher = Publisher(s, self.bootstrap, s.ingress_publish_timeout_s)

        if "workers" in self.roles:
            self.workers.append(MapperWorker(self))
            for name, sink in self.config.sinks().items():
                routes = self.config.outbound_for(name)
                if routes:
                    await sink.open()
                    self.workers.append(DeliveryWorker(self, name, sink, routes))
            for worker in self.workers:
                self._tasks.append(asyncio.create_task(self._supervise(worker), name=worker.group))
        if "ingress" in self.roles:
            await self._serve_http()

    async def _serve_http(self) -> None:
        s = self.settings

        app = create_app(self)
        self._server = _Server(
            uvicorn.Config(
                app,
                host=s.http_host,
                port=s.http_port,
                log_config=None,
                lifespan="off",
                access_log=False,
            )
        )
        serving = asyncio.create_task(self._server.serve(), name="http")
        self._tasks.append(serving)
        while not self._server.started:
            if serving.done():
                serving.result()  # raises why it could not start (port taken, ...)
                raise RuntimeError("HTTP server stopped while starting")
            await asyncio.sleep(0.02)
        sock = self._server.servers[0].sockets[0]
        self.port = int(sock.getsockname()[1])
        log.info(
            "hub listening on %s (webhooks at %s/webhooks/<connection>)",
            self.base_url,
            self.base_url,
        )

    async def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Until every worker has joined its consumer group and has partitions."""
        async with asyncio.timeout(timeout_s):
            await asyncio.gather(*(w.ready.wait() for w in self.workers))

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        for worker, task in zip(self.workers, self._tasks, strict=False):
            worker.stop()
            if not worker.ready.is_set():
                task.cancel()  # still joining its group: nothing in flight to finish
        if self._tasks:
            # Workers finish the batch in hand (its output acknowledged, offsets committed).
            _done, pending = await asyncio.wait(self._tasks, timeout=15)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        self._tasks.clear()
        for sink in self.config.sinks().values():
            await sink.close()
        if self._publisher is not None:
            await self._publisher.close()
            self._publisher = None
        await self.db.close()
        if self.broker is not None:
            await asyncio.to_thread(self.broker.stop)
            self.broker = None
        log.info("hub stopped")

    async def _supervise(self, worker: Worker) -> None:
        """Keep a worker running: a crash is logged and the worker restarted after a pause."""
        delay = 1.0
        while not worker._stopping.is_set():
            try:
                await worker.run()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("worker %s failed; restarting in %.0fs", worker.group, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _retry(self, what: str, action: object, attempts: int = 20) -> None:
        for attempt in range(1, attempts + 1):
            try:
                await action()  # type: ignore[operator]
                return
            except Exception as exc:
                if attempt == attempts:
                    raise
                log.info("%s: %s; retrying (%d/%d)", what, exc, attempt, attempts)
                await asyncio.sleep(min(0.25 * attempt, 3.0))

    async def __aenter__(self) -> Hub:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
