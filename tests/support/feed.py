"""A polling source for the tests, and the system it polls: a JSON change feed over real HTTP.

The feed (``GET /changes?after=N``) answers ``{"changes": [...], "cursor": "M", "more": bool}``
with at most ``page_size`` records after position N. ``test_feed`` is the connector that polls
it with httpx, as a real polling connector would poll its system.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiohttp import web
from pydantic import Field, HttpUrl

from connectors import Change, Page, PollingOptions, PollingSource, register
from connectors import get as connector_class
from hub.errors import PollFailed

from .harness import ROOT


class FeedOptions(PollingOptions):
    url: HttpUrl = Field(description="The feed's /changes address.")


class Feed(PollingSource):
    name = "test_feed"
    title = "Test change feed"
    Options = FeedOptions
    options: FeedOptions

    async def poll(self, cursor: str | None) -> Page:
        try:
            async with httpx.AsyncClient(timeout=5) as client:
                response = await client.get(str(self.options.url), params={"after": cursor or "0"})
        except httpx.HTTPError as exc:
            raise PollFailed(self.connection, f"{type(exc).__name__}: {exc}") from None
        if response.status_code != 200:
            raise PollFailed(self.connection, f"HTTP {response.status_code}")
        body = response.json()
        changes = [
            Change(c["type"], c["id"], c["version"], json.dumps(c["data"]).encode())
            for c in body["changes"]
        ]
        return Page(changes, body["cursor"], body["more"])


if connector_class("test_feed") is None:
    register(Feed)


@dataclass
class FeedServer:
    """The polled system: records in the order they changed; every poll is recorded."""

    page_size: int = 2
    records: list[dict[str, Any]] = field(default_factory=list)
    polls: list[str] = field(default_factory=list)  # the `after` of each poll
    fail: int = 0  # answer that many polls 503
    url: str = ""
    _runner: web.AppRunner | None = None

    def add(self, n: int) -> None:
        for _ in range(n):
            i = len(self.records)
            self.records.append(
                {"id": f"r{i}", "version": "1", "type": "record.changed", "data": {"n": i}}
            )

    async def _changes(self, request: web.Request) -> web.Response:
        after = request.query.get("after", "0")
        self.polls.append(after)
        if self.fail > 0:
            self.fail -= 1
            return web.Response(status=503, text="down")
        start = int(after)
        page = self.records[start : start + self.page_size]
        end = start + len(page)
        return web.json_response(
            {"changes": page, "cursor": str(end), "more": end < len(self.records)}
        )

    async def __aenter__(self) -> FeedServer:
        app = web.Application()
        app.router.add_get("/changes", self._changes)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/changes"
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def feed_config(url: str, interval_s: float = 0.2) -> str:
    """hub.yaml with the feed as its only connection."""
    return f"""
mappings: {ROOT / "mappings"}
connections:
  feed:
    connector: test_feed
    options:
      url: {url}
      poll_interval_s: {interval_s}
"""
