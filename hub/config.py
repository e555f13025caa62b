"""``hub.yaml``: the connections (configured connectors) and the routes between them.

    mappings: ../mappings            # folder of mapping files, relative to this file
    connections:
      shop:                          # a connection: one configured instance of a connector
        connector: shopify
        options:
          webhook_secret: env:SHOPIFY_WEBHOOK_SECRET
      erp:
        connector: http
        system: tryton               # optional: the system it talks to (default: the connector)
        options: {url: "http://127.0.0.1:9000/orders"}
    routes:
      - name: shop-orders-in         # inbound: source events -> mapping -> canonical topic
        from: shop
        mapping: shopify/orders_create
      - name: orders-to-erp          # outbound: canonical events -> destination
        from: canonical.order
        to: erp
        when: "currency == 'EUR'"    # optional condition on the event's data (and meta)
        skip_origin: true            # optional: not back to the system the event came from
        drop_echoes: true            # the default: nothing new for the destination is not sent

A bad file is refused as a whole with a :class:`ConfigError` listing every problem with its
file, line and path.

A connection whose routes are all disabled (``enabled: false``) is *idle*
(:class:`IdleConnection`): its options are checked, its secret references too, but what they
refer to is neither read nor required; it receives no webhooks, is not polled and is sent
nothing. Enabling one of its routes (a reload) reads its secrets, and a missing one refuses the
change, naming the option's file and line. (A connection no route names is in use, as before:
its webhooks are received, it is polled, it can be checked.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic import ValidationError as PydanticValidationError

import connectors
from connectors import Connector, ConnectorOptions, PollingSource, Sink, WebhookSource

from .errors import ConfigError, Problem
from .mapping import MappingSet
from .mapping.expr import ExprError, MappingContext, Scope, compile_expr
from .matching import MatchConfig, load_match_config
from .retry import RetryPolicy
from .settings import ENTITIES, Seconds, Settings
from .yamlfile import Loc, YamlDoc, load_yaml, validation_problems

NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,62}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class BreakerSpec(_Strict):
    failures: int = Field(
        default=5, ge=1, description="Consecutive failures (of different events)."
    )
    open_for: Seconds = 5.0
    max_open_for: Seconds = 300.0


class LimitsSpec(_Strict):
    rate: float | None = Field(default=None, gt=0, description="Attempts per second at most.")
    burst: int | None = Field(default=None, ge=1)
    circuit_breaker: BreakerSpec | None = None


class RetrySpec(_Strict):
    max_attempts: int | None = Field(default=None, ge=1)
    initial_delay: Seconds | None = None
    max_delay: Seconds | None = None
    max_total: Seconds | None = None
    ordered: bool | None = None

    @model_validator(mode="after")
    def _delays_in_order(self) -> RetrySpec:
        if (
            self.initial_delay is not None
            and self.max_delay is not None
            and self.initial_delay > self.max_delay
        ):
            raise ValueError("initial_delay is longer than max_delay, which caps every delay")
        return self


class ConnectionSpec(_Strict):
    connector: str
    # The system the connection talks to (default: the connector's name): events from it carry
    # it as their origin system (ce_hubsystem, meta.system); see OutboundRoute.skip_origin.
    system: str | None = Field(default=None, pattern=NAME_PATTERN)
    options: dict[str, Any] = Field(default_factory=dict)
    limits: LimitsSpec = Field(default_factory=LimitsSpec)


class RouteSpec(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    source: str = Field(alias="from")
    to: str | None = None
    mapping: str | None = None
    when: str | None = None
    skip_origin: bool = False
    drop_echoes: bool = True
    last_writer_wins: bool = False
    enabled: bool = True
    description: str = ""
    retry: RetrySpec | None = None


class HubFile(_Strict):
    mappings: str = "mappings"
    mdm: str | None = None  # the match configuration (docs/mdm.md), relative to hub.yaml
    connections: dict[str, ConnectionSpec] = Field(default_factory=dict)
    routes: list[RouteSpec] = Field(default_factory=list)


@dataclass(frozen=True)
class InboundRoute:
    name: str
    connection: str
    mapping: str
    enabled: bool
    when: Condition | None = None
    retry: RetrySpec | None = None  # for retriable mapping failures (e.g. master data lookups)
    index: int = 0  # position in hub.yaml's routes, for problems found after loading

    def policy(self, settings: Settings) -> RetryPolicy:
        return _policy(self.retry, settings)


@dataclass(frozen=True)
class OutboundRoute:
    name: str
    entity: str
    destination: str
    mapping: str | None
    enabled: bool
    when: Condition | None = None
    retry: RetrySpec | None = None  # unset fields: the HUB_RETRY_* defaults
    index: int = 0  # position in hub.yaml's routes, for problems found after loading
    # Skip events whose origin system (ce_hubsystem) is the destination's system: a change is
    # not sent back to the system it came from.
    skip_origin: bool = False
    # Keep what the destination holds (hub.sync) when it also reports this entity (two-way
    # sync), and do not send it what it holds already or the echo of a change it has: each
    # route compares its own document. On by default.
    drop_echoes: bool = True
    # Concurrent edits (hub.sync): an event older, by its source's own updated_at, than a change
    # of the same object another system made is not delivered: the last writer wins.
    last_writer_wins: bool = False

    def policy(self, settings: Settings) -> RetryPolicy:
        return _policy(self.retry, settings)


def _policy(retry: RetrySpec | None, settings: Settings) -> RetryPolicy:
    """A route's retry policy: its ``retry:`` keys, the HUB_RETRY_* defaults for the rest."""
    spec = retry or RetrySpec()
    return RetryPolicy(
        max_attempts=spec.max_attempts or settings.retry_max_attempts,
        initial_delay_s=_pick(spec.initial_delay, settings.retry_initial_delay_s),
        max_delay_s=_pick(spec.max_delay, settings.retry_max_delay_s),
        max_total_s=_pick(spec.max_total, settings.retry_max_total_s),
        ordered=settings.retry_ordered if spec.ordered is None else spec.ordered,
    )


