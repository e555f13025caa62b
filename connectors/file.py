"""File destination: appends each event as one JSON line (for demos, audits and debugging)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from pydantic import Field, ValidationInfo, field_validator

from .base import ConnectorOptions, Delivery, Sink
from .registry import register


class FileOptions(ConnectorOptions):
    path: Path = Field(description="JSON Lines file to append to (relative to hub.yaml).")

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

    async def open(self) -> None:
        self.options.path.parent.mkdir(parents=True, exist_ok=True)

    async def deliver(self, delivery: Delivery) -> None:
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

    def _append(self, line: str) -> None:
        with self.options.path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")
