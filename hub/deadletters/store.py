"""The dead-letter store: every dead letter in the database, to list, inspect, replay, discard.

Workers publish failures to the dead-letter topic (:mod:`hub.deadletters.topic`); the recorder
worker copies each into the ``dead_letters`` table. Replay republishes the record, as it was
or with an edited value (checked first), into the stage where it failed: the ingest topic for
ingest/map/validate/route failures, the canonical topic for delivery failures (destinations
that already have the event skip it: deliveries are recorded). The original record is never
changed; an edited replay keeps what it sent beside it. Every replay is an attempt of its own
(``replay_attempts``), with every outcome the hub learns of it (``replay_outcomes``).
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Text, and_, func, or_, select, update
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from ..db import Database, dead_letters, replay_attempts, replay_outcomes
from ..envelope import derived_id, header_value

REPLAY_HEADER = "hub_replay_of"
ATTEMPT_HEADER = "hub_replay_attempt"
REPLAY_HEADERS = (REPLAY_HEADER, ATTEMPT_HEADER)
"""Headers a replayed record carries, kept on what the mapper makes of it."""
PREVIEW_CHARS = 200


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
    q: str | None = None  # free text in the payload or the error (case-insensitive)
    correlation_id: str | None = None  # the chain of events one dead letter belongs to

    def where(self) -> list[Any]:
        c = dead_letters.c
        out = []
        for column, value in (
            (c.status, self.status),
            (c.stage, self.stage),
            (c.connection, self.connection),
            (c.destination, self.destination),
            (c.error_class, self.error_class),
            (c.correlation_id, self.correlation_id),
        ):
            if value is not None:
                out.append(column == value)
        if self.since is not None:
            out.append(c.failed_at >= self.since)
        if self.until is not None:
            out.append(c.failed_at < self.until)
        if self.q:
            pattern = "%" + re.sub(r"([\\%_])", r"\\\1", self.q) + "%"
            out.append(
                or_(
                    _PayloadText(c.value).ilike(pattern, escape="\\"),
                    c.error.ilike(pattern, escape="\\"),
                )
            )
        return out


class _PayloadText(FunctionElement[str]):
    """A payload (bytes) as text to search: SQLite casts; PostgreSQL escapes what is not
    ASCII (``encode(value, 'escape')``: any bytes, valid UTF-8 or not)."""

    type = Text()
    inherit_cache = True
    name = "payload_text"


@compiles(_PayloadText)
def _payload_text(element: _PayloadText, compiler: Any, **kw: Any) -> str:
    return f"CAST({compiler.process(element.clauses, **kw)} AS TEXT)"


@compiles(_PayloadText, "postgresql")
def _payload_text_pg(element: _PayloadText, compiler: Any, **kw: Any) -> str:
    return f"encode({compiler.process(element.clauses, **kw)}, 'escape')"


def encode_cursor(failed_at: datetime, id_: str) -> str:
    """A page's end in the dead-letter list (keyset pagination), opaque to clients."""
    raw = json.dumps([failed_at.astimezone(UTC).isoformat(), id_]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[datetime, str] | None:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        at, id_ = json.loads(raw)
        when = datetime.fromisoformat(at)
        if not isinstance(id_, str) or when.tzinfo is None:
            return None
        return when, id_
    except (ValueError, TypeError, OverflowError):
        return None


class DeadLetterStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def record(self, rows: list[dict[str, Any]]) -> None:
        """Insert rows (ignoring ones already there); a failed replay is an outcome of the
        attempt it came from."""
        if not rows:
            return
        async with self.db.engine.begin() as conn:
            for row in rows:
                inserted = (await conn.execute(self.db.insert_ignore(dead_letters), row)).rowcount
                if row["replay_of"] and inserted:
                    attempt = next((v for k, v in row["headers"] if k == ATTEMPT_HEADER), None)
                    outcome = f"failed again at {row['stage']}: dead letter {row['id']}"
                    await _add_outcome(conn, row["replay_of"], attempt, outcome)

    async def search(
        self,
        flt: Filter,
        limit: int = 100,
        offset: int = 0,
        after: tuple[datetime, str] | None = None,
    ) -> tuple[int, list[dict[str, Any]]]:
        """The total matching ``flt`` and a page, newest first: from ``offset``, or (keyset,
        fast however deep) after the item ``after`` names (see :func:`encode_cursor`)."""
        c = dead_letters.c
        page = flt.where()
        if after is not None:
            at, id_ = after
            page.append(or_(c.failed_at < at, and_(c.failed_at == at, c.id > id_)))
        async with self.db.engine.connect() as conn:
            total = (
                await conn.execute(
                    select(func.count()).select_from(dead_letters).where(*flt.where())
                )
            ).scalar_one()
            rows = await conn.execute(
                select(*_SUMMARY_COLUMNS)
                .where(*page)
                .order_by(c.failed_at.desc(), c.id)
                .limit(limit)
                .offset(offset)
            )
            found = [dict(r._mapping) for r in rows]
            attempts = await _attempts(conn, [r["id"] for r in found])
        return int(total), [summary(r, attempts.get(r["id"], [])) for r in found]

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

    async def item(self, id_: str) -> dict[str, Any] | None:
        """One dead letter as the ops API shows it: whole, with every replay attempt."""
        async with self.db.engine.connect() as conn:
            row = (await conn.execute(select(dead_letters).where(dead_letters.c.id == id_))).first()
            if row is None:
                return None
            attempts = await _attempts(conn, [id_])
        return public(dict(row._mapping), attempts.get(id_, []))

    async def get_many(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        async with self.db.engine.connect() as conn:
            rows = await conn.execute(select(dead_letters).where(dead_letters.c.id.in_(ids)))
            return {r.id: dict(r._mapping) for r in rows}

    async def begin_replays(self, attempts: list[dict[str, Any]]) -> None:
        """Record attempts (see :func:`new_attempt`) before they are sent: an outcome can only
        arrive for an attempt already here."""
        if attempts:
            async with self.db.engine.begin() as conn:
                await conn.execute(replay_attempts.insert(), attempts)

    async def replays_sent(self, attempts: list[dict[str, Any]]) -> None:
        """The broker has these attempts: their dead letters are replayed, in one transaction;
        an edit becomes the payload the next replay sends."""
        if not attempts:
            return
        c = dead_letters.c
        plain = [a["dead_letter_id"] for a in attempts if a["value"] is None]
        async with self.db.engine.begin() as conn:
            await conn.execute(
                update(replay_attempts)
                .where(replay_attempts.c.id.in_([a["id"] for a in attempts]))
                .values(sent=True)
            )
            if plain:
                await conn.execute(
                    update(dead_letters).where(c.id.in_(plain)).values(**_replayed())
                )
            for a in attempts:
                if a["value"] is not None:
                    await conn.execute(
                        update(dead_letters)
                        .where(c.id == a["dead_letter_id"])
                        .values(**_replayed(), replayed_value=a["value"])
                    )

    async def replays_not_sent(self, attempts: list[dict[str, Any]], error: str) -> None:
        if attempts:
            async with self.db.engine.begin() as conn:
                await conn.execute(
                    update(replay_attempts)
                    .where(replay_attempts.c.id.in_([a["id"] for a in attempts]))
                    .values(error=error)
                )

    async def set_outcome(self, id_: str, outcome: str, attempt: str | None = None) -> None:
        """What became of a replay (e.g. delivered), as far as the hub saw it; ``attempt`` is
        the replay's ``hub_replay_attempt`` (None: a replay from before attempts existed)."""
        async with self.db.engine.begin() as conn:
            await _add_outcome(conn, id_, attempt, outcome)

    async def discard(self, id_: str) -> tuple[bool, str | None]:
        """Discard an open dead letter: (whether this call did, the status it has now; None:
        there is no such dead letter). A replayed one is not discarded."""
        c = dead_letters.c
        async with self.db.engine.begin() as conn:
            result = await conn.execute(
                update(dead_letters)
                .where(c.id == id_, c.status == "open")
                .values(status="discarded", discarded_at=_now())
            )
            if result.rowcount:
                return True, "discarded"
            status = (await conn.execute(select(c.status).where(c.id == id_))).scalar()
            return False, status


def new_attempt(
    dead_letter_id: str, edited: bool, value: bytes | None, job_id: str | None = None
) -> dict[str, Any]:
    """A ``replay_attempts`` row; ``value`` is the edited payload sent (None: the original)."""
    return {
        "id": str(uuid.uuid4()),
        "dead_letter_id": dead_letter_id,
        "replayed_at": _now(),
        "edited": edited,
        "value": value,
        "job_id": job_id,
        "sent": False,
        "error": None,
    }


async def _add_outcome(conn: Any, id_: str, attempt: str | None, outcome: str) -> None:
    if attempt is None:
        await conn.execute(
            update(dead_letters).where(dead_letters.c.id == id_).values(outcome=outcome)
        )
    else:
        await conn.execute(
            replay_outcomes.insert().values(attempt_id=attempt, at=_now(), outcome=outcome)
        )


async def _attempts(conn: Any, ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """The replay attempts of these dead letters, oldest first, each with its outcomes."""
    if not ids:
        return {}
    a, o = replay_attempts.c, replay_outcomes.c
    rows = await conn.execute(
        select(replay_attempts).where(a.dead_letter_id.in_(ids)).order_by(a.replayed_at, a.id)
    )
    attempts = [dict(r._mapping) for r in rows]
    outcomes: dict[str, list[dict[str, Any]]] = {}
    if attempts:
        found = await conn.execute(
            select(o.attempt_id, o.at, o.outcome)
            .where(o.attempt_id.in_([x["id"] for x in attempts]))
            .order_by(o.id)
        )
        for r in found:
            outcomes.setdefault(r.attempt_id, []).append({"at": _iso(r.at), "outcome": r.outcome})
    out: dict[str, list[dict[str, Any]]] = {}
    for x in attempts:
        out.setdefault(x["dead_letter_id"], []).append(
            {
                "id": x["id"],
                "replayed_at": _iso(x["replayed_at"]),
                "edited": x["edited"],
                "payload": decode_payload(x["value"]) if x["value"] is not None else None,
                "job_id": x["job_id"],
                "sent": x["sent"],
                "error": x["error"],
                "outcomes": outcomes.get(x["id"], []),
            }
        )
    return out


def _replayed() -> dict[str, Any]:
    return {
        "status": "replayed",
        "replays": dead_letters.c.replays + 1,
        "replayed_at": _now(),
    }


_HIDDEN = ("key", "value", "replayed_value", "headers")
_SUMMARY_COLUMNS = [
    *(c for c in dead_letters.c if c.name not in _HIDDEN[1:]),
    func.length(dead_letters.c.value).label("payload_bytes"),
    # 4 bytes a character at most: enough for the preview's characters
    func.substr(dead_letters.c.value, 1, PREVIEW_CHARS * 4).label("preview"),
]


def _outcome(row: dict[str, Any], attempts: list[dict[str, Any]]) -> str | None:
    """What became of the latest replay."""
    if not attempts:
        return row.get("outcome")  # replays from before attempts were recorded
    last = attempts[-1]
    if last["outcomes"]:
        return str(last["outcomes"][-1]["outcome"])
    if last["error"]:
        return f"not sent: {last['error']}"
    return "replayed; no new failure recorded so far" if last["sent"] else "being sent"


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


def summary(row: dict[str, Any], attempts: list[dict[str, Any]]) -> dict[str, Any]:
    """A dead letter in a list: no payload, its size and first characters instead."""
    out = {k: v for k, v in row.items() if k not in (*_HIDDEN, "preview")}
    out["key"] = row["key"].decode(errors="replace") if row.get("key") else None
    out["outcome"] = _outcome(row, attempts)
    for k in ("failed_at", "replayed_at", "discarded_at"):
        out[k] = _iso(out.get(k))
    if "preview" in row:
        preview, size = row["preview"], row["payload_bytes"]
    else:
        value = row.get("value")
        preview, size = (
            (value[: PREVIEW_CHARS * 4], len(value)) if value is not None else (None, None)
        )
    out["payload_bytes"] = size
    out["payload_preview"] = (
        bytes(preview).decode(errors="replace")[:PREVIEW_CHARS] if preview is not None else None
    )
    return out


def public(row: dict[str, Any], attempts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A whole dead letter as the ops API shows it: its summary, the payload as JSON where it
    is JSON, the headers, the last edit sent, every replay attempt."""
    attempts = attempts or []
    out = summary(row, attempts)
    out["headers"] = row["headers"]
    out["payload"] = decode_payload(row.get("value"))
    if row.get("replayed_value") is not None:
        out["replayed_payload"] = decode_payload(row["replayed_value"])
    out["replay_attempts"] = attempts
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
    "ATTEMPT_HEADER",
    "REPLAY_HEADER",
    "REPLAY_HEADERS",
    "DeadLetterStore",
    "Filter",
    "decode_cursor",
    "decode_payload",
    "encode_cursor",
    "new_attempt",
    "public",
    "row_from_record",
    "summary",
]
