"""Dead letters: a record that failed for good is copied whole to the dead-letter topic.

The copy keeps the original key, value and headers, and adds ``hub_dlq_*`` headers saying where
and why it failed, after how many attempts and when each was made. The recorder worker copies
the topic into the ``dead_letters`` table (:mod:`hub.deadletters.store`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

from ..bus import Publisher
from ..envelope import now_rfc3339

log = logging.getLogger(__name__)


class Stage(StrEnum):
    INGEST = "ingest"
    MAP = "map"
    VALIDATE = "validate"
    ROUTE = "route"
    DELIVER = "deliver"


def dead_letter(
    publisher: Publisher,
    topic: str,
    record: Any,
    stage: Stage,
    error: BaseException,
    *,
    attempts: int = 1,
    attempt_times: Sequence[str] = (),
    context: Mapping[str, str | None] | None = None,
) -> asyncio.Future[None]:
    headers = [(k, v) for k, v in (record.headers or ()) if not k.startswith("hub_dlq_")]
    extra = {
        "stage": stage.value,
        "error_class": type(error).__name__,
        "error": str(error)[:2000],
        "attempts": str(attempts),
        "failed_at": now_rfc3339(),
        "attempt_times": json.dumps(list(attempt_times)) if attempt_times else None,
        "topic": record.topic,
        "partition": str(record.partition),
        "offset": str(record.offset),
        **(context or {}),
    }
    headers += [(f"hub_dlq_{k}", v.encode()) for k, v in extra.items() if v is not None]
    log.warning(
        "dead letter from %s at %s/%s@%s: %s: %s",
        stage.value,
        record.topic,
        record.partition,
        record.offset,
        type(error).__name__,
        error,
    )
    return publisher.send_raw(topic, record.key, record.value, headers)
