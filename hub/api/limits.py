"""ASGI middleware: a request head over the configured limits gets 431, before any handler.

uvicorn serves with h11, whose ``h11_max_incomplete_event_size`` stops reading a head that is
still incomplete past ``HUB_HTTP_MAX_HEADER_BYTES`` (uvicorn answers 400 and closes: memory
stays bounded). A head that arrived whole in one read can be a little larger than that, and
h11 does not count header fields: both are refused here, with the usual JSON error body.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def head_size(scope: dict[str, Any]) -> int:
    """The request head's size on the wire (request line, header fields, blank line), near
    enough: the parser dropped optional whitespace."""
    line = len(scope["method"]) + len(scope.get("raw_path") or b"") + 12  # " ", " HTTP/1.1\r\n"
    query = scope.get("query_string") or b""
    if query:
        line += 1 + len(query)
    return line + sum(len(name) + len(value) + 4 for name, value in scope["headers"]) + 2


class HeaderLimits:
    def __init__(self, app: App, max_bytes: int, max_fields: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_fields = max_fields

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            problem = None
            count = len(scope["headers"])
            if count > self.max_fields:
                problem = f"{count} header fields, more than the limit of {self.max_fields}"
            elif (size := head_size(scope)) > self.max_bytes:
                problem = f"request head of {size} bytes, over the limit of {self.max_bytes}"
            if problem is not None:
                await _refuse(send, problem)
                return
        await self.app(scope, receive, send)


async def _refuse(send: Any, message: str) -> None:
    body = json.dumps({"error": "headers_too_large", "message": message}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),  # the body, if any, is not read
    ]
    await send({"type": "http.response.start", "status": 431, "headers": headers})
    await send({"type": "http.response.body", "body": body})
