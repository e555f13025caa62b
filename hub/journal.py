"""The order journal: every step of every order, for ``GET /api/orders/{ref}``.

One row per step of an order (table ``order_journal``, keyed by event, step and route, so an
event redelivered by Kafka adds nothing):

- ``received``: the raw event the order came in as (a webhook, a poll), at the time the hub
  received it, with the source's id of the order (the event's subject);
- ``mapped``: the canonical order published from it, with its status at that point;
- ``delivered``: the canonical order written to a destination through a route, with the id the
  destination reported (a Tryton sale's id), when it reported one.

The mapper and the delivery workers note rows as they publish and deliver
(:meth:`OrderJournal.note`); the rows are written in the background, several at once
(:class:`hub.batching.GroupCommit`), and a failed write is logged, never fails the event: the
journal is a view for people, the crosswalk and the delivery records are what the hub relies
on. Rows older than ``HUB_DELIVERIES_RETENTION`` are deleted (:mod:`hub.retention`).

:meth:`OrderJournal.journey` answers for an order named by its golden id, by any system's id of
it (the crosswalk, or the id it was received under) or by its number: the golden id, every
system's id, its steps in time order and its dead letters (:mod:`hub.api.orders`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import or_, select

from .batching import GroupCommit
from .db import Database, crosswalk, dead_letters, order_journal
from .envelope import CloudEvent

log = logging.getLogger(__name__)

Row = dict[str, Any]

RECEIVED = "received"
MAPPED = "mapped"
DELIVERED = "delivered"


def _now() -> datetime:
    return datetime.now(UTC)


def _when(text: str | None) -> datetime:
    """An event's RFC 3339 time, or now when it has none that can be read."""
    if text:
        try:
            when = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            return when if when.tzinfo else when.replace(tzinfo=UTC)
    return _now()


def _text(value: Any, size: int) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    text = str(value)
    return text[:size] if text else None


def _facts(order: Mapping[str, Any]) -> Row:
    customer = order.get("customer")
    email = customer.get("email") if isinstance(customer, dict) else None
    return {
        "status": _text(order.get("status"), 32),
        "number": _text(order.get("number"), 255),
        "email": email.strip().lower()[:255] or None if isinstance(email, str) else None,
    }


def mapped_rows(
    raw: CloudEvent,
    canonical: CloudEvent,
    order: Mapping[str, Any],
    route: str,
    connection: str,
    system: str | None,
) -> list[Row]:
    """The ``received`` and ``mapped`` rows of an order mapped from ``raw``."""
    golden = str(order.get("id"))
    facts = _facts(order)
    own_id = raw.subject
    for ref in order.get("external_refs") or ():
        if isinstance(ref, dict) and ref.get("system") in (system, connection):
            own_id = _text(ref.get("id"), 255) or own_id
            break
    common = {
        "golden_id": golden,
        "connection": connection,
        "system": system,
        "external_id": _text(own_id, 255),
        "correlation_id": canonical.correlationid,
        **facts,
    }
    return [
        {
            **common,
            "event_id": raw.id,
            "step": RECEIVED,
            "route": "",
            "at": _when(raw.time),
            "status": None,
        },
        {**common, "event_id": canonical.id, "step": MAPPED, "route": route, "at": _now()},
    ]


def delivered_row(
    event: CloudEvent,
    order: Mapping[str, Any],
    route: str,
    destination: str,
    system: str | None,
    external_id: str | None,
) -> Row:
    """The ``delivered`` row of an order written to ``destination`` through ``route``."""
    return {
        "event_id": event.id,
        "step": DELIVERED,
        "route": route,
        "golden_id": str(order.get("id") or event.subject or ""),
        "at": _now(),
        "connection": destination,
        "system": system,
        "external_id": _text(external_id, 255),
        "correlation_id": event.correlationid,
        **_facts(order),
    }


