"""File destination: appends each event as one JSON line (for demos, audits and debugging).

Idempotent per delivery, as every sink must be: each line carries the delivery's
``idempotency_key`` (one per event and route), the keys already in the file are read when the
sink opens, and a delivery made again is not written twice. The same event through two routes
is two lines. (A line written before keys were, with an ``id`` only, counts for every route of
that event.)
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from pydantic import Field, ValidationInfo, field_validator

from hub.errors import ConnectionCheckFailed

from .base import ConnectorOptions, Delivery, Sink
from .registry import register


class FileOptions(ConnectorOptions):
    path: Path = Field(
        description="JSON Lines file to append to (relative to hub.yaml).",
        examples=["outbox/orders.jsonl"],
    )

    @field_validator("path")
    @classmethod
    def _relative_to_config(cls, value: Path, info: ValidationInfo) -> Path:
        base = (info.context or {}).get("base_dir")
        return value if value.is_absolute() or base is None else Path(base) / value


@register
class File(Sink):
    name = "file"
    title = "JSON Lines file"
    description = "Appends each event, with its id, correlation id and origin, as one line of JSON."
    Options = FileOptions
    options: FileOptions

    _written: set[str] | None = None  # idempotency keys in the file
    _events: set[str]  # ids of events written without a key (older lines)

    async def open(self) -> None:
        self.options.path.parent.mkdir(parents=True, exist_ok=True)
        self._written, self._events = await asyncio.to_thread(self._keys_in_file)

    async def check_connection(self) -> str:
        folder = self.options.path.parent
        existing = folder
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        target = self.options.path if self.options.path.exists() else existing
        if not existing.is_dir():
            raise ConnectionCheckFailed(
                f"cannot create the folder {folder}: {existing} is not a folder; choose another "
                "path"
            )
        if not os.access(target, os.W_OK):
            raise ConnectionCheckFailed(
                f"cannot write to {target}: permission denied; choose another path or grant "
                "the hub's user write access"
            )
        return f"{self.options.path} can be written"

    def _keys_in_file(self) -> tuple[set[str], set[str]]:
        keys: set[str] = set()
        events: set[str] = set()
        try:
            with self.options.path.open(encoding="utf-8") as f:
                for line in f:
                    try:
                        record = json.loads(line)
                    except ValueError:
                        continue  # a line cut by a crash: its event is written again
                    if not isinstance(record, dict):
                        continue
                    if isinstance(record.get("idempotency_key"), str):
                        keys.add(record["idempotency_key"])
                    elif isinstance(record.get("id"), str):
                        events.add(record["id"])
        except FileNotFoundError:
            pass
        return keys, events

    async def deliver(self, delivery: Delivery) -> None:
        if self._written is None:
            await self.open()
        assert self._written is not None
        key = delivery.idempotency_key
        if key in self._written or delivery.event_id in self._events:
            return
        line = json.dumps(
            {
                "id": delivery.event_id,
                "idempotency_key": key,
                "route": delivery.route,
                "origin": delivery.origin,
                "origin_system": delivery.origin_system,
                "type": delivery.event_type,
                "subject": delivery.subject,
                "correlationid": delivery.correlation_id,
                "data": delivery.data,
            },
            ensure_ascii=False,
        )
        await asyncio.to_thread(self._append, line)
        self._written.add(key)

    def _append(self, line: str) -> None:
        with self.options.path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")
