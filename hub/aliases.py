"""Aliases: golden ids that are no golden record of their own but keep resolving to one.

A golden id, once published, stays valid. When the object it was derived for has another golden
id now, the old id is stored as an ``alias`` row of ``mdm_golden`` whose ``merged_into`` is the
golden id the object has; lookups (:mod:`hub.mdm_service`) follow it as they follow a merged id,
hop by hop, so later merges and unmerges carry it along. Aliases come from:

- master data linking a record to an existing golden record (``rule:<name>``, ``match:<p>``):
  written by :mod:`hub.mdm_service` itself, its link step naming the alias (``detail.alias``);
- a destination reporting the id of an object the hub created (``sink:<connection>``), or an
  echo recognised by content (``echo:<connection>``): :meth:`hub.crosswalk.Crosswalk.link`;
- ``hub mdm alias-legacy-ids`` (:func:`alias_legacy_ids`): the ids mappings derived from a
  connection's *name* before they derived them from its system (``meta.system``), for a
  connection whose name is not its system (``shop`` of system ``shopify``).

The last two write, with each alias stored, a history step on the alias itself (``alias``:
who, why, the external id it was derived from), so its page says where it comes from. An id
that exists already (an alias, or a golden record of its own) is left as it is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import insert, select
from sqlalchemy.engine import Connection

from .db import Database, crosswalk, mdm_golden, mdm_history
from .mdm import _derive

ALIAS = "alias"
"""``mdm_golden.status`` of an alias, and ``mdm_history.action`` of the step that stored it."""


@dataclass(frozen=True, slots=True)
class Alias:
    entity: str
    alias: str  # the old golden id
    golden_id: str  # what it resolves to (followed further through merges)
    system: str  # the system (or, for legacy ids, the connection name) it was derived with
    external_id: str


def derived_alias(entity: str, system: str, external_id: str, golden_id: str) -> Alias | None:
    """The alias the deterministic id of ``(entity, system, external id)`` needs to resolve to
    ``golden_id``; None when that id is ``golden_id`` itself."""
    old = _derive(entity, system, external_id)
    return None if old == golden_id else Alias(entity, old, golden_id, system, external_id)


def write_aliases(
    db: Database,
    conn: Connection,
    aliases: Sequence[Alias],
    *,
    actor: str,
    reason: str | None,
    at: datetime,
) -> list[Alias]:
    """Store the aliases whose id is not in ``mdm_golden`` yet, each with its history step, in
    ``conn``'s transaction; those stored. Safe when processes race (insert unless it
    exists: the history step is written by the one that inserted)."""
    wanted = {a.alias: a for a in aliases if a.alias != a.golden_id}
    if not wanted:
        return []
    rows = [
        {
            "golden_id": a.alias,
            "entity": a.entity,
            "status": ALIAS,
            "merged_into": a.golden_id,
            "fields": {},
            "created_at": at,
            "updated_at": at,
        }
        for a in wanted.values()
    ]
    statement = db.insert_ignore(mdm_golden).returning(mdm_golden.c.golden_id)
    stored = [wanted[g] for g in conn.execute(statement, rows).scalars()]
    if stored:
        conn.execute(
            insert(mdm_history),
            [
                {
                    "entity": a.entity,
                    "golden_id": a.alias,
                    "action": ALIAS,
                    "actor": actor,
                    "reason": reason,
                    "detail": {
                        "alias": a.alias,
                        "golden_id": a.golden_id,
                        "system": a.system,
                        "external_id": a.external_id,
                    },
                    "at": at,
                }
                for a in stored
            ],
        )
    return stored


@dataclass
class LegacyCount:
    """What :func:`alias_legacy_ids` did for one connection."""

    system: str
    rows: int = 0  # crosswalk rows of its system read
    written: int = 0  # aliases stored (in a dry run: that would be)
    kept: int = 0  # ids that exist already: an alias (an earlier run), or a golden record
    examples: list[Alias] = field(default_factory=list)  # the first few written


async def alias_legacy_ids(
    db: Database,
    connections: Mapping[str, str],
    *,
    actor: str,
    dry_run: bool = False,
    page: int = 1000,
) -> dict[str, LegacyCount]:
    """For each of ``connections`` (name -> system, names other than their system), store the
    golden id mappings derived from the connection's name as an alias of the golden id each
    crosswalk row of its system has now; one transaction per ``page`` rows, in crosswalk id
    order. Idempotent: an id stored already is kept (``kept``). With ``dry_run``, nothing is
    written; ``written`` says what would be.

    Before mappings named systems with ``meta.system``, ``golden_id(entity, meta.connection,
    id)`` gave the id derived from ``(entity, connection name, id)``: events published then
    carry it. Now the same object resolves through the crosswalk under its system, to another
    id; every object the crosswalk knows under that system gets its old id back as an alias.
    (An object the crosswalk never linked cannot be found here: its old id stays unknown.)"""
    by_system: dict[str, list[str]] = {}
    for name, system in sorted(connections.items()):
        if name != system:
            by_system.setdefault(system, []).append(name)
    counts = {n: LegacyCount(connections[n]) for names in by_system.values() for n in names}
    if not by_system:
        return counts
    after = 0
    reason = "the golden id mappings derived from the connection's name {name!r} before they "
    reason += "derived it from its system {system!r} (hub mdm alias-legacy-ids)"

    def work(conn: Connection) -> int:
        rows = conn.execute(
            select(
                crosswalk.c.id,
                crosswalk.c.entity,
                crosswalk.c.system,
                crosswalk.c.external_id,
                crosswalk.c.golden_id,
            )
            .where(crosswalk.c.id > after, crosswalk.c.system.in_(sorted(by_system)))
            .order_by(crosswalk.c.id)
            .limit(page)
        ).all()
        at = datetime.now(UTC)
        for name in [n for names in by_system.values() for n in names]:
            count = counts[name]
            mine = [r for r in rows if r.system == count.system]
            count.rows += len(mine)
            found = [
                a
                for r in mine
                if (a := derived_alias(r.entity, name, r.external_id, r.golden_id)) is not None
            ]
            if dry_run:
                present = set(
                    conn.execute(
                        select(mdm_golden.c.golden_id).where(
                            mdm_golden.c.golden_id.in_([a.alias for a in found])
                        )
                    ).scalars()
                )
                new = [a for a in found if a.alias not in present]
                written = len(new)
            else:
                why = reason.format(name=name, system=count.system)
                new = write_aliases(db, conn, found, actor=actor, reason=why, at=at)
                written = len(new)
            count.written += written
            count.kept += len(found) - written
            count.examples.extend(new[: max(0, 3 - len(count.examples))])
        return rows[-1].id if rows else 0

    while True:
        last = await db.run(work)
        if not last:
            return counts
        after = last


__all__ = [
    "ALIAS",
    "Alias",
    "LegacyCount",
    "alias_legacy_ids",
    "derived_alias",
    "write_aliases",
]
