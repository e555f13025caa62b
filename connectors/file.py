"""File destination: appends each event as one JSON line (for demos, audits and debugging).

Idempotent per event id, as every sink must be: the ids already in the file are read when the
sink opens, and an event delivered again is not written twice.
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
    description = "Appends each event, with its id and correlation id, as one line of JSON."
    Options = FileOptions
    options: FileOptions

    _written: set[str] | None = None

    async def open(self) -> None:
        self.options.path.parent.mkdir(parents=True, exist_ok=True)
        self._written = await asyncio.to_thread(self._ids_in_file)

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

    def _ids_in_file(self) -> set[str]:
        ids: set[str] = set()
        try:
            with self.options.path.open(encoding="utf-8") as f:
                for line in f:
                    try:
                        record = json.loads(line)
                    except ValueError:
                        continue  # a line cut by a crash: its event is written again
                    if isinstance(record, dict) and isinstance(record.get("id"), str):
                        ids.add(record["id"])
        except FileNotFoundError:
            pass
        return ids

    async def deliver(self, delivery: Delivery) -> None:
        if self._written is None:
            await self.open()
        assert self._written is not None
        if delivery.event_id in self._written:
            return
        line = json.dumps(
            {
                "id": delivery.event_id,
                "type": delivery.event_type,
                "subject": delivery.subject,
                "correlationid": delivery.correlation_id,
                "data": delivery.data,
            },
            ensure_ascii=False,
        )
        await asyncio.to_thread(self._append, line)
        self._written.add(delivery.event_id)

    def _append(self, line: str) -> None:
        with self.options.path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")
