"""Replaying dead letters into the stage where they failed (many at once: :mod:`hub.replayjobs`).

Every replay is an attempt of its own, recorded before it is sent and carried by the replayed
record (``hub_replay_attempt``), so each outcome the hub learns goes to the attempt it belongs
to and none overwrites another. A replay without an edit sends what the last replay sent: the
last edited payload if there was one, else the original record."""

from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING, Any

from . import exactjson
from .canonical import validate
from .deadletters import ATTEMPT_HEADER, REPLAY_HEADER, REPLAY_HEADERS, new_attempt
from .envelope import ORIGIN_CONNECTION, ORIGIN_SYSTEM, from_kafka
from .errors import HubError, ProcessingError
from .mdm import CrosswalkResolver

if TYPE_CHECKING:
    from .ports import ReplayHub

UNCHANGED: Any = object()


class ReplayRefused(HubError):
    """A replay cannot be done as asked; ``status`` is the HTTP answer."""

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status = status
        self.code = code
        super().__init__(message)


async def replay(hub: ReplayHub, id_: str, payload: Any = UNCHANGED) -> dict[str, Any]:
    """Republish one dead letter; with ``payload``, that edited value after checking it."""
    row = await hub.deadletters.get(id_)
    if row is None:
        raise ReplayRefused(404, "not_found", f"no dead letter {id_}")
    topic, value, headers, edited = prepare(hub, row, payload)
    attempt = new_attempt(id_, payload is not UNCHANGED, edited)
    await hub.deadletters.begin_replays([attempt])
    headers.append((ATTEMPT_HEADER, attempt["id"].encode()))
    try:
        await hub.publisher.wait([hub.publisher.send_raw(topic, row["key"], value, headers)])
    except HubError as exc:
        await hub.deadletters.replays_not_sent([attempt], str(exc))
        raise ReplayRefused(503, "broker_unavailable", f"not replayed: {exc}") from None
    await hub.deadletters.replays_sent([attempt])
    return {
        "id": id_,
        "status": "replayed",
        "topic": topic,
        "edited": attempt["edited"],
        "attempt": attempt["id"],
    }


def prepare(
    hub: ReplayHub, row: dict[str, Any], payload: Any = UNCHANGED
) -> tuple[str, bytes | None, list[tuple[str, bytes]], bytes | None]:
    """The record a replay publishes: topic, value, headers (linking it to the dead letter),
    and the edited value it sends, if any (a new edit, else the last one)."""
    id_ = row["id"]
    if row["status"] == "discarded":
        raise ReplayRefused(409, "discarded", f"dead letter {id_} was discarded")
    headers = [(k, v.encode()) for k, v in row["headers"] if not k.startswith("hub_dlq_")]
    headers = [(k, v) for k, v in headers if k not in REPLAY_HEADERS]
    headers.append((REPLAY_HEADER, id_.encode()))
    edited = row["replayed_value"]
    if payload is not UNCHANGED:
        try:
            edited = json.dumps(payload, ensure_ascii=False).encode()
            check_edit(hub, row, headers, edited)
        except (RecursionError, exactjson.NestedTooDeeply):
            # json read it a few frames up the stack; it cannot write or read it here
            raise ReplayRefused(
                400, "malformed_payload", "the edited payload is nested too deeply"
            ) from None
    value = edited if edited is not None else row["value"]
    return row["source_topic"], value, headers, edited


def check_edit(
    hub: ReplayHub, row: dict[str, Any], headers: list[tuple[str, bytes]], value: bytes
) -> None:
    """An edited payload must pass the stage it goes back to, or the edit is refused."""
    topic = row["source_topic"]
    prefix = hub.settings.canonical_topic("")
    try:
        if topic.startswith(prefix):
            validate(topic.removeprefix(prefix), json.loads(value))
        elif topic == hub.settings.ingest_topic and row.get("mapping"):
            mapping = hub.mappings.get(row["mapping"])
            if mapping is None:
                raise ReplayRefused(
                    409, "mapping_gone", f"mapping {row['mapping']} is no longer loaded"
                )
            event = from_kafka(row["key"], value, headers)
            connection = event.extensions.get(ORIGIN_CONNECTION, "")
            meta = {  # what the mapper gives the mapping (hub.workers.mapper)
                "connection": connection,
                "origin": connection,
                "system": event.extensions.get(ORIGIN_SYSTEM) or hub.config.system_of(connection),
                "event_type": event.extensions.get("hubevent", ""),
                "event_id": event.id,
                "subject": event.subject,
            }
            # read as the mapper reads raw events: amounts as exact decimals
            data = exactjson.loads(value)
            resolver = hub.resolver
            apply = functools.partial(mapping.apply, data, meta, resolver)
            if isinstance(resolver, CrosswalkResolver):
                # only whether it maps matters here: ids not cached stand in, nothing is read
                result = resolver.collect(apply, set())
            else:
                result = apply()
            if result is not None and mapping.target_entity:
                validate(mapping.target_entity, result)
    except ProcessingError as exc:
        raise ReplayRefused(
            422, "edit_rejected", f"the edited payload still fails: {exc}"
        ) from None
