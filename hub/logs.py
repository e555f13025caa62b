"""Logging set-up: readable text by default, one JSON object per line with HUB_LOG_FORMAT=json.

Libraries' warnings and errors that repeat (the Kafka clients log each failed reconnection:
~125-230 lines a second while a broker is down) are let through once per interval and kind:
the next one after the interval says how many like it were held back (:class:`RepeatFilter`).

What a line is about travels as fields, not only inside the message: the code handling an event
says so once (``with log_context(event_id=..., route=...)``), and every line logged meanwhile,
in that task, carries ``event_id``, ``correlation_id``, ``connection``, ``route`` and
``destination`` as JSON fields, so a log backend can filter one event's lines across processes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
import threading
import time
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

_NUMBERS = re.compile(r"\d+")


@dataclass
class _Window:
    since: float
    held: int = 0


class RepeatFilter(logging.Filter):
    """Lets a library's warning or error through at most once per ``interval_s`` per kind of
    line (its logger, level and message with numbers left out); the first one after the
    interval carries the count of those held back. The hub's own lines and lines below
    ``level`` always pass."""

    def __init__(self, interval_s: float = 10.0, level: int = logging.WARNING) -> None:
        super().__init__()
        self.interval_s = interval_s
        self.level = level
        self._windows: dict[tuple[str, int, str], _Window] = {}
        self._lock = threading.Lock()  # the Kafka producer's thread logs too

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < self.level or record.name.split(".")[0] == "hub":
            return True
        message = record.getMessage()
        key = (record.name, record.levelno, _NUMBERS.sub("#", message))
        now = time.monotonic()
        with self._lock:
            window = self._windows.get(key)
            if window is not None and now - window.since < self.interval_s:
                window.held += 1
                return False
            if len(self._windows) > 1000:  # forget kinds not seen for an interval
                self._windows = {
                    k: w for k, w in self._windows.items() if now - w.since < self.interval_s
                }
            self._windows[key] = _Window(now)
        if window is not None and window.held:
            record.msg = (
                f"{message} [{window.held} more like this in the last "
                f"{now - window.since:.0f}s not shown]"
            )
            record.args = None
        return True


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
    handler.addFilter(RepeatFilter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # alembic: "Context impl ..." at every start; hub.db logs once what a migration changed.
    for noisy in ("aiokafka", "kafka", "librdkafka", "uvicorn.access", "httpx", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
