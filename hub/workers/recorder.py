"""Recorder: copies every record of the dead-letter topic into the ``dead_letters`` table,
committing offsets only once the rows are written."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiokafka import TopicPartition

from hub.deadletters import row_from_record

from .base import Worker

if TYPE_CHECKING:
    from hub.ports import WorkerHub


class DeadLetterRecorder(Worker):
    def __init__(self, hub: WorkerHub) -> None:
        super().__init__(hub.settings, hub.bootstrap)
        self.hub = hub
        self.group = hub.settings.recorder_group
        self.topics = [hub.settings.deadletter_topic]

    async def process(self, tp: TopicPartition, records: list[Any]) -> None:
        await self.hub.deadletters.record([row_from_record(r) for r in records])