def _pick(value: float | None, default: float) -> float:
    return default if value is None else float(value)


@dataclass(frozen=True)
class Condition:
    """A route's ``when:`` expression, compiled; evaluated on the event's data."""

    source: str
    test: Callable[[Any], bool]

    def __call__(self, data: Any, meta: Mapping[str, Any]) -> bool:
        return bool(self.test(Scope(data, data, meta, MappingContext({}, None, "route"))))


def _condition(
    doc: YamlDoc, loc: Loc, source: str | None, problems: list[Problem]
) -> Condition | None:
    if source is None:
        return None
    try:
        fn, _info = compile_expr(source)
    except ExprError as exc:
        problems.append(doc.problem((*loc, "when"), str(exc)))
        return None
    return Condition(source, fn)


@dataclass(frozen=True)
class IdleConnection:
    """A connection whose routes are all disabled: its options are checked but its secrets are
    not read (their values here are empty), and nothing opens it. :meth:`open` reads them, for a use
    outside the routes (``hub connectors check NAME``, the dashboard's check)."""

    name: str
    connector: type[Connector]
    system: str | None
    options: ConnectorOptions
    spec: ConnectionSpec
    base_dir: Path
    doc: YamlDoc

    def open(self, needed_by: str | None = None) -> Connector:
        """The connection with its secrets read; :class:`ConfigError` (file, line, option)
        when one is missing or too short."""
        problems: list[Problem] = []
        connector = _connector(
            self.doc, self.name, self.spec, self.connector, self.base_dir, needed_by, problems
        )
        if connector is None:
            raise ConfigError(problems)
        return connector


@dataclass
class HubConfig:
    file: Path
    mappings_dir: Path
    doc: YamlDoc | None = None
    connections: dict[str, Connector] = field(default_factory=dict)
    idle: dict[str, IdleConnection] = field(default_factory=dict)  # their routes all disabled
    limits: dict[str, LimitsSpec] = field(default_factory=dict)
    inbound: list[InboundRoute] = field(default_factory=list)
    outbound: list[OutboundRoute] = field(default_factory=list)
    mdm: MatchConfig | None = None  # `mdm:` in hub.yaml: master data's match configuration
    mdm_file: Path | None = None  # the file it came from (HUB_MDM_CONFIG, or hub.yaml's `mdm:`)

    def connection_names(self) -> list[str]:
        """Every connection, in use or idle, in hub.yaml's order."""
        return list(self.limits)  # each has its limits, in the order they were read

    def connector_of(self, name: str) -> type[Connector] | None:
        """The connector class of a connection, in use or idle."""
        if name in self.connections:
            return type(self.connections[name])
        idle = self.idle.get(name)
        return idle.connector if idle is not None else None

    def webhook_source(self, name: str) -> WebhookSource | None:
        conn = self.connections.get(name)
        return conn if isinstance(conn, WebhookSource) else None

    def polling_sources(self) -> dict[str, PollingSource]:
        return {n: c for n, c in self.connections.items() if isinstance(c, PollingSource)}

    def sinks(self) -> dict[str, Sink]:
        return {n: c for n, c in self.connections.items() if isinstance(c, Sink)}

    def inbound_for(self, connection: str) -> list[InboundRoute]:
        return [r for r in self.inbound if r.connection == connection and r.enabled]

    def outbound_for(self, destination: str) -> list[OutboundRoute]:
        return [r for r in self.outbound if r.destination == destination and r.enabled]

    def system_of(self, connection: str) -> str | None:
        """The system a connection talks to (its ``system:``, by default its connector's name);
        None for a connection this configuration does not have."""
        connector = self.connections.get(connection)
        return connector.system if connector is not None else None


