"""What each part of the hub may use of the running hub.

:class:`hub.runtime.Hub` builds the parts (ingress, the ops API, pollers, workers, replay) and
hands itself to each. Each part is typed by the narrow view below, not by ``Hub``, so a reader
sees what a part may touch and mypy refuses anything else; only :mod:`hub.runtime` and
:mod:`hub.cli` know the ``Hub`` class. ``Hub`` satisfies every view structurally (no
inheritance): adding a part's need means adding it here, where the review sees it.

The views are read-only properties, so a part cannot replace a piece of the hub.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .bus import Publisher
    from .config import HubConfig
    from .db import Database
    from .deadletters import DeadLetterStore
    from .journal import OrderJournal
    from .mapping import MappingSet
    from .mdm import IdResolver
    from .mdm_service import MdmService
    from .metrics import Metrics
    from .polling import Poller
    from .receipts import Receipts
    from .replayjobs import ReplayJobs
    from .settings import Settings
    from .telemetry import Spans
    from .workers.base import Worker


class Basics(Protocol):
    """What every part reads: the environment's settings and the process's metrics."""

    @property
    def settings(self) -> Settings: ...

    @property
    def metrics(self) -> Metrics: ...


class Publishing(Basics, Protocol):
    """A part that writes to Kafka through the process's one producer."""

    @property
    def publisher(self) -> Publisher: ...


class ProbedHub(Publishing, Protocol):
    """Health and metrics (:mod:`hub.api.health`, :mod:`hub.api.metrics`): whether the broker
    and the database answer, and the process's figures. The metrics listener of a process
    without the HTTP API (``HUB_METRICS_PORT``) sees the hub only through this."""

    @property
    def db(self) -> Database: ...


class IngressHub(Publishing, Protocol):
    """Webhook ingress (:mod:`hub.api.ingress`): verify, deduplicate, publish."""

    @property
    def config(self) -> HubConfig: ...

    @property
    def receipts(self) -> Receipts: ...

    @property
    def tracer(self) -> Spans | None: ...


class PollerHub(Publishing, Protocol):
    """A polling source's loop (:mod:`hub.polling`): cursors in the database, changes to Kafka."""

    @property
    def db(self) -> Database: ...

    @property
    def tracer(self) -> Spans | None: ...


class ReplayHub(Publishing, Protocol):
    """Replaying dead letters (:mod:`hub.replay`): an edited payload is checked against the
    mapping that failed, with the process's resolver, before it is sent. Bulk replays are jobs
    in the database (:mod:`hub.replayjobs`)."""

    @property
    def db(self) -> Database: ...

    @property
    def config(self) -> HubConfig: ...

    @property
    def mappings(self) -> MappingSet: ...

    @property
    def resolver(self) -> IdResolver: ...

    @property
    def deadletters(self) -> DeadLetterStore: ...


class WorkerHub(Publishing, Protocol):
    """A consumer with the shared retry operator (:mod:`hub.workers`): its own consumer on the
    bootstrap servers, parked events in the database, dead letters to Kafka and the table."""

    @property
    def bootstrap(self) -> str: ...

    @property
    def db(self) -> Database: ...

    @property
    def deadletters(self) -> DeadLetterStore: ...


class MappingWorkerHub(WorkerHub, Protocol):
    """The mapper and delivery workers: routes, mappings and golden ids as well."""

    @property
    def config(self) -> HubConfig: ...

    @property
    def mappings(self) -> MappingSet: ...

    @property
    def resolver(self) -> IdResolver: ...

    @property
    def journal(self) -> OrderJournal: ...

    @property
    def tracer(self) -> Spans | None: ...


class OpsHub(ReplayHub, Protocol):
    """The ops and health API (:mod:`hub.api`): reads every part's state, starts replays."""

    @property
    def config(self) -> HubConfig: ...

    @property
    def db(self) -> Database: ...

    @property
    def receipts(self) -> Receipts: ...

    @property
    def replays(self) -> ReplayJobs: ...

    @property
    def workers(self) -> Sequence[Worker]: ...

    @property
    def pollers(self) -> Mapping[str, Poller]: ...

    @property
    def mdm(self) -> MdmService: ...

    @property
    def journal(self) -> OrderJournal: ...

    @property
    def last_reload(self) -> Mapping[str, object]: ...


class ApiHub(OpsHub, IngressHub, Protocol):
    """The HTTP app (:mod:`hub.api.app`): webhooks, health, metrics and the ops API."""
