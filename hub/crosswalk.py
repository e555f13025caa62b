"""The crosswalk: which golden id an object known in a system stands for.

One row per link ``(entity, system, external id) -> golden id``, unique on the first three
(``uq_crosswalk_external_id``) and indexed on ``(entity, golden id, system)`` for the reverse
lookup (``ix_crosswalk_golden_id``). Each row says who or what linked it (``linked_by``:
``sink:<connection>`` for an id a destination reported, ``rule:<name>`` or ``steward:<user>``
for master data, ``source`` for the id an object came in under, linked by the mapper), when,
why, and the system's version of the object where it has one::

    crosswalk = Crosswalk(db)
    await crosswalk.link("customer", "crm", "c-42", "cus_1f…", linked_by="sink:crm")
    await crosswalk.lookup("customer", "crm", "c-42")          # "cus_1f…"
    await crosswalk.reverse("customer", "crm", "cus_1f…")      # "c-42"

``link`` is idempotent, and safe when several processes link the same id at once: the row is
inserted unless one exists (``INSERT .. ON CONFLICT DO NOTHING``), then read back, so every
racer sees the one that won. Linking an external id that is linked to *another* golden id raises
:class:`~hub.errors.CrosswalkConflict`: a link never moves silently (merging golden records is
master data's decision, with its own history) — except a ``source`` link, which any other link
of that id replaces (the mapper saw the object before the sink that created it reported it).

A link (other than a source link) to a golden id other than the one ``DeterministicResolver``
derives for the external id stores that derived id as an alias of the golden id, in the same
transaction (:mod:`hub.aliases`): events mapped before the link (the echo of an object the hub
created, or anything before the hub had a crosswalk) carried it, and it keeps resolving.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text, tuple_, update

from .aliases import derived_alias, write_aliases
from .db import Database, crosswalk
from .errors import CrosswalkConflict

SOURCE = "source"
"""``linked_by`` of a link the mapper made for the id an object came in under (the hub's first
knowledge of it, :meth:`Crosswalk.link_many`); any other link of that id replaces it."""

Ref = tuple[str, str, str]
"""``(entity, system, external id)``, or ``(entity, system, golden id)`` for a reverse lookup."""


_CHUNK = 500  # keys per statement: well under SQLite's parameter limit

# PostgreSQL: any number of keys in one statement (three arrays), the first linked written last.
# LATERAL: one index probe per key whatever the planner believes of the table's size.
_MANY_PG = """
    SELECT q.entity, q.system, q.key, c.{value}
    FROM unnest(CAST(:entities AS varchar[]), CAST(:systems AS varchar[]),
                CAST(:keys AS varchar[])) AS q(entity, system, key)
    CROSS JOIN LATERAL (
        SELECT c.id, c.{value} FROM crosswalk AS c
        WHERE c.entity = q.entity AND c.system = q.system AND c.{key} = q.key
    ) AS c
    ORDER BY c.id DESC