def _match_config(doc: YamlDoc, path: Path, problems: list[Problem]) -> MatchConfig | None:
    """The match configuration ``mdm:`` names: its own problems with its own file and line."""
    try:
        return load_match_config(path)
    except ConfigError as exc:
        problems.extend(exc.problems)
    except OSError as exc:
        problems.append(doc.problem(("mdm",), f"cannot read {path}: {exc.strerror or exc}"))
    return None


def load_mdm_config(path: Path, problems: list[Problem]) -> MatchConfig | None:
    """``HUB_MDM_CONFIG``'s match configuration: its problems with its own file and line."""
    try:
        return load_match_config(path)
    except ConfigError as exc:
        problems.extend(exc.problems)
    except OSError as exc:
        problems.append(
            Problem(str(path), "", f"cannot read it (HUB_MDM_CONFIG): {exc.strerror or exc}")
        )
    return None


def load_config(
    path: Path,
    text: str | None = None,
    *,
    mdm: Path | None = None,
    activate: frozenset[str] = frozenset(),
) -> HubConfig:
    """hub.yaml, checked; ``mdm``: the match configuration to use instead of its ``mdm:``
    (``HUB_MDM_CONFIG``); ``activate``: connections to open (their secrets read) even if their
    routes are all disabled."""
    doc = load_yaml(path, text)
    if doc.data is None:
        doc.data = {}
    if not isinstance(doc.data, dict):
        raise ConfigError([doc.problem((), "must be a mapping with connections and routes")])
    try:
        raw = HubFile.model_validate(doc.data)
    except PydanticValidationError as exc:
        raise ConfigError(_problems(doc, (), exc)) from None

    base = path.resolve().parent
    problems: list[Problem] = []
    config = HubConfig(file=path, mappings_dir=(base / raw.mappings).resolve(), doc=doc)
    if mdm is not None:
        config.mdm_file = mdm.resolve()
        config.mdm = load_mdm_config(mdm, problems)
    elif raw.mdm is not None:
        config.mdm_file = (base / raw.mdm).resolve()
        config.mdm = _match_config(doc, base / raw.mdm, problems)

    needed = _needed_by(raw.routes, list(raw.connections), activate)
    for name, spec in raw.connections.items():
        loc: Loc = ("connections", name)
        if not _valid_name(name):
            problems.append(doc.problem(loc, f"connection name {name!r} must match {NAME_PATTERN}"))
            continue
        cls = connectors.get(spec.connector)
        if cls is None:
            broken = connectors.problems().get(spec.connector)
            known = ", ".join(connectors.names())
            why = (
                f"connector {spec.connector!r} is installed but failed to load: {broken}"
                if broken
                else f"unknown connector {spec.connector!r} (known: {known})"
            )
            problems.append(doc.problem((*loc, "connector"), why))
            continue
        if name in needed:
            connector = _connector(doc, name, spec, cls, base, needed[name], problems)
            if connector is not None:
                config.connections[name] = connector
                config.limits[name] = spec.limits
            continue
        try:  # idle: the options checked, the secrets not read
            options = cls.Options.model_validate(
                spec.options, context={"base_dir": str(base), "resolve_secrets": False}
            )
        except PydanticValidationError as exc:
            problems.extend(_problems(doc, (*loc, "options"), exc))
            continue
        config.idle[name] = IdleConnection(name, cls, spec.system, options, spec, base, doc)
        config.limits[name] = spec.limits

    seen: set[str] = set()
    for i, route in enumerate(raw.routes):
        loc = ("routes", i)
        if route.name in seen:
            problems.append(doc.problem((*loc, "name"), f"route name {route.name!r} used twice"))
        seen.add(route.name)
        if route.source.startswith("canonical."):
            entity = route.source.removeprefix("canonical.")
            if entity not in ENTITIES:
                problems.append(
                    doc.problem(
                        (*loc, "from"), f"unknown entity {entity!r} (known: {', '.join(ENTITIES)})"
                    )
                )
                continue
            if route.to is None:
                problems.append(doc.problem(loc, "a route from a canonical topic needs 'to'"))
                continue
            dest = config.connector_of(route.to)
            if dest is None and route.to not in raw.connections:
                problems.append(doc.problem((*loc, "to"), f"unknown connection {route.to!r}"))
            elif dest is not None and not issubclass(dest, Sink):
                problems.append(
                    doc.problem((*loc, "to"), f"connection {route.to!r} cannot receive events")
                )
            config.outbound.append(
                OutboundRoute(
                    route.name,
                    entity,
                    route.to,
                    route.mapping,
                    route.enabled,
                    _condition(doc, loc, route.when, problems),
                    route.retry,
                    i,
                    skip_origin=route.skip_origin,
                    drop_echoes=route.drop_echoes,
                    last_writer_wins=route.last_writer_wins,
                )
            )
        else:
            conn = config.connector_of(route.source)
            if conn is None and route.source not in raw.connections:
                problems.append(
                    doc.problem(
                        (*loc, "from"),
                        f"unknown connection {route.source!r} (use a connection name "
                        "or canonical.<entity>)",
                    )
                )
            elif conn is not None and not issubclass(conn, WebhookSource | PollingSource):
                problems.append(
                    doc.problem((*loc, "from"), f"connection {route.source!r} is not a source")
                )
            if route.to is not None:
                problems.append(
                    doc.problem(
                        (*loc, "to"),
                        "an inbound route publishes to its mapping's entity; remove 'to'",
                    )
                )
            if route.skip_origin:
                problems.append(
                    doc.problem(
                        (*loc, "skip_origin"),
                        "skip_origin is for routes to a destination (from: canonical.<entity>)",
                    )
                )
            for only_out in ("drop_echoes", "last_writer_wins"):
                if only_out in route.model_fields_set:
                    problems.append(
                        doc.problem(
                            (*loc, only_out),
                            f"{only_out} is for routes to a destination (from: canonical.<entity>)",
                        )
                    )
            if route.mapping is None:
                problems.append(doc.problem(loc, "an inbound route needs 'mapping'"))
                continue
            config.inbound.append(
                InboundRoute(
                    route.name,
                    route.source,
                    route.mapping,
                    route.enabled,
                    _condition(doc, loc, route.when, problems),
                    route.retry,
                    i,
                )
            )

    if problems:
        raise ConfigError(problems)
    return config


