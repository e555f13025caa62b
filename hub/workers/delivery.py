"""Delivery: canonical events -> one destination (a consumer group per destination).

Events of different keys are delivered concurrently (``HUB_DELIVERY_CONCURRENCY`` per
partition), events of one key one after the other. A refusal (e.g. HTTP 4xx other than 408/425/
429) makes a dead letter at once. A retriable failure (5xx, 429, timeout, connection refused)
does not hold the partition: the event is parked in the retry table (:mod:`hub.retry`) and tried
again after a backoff, within its route's ``retry:`` policy; later events of the same key wait
behind it when the route is ``ordered`` (the default), other keys flow. Exhausted retries make a
dead letter with every attempt's time.

Each destination has a circuit breaker and, if configured, a rate limit (``limits:`` on its
connection), both shared by every delivery process through the database (:mod:`hub.circuits`,
:mod:`hub.ratelimit`). While the circuit is open the worker stops fetching, so events wait in
Kafka, nothing is retried in a storm, and nothing is dead-lettered for the outage.

An event goes through each of its routes to the destination on its own: a route's delivery has
its own ``Idempotency-Key`` (:func:`connectors.base.idempotency_key_for` of event and route) and
its own record, written as soon as the destination accepted it. So an event redelivered by
Kafka after a crash is not sent twice through a route, and a retry of one route never resends
another that succeeded: only deliveries in flight at the moment of a crash can be repeated (at
most ``HUB_DELIVERY_CONCURRENCY`` per partition), with the same key.

Routes and outbound mappings see where the event came from: ``meta.origin`` (the connection) and
``meta.system`` (its system), from the ``ce_hubconnection`` and ``ce_hubsystem`` the event
carries since its raw event, and where it goes: ``meta.connection`` (the destination) and
``meta.destination_system`` (its system, what ``external_id()`` asks the crosswalk about).
A route with ``skip_origin: true`` does not send an event back to the system it came from
(the destination's ``system:``). Sinks get them as ``Delivery.origin`` and
``Delivery.origin_system``.

Every route of an event is attempted, whatever became of the others. While one is retriable the
event is parked (one row: its retries attempt the routes not delivered yet); when one is refused
the event becomes a dead letter at once, and its replay sends the routes not delivered yet.

The ids a destination reports having assigned (:class:`connectors.DeliveryResult`) are linked
to the event's golden id in the crosswalk (:mod:`hub.crosswalk`) for the destination's system,
before the delivery is recorded. A link that fails (the database, or an id linked to another
golden id already) is logged and counted (``hub_crosswalk_links_total``), and the delivery is
recorded all the same: it happened, and sending it again would create the object twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import defaultdict
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from aiokafka import TopicPartition
from sqlalchemy.exc import SQLAlchemyError

from connectors import Delivery, DeliveryResult, Sink
from hub import tracing
from hub.batching import GroupCommit
from hub.canonical import decode
from hub.circuits import SharedCircuit
from hub.config import HubConfig, LimitsSpec, OutboundRoute
from hub.crosswalk import Crosswalk
from hub.db import EVERY_ROUTE
from hub.deadletters import ATTEMPT_HEADER, REPLAY_HEADER, Stage
from hub.envelope import (
    ORIGIN_CONNECTION,
    ORIGIN_SYSTEM,
    EnvelopeError,
    from_kafka,
    header_value,
    now_rfc3339,
)
from hub.errors import (
    CrosswalkConflict,
    DeliveryFailed,
    MappingFailed,
    ProcessingError,
    RouteConditionFailed,
)
from hub.journal import delivered_row
from hub.logs import log_context
from hub.mdm import resolve_ahead
from hub.ratelimit import RateLimiter
from hub.retry import CircuitBreaker, Parked, RetryPolicy
from hub.sync import Echo, Stale, SyncState, fingerprint

from .base import NotNow
from .retrying import (
    CircuitOpen,
    Outcome,
    RetryingWorker,
    event_id_of,
    order_key_of,
    record_fields,
)

if TYPE_CHECKING:
    from hub.ports import MappingWorkerHub

log = logging.getLogger(__name__)


class DeliveryWorker(RetryingWorker):
    stage = Stage.DELIVER
    hub: MappingWorkerHub

    def __init__(
        self, hub: MappingWorkerHub, destination: str, sink: Sink, routes: list[OutboundRoute]
    ) -> None:
        s = hub.settings
        limits = hub.config.limits.get(destination) or LimitsSpec()
        cb = limits.circuit_breaker
        breaker = CircuitBreaker(
            threshold=cb.failures if cb else s.breaker_failures,
            open_s=float(cb.open_for) if cb else s.breaker_open_s,
            max_open_s=float(cb.max_open_for) if cb else s.breaker_max_open_s,
        )
        super().__init__(hub, s.delivery_group(destination), breaker)
        self.destination = destination
        self.sink = sink
        self.routes = routes
        self.topics = sorted({s.canonical_topic(r.entity) for r in routes})
        self._entity_by_topic = {s.canonical_topic(r.entity): r.entity for r in routes}
        self.signature = self.signature_of(sink, routes, limits)
        self.circuit = SharedCircuit(
            hub.db, destination, breaker, hub.db.instance, s.breaker_sync_interval_s
        )
        self.limiter = (
            RateLimiter(hub.db, destination, limits.rate, limits.burst) if limits.rate else None
        )
        self._routes_of: HubConfig | None = None
        self._routes_by_entity: dict[str | None, list[tuple[OutboundRoute, RetryPolicy]]] = {}
        self._took = hub.metrics.delivery_seconds.labels(destination)
        self._records: GroupCommit[tuple[str, str]] = GroupCommit(
            lambda done: hub.db.record_deliveries(destination, done)
        )
        self.crosswalk = Crosswalk(hub.db)
        self.sync = SyncState(hub.db)
        self._dest_system = hub.config.system_of(destination) or destination
        self._two_way: tuple[Any, Any, set[str]] = (None, None, set())

    @staticmethod
    def signature_of(
        sink: Sink, routes: list[OutboundRoute], limits: LimitsSpec | None = None
    ) -> tuple[str, str, tuple[str, ...]]:
        """What a running worker depends on: its connection's settings, limits and topics."""
        limits_json = (limits or LimitsSpec()).model_dump_json()
        digest = hashlib.sha256(f"{sink.fingerprint()}\n{limits_json}".encode()).hexdigest()
        return (sink.name, digest, tuple(sorted({r.entity for r in routes})))

    async def process(self, tp: TopicPartition, records: list[Any]) -> None:
        if not self.circuit.started:  # fetched as the worker joined, before any housekeeping
            await self.circuit.refresh()
        if self.circuit.pause is not None:  # an operator paused the destination meanwhile
            raise NotNow(self.destination)
        done = await self.hub.db.delivered(self.destination, [event_id_of(r) for r in records])
        by_key: dict[Any, list[Any]] = defaultdict(list)
        seen: set[str] = set()
        for record in records:
            event_id = event_id_of(record)
            if event_id in seen:
                # A copy later in the same batch (the mapper published it again after a crash):
                # the check above only knows what was delivered before the batch.
                log.info("%s twice in one batch; the copy skipped", event_id)
                continue
            seen.add(event_id)
            by_key[record.key if record.key is not None else event_id].append(record)
        gate = asyncio.Semaphore(self.settings.delivery_concurrency)
        futures: list[asyncio.Future[None]] = []

        async def one_key(group: list[Any]) -> None:
            async with gate:
                for record in group:  # one key: strictly one after the other
                    futures.extend((await self.handle(record, None, done)).futures)

        await asyncio.gather(*(one_key(g) for g in by_key.values()))
        await self.hub.publisher.wait(futures)

    async def on_assignment(self, partitions: set[TopicPartition]) -> None:
        await self.circuit.refresh()  # before the first fetch: the circuit as others left it
        await super().on_assignment(partitions)

    async def housekeeping(self) -> None:
        await self.circuit.refresh()  # at most every HUB_BREAKER_SYNC_INTERVAL_S
        if self.circuit.pause is None:  # paused by an operator: parked events wait too
            await super().housekeeping()

    def paused(self) -> bool:
        if self.circuit.pause is not None:  # an operator's pause: nothing fetched, no probe
            return True
        return super().paused()

    async def handle(
        self, record: Any, parked: Parked | None, done: set[tuple[str, str]] | None = None
    ) -> Outcome:
        """Deliver one record through every enabled route of this destination that takes it
        and has not delivered it yet. ``done``: the (event id, route) pairs delivered, as read
        for the batch (None: read them now, as a retry does)."""
        with log_context(**record_fields(record), destination=self.destination):
            return await self._handle(record, parked, done)

    async def _handle(
        self, record: Any, parked: Parked | None, done: set[tuple[str, str]] | None
    ) -> Outcome:
        hub = self.hub
        context: dict[str, str | None] = {"destination": self.destination}
        try:
            event = from_kafka(record.key, record.value, record.headers)
            data = decode(event.data)
        except (EnvelopeError, ValueError) as exc:
            return self.dead_now(record, Stage.DELIVER, exc, parked, context)
        entity = self._entity_by_topic.get(record.topic)
        routes = self._routes(entity)
        if not routes:
            return Outcome()
        if done is None:
            done = await hub.db.delivered(self.destination, [event.id])
        if done:
            if (event.id, EVERY_ROUTE) in done:
                routes = []
            else:
                routes = [(r, p) for r, p in routes if (event.id, r.name) not in done]
            if not routes:
                log.info("%s already delivered to %s; skipped", event.id, self.destination)
                return Outcome(done=True)
        origin = event.extensions.get(ORIGIN_CONNECTION)
        config = hub.config
        # An event mapped before origins were carries no system: its connection's, as now.
        system = event.extensions.get(ORIGIN_SYSTEM) or (
            config.system_of(origin) if origin else None
        )
        meta = {
            "connection": self.destination,
            "destination_system": config.system_of(self.destination) or self.destination,
            "event_id": event.id,
            "origin": origin,
            "system": system,
        }
        entity = entity or ""
        golden = data.get("id") if isinstance(data, dict) else None
        golden = str(golden) if golden is not None else event.subject
        echo: Echo | None = None
        if system and golden:
            echo = await self._echo(event.id, entity, golden, data, origin, system)
            if echo is not None and (echo.golden_id != golden or echo.catching_up):
                log.info(
                    "%s is the echo of %s (%s): not delivered to %s",
                    event.id,
                    f"a create the hub wrote to {system}"
                    if echo.golden_id != golden
                    else f"an earlier write of the hub's that {system} is catching up on",
                    echo.event_id,
                    self.destination,
                )
                hub.metrics.echoes_dropped.labels(system, self.destination).inc()
                return Outcome(done=True)

        stale: Stale | None = None
        if system and golden and any(r.last_writer_wins for r, _ in routes):
            stale = await self._stale(event.id, entity, golden, data, system)

        dest_system = self._dest_system
        taken: list[tuple[OutboundRoute, RetryPolicy, Any, str | None]] = []
        for route, policy in routes:
            context = {"route": route.name, "destination": self.destination}
            if stale is not None and route.last_writer_wins:
                log.info(
                    "%s changed at %s is older than %s's change at %s (%s): not delivered "
                    "(%s, last writer wins)",
                    event.id,
                    stale.changed_at.isoformat(),
                    stale.newer_system,
                    stale.newer_at.isoformat(),
                    stale.newer_event_id,
                    route.name,
                )
                continue
            if route.skip_origin and system and system == config.system_of(self.destination):
                log.debug("%s came from %s: not sent back (%s)", event.id, system, route.name)
                continue
            try:
                if route.when is not None and not route.when(data, meta):
                    continue
            except (ValueError, TypeError, ArithmeticError) as exc:
                err = RouteConditionFailed(route.name, route.when.source if route.when else "", exc)
                return self.dead_now(record, Stage.ROUTE, err, parked, context)
            body: Any = _AS_IS
            if route.mapping is not None and event.type != f"hub.{entity}":
                # hub.customer.merged / unmerged: not a customer for a mapping to write (the
                # golden records they leave follow as hub.customer events: hub.mdm_follow)
                continue
            if route.mapping is not None:
                mapping = hub.mappings.get(route.mapping)
                try:
                    if mapping is None:
                        raise MappingFailed(route.mapping, "(root)", None, "mapping is not loaded")
                    apply = partial(mapping.apply, data, meta, hub.resolver)
                    body = await resolve_ahead(hub.resolver, apply)
                except ProcessingError as exc:
                    if exc.retriable:  # master data unavailable: tried again later
                        key = order_key_of(record) if policy.ordered else None
                        return await self.failed(
                            record, event.id, exc, policy, key=key, parked=parked, context=context
                        )
                    return self.dead_now(record, Stage.MAP, exc, parked, context)
                if body is None:
                    continue
            state: str | None = None  # what the route writes, for hub.sync
            if golden and self._tracked(route):
                state = fingerprint(self.sink.state_of(body))
                why = await self._nothing_new(event.id, entity, golden, system, route, state, echo)
                if why:
                    log.info("%s is %s: not delivered (%s)", event.id, why, route.name)
                    hub.metrics.echoes_dropped.labels(system or "", self.destination).inc()
                    continue
            taken.append((route, policy, body, state))
        if not taken:
            return Outcome()

        ordered = any(p.ordered for _, p, _, _ in taken)
        key = order_key_of(record) if ordered else None
        if parked is None and self.waits_behind(key):
            assert key is not None
            return await self.park_behind(record, event.id, taken[0][0].name, key)

        retriable: tuple[OutboundRoute, RetryPolicy, ProcessingError] | None = None
        refused: tuple[OutboundRoute, ProcessingError] | None = None
        for route, policy, body, state in taken:
            as_is = body is _AS_IS  # the canonical JSON goes out as it came, not re-encoded
            if state is not None and golden:
                # Before the write: its echo may come back before the write answers.
                await self.sync.wrote(entity, dest_system, golden, route.name, state, event.id)
            delivery = Delivery(
                event_id=event.id,
                event_type=event.type,
                subject=event.subject,
                correlation_id=event.correlationid,
                headers=event.attributes(),
                data=data if as_is else body,
                body=event.data if as_is else None,
                route=route.name,
                origin=origin,
                origin_system=system,
            )
            with log_context(route=route.name):
                if hub.tracer is None:
                    error, result = await self._attempt(delivery)
                else:
                    error, result = await self._traced_attempt(delivery, route.name)
            if error is None:
                hub.metrics.delivered.labels(route.name, self.destination).inc()
                if result is not None and result.created:
                    with log_context(route=route.name):
                        await self._link(result, data, event.subject)
                if entity == "order" and isinstance(data, dict):  # its steps (hub.journal)
                    created = None
                    if result is not None:
                        ids = (c.external_id for c in result.created if c.entity == "order")
                        created = next(ids, None)
                    hub.journal.note(
                        [
                            delivered_row(
                                event,
                                data,
                                route.name,
                                self.destination,
                                config.system_of(self.destination),
                                created,
                            )
                        ]
                    )
                # Recorded at once, before the next route: a retry of another route, or a
                # crash, never sends it again (only a delivery in flight at the moment of a
                # crash can be repeated, with the same Idempotency-Key). Deliveries that finish
                # together share one transaction (hub.batching).
                await self._records.add((event.id, route.name))
            elif not error.retriable:
                refused = refused or (route, error)
                if state is not None and golden:  # it does not hold what was refused
                    await self.sync.forget(entity, dest_system, golden, route.name, event.id)
            elif retriable is None:
                retriable = (route, policy, error)
            elif not isinstance(error, CircuitOpen):  # failed() counts the first one
                context = {"route": route.name, "destination": self.destination}
                self._count(hub.metrics.failed, Stage.DELIVER, context, error)
        if refused is not None:
            # The routes not delivered (this one, and any that failed otherwise) wait for a
            # replay of the dead letter.
            route, error = refused
            context = {"route": route.name, "destination": self.destination}
            if retriable is not None and not isinstance(retriable[2], CircuitOpen):
                other = {"route": retriable[0].name, "destination": self.destination}
                self._count(hub.metrics.failed, Stage.DELIVER, other, retriable[2])
            with log_context(route=route.name):
                return self.dead_now(record, Stage.DELIVER, error, parked, context)
        if retriable is not None:
            route, policy, error = retriable
            context = {"route": route.name, "destination": self.destination}
            with log_context(route=route.name):  # the failure's log line names its route
                return await self.failed(
                    record, event.id, error, policy, key=key, parked=parked, context=context
                )
        replay_of = header_value(record.headers, REPLAY_HEADER)
        if replay_of:
            await hub.deadletters.set_outcome(
                replay_of,
                f"delivered to {self.destination} at {now_rfc3339()}",
                header_value(record.headers, ATTEMPT_HEADER),
            )
        return Outcome(done=True)

    async def _nothing_new(
        self,
        event_id: str,
        entity: str,
        golden: str,
        system: str | None,
        route: OutboundRoute,
        state: str,
        echo: Echo | None,
    ) -> str:
        """Why the event, which ``route`` would write as ``state``, carries nothing new for this
        destination (hub.sync), or "" when it does. Each route compares its own document:

        - the destination holds it already (the hub wrote it, or the destination reported it);
        - it is the echo of a change the hub wrote to ``system`` that this destination has
          (wrote or reported itself) already: its own document from the echo may differ only
          where ``system`` keeps less than it (one name for a person's two);
        - ``system``'s report before it would have been written the same: what ``system``
          changed is not in this route's document (or the same echo is reported again).

        A retry or replay of the event that set what the destination holds is not compared:
        that write may have failed."""
        previous = None
        if system:
            previous = await self.sync.seen(entity, system, golden, route.name, state, event_id)
        dest = self.destination
        held = await self.sync.held(entity, self._dest_system, golden, route.name)
        if held is not None and held.event_id != event_id:
            if state == held.fingerprint:
                return f"what {dest} holds already (since {held.event_id})"
            if echo is not None and echo.source == "wrote" and echo.event_id == held.event_id:
                return f"{system}'s echo of {held.event_id}, which {dest} has"
        if previous is not None and previous == state:
            return f"what {system} reported before, as {route.name} writes it: nothing new"
        return ""

    async def _stale(
        self, event_id: str, entity: str, golden: str, data: Any, system: str
    ) -> Stale | None:
        """Last writer wins, by the change's own ``updated_at`` (none: not compared)."""
        stamp = data.get("updated_at") if isinstance(data, dict) else None
        if not isinstance(stamp, str):
            return None
        try:
            changed_at = datetime.fromisoformat(stamp)
        except ValueError:
            return None
        if changed_at.tzinfo is None:
            changed_at = changed_at.replace(tzinfo=UTC)
        return await self.sync.last_writer(entity, golden, system, changed_at, event_id)

    async def _echo(
        self,
        event_id: str,
        entity: str,
        golden: str,
        data: Any,
        origin: str | None,
        system: str,
    ) -> Echo | None:
        """An :class:`Echo` when the event is a change ``system`` reported that equals what the
        hub knows it holds (hub.sync): each route back to it that keeps it (:meth:`_tracked`)
        maps the event as it would be written there, and the fingerprints are compared. A new
        object that echoes a create of the hub's is linked to that golden id at once."""
        hub = self.hub
        config = hub.config
        states: dict[str, str] = {}
        for connection, sink in config.sinks().items():
            if config.system_of(connection) != system:
                continue
            for route in config.outbound_for(connection):
                if route.entity != entity or not self._tracked(route):
                    continue
                assert route.mapping is not None
                mapping = hub.mappings.get(route.mapping)
                if mapping is None:
                    continue
                meta = {"connection": connection, "origin": origin, "system": system}
                try:
                    apply = partial(mapping.apply, data, meta, hub.resolver)
                    body = await resolve_ahead(hub.resolver, apply)
                except ProcessingError as exc:
                    log.debug("%s: %s cannot say what it would write (%s)", event_id, route, exc)
                    return None
                if body is not None:
                    states[route.name] = fingerprint(sink.state_of(body))
        if not states:
            return None
        echo = await self.sync.reported(entity, system, golden, states, event_id)
        if echo is not None and echo.golden_id != golden and isinstance(data, dict):
            for ref in data.get("external_refs") or ():
                if not isinstance(ref, dict) or ref.get("system") not in (origin, system):
                    continue
                try:
                    link = await self.crosswalk.link(
                        entity,
                        system,
                        str(ref.get("id")),
                        echo.golden_id,
                        linked_by=f"echo:{origin or system}",
                        reason=f"the echo of the hub's write {echo.event_id}",
                    )
                except (CrosswalkConflict, OSError, SQLAlchemyError) as exc:
                    log.warning("linking the echo %s failed: %s", event_id, exc)
                    continue
                learn = getattr(hub.resolver, "learn", None)
                if learn is not None:
                    learn(link)
        return echo

    def _tracked(self, route: OutboundRoute) -> bool:
        """Whether the hub keeps what ``route``'s destination holds (hub.sync): a route with
        ``drop_echoes`` (the default) and a mapping (one without passes every canonical event
        on as it is) for an entity some system both reports and is written (two-way sync, where
        echoes come back). In a one-way flow nothing is kept."""
        if not route.drop_echoes or route.mapping is None:
            return False
        config, mappings = self.hub.config, self.hub.mappings
        if self._two_way[0] is not config or self._two_way[1] is not mappings:
            sources: set[tuple[str, str | None]] = set()
            for inbound in config.inbound:
                mapping = mappings.get(inbound.mapping) if inbound.enabled else None
                if mapping is not None and mapping.target_entity is not None:
                    sources.add((mapping.target_entity, config.system_of(inbound.connection)))
            written = {
                (r.entity, config.system_of(r.destination)) for r in config.outbound if r.enabled
            }
            two_way = {entity for entity, _ in sources & written}
            self._two_way = (config, mappings, two_way)
        return route.entity in self._two_way[2]

    def _routes(self, entity: str | None) -> list[tuple[OutboundRoute, RetryPolicy]]:
        """This destination's enabled routes for ``entity`` with their retry policies, as of
        the current configuration (a hot reload replaces ``hub.config``)."""
        config = self.hub.config
        if config is not self._routes_of:
            self._routes_of, self._routes_by_entity = config, {}
        routes = self._routes_by_entity.get(entity)
        if routes is None:
            routes = self._routes_by_entity[entity] = [
                (r, r.policy(self.settings))
                for r in config.outbound_for(self.destination)
                if r.entity == entity
            ]
        return routes

    async def _traced_attempt(
        self, delivery: Delivery, route: str
    ) -> tuple[ProcessingError | None, DeliveryResult | None]:
        """:meth:`_attempt` in a ``hub.deliver`` span (:mod:`hub.telemetry`), the child of the
        span that published the event; a destination called over HTTP is sent this span's
        traceparent (:data:`hub.tracing.calling`)."""
        tracer = self.hub.tracer
        assert tracer is not None
        attributes = {
            "hub.event_id": delivery.event_id,
            "hub.connection": delivery.headers.get("hubconnection", ""),
            "hub.route": route,
            "hub.destination": self.destination,
        }
        parent = delivery.headers.get("traceparent")
        with tracer.span("hub.deliver", parent, tracer.CLIENT, attributes) as span:
            calling = tracing.calling.set(tracer.traceparent(span))
            try:
                error, result = await self._attempt(delivery)
            finally:
                tracing.calling.reset(calling)
            if error is not None:
                tracer.failed(span, error)
        return error, result

    async def _attempt(
        self, delivery: Delivery
    ) -> tuple[ProcessingError | None, DeliveryResult | None]:
        breaker = self.breaker
        assert breaker is not None
        if not breaker.allow():
            return CircuitOpen(f"delivery to {self.destination}", breaker.retry_in()), None
        if self.limiter is not None:
            await self.limiter.acquire()
        started = time.perf_counter()
        try:
            result = await self.sink.deliver(delivery)
        except DeliveryFailed as exc:
            self._took.observe(time.perf_counter() - started)
            if exc.retriable:
                breaker.failure(delivery.event_id)
            else:
                breaker.success()  # it answered: it is up, it just refuses this event
            await self.circuit.publish()  # a write only when the circuit opened or closed
            return exc, None
        self._took.observe(time.perf_counter() - started)
        breaker.success()
        await self.circuit.publish()
        log.debug("delivered %s to %s", delivery.event_id, self.destination)
        return None, result

    async def _link(self, result: DeliveryResult, data: Any, subject: str | None) -> None:
        """Link the ids the destination assigned to the event's golden id (its ``id``, else
        its subject). Never raises: the delivery happened whatever becomes of the link."""
        golden = data.get("id") if isinstance(data, dict) else None
        golden = str(golden) if golden is not None else subject
        system = self.hub.config.system_of(self.destination) or self.destination
        counter = self.hub.metrics.crosswalk_links
        for created in result.created:
            if not golden:
                log.warning(
                    "%s reported %s, but the event has no golden id", self.destination, created
                )
                counter.labels(self.destination, "failed").inc()
                continue
            try:
                link = await self.crosswalk.link(
                    created.entity,
                    system,
                    created.external_id,
                    golden,
                    linked_by=f"sink:{self.destination}",
                    reason="created by the hub's delivery",
                    version=created.version,
                )
            except CrosswalkConflict as exc:
                log.warning(
                    "%s reported an id the crosswalk links elsewhere: %s", self.destination, exc
                )
                counter.labels(self.destination, "conflict").inc()
                continue
            except (OSError, SQLAlchemyError) as exc:
                log.error(
                    "linking %s %r in %s to %s failed (%s: %s); the delivery is recorded",
                    created.entity,
                    created.external_id,
                    system,
                    golden,
                    type(exc).__name__,
                    exc,
                )
                counter.labels(self.destination, "failed").inc()
                continue
            counter.labels(self.destination, "linked").inc()
            learn = getattr(self.hub.resolver, "learn", None)
            if learn is not None:  # this process's cache knows it at once
                learn(link)


_AS_IS: Any = object()
