"""Echo and loop prevention: what the hub knows each system holds of an object.

When the hub writes a customer to the CRM, the CRM reports the change back (a webhook, or the
next poll); written on to the ERP, the ERP reports it back too, and without a rule each report
is sent on again, forever. ``skip_origin: true`` keeps a change from going back to the system it
came from, but not the echo of the hub's own write from travelling on to the *other* systems.

**What the hub keeps.** Where some system both reports an entity and is written it (two-way
sync), every route with a mapping and ``drop_echoes`` (the default) keeps, per object (entity
and golden id):

- what its destination holds (table ``sync_state``, per system and route to it): the
  fingerprint (:func:`fingerprint` of the sink's :meth:`~connectors.Sink.state_of`) of the
  document the route writes, set just before the hub writes it (``wrote``: an echo may come back
  before the write has even answered, as BottleCRM's webhook does), and by every change that
  system reports, mapped through the same route (``reported``: the document the hub would write
  it if it sent it back); after a write, the first report equal to it is its echo (``echoed``);
- what each other system last reported, as the route would write it (table ``sync_seen``).

**The rule, per destination route.** A change system X reports is not delivered through a
route to destination D when it carries nothing new for D:

1. it equals, through X's own routes, an earlier write of the hub's that X had not reported yet
   (a poll that read the object between two writes): X is catching up, the echo of the newer
   write follows; not delivered anywhere;
2. the route's document equals what D holds (the hub wrote it, or D reported it);
3. it is X's *echo* of a write whose change D has already (the same event set what D holds):
   the route's document may differ from D's only where X keeps less than D (one name for a
   person's two), which is not a change;
4. X's report before it gives the same document: what X changed is not in this route's
   document (a save of something else, an echo reported again).

Anything else is delivered. So one edit is written to each other system once, and its echoes
stop at the first hop, while a change X makes to something its own route does not write (a sale
shipped in the ERP, a company changed in the CRM) still reaches the destinations whose documents
carry it. A route in a one-way flow, or without a mapping (the canonical event as it is), keeps
nothing and compares nothing. ``drop_echoes: false``
turns it off per route.

A system's new object that echoes a create of the hub's (BottleCRM's webhook arrives before its
answer gives the hub the new id, so before the crosswalk links it) has no golden id of its own
yet: it is compared with what the hub *wrote* to that system in the last :data:`ECHO_WINDOW_S`
seconds, by fingerprint, and when one matches it is that object's echo, not delivered anywhere,
and its id is linked to that golden id at once.

A retry or replay of the event whose write set what D holds is not compared (that write may
have failed), and a write D refused is forgotten: D does not hold it.

**Concurrent edits** (:meth:`SyncState.last_writer`, routes with ``last_writer_wins``): per
object the newest change any system reported, by that system's own timestamp (the canonical
``updated_at``); a change another system made earlier, heard later, is stale and not delivered.

The echo (rules 1 and 3) is recognised through X's own routes, so it needs the mappings both
ways to agree there: the outbound mapping of what the inbound one gives must be the document the
hub wrote (round trip). Where they do not, an echo is taken for a change and written once more,
and stops at the next hop, when the fingerprint settles. Limits: X's change to something its own
route does not write, made in the same save that echoes the hub's write, is taken for the echo
(rule 3); once X's view is passed on for another change (rule 4 let it through), it carries X's
view of the rest (one name).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from .db import Database, sync_clock, sync_seen, sync_state

ECHO_WINDOW_S = 3600.0
"""How long a create the hub wrote is compared with new objects of that system, by content."""

WROTE = "wrote"
ECHOED = "echoed"
REPORTED = "reported"
_AFTER = {WROTE: ECHOED, ECHOED: REPORTED}
"""A route's state after a report equal to it: the hub's write is echoed (its echo came), then
saved again (a later report that changed nothing the route writes)."""


def normalised(value: Any) -> Any:
    """``value`` without nulls, empty strings, lists and objects (at any depth): a field the
    document leaves out and one it leaves empty say the same."""
    if isinstance(value, dict):
        out = {k: normalised(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, "", [], {})}
    if isinstance(value, list):
        items = [normalised(v) for v in value]
        return [v for v in items if v not in (None, "", [], {})]
    return value


def fingerprint(document: Any) -> str:
    """SHA-256 of the document's canonical JSON (keys sorted, empties left out)."""
    text = json.dumps(normalised(document), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Echo:
    """A reported change that is not one, as the system's own routes see it: the object's
    golden id (the one whose write it echoes, for a new object), what set the state it equals
    (``source``, and ``event_id``: the change the hub wrote, or the system's last report), and
    whether it is an earlier write of the hub's that the system is catching up on."""

    golden_id: str
    source: str
    event_id: str
    catching_up: bool = False


@dataclass(frozen=True)
class Held:
    """What the hub knows a system holds of an object through one route: the fingerprint of
    that route's document, what set it (``wrote`` or ``reported``) and by which event."""

    fingerprint: str
    source: str
    event_id: str


@dataclass(frozen=True)
class Stale:
    """A change older, by its source's own timestamp, than one another system made."""

    changed_at: datetime
    newer_at: datetime
    newer_system: str
    newer_event_id: str


MAX_PENDING = 16
"""Earlier writes kept per object and route whose echo may still come."""


class SyncState:
    def __init__(self, db: Database, echo_window_s: float = ECHO_WINDOW_S) -> None:
        self.db = db
        self.echo_window_s = echo_window_s

    async def wrote(
        self,
        entity: str,
        system: str,
        golden_id: str,
        route: str,
        fingerprint: str,
        event_id: str,
    ) -> None:
        """The hub is about to write ``fingerprint`` to ``system`` through ``route``. What it
        wrote before and the system has not reported yet stays pending: a poll that read the
        object before this write lands reports that earlier write."""
        now = datetime.now(UTC)
        c = sync_state.c
        key = (entity, system, golden_id, route)

        def work(conn: Any) -> None:
            row = conn.execute(
                select(c.fingerprint, c.source, c.pending).where(*_where(key))
            ).first()
            pending: list[str] = []
            if row is not None and row.source == WROTE:
                pending = [*json.loads(row.pending or "[]"), row.fingerprint][-MAX_PENDING:]
            values = {
                "fingerprint": fingerprint,
                "source": WROTE,
                "event_id": event_id,
                "pending": json.dumps(pending),
                "updated_at": now,
            }
            self._upsert(conn, key, values)

        await self.db.run(work)

    async def reported(
        self,
        entity: str,
        system: str,
        golden_id: str,
        states: dict[str, str],
        event_id: str,
    ) -> Echo | None:
        """``system`` reported a change of ``golden_id`` (canonical event ``event_id``) whose
        routes back to it would write ``states`` (route -> fingerprint). An :class:`Echo` when
        that is what the hub knows the system holds, or one of its writes the system had not
        reported yet (the system is catching up: the writes before it are forgotten); else
        None, and ``states`` become what it holds. Several delivery workers ask about one
        event: each gets the answer the first one got."""
        if not states:
            return None
        now = datetime.now(UTC)
        window = now - timedelta(seconds=self.echo_window_s)
        c = sync_state.c

        def work(conn: Any) -> Echo | None:
            rows = {
                r.route: r
                for r in conn.execute(
                    select(
                        c.route,
                        c.fingerprint,
                        c.source,
                        c.event_id,
                        c.pending,
                        c.judged_event,
                        c.judged_echo,
                    ).where(
                        c.entity == entity,
                        c.system == system,
                        c.golden_id == golden_id,
                        c.route.in_(list(states)),
                    )
                )
            }
            keys = {route: (entity, system, golden_id, route) for route in states}
            if rows and all(
                (row := rows.get(route)) is not None and row.judged_event == event_id
                for route in states
            ):  # another worker judged this event already
                first = rows[next(iter(states))]
                if first.judged_echo:
                    late = any(rows[r].fingerprint != fp for r, fp in states.items())
                    source = WROTE if first.source == ECHOED else first.source
                    return Echo(golden_id, source, first.event_id, late)
                return None
            if rows and all(route in rows for route in states):
                caught_up: dict[str, list[str]] = {}
                late = False
                for route, fp in states.items():
                    row = rows[route]
                    pending = json.loads(row.pending or "[]")
                    if row.fingerprint == fp:
                        caught_up[route] = []
                    elif fp in pending:
                        caught_up[route] = pending[pending.index(fp) + 1 :]
                        late = True
                    else:
                        break
                else:
                    first = rows[next(iter(states))]
                    for route, pending in caught_up.items():
                        values: dict[str, Any] = {
                            "pending": json.dumps(pending),
                            "judged_event": event_id,
                            "judged_echo": True,
                        }
                        if not late:  # the echo of the write; after it, saves again
                            values["source"] = _AFTER.get(rows[route].source, REPORTED)
                        conn.execute(update(sync_state).where(*_where(keys[route])).values(values))
                    source = REPORTED if first.source == ECHOED else first.source
                    return Echo(golden_id, source, first.event_id, late)
            if not rows:
                # New to the hub: the echo of a create it wrote, not linked yet?
                route, fp = next(iter(states.items()))
                found = conn.execute(
                    select(c.golden_id, c.event_id)
                    .where(
                        c.entity == entity,
                        c.system == system,
                        c.route == route,
                        c.fingerprint == fp,
                        c.source.in_((WROTE, ECHOED)),
                        c.updated_at >= window,
                        c.golden_id != golden_id,
                    )
                    .order_by(c.updated_at.desc())
                    .limit(1)
                ).first()
                if found is not None:
                    echoed = (entity, system, found.golden_id, route)
                    conn.execute(update(sync_state).where(*_where(echoed)).values(source=ECHOED))
                    return Echo(found.golden_id, WROTE, found.event_id)
            for route, fp in states.items():
                values = {
                    "fingerprint": fp,
                    "source": REPORTED,
                    "event_id": event_id,
                    "pending": "[]",
                    "judged_event": event_id,
                    "judged_echo": False,
                    "updated_at": now,
                }
                self._upsert(conn, keys[route], values)
            return None

        return await self.db.run(work)

    async def held(self, entity: str, system: str, golden_id: str, route: str) -> Held | None:
        """What the hub knows ``system`` holds of ``golden_id`` through ``route``, if anything."""
        c = sync_state.c
        key = (entity, system, golden_id, route)

        def work(conn: Any) -> Held | None:
            row = conn.execute(
                select(c.fingerprint, c.source, c.event_id).where(*_where(key))
            ).first()
            return None if row is None else Held(row.fingerprint, row.source, row.event_id)

        return await self.db.run(work)

    async def seen(
        self, entity: str, system: str, golden_id: str, route: str, fingerprint: str, event_id: str
    ) -> str | None:
        """``system`` reported ``golden_id`` (event ``event_id``), which ``route`` (to another
        system) would write as ``fingerprint``: what the system's report before it would have
        written (None: none known). The same event asked again gets the same answer."""
        now = datetime.now(UTC)
        c = sync_seen.c
        where = (c.entity == entity, c.system == system, c.golden_id == golden_id, c.route == route)

        def work(conn: Any) -> str | None:
            row = conn.execute(select(c.fingerprint, c.previous, c.event_id).where(*where)).first()
            if row is not None and row.event_id == event_id:
                return str(row.previous) if row.previous is not None else None
            previous = row.fingerprint if row is not None else None
            values = {
                "fingerprint": fingerprint,
                "previous": previous,
                "event_id": event_id,
                "updated_at": now,
            }
            if row is not None:
                conn.execute(update(sync_seen).where(*where).values(values))
            else:
                key = {"entity": entity, "system": system, "golden_id": golden_id, "route": route}
                if not conn.execute(self.db.insert_ignore(sync_seen), [{**key, **values}]).rowcount:
                    conn.execute(update(sync_seen).where(*where).values(values))
            return previous

        return await self.db.run(work)

    async def forget(
        self, entity: str, system: str, golden_id: str, route: str, event_id: str
    ) -> None:
        """The write of ``event_id`` through ``route`` was refused: ``system`` does not hold
        it, and the next change is compared with nothing (it is written)."""
        c = sync_state.c
        key = (entity, system, golden_id, route)

        def work(conn: Any) -> None:
            conn.execute(
                sync_state.delete().where(*_where(key), c.event_id == event_id, c.source == WROTE)
            )

        await self.db.run(work)

    async def last_writer(
        self, entity: str, golden_id: str, system: str, changed_at: datetime, event_id: str
    ) -> Stale | None:
        """Last writer wins: a :class:`Stale` when another system changed ``golden_id`` later
        (by their own timestamps) than ``system`` did in this change; else None, and this
        change is the newest if it is. The same event asked again gets the same answer."""

        def work(conn: Any) -> Stale | None:
            c = sync_clock.c
            where = (c.entity == entity, c.golden_id == golden_id)
            row = conn.execute(select(c.changed_at, c.system, c.event_id).where(*where)).first()
            if row is not None:
                newest = _aware(row.changed_at)
                if row.event_id == event_id:
                    return None
                if changed_at < newest and row.system != system:
                    return Stale(changed_at, newest, row.system, row.event_id)
                if changed_at < newest:
                    return None
            values = {"changed_at": changed_at, "system": system, "event_id": event_id}
            if row is not None:
                conn.execute(update(sync_clock).where(*where).values(values))
                return None
            key = {"entity": entity, "golden_id": golden_id}
            if not conn.execute(self.db.insert_ignore(sync_clock), [{**key, **values}]).rowcount:
                conn.execute(
                    update(sync_clock).where(*where, c.changed_at <= changed_at).values(values)
                )
            return None

        return await self.db.run(work)

    def _upsert(self, conn: Any, key: tuple[str, str, str, str], values: dict[str, Any]) -> None:
        if conn.execute(update(sync_state).where(*_where(key)).values(values)).rowcount:
            return
        entity, system, golden_id, route = key
        row = {"entity": entity, "system": system, "golden_id": golden_id, "route": route}
        inserted = conn.execute(self.db.insert_ignore(sync_state), [{**row, **values}]).rowcount
        if not inserted:  # another process inserted it meanwhile: ours is the later
            conn.execute(update(sync_state).where(*_where(key)).values(values))


def _aware(value: datetime) -> datetime:
    """SQLite gives timestamps back without their zone (stored in UTC)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _where(key: tuple[str, str, str, str]) -> tuple[Any, ...]:
    c = sync_state.c
    entity, system, golden_id, route = key
    return (c.entity == entity, c.system == system, c.golden_id == golden_id, c.route == route)


__all__ = [
    "ECHO_WINDOW_S",
    "MAX_PENDING",
    "Echo",
    "Held",
    "Stale",
    "SyncState",
    "fingerprint",
    "normalised",
]
