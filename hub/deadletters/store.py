"""The dead-letter store: every dead letter in the database, to list, inspect, replay, discard.

Workers publish failures to the dead-letter topic (:mod:`hub.deadletters.topic`); the recorder
worker copies each into the ``dead_letters`` table. Replay republishes the record, as it was
or with an edited value (checked first), into the stage where it failed: the ingest topic for
ingest/map/validate/route failures, the canonical topic for delivery failures (destinations
that already have the event skip it: deliveries are recorded). The original record is never
changed; an edited replay keeps what it sent beside it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, update

from ..db import Database, dead_letters
from ..envelope import derived_id, header_value

REPLAY_HEADER = "hub_replay_of"


def _now() -> datetime:
    return datetime.now(UTC)


def row_from_record(record: Any) -> dict[str, Any]:
    """The table row for one record of the dead-letter topic."""
    headers = [(k, bytes(v) if v is not None else b"") for k, v in (record.headers or ())]
    topic = header_value(headers, "hub_dlq_topic") or ""
    partition = int(header_value(headers, "hub_dlq_partition") or -1)
    offset = int(header_value(headers, "hub_dlq_offset") or -1)
    stage = header_value(headers, "hub_dlq_stage") or "unknown"
    destination = header_value(headers, "hub_dlq_destination")
    route = header_value(headers, "hub_dlq_route")
    failed_at = header_value(headers, "hub_dlq_failed_at")
    return {
        # Deterministic: the same failure published twice (after a crash) is one row.
        "id": derived_id(
            "deadletter",
            topic,
            str(partition),
            str(offset),
            stage,
            route or "",
            destination or "",
            failed_at or "",
        ),
        "failed_at": _parse_time(failed_at),
        "stage": stage,
        "error_class": header_value(headers, "hub_dlq_error_class") or "",
        "error": header_value(headers, "hub_dlq_error") or "",
        "attempts": int(header_value(headers, "hub_dlq_attempts") or 1),
        "attempt_times": _json_list(header_value(headers, "hub_dlq_attempt_times")),
        "connection": header_value(headers, "ce_hubconnection"),
        "route": route,
        "mapping": header_value(headers, "hub_dlq_mapping"),
        "mapping_version": header_value(headers, "hub_dlq_mapping_version"),
        "destination": destination,
        "event_id": header_value(headers, "ce_id"),
        "event_type": header_value(headers, "ce_type"),
        "correlation_id": header_value(headers, "ce_correlationid"),
        "source_topic": topic,
        "source_partition": partition,
        "source_offset": offset,
        "key": record.key,
        "value": record.value,
        "headers": [[k, v.decode(errors="replace")] for k, v in headers],
        "status": "open",
        "replay_of": header_value(headers, REPLAY_HEADER),
        "replays": 0,
    }


def _json_list(text: str | None) -> list[Any] | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, list) else None


def _parse_time(text: str | None) -> datetime:
    if not text:
        return _now()
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return _now()


@dataclass
class Filter:
    status: str | None = None
    stage: str | None = None
    connection: str | None = None
    destination: str | None = None
    error_class: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def where(self) -> list[Any]:
        c = dead_letters.c
        out = []
        for column, value in (
            (c.status, self.status),
            (c.stage, self.stage),
            (c.connection, self.connection),
            (c.destination, self.destination),
            (c.error_class, self.error_class),
        ):
            if value is not None:
                out.append(column == value)
        if self.since is not None:
            out.append(c.failed_at >= self.since)
        if self.until is not None:
            out.append(c.failed_at < self.until)
        return out


class DeadLetterStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def record(self, rows: list[dict[str, Any]]) -> None:
        """Insert rows (ignoring ones already there); a failed replay updates its origin."""
        if not rows:
            return
        async with self.db.engine.begin() as conn:
            for row in rows:
                await conn.execute(self.db.insert_ignore(dead_letters), row)
                if row["replay_of"]:
                    await conn.execute(
                        update(dead_letters)
                        .where(dead_letters.c.id == row["replay_of"])
                        .values(outcome=f"failed again at {row['stage']}: dead letter {row['id']}")
                    )

    async def search(
        self, flt: Filter, limit: int = 100, offset: int = 0
    ) -> tuple[int, list[dict[str, Any]]]:
        c = dead_letters.c
        async with self.db.engine.connect() as conn:
            total = (
                await conn.execute(
                    select(func.count()).select_from(dead_letters).where(*flt.where())
                )
            ).scalar_one()
            rows = await conn.execute(
                select(dead_letters)
                .where(*flt.where())
                .order_by(c.failed_at.desc(), c.id)
                .limit(limit)
                .offset(offset)
            )
            return int(total), [dict(r._mapping) for r in rows]

    async def ids(self, flt: Filter) -> list[str]:
        async with self.db.engine.connect() as conn:
            rows = await conn.execute(
                select(dead_letters.c.id).where(*flt.where()).order_by(dead_letters.c.failed_at)
            )
            return [r[0] for r in rows]

    async def get(self, id_: str) -> dict[str, Any] | None:
        async with self.db.engine.connect() as conn:
            row = (await conn.execute(select(dead_letters).where(dead_letters.c.id == id_))).first()
            return dict(row._mapping) if row is not None else None

    async def get_many(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        async with self.db.engine.connect() as conn:
            rows = await conn.execute(select(dead_letters).where(dead_letters.c.id.in_(ids)))
            return {r.id: dict(r._mapping) for r in rows}

    async def mark_replayed(self, id_: str, edited_value: bytes | None) -> None:
        async with self.db.engine.begin() as conn:
            await conn.execute(
                update(dead_letters)
                .where(dead_letters.c.id == id_)
                .values(**_replayed(), replayed_value=edited_value)
            )

    async def mark_replayed_many(self, ids: list[str]) -> None:
        """Unedited replays of many dead letters, in one transaction."""
        if not ids:
            return
        async with self.db.engine.begin() as conn:
            await conn.execute(
                update(dead_letters)
                .where(dead_letters.c.id.in_(ids))
                .values(**_replayed(), replayed_value=None)
            )

    async def set_outcome(self, id_: str, outcome: str) -> None:
        """What became of a replay (e.g. delivered), as far as the hub saw it."""
        async with self.db.engine.begin() as conn:
            await conn.execute(
                update(dead_letters).where(dead_letters.c.id == id_).values(outcome=outcome)
            )

    async def discard(self, id_: str) -> bool:
        async with self.db.engine.begin() as conn:
            result = await conn.execute(
                update(dead_letters)
                .where(dead_letters.c.id == id_, dead_letters.c.status != "discarded")
                .values(status="discarded", discarded_at=_now())
            )
            return bool(result.rowcount)


def _replayed() -> dict[str, Any]:
    return {
        "status": "replayed",
        "replays": dead_letters.c.replays + 1,
        "replayed_at": _now(),
        "outcome": "replayed; no new failure recorded so far",
    }


def public(row: dict[str, Any]) -> dict[str, Any]:
    """A row as the ops API shows it: payload as JSON where it is JSON."""
    out = {k: v for k, v in row.items() if k not in ("key", "value", "replayed_value")}
    out["key"] = row["key"].decode(errors="replace") if row.get("key") else None
    out["payload"] = decode_payload(row.get("value"))
    if row.get("replayed_value") is not None:
        out["replayed_payload"] = decode_payload(row["replayed_value"])
    for k in ("failed_at", "replayed_at", "discarded_at"):
        if isinstance(out.get(k), datetime):
            out[k] = out[k].isoformat()
    return out


def decode_payload(value: bytes | None) -> Any:
    """A stored record value as JSON where it is JSON (and not nested beyond what json
    follows), else as text."""
    if value is None:
        return None
    try:
        return json.loads(value)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return value.decode(errors="replace")


__all__ = [
    "REPLAY_HEADER",
    "DeadLetterStore",
    "Filter",
    "decode_payload",
    "public",
    "row_from_record",
]
