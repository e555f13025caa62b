"""The running hub: broker (embedded or external), database, publisher, HTTP server, workers.

``Hub`` is used by ``hub up`` and, in-process, by the tests::

    async with Hub(settings, config, mappings) as hub:
        ...  # hub.base_url answers; workers consume
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily

from . import backlog, telemetry
from .api.app import create_app, create_metrics_app
from .api.server import Listener
from .broker import EmbeddedBroker
from .bus import Publisher, ensure_topics
from .config import HubConfig, check_routes, load_config, load_mdm_config
from .crosswalk import Crosswalk
from .db import Database
from .deadletters import DeadLetterStore
from .envelope import CloudEvent
from .errors import BrokerStartError, ConfigError, Problem
from .journal import OrderJournal
from .mapping import MappingSet, load_mappings
from .mapping.engine import yaml_files
from .mdm import IdResolver
from .mdm_resolver import MdmResolver
from .mdm_service import ChangeWatcher, MdmService
from .metrics import Metrics, gauge
from .polling import Poller
from .receipts import Receipts
from .replayjobs import ReplayJobs
from .retention import Retention
from .settings import Settings
from .workers import gauges
from .workers.base import Worker
from .workers.delivery import DeliveryWorker
from .workers.mapper import MapperWorker
from .workers.recorder import DeadLetterRecorder

log = logging.getLogger(__name__)


ROLES = frozenset({"ingress", "mapper", "delivery"})
"""ingress: the HTTP server (webhooks, health, ops API); mapper: the mapper and the dead-letter
recorder; delivery: one delivery worker per destination. One process runs all three by default;
in production they can be scaled apart (``hub up --role``)."""

WORKERS = frozenset({"mapper", "delivery"})


class Hub:
    def __init__(
        self,
        settings: Settings,
        config: HubConfig,
        mappings: MappingSet,
        resolver: IdResolver | None = None,
        roles: frozenset[str] = ROLES,
    ) -> None:
        if "workers" in roles:  # both worker roles, as `hub up --role workers` says
            roles = (roles - {"workers"}) | WORKERS
        unknown = roles - ROLES
        if unknown or not roles:
            raise ValueError(f"roles must be among {sorted(ROLES)}, got {sorted(roles)}")
        self.roles = roles
        self.settings = settings
        self.config = config
        self.mappings = mappings
        self.broker: EmbeddedBroker | None = None
        self.bootstrap = settings.kafka_bootstrap_servers
        self.db = Database(settings.database_url)
        if settings.mdm_config is not None and config.mdm_file != settings.mdm_config.resolve():
            problems: list[Problem] = []  # a configuration loaded without HUB_MDM_CONFIG
            config.mdm = load_mdm_config(settings.mdm_config, problems)
            config.mdm_file = settings.mdm_config.resolve()
            if problems:
                raise ConfigError(problems)
        self.mdm = MdmService(self.db, config.mdm, publish=self._publish_mdm)
        self.resolver: IdResolver = resolver or MdmResolver(
            Crosswalk(self.db),
            self.mdm,
            cache_size=settings.crosswalk_cache_size,
            negative_ttl_s=settings.crosswalk_negative_ttl_s,
        )
        self.receipts = Receipts(self.db)
        self.deadletters = DeadLetterStore(self.db)
        self.journal = OrderJournal(self.db)
        self.replays = ReplayJobs(self)
        self._mdm_watch: ChangeWatcher | None = None
        self.retention = Retention(self.db, settings)
        self.metrics = Metrics()
        self.tracer: telemetry.Spans | None = None  # HUB_OTEL_ENDPOINT: spans exported
        self.metrics.watch(lambda: gauges(self.workers))
        self.metrics.watch(self._gauges)
        # the last reload: when, whether it was taken, which mappings changed, its problems
        self.last_reload: dict[str, object] = {
            "at": None,
            "ok": True,
            "changed": [],
            "problems": [],
        }
        self._publisher: Publisher | None = None
        self._workers: dict[Worker, asyncio.Task[None]] = {}
        self.pollers: dict[str, Poller] = {}
        self._tasks: list[asyncio.Task[None]] = []  # HTTP servers, config watcher
        self._listeners: list[Listener] = []
        self.metrics_listener: Listener | None = None
        self._fingerprint = ""
        self.port: int = settings.http_port
        self._owner: asyncio.Task[object] | None = None  # the task that started the hub
        self._broker_watch: asyncio.Task[None] | None = None
        self._recovery: asyncio.Task[None] | None = None
        self._fatal: BrokerStartError | None = None

    @property
    def publisher(self) -> Publisher:
        assert self._publisher is not None, "hub not started"
        return self._publisher

    async def _publish_mdm(self, entity: str, event: CloudEvent) -> None:
        """Master data's merge and unmerge events, onto the entity's canonical topic."""
        await self.publisher.publish(self.settings.canonical_topic(entity), event)

    @property
    def workers(self) -> list[Worker]:
        return list(self._workers)

    @property
    def base_url(self) -> str:
        return f"http://{self.settings.http_host}:{self.port}"

    async def start(self) -> None:
        s = self.settings
        self._owner = asyncio.current_task()
        self.tracer = telemetry.from_settings(s, self.roles)  # no SDK: refused before anything
        if self.tracer is not None:  # not the URL: it may hold credentials
            log.info("exporting spans over OTLP/HTTP (HUB_OTEL_ENDPOINT)")
        # The database first: the receipts of an embedded broker that ended unsaved are voided.
        await self.db.start(migrate=s.db_migrate)
        self.receipts.start()
        self.retention.start()
        if s.embedded_broker:
            state_file = s.state_dir / "embedded-broker.json"
            await self._take_over_orphan(state_file)
            self.broker = EmbeddedBroker(
                binary=s.tansu_binary,
                log_file=s.state_dir / "tansu.log",
                state_file=state_file,
                # not a port this process listens on next (a free one it was given, say)
                avoid_ports=frozenset({s.http_port, s.metrics_port or 0} - {0}),
            )
            await asyncio.to_thread(self.broker.start)
            self.receipts.incarnation = self.broker.incarnation
            self.bootstrap = self.broker.bootstrap_servers
            log.info(
                "no HUB_KAFKA_BOOTSTRAP_SERVERS: using the embedded broker at %s", self.bootstrap
            )
            self._broker_watch = asyncio.create_task(self._watch_broker(), name="broker-watch")
        await self._retry("create topics", lambda: ensure_topics(s, self.bootstrap, s.all_topics()))
        self._publisher = Publisher(s, self.bootstrap, s.ingress_publish_timeout_s)
        await self._restore_backlog()
        try:  # merge events a stopped process committed but did not publish (its outbox)
            await self.mdm.publish_pending()
        except Exception as exc:
            log.warning("master data's pending merge events not published yet: %s", exc)

        if "mapper" in self.roles:
            self._start_worker(MapperWorker(self))
            self._start_worker(DeadLetterRecorder(self))
        if "delivery" in self.roles:
            await self._sync_delivery_workers()
        if "ingress" in self.roles:
            await self._sync_pollers()
            await self._serve_http()
        if s.metrics_port is not None:
            await self._serve_metrics()
        await self._watch_master_data()
        if s.reload_interval_s > 0:
            self._fingerprint = self._files_fingerprint()
            self._tasks.append(asyncio.create_task(self._watch(), name="reload"))

    async def _watch_master_data(self) -> None:
        """A resolver that caches golden ids drops them when master data merges or unmerges:
        at once for a change made here, within ``HUB_MDM_POLL_S`` for one made elsewhere; and
        the external refs of a golden record another process linked a record to."""
        forget = getattr(self.resolver, "forget", None)
        if not callable(forget):
            return
        self.mdm.on_change(lambda _change: forget())
        if self.settings.mdm_poll_s > 0:
            self._mdm_watch = ChangeWatcher(
                self.mdm,
                lambda _changes: forget(),
                self.settings.mdm_poll_s,
                on_link=getattr(self.resolver, "forget_refs", None),
            )
            await self._mdm_watch.start()

    def _start_worker(self, worker: Worker) -> None:
        self._workers[worker] = asyncio.create_task(self._supervise(worker), name=worker.group)

    async def _stop_worker(self, worker: Worker) -> None:
        task = self._workers.pop(worker)
        worker.stop()
        if not worker.ready.is_set():
            task.cancel()  # still joining its group: nothing in flight to finish
        # Otherwise it finishes the batch in hand (output acknowledged, offsets committed).
        _done, pending = await asyncio.wait([task], timeout=15)
        for t in pending:
            t.cancel()
        await asyncio.gather(task, return_exceptions=True)
        if isinstance(worker, DeliveryWorker):
            await worker.sink.close()

    async def _sync_delivery_workers(self) -> None:
        """One delivery worker per destination with enabled routes; a destination whose
        connection or subscribed entities changed gets a new worker."""
        running = {w.destination: w for w in self._workers if isinstance(w, DeliveryWorker)}
        wanted = {}
        for name, sink in self.config.sinks().items():
            routes = self.config.outbound_for(name)
            if routes:
                wanted[name] = (sink, routes)
        for name, worker in running.items():
            limits = self.config.limits.get(name)
            if name not in wanted or worker.signature != DeliveryWorker.signature_of(
                *wanted[name], limits
            ):
                log.info("stopping delivery worker for %s (configuration changed)", name)
                await self._stop_worker(worker)
                del worker
        running = {w.destination: w for w in self._workers if isinstance(w, DeliveryWorker)}
        for name, (sink, routes) in wanted.items():
            if name not in running:
                await sink.open()
                self._start_worker(DeliveryWorker(self, name, sink, routes))

    async def _sync_pollers(self) -> None:
        """One poller per polling connection (sources are read where webhooks are received);
        a connection whose settings changed gets a new poller, which goes on from the stored
        cursor."""
        wanted = self.config.polling_sources()
        for name, poller in list(self.pollers.items()):
            source = wanted.get(name)
            if source is None or source.fingerprint() != poller.source.fingerprint():
                log.info("stopping the poller of %s (configuration changed)", name)
                del self.pollers[name]
                await poller.stop()
        for name, source in wanted.items():
            if name not in self.pollers:
                self.pollers[name] = poller = Poller(self, name, source)
                poller.start()

    def _gauges(self) -> list[GaugeMetricFamily]:
        """Mapping versions live, the last reload, each polling source's last poll: read when
        /metrics is scraped (and by the dashboard's overview, from the same registry)."""
        live = gauge(
            "hub_mapping_version_info",
            "1 for each mapping this process runs, labelled with its version (content hash).",
            ["mapping", "version"],
        )
        for name, m in sorted(self.mappings.mappings.items()):
            live.add_metric([name, m.version], 1.0)
        reload_at = gauge(
            "hub_config_reload_timestamp_seconds",
            "When hub.yaml and the mappings were last reloaded (0: not since the start).",
            [],
        )
        at = self.last_reload["at"]
        reload_at.add_metric(
            [], datetime.fromisoformat(at).timestamp() if isinstance(at, str) else 0
        )
        reload_ok = gauge(
            "hub_config_reload_ok",
            "0 while the last change of hub.yaml or a mapping was refused (the previous version "
            "runs), else 1.",
            [],
        )
        reload_ok.add_metric([], 1.0 if self.last_reload["ok"] else 0.0)
        polled = gauge(
            "hub_source_last_poll_timestamp_seconds",
            "When this process's poller of a source last ended a round, well or not.",
            ["source"],
        )
        failing = gauge(
            "hub_source_poll_failing",
            "1 while this process's last poll of a source failed (its error: /api/sources).",
            ["source"],
        )
        for name, poller in sorted(self.pollers.items()):
            if poller.last_poll_at is not None:
                polled.add_metric([name], poller.last_poll_at.timestamp())
            failing.add_metric([name], 0.0 if poller.last_error is None else 1.0)
        return [live, reload_at, reload_ok, polled, failing]

    def _files_fingerprint(self) -> str:
        digest = hashlib.sha256()
        mappings_dir = self.settings.mappings_dir or self.config.mappings_dir
        # Every YAML file there, lookup tables included (tests/ changes only cost a reload).
        paths = [self.settings.config, *(yaml_files(mappings_dir) if mappings_dir.is_dir() else [])]
        if self.config.mdm_file is not None:  # HUB_MDM_CONFIG, or the file hub.yaml names
            paths.append(self.config.mdm_file)
        elif self.settings.mdm_config is not None:  # unreadable at start: watched all the same
            paths.append(self.settings.mdm_config)
        for path in paths:
            digest.update(str(path).encode())
            try:
                digest.update(path.read_bytes())
            except OSError:
                digest.update(b"<unreadable>")
        return digest.hexdigest()

    async def _watch(self) -> None:
        """Poll hub.yaml and the mapping files; reload when their content changes."""
        while True:
            await asyncio.sleep(self.settings.reload_interval_s)
            fingerprint = await asyncio.to_thread(self._files_fingerprint)
            if fingerprint != self._fingerprint:
                self._fingerprint = fingerprint
                await self.reload()

    async def reload(self) -> bool:
        """Load hub.yaml and the mappings again; swap them in only if all of it is valid.

        New events use the new version; an event being processed finishes with the one it
        started with. A broken file is logged with its problems and the old version stays."""
        try:
            config = await asyncio.to_thread(
                functools.partial(load_config, self.settings.config, mdm=self.settings.mdm_config)
            )
            mappings = await asyncio.to_thread(
                load_mappings, self.settings.mappings_dir or config.mappings_dir
            )
            check_routes(config, mappings)
        except ConfigError as exc:
            log.error(
                "configuration change refused, the previous version keeps running:\n  %s",
                "\n  ".join(str(p) for p in exc.problems),
            )
            self.last_reload = {
                "at": datetime.now(UTC).isoformat(),
                "ok": False,
                "changed": [],
                "problems": [str(p) for p in exc.problems],
            }
            return False
        old = self.mappings
        self.config, self.mappings = config, mappings
        self.mdm.config = config.mdm
        if "delivery" in self.roles:
            await self._sync_delivery_workers()
        if "ingress" in self.roles:
            await self._sync_pollers()
        changed = sorted(
            n
            for n, m in mappings.mappings.items()
            if n not in old.mappings or old.mappings[n].version != m.version
        )
        self.last_reload = {
            "at": datetime.now(UTC).isoformat(),
            "ok": True,
            "changed": changed,
            "problems": [],
        }
        log.info(
            "configuration reloaded: %d mapping(s) changed%s",
            len(changed),
            f" ({', '.join(changed)})" if changed else "",
        )
        return True

    async def _listen(self, app: object, host: str, port: int, name: str) -> Listener:
        listener = Listener(
            app, host, port, max_header_bytes=self.settings.http_max_header_bytes, name=name
        )
        self._listeners.append(listener)
        await listener.start()
        assert listener.task is not None
        self._tasks.append(listener.task)
        return listener

    async def _serve_http(self) -> None:
        s = self.settings
        listener = await self._listen(create_app(self), s.http_host, s.http_port, "http")
        self.port = listener.port
        log.info(
            "hub listening on %s (webhooks at %s/webhooks/<connection>)",
            self.base_url,
            self.base_url,
        )

    async def _serve_metrics(self) -> None:
        """HUB_METRICS_PORT: /metrics, /livez and /readyz of this process on a port of their
        own, whatever its roles (a `--role workers` process serves nothing else)."""
        s = self.settings
        assert s.metrics_port is not None
        app = create_metrics_app(self)
        self.metrics_listener = await self._listen(app, s.metrics_host, s.metrics_port, "metrics")
        log.info("metrics at %s/metrics", self.metrics_listener.url)

    async def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Until every worker has joined its consumer group and has partitions."""
        async with asyncio.timeout(timeout_s):
            await asyncio.gather(*(w.ready.wait() for w in self.workers))

    async def stop(self) -> None:
        if self._broker_watch is not None:
            self._broker_watch.cancel()
            await asyncio.gather(self._broker_watch, return_exceptions=True)
            self._broker_watch = None
        if self._recovery is not None:  # let it finish: it may be starting a broker
            await asyncio.gather(self._recovery, return_exceptions=True)
            self._recovery = None
        for listener in self._listeners:
            listener.stop()
        pollers, self.pollers = list(self.pollers.values()), {}
        await asyncio.gather(*(p.stop() for p in pollers))
        await asyncio.gather(*(self._stop_worker(w) for w in list(self._workers)))
        for task in self._tasks:
            if task.get_name() == "reload":
                task.cancel()
        if self._tasks:
            _done, pending = await asyncio.wait(self._tasks, timeout=15)
            for task in pending:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self._listeners.clear()
        if self._publisher is not None:
            await self._publisher.close()
            self._publisher = None
        await self.replays.close()
        if self.broker is not None:
            count = await self._save_backlog(self.bootstrap)
            if count:
                log.warning(
                    "the embedded broker keeps its records in memory only: %d record(s) not yet "
                    "handled by every consumer group were saved to %s and are published again "
                    "at the next start",
                    count,
                    backlog.backlog_path(self.settings),
                )
            elif count is None and self.broker.incarnation is not None:
                await self.receipts.void(self.broker.incarnation)
            await asyncio.to_thread(self.broker.stop)
            self.broker = None
        await self.retention.stop()
        await self.journal.drain()
        if self._mdm_watch is not None:
            await self._mdm_watch.stop()
            self._mdm_watch = None
        await self.receipts.close()
        await self.db.close()
        if self.tracer is not None:
            await asyncio.to_thread(self.tracer.shutdown)  # exports what is left
            self.tracer = None
        log.info("hub stopped")

    def consumer_groups(self) -> dict[str, set[str]]:
        """Each topic the hub's workers read, with the consumer groups that read it (as the
        configuration says, whichever roles this process runs)."""
        s = self.settings
        readers = {s.ingest_topic: {s.mapper_group}, s.deadletter_topic: {s.recorder_group}}
        for destination in self.config.sinks():
            for route in self.config.outbound_for(destination):
                topic = s.canonical_topic(route.entity)
                readers.setdefault(topic, set()).add(s.delivery_group(destination))
        return readers

    async def _save_backlog(self, bootstrap: str) -> int | None:
        """Keep what the embedded broker at ``bootstrap`` holds and the workers have not
        finished (:mod:`hub.backlog`): it would be lost with the broker. Returns how many
        records; None when they could not be kept (logged)."""
        path = backlog.backlog_path(self.settings)
        try:
            async with asyncio.timeout(60):
                return await backlog.save(self.settings, bootstrap, self.consumer_groups(), path)
        except Exception as exc:
            log.error(
                "could not keep the embedded broker's unfinished events in %s (%s: %s): they "
                "are lost with it",
                path,
                type(exc).__name__,
                exc,
            )
            return None

    async def _take_over_orphan(self, state_file: Path) -> None:
        """An earlier hub killed outright left its embedded broker running, with what it had
        not finished: keep that (:mod:`hub.backlog`), then stop the orphan. Should that broker
        have ended too, what only it held is lost: its webhook receipts no longer count."""
        orphan = EmbeddedBroker.left_behind(state_file)
        if orphan is None:
            return
        if not orphan.alive():
            log.error(
                "the embedded broker of an earlier hub (pid %s) ended before its records were "
                "saved: the events only it held are lost; sources may send them again",
                orphan.pid,
            )
            if orphan.incarnation is not None:
                await self.receipts.void(orphan.incarnation)
            orphan.forget()
            return
        log.warning(
            "the embedded broker of an earlier hub is still running (pid %s): that hub did not "
            "stop cleanly; taking over what it holds",
            orphan.pid,
        )
        try:
            count = await self._save_backlog(orphan.bootstrap_servers)
            if count is not None:
                log.info("%d record(s) of the earlier embedded broker kept", count)
            elif orphan.incarnation is not None:
                await self.receipts.void(orphan.incarnation)
        finally:
            await asyncio.to_thread(orphan.stop)

    async def _watch_broker(self, interval_s: float = 0.5) -> None:
        """Supervise the embedded broker: should it end (killed, crashed), start it again."""
        while True:
            await asyncio.sleep(interval_s)
            broker = self.broker
            if broker is not None and not broker.running:
                # Its own task: stop() waits for it rather than cancel a broker start halfway.
                self._recovery = asyncio.create_task(self._recover_broker(broker), name="broker")
                await asyncio.shield(self._recovery)
                if self._fatal is not None:
                    return

    async def _recover_broker(self, broker: EmbeddedBroker, attempts: int = 5) -> None:
        """The embedded broker ended on its own: what only it held is lost. Void its webhook
        receipts (so sources' retries are stored again), start it again on the same address
        (the clients reconnect to it), create the topics, and restart the workers: their
        consumer groups and offsets were in it. Should it not start, the hub stops with a
        :class:`BrokerStartError` (a non-zero exit of ``hub up``)."""
        s = self.settings
        log.error(
            "the embedded broker (Tansu, pid %s) ended with code %s: the events only it held "
            "are lost (sources may send them again); restarting it on %s",
            broker.pid,
            broker.returncode,
            broker.bootstrap_servers,
        )
        for worker in self._workers:
            worker.broker_gone()
        if broker.incarnation is not None:
            await self.receipts.void(broker.incarnation)
        for attempt in range(1, attempts + 1):
            try:
                await asyncio.to_thread(broker.start)
                break
            except BrokerStartError as exc:
                log.error("restarting the embedded broker (%d/%d): %s", attempt, attempts, exc)
                if attempt == attempts:
                    self._fatal = BrokerStartError(
                        f"the embedded broker ended and could not be restarted ({exc}); "
                        f"the hub stops: start it again, or set HUB_KAFKA_BOOTSTRAP_SERVERS "
                        f"to use a Kafka cluster"
                    )
                    if self._owner is not None:
                        self._owner.cancel()  # leaving `async with Hub` raises self._fatal
                    return
                await asyncio.sleep(min(2.0 ** (attempt - 1), 10.0))
        self.receipts.incarnation = broker.incarnation
        await self._retry("create topics", lambda: ensure_topics(s, self.bootstrap, s.all_topics()))
        workers = list(self._workers)
        await asyncio.gather(*(self._stop_worker(w) for w in workers))
        if "mapper" in self.roles:
            self._start_worker(MapperWorker(self))
            self._start_worker(DeadLetterRecorder(self))
        if "delivery" in self.roles:
            await self._sync_delivery_workers()
        log.warning(
            "the embedded broker runs again on %s (pid %s); %d worker(s) restarted",
            broker.bootstrap_servers,
            broker.pid,
            len(self._workers),
        )

    async def _restore_backlog(self) -> None:
        path = backlog.backlog_path(self.settings)
        # Should this fail, the file stays for the next start: a record published twice has no
        # second effect.
        count = await backlog.restore(self.publisher, path)
        if count:
            log.info("published again the %d record(s) saved at the last stop (%s)", count, path)

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

    async def _retry(
        self, what: str, action: Callable[[], Awaitable[object]], attempts: int = 20
    ) -> None:
        for attempt in range(1, attempts + 1):
            try:
                await action()
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
        if self._fatal is not None:
            raise self._fatal