class OrderJournal:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._commit: GroupCommit[Row] = GroupCommit(self._write)
        self._tasks: set[asyncio.Task[None]] = set()

    def note(self, rows: Iterable[Row]) -> None:
        """Write these rows in the background (a failure is logged, never raised)."""
        rows = list(rows)
        if not rows:
            return
        task = asyncio.get_running_loop().create_task(self._add(rows), name="order-journal")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _add(self, rows: list[Row]) -> None:
        try:
            await asyncio.gather(*(self._commit.add(row) for row in rows))
        except Exception as exc:  # the journal is a view: the event has been handled
            log.warning(
                "the order journal could not be written (%s: %s); the order's steps are "
                "missing from /api/orders",
                type(exc).__name__,
                exc,
            )

    async def _write(self, rows: list[Row]) -> None:
        await self.db.run(lambda conn: conn.execute(self.db.insert_ignore(order_journal), rows))

    async def drain(self) -> None:
        """Wait for the rows noted so far to be written (at shutdown, in tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def golden_ids(self, ref: str) -> list[str]:
        """The orders ``ref`` names: a golden id, any system's id of an order (the crosswalk,
        or the id it was received or delivered under), or an order number."""
        j = order_journal.c
        x = crosswalk.c
        by_journal = (
            select(j.golden_id)
            .where(or_(j.golden_id == ref, j.external_id == ref, j.number == ref))
            .distinct()
        )
        by_crosswalk = (
            select(x.golden_id)
            .where(x.entity == "order", or_(x.golden_id == ref, x.external_id == ref))
            .distinct()
        )

        def work(conn: Any) -> list[str]:
            found = [r[0] for r in conn.execute(by_crosswalk)]
            found += [r[0] for r in conn.execute(by_journal)]
            return list(dict.fromkeys(found))

        return await self.db.run(work)

    async def journey(self, golden: str) -> dict[str, Any]:
        """The order ``golden``: its ids in every system, its steps in time order and its dead
        letters (the shape is documented in the README, *Following an order*)."""
        j = order_journal.c
        x = crosswalk.c
        d = dead_letters.c
        steps = select(order_journal).where(j.golden_id == golden).order_by(j.at, j.step)
        links = (
            select(x.system, x.external_id, x.linked_at, x.linked_by)
            .where(x.entity == "order", x.golden_id == golden)
            .order_by(x.id)
        )

        def work(conn: Any) -> tuple[list[Any], list[Any], list[Any]]:
            rows = list(conn.execute(steps))
            correlations = sorted({r.correlation_id for r in rows if r.correlation_id})
            letters = select(
                d.id, d.failed_at, d.stage, d.error, d.status, d.connection, d.destination, d.route
            ).where(
                or_(d.key == golden.encode(), d.correlation_id.in_(correlations))
                if correlations
                else d.key == golden.encode()
            )
            return (
                rows,
                list(conn.execute(links)),
                list(conn.execute(letters.order_by(d.failed_at))),
            )

        rows, linked, letters = await self.db.run(work)
        ids: list[dict[str, Any]] = []
        seen: set[tuple[str, str]] = set()

        def add_id(system: str | None, external: str | None, how: str) -> None:
            if system and external and (system, external) not in seen:
                seen.add((system, external))
                ids.append({"system": system, "id": external, "from": how})

        for link in linked:
            add_id(link.system, link.external_id, link.linked_by)
        for r in rows:
            if r.step != MAPPED:
                add_id(r.system, r.external_id, r.step)
        events = [_step(r) for r in rows]
        failed = [_dead_letter(letter) for letter in letters]
        events += [
            {
                "at": f["failed_at"],
                "step": "dead_letter",
                "status": f["status"],
                "summary": f"failed at {f['stage']}: {f['error']}",
                "dead_letter": f["href"],
            }
            for f in failed
        ]
        events.sort(key=lambda e: e["at"])
        latest = next((r for r in reversed(rows) if r.status), None)
        numbered = next((r for r in rows if r.number), None)
        mailed = next((r for r in rows if r.email), None)
        return {
            "golden_id": golden,
            "number": numbered.number if numbered else None,
            "status": latest.status if latest else None,
            "email": mailed.email if mailed else None,
            "ids": ids,
            "events": events,
            "dead_letters": failed,
        }

    async def by_email(self, email: str, limit: int = 100) -> list[dict[str, Any]]:
        """The orders of the customer with this e-mail (any case), latest first."""
        j = order_journal.c
        query = (
            select(j.golden_id, j.number, j.status, j.at)
            .where(j.email == email.strip().lower())
            .order_by(j.at.desc())
        )

        def work(conn: Any) -> list[dict[str, Any]]:
            found: dict[str, dict[str, Any]] = {}
            for golden, number, status, at in conn.execute(query):
                entry = found.get(golden)
                if entry is None:
                    if len(found) >= limit:
                        continue
                    entry = found[golden] = {
                        "golden_id": golden,
                        "number": number,
                        "status": status,
                        "last_at": _iso(at),
                    }
                entry["number"] = entry["number"] or number
                entry["status"] = entry["status"] or status
            return list(found.values())

        return await self.db.run(work)


def _iso(when: datetime | None) -> str | None:
    if when is None:
        return None
    if when.tzinfo is None:  # SQLite gives it back naive; it was written in UTC
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _step(r: Any) -> dict[str, Any]:
    where = (
        f"{r.connection} ({r.system})" if r.system and r.system != r.connection else r.connection
    )
    if r.step == RECEIVED:
        summary = f"received from {where}" + (f" as {r.external_id}" if r.external_id else "")
    elif r.step == MAPPED:
        summary = f"mapped by route {r.route}: status {r.status}"
    else:
        summary = f"delivered to {where} by route {r.route}" + (
            f" as {r.external_id}" if r.external_id else ""
        )
    return {
        "at": _iso(r.at),
        "step": r.step,
        "status": r.status,
        "summary": summary,
        "connection": r.connection,
        "system": r.system,
        "id": r.external_id,
        "route": r.route or None,
        "event_id": r.event_id,
    }


def _dead_letter(d: Any) -> dict[str, Any]:
    return {
        "id": d.id,
        "href": f"/api/deadletters/{d.id}",
        "failed_at": _iso(d.failed_at),
        "stage": d.stage,
        "status": d.status,
        "error": d.error,
        "connection": d.connection,
        "destination": d.destination,
        "route": d.route,
    }


__all__ = ["OrderJournal", "delivered_row", "mapped_rows"]