"""


@dataclass(frozen=True, slots=True)
class Link:
    entity: str
    system: str
    external_id: str
    golden_id: str
    version: str | None
    linked_at: datetime
    linked_by: str
    reason: str | None


_LOOKUP = select(
    crosswalk.c.entity,
    crosswalk.c.system,
    crosswalk.c.external_id,
    crosswalk.c.golden_id,
    crosswalk.c.version,
    crosswalk.c.linked_at,
    crosswalk.c.linked_by,
    crosswalk.c.reason,
)


class Crosswalk:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def link(
        self,
        entity: str,
        system: str,
        external_id: str,
        golden_id: str,
        *,
        linked_by: str,
        reason: str | None = None,
        version: str | None = None,
    ) -> Link:
        """Link ``external_id`` to ``golden_id``; the link as stored. Linking it again to the
        same golden id changes nothing but a newer ``version``; to another one raises
        :class:`CrosswalkConflict`."""
        now = datetime.now(UTC)
        row = {
            "entity": entity,
            "system": system,
            "external_id": external_id,
            "golden_id": golden_id,
            "version": version,
            "linked_at": now,
            "linked_by": linked_by,
            "reason": reason,
        }
        insert = self.db.insert_ignore(crosswalk)
        key = (entity, system, external_id)
        query = _LOOKUP.where(
            tuple_(crosswalk.c.entity, crosswalk.c.system, crosswalk.c.external_id) == key
        )

        def work(conn: Any) -> Link:
            conn.execute(insert, [row])
            found = Link(*conn.execute(query).one())
            if found.golden_id != golden_id and found.linked_by == SOURCE != linked_by:
                # a link the mapper made for an id as it came in yields to one that says more
                # (a sink that created the object for this golden id): the echo of an object
                # the hub created, heard before the sink's answer was linked
                conn.execute(
                    update(crosswalk)
                    .where(crosswalk.c.entity == entity)
                    .where(crosswalk.c.system == system)
                    .where(crosswalk.c.external_id == external_id)
                    .where(crosswalk.c.linked_by == SOURCE)
                    .values(
                        golden_id=golden_id,
                        linked_by=linked_by,
                        linked_at=row["linked_at"],
                        reason=reason,
                        version=version,
                    )
                )
                found = Link(*conn.execute(query).one())
            if found.golden_id == golden_id and version is not None and found.version != version:
                conn.execute(
                    update(crosswalk)
                    .where(crosswalk.c.entity == entity)
                    .where(crosswalk.c.system == system)
                    .where(crosswalk.c.external_id == external_id)
                    .values(version=version)
                )
                found = dataclasses.replace(found, version=version)
            alias = derived_alias(entity, system, external_id, golden_id)
            if found.golden_id == golden_id and linked_by != SOURCE and alias is not None:
                # the id this object had before it was linked (DeterministicResolver's, perhaps
                # published: its echo mapped before the sink reported it, or before the hub had
                # a crosswalk) keeps resolving, to the golden id it is linked to now
                write_aliases(self.db, conn, [alias], actor=linked_by, reason=reason, at=now)
            return found

        found = await self.db.run(work)
        if found.golden_id != golden_id:
            raise CrosswalkConflict(entity, system, external_id, found.golden_id, golden_id)
        return found

    async def link_many(
        self, links: Iterable[tuple[str, str, str, str]], *, linked_by: str, reason: str
    ) -> list[Link]:
        """Link each ``(entity, system, external id, golden id)`` not linked yet, in one
        transaction; the links as stored (an id already linked keeps its golden id: compare)."""
        wanted = {(e, s, x): g for e, s, x, g in links}
        if not wanted:
            return []
        now = datetime.now(UTC)
        rows = [
            {
                "entity": e,
                "system": s,
                "external_id": x,
                "golden_id": g,
                "version": None,
                "linked_at": now,
                "linked_by": linked_by,
                "reason": reason,
            }
            for (e, s, x), g in wanted.items()
        ]
        insert = self.db.insert_ignore(crosswalk)
        keys = list(wanted)
        columns = (crosswalk.c.entity, crosswalk.c.system, crosswalk.c.external_id)

        def work(conn: Any) -> list[Link]:
            conn.execute(insert, rows)
            found: list[Link] = []
            for start in range(0, len(keys), _CHUNK):
                query = _LOOKUP.where(tuple_(*columns).in_(keys[start : start + _CHUNK]))
                found.extend(Link(*r) for r in conn.execute(query))
            return found

        return await self.db.run(work)

    async def lookup(self, entity: str, system: str, external_id: str) -> str | None:
        """The golden id ``external_id`` in ``system`` is linked to (None: not linked)."""
        return (await self.lookup_many([(entity, system, external_id)])).get(
            (entity, system, external_id)
        )

    async def reverse(self, entity: str, system: str, golden_id: str) -> str | None:
        """``system``'s id of the object ``golden_id`` (None: none linked). Should the system
        hold several (duplicates there), the first one linked."""
        return (await self.reverse_many([(entity, system, golden_id)])).get(
            (entity, system, golden_id)
        )

    async def lookup_many(self, refs: Iterable[Ref]) -> dict[Ref, str]:
        """The golden ids of those of ``refs`` that are linked: one statement on PostgreSQL,
        one per 500 on SQLite."""
        columns = (crosswalk.c.entity, crosswalk.c.system, crosswalk.c.external_id)
        return await self._many(refs, columns, crosswalk.c.golden_id)

    async def reverse_many(self, refs: Iterable[Ref]) -> dict[Ref, str]:
        """For ``(entity, system, golden id)`` refs, the system's ids that are linked."""
        columns = (crosswalk.c.entity, crosswalk.c.system, crosswalk.c.golden_id)
        return await self._many(refs, columns, crosswalk.c.external_id)

    async def links(self, entity: str, golden_id: str) -> list[Link]:
        """Every link of ``golden_id``, first linked first."""
        query = _LOOKUP.where(
            crosswalk.c.entity == entity, crosswalk.c.golden_id == golden_id
        ).order_by(crosswalk.c.id)
        return await self.db.run(lambda conn: [Link(*r) for r in conn.execute(query)])

    async def _many(
        self, refs: Iterable[Ref], columns: tuple[Any, ...], want: Any
    ) -> dict[Ref, str]:
        keys = list(dict.fromkeys(refs))
        if not keys:
            return {}

        if self.db.dialect == "postgresql":  # all at once: arrays joined, one index probe each
            key, value = columns[2].name, want.name
            query = text(_MANY_PG.format(key=key, value=value))
            params = {
                "entities": [k[0] for k in keys],
                "systems": [k[1] for k in keys],
                "keys": [k[2] for k in keys],
            }
            rows = await self.db.run(lambda conn: conn.execute(query, params).all())
            return {(entity, system, k): v for entity, system, k, v in rows}

        def work(conn: Any) -> dict[Ref, str]:
            found: dict[Ref, str] = {}
            for start in range(0, len(keys), _CHUNK):
                chunk = keys[start : start + _CHUNK]
                query = (
                    select(*columns, want)
                    .where(tuple_(*columns).in_(chunk))
                    .order_by(crosswalk.c.id.desc())  # the first linked wins, written last
                )
                for entity, system, key, value in conn.execute(query):
                    found[(entity, system, key)] = value
            return found

        return await self.db.run(work)


__all__ = ["Crosswalk", "Link", "Ref"]
