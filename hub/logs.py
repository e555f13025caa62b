"""Logging set-up: readable text by default, one JSON object per line with HUB_LOG_FORMAT=json.

What a line is about travels as fields, not only inside the message: the code handling an event
says so once (``with log_context(event_id=..., route=...)``), and every line logged meanwhile,
in that task, carries ``event_id``, ``correlation_id``, ``connection``, ``route`` and
``destination`` as JSON fields, so a log backend can filter one event's lines across processes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from contextvars import ContextVar

FIELDS = ("event_id", "correlation_id", "connection", "route", "destination")

_context: ContextVar[dict[str, str]] = ContextVar("hub_log_context", default={})  # noqa: B039


@contextlib.contextmanager
def log_context(**fields: str | None) -> Iterator[None]:
    """Add ``fields`` (those given and not None) to every line logged inside, in this task."""
    token = _context.set({**_context.get(), **{k: v for k, v in fields.items() if v}})
    try:
        yield
    finally:
        _context.reset(token)


class ContextFilter(logging.Filter):
    """Copies the current :func:`log_context` onto each record (explicit ``extra`` wins), so
    every handler and formatter sees the fields."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _context.get().items():
            record.__dict__.setdefault(name, value)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:  # from log_context, or log(..., extra={"event_id": ...})
            value = record.__dict__.get(name)
            if isinstance(value, str):
                data[name] = value
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aiokafka", "kafka", "uvicorn.access", "httpx"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