def _needed_by(
    routes: list[RouteSpec], names: list[str], activate: frozenset[str]
) -> dict[str, str | None]:
    """The connections in use, each with the first enabled route that names it (for the errors
    of its secrets): all but those that only disabled routes name (unless asked for by name)."""
    named: set[str] = set()
    needed: dict[str, str | None] = {}
    for route in routes:
        for name in (route.source, route.to):
            if name is None or name.startswith("canonical."):
                continue
            named.add(name)
            if route.enabled and needed.get(name) is None:
                needed[name] = f"route {route.name!r}"
    for name in names:
        if name not in named or name in activate:
            needed.setdefault(name, None)
    return needed


def _connector(
    doc: YamlDoc,
    name: str,
    spec: ConnectionSpec,
    cls: type[Connector],
    base: Path,
    needed_by: str | None,
    problems: list[Problem],
) -> Connector | None:
    """A connection opened: its options checked and its secrets read (their problems added to
    ``problems``; then None)."""
    context = {"base_dir": str(base), "needed_by": needed_by}
    try:
        options = cls.Options.model_validate(spec.options, context=context)
    except PydanticValidationError as exc:
        problems.extend(_problems(doc, ("connections", name, "options"), exc))
        return None
    connector = cls(name, options)
    if spec.system is not None:
        connector.system = spec.system
    return connector


def check_routes(config: HubConfig, mappings: MappingSet) -> None:
    """Every route's mapping exists and fits the route; raises ConfigError otherwise."""
    problems: list[Problem] = []
    doc = config.doc

    def fail(index: int, message: str) -> None:
        problem = Problem(str(config.file), f"routes[{index}].mapping", message)
        if doc is not None:
            problem = doc.problem(("routes", index, "mapping"), message)
        problems.append(problem)

    for route in config.inbound:
        i = route.index
        mapping = mappings.get(route.mapping)
        if mapping is None:
            fail(i, f"no mapping {route.mapping!r} in {mappings.directory}")
            continue
        if mapping.target_entity is None:
            fail(i, f"mapping {route.mapping!r} does not produce a canonical entity")
        conn = config.connector_of(route.connection)
        if conn is not None and mapping.source_connector not in (None, conn.name):
            fail(
                i,
                f"mapping {route.mapping!r} reads {mapping.source_connector} events but "
                f"connection {route.connection!r} is a {conn.name} connection",
            )
    for out in config.outbound:
        if out.mapping is not None and out.mapping not in mappings:
            fail(out.index, f"no mapping {out.mapping!r} in {mappings.directory}")
    if problems:
        raise ConfigError(problems)


def _valid_name(name: str) -> bool:
    import re

    return re.fullmatch(NAME_PATTERN, name) is not None


def _problems(doc: YamlDoc, prefix: Loc, exc: PydanticValidationError) -> list[Problem]:
    return validation_problems(doc, prefix, exc)
