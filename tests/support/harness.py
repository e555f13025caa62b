"""Test harness: a hub running in-process on the real broker, and a real HTTP destination."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest
import uvicorn
from aiokafka import AIOKafkaConsumer, TopicPartition
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from connectors.shopify import sign
from hub.config import check_routes, load_config
from hub.mapping import load_mappings
from hub.runtime import Hub
from hub.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
SECRET = "test-shopify-secret"
ORDER_BODY = (FIXTURES / "shopify" / "orders_create.json").read_bytes()
os.environ.setdefault("TEST_SHOPIFY_SECRET", SECRET)  # hub.yaml refers to it; reloads re-read it


def shopify_headers(
    body: bytes, webhook_id: str | None = None, secret: str = SECRET, topic: str = "orders/create"
) -> dict[str, str]:
    """The headers of a Shopify webhook delivery of ``body``, signed with ``secret``."""
    return {
        "content-type": "application/json",
        "x-shopify-topic": topic,
        "x-shopify-hmac-sha256": sign(secret, body),
        "x-shopify-webhook-id": webhook_id or str(uuid.uuid4()),
        "x-shopify-shop-domain": "acme.myshopify.com",
    }


async def shopify_webhook(
    hub: Hub, body: dict[str, Any] | bytes, topic: str, connection: str = "shop"
) -> None:
    """POST ``body`` to ``connection`` as a Shopify webhook of ``topic`` (signed, a new delivery
    id) and require the hub's 202."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = await post(hub, raw, shopify_headers(raw, topic=topic), connection)
    assert response.status_code == 202, response.text


def order_body(order_id: int, **changes: Any) -> bytes:
    order = json.loads(ORDER_BODY)
    order["id"] = order_id
    order["name"] = f"#{order_id}"
    order.update(changes)
    return json.dumps(order).encode()


class Cluster(Protocol):
    """What the tests need of the session's broker: the embedded Tansu or an external cluster."""

    @property
    def bootstrap_servers(self) -> str: ...


@dataclass(frozen=True)
class ExternalCluster:
    bootstrap_servers: str


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class Received:
    headers: dict[str, str]
    body: Any
    at: float = field(default_factory=time.monotonic)


@dataclass
class RecordingSink:
    """A real HTTP server on 127.0.0.1 that records what it receives.

    ``status_script`` answers the first requests with those statuses; ``respond`` (if set)
    picks the status of each request; ``down`` answers 503 to everything while it is set."""

    status_script: list[int] = field(default_factory=list)
    respond: Callable[[Received], int] | None = None
    down: bool = False
    received: list[Received] = field(default_factory=list)
    attempts: list[Received] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        self._queue: asyncio.Queue[Received] = asyncio.Queue()
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/orders"

    async def _handle(self, request: Request) -> JSONResponse:
        item = Received(dict(request.headers), json.loads(await request.body()))
        self.attempts.append(item)
        if self.down:
            status = 503
        elif self.status_script:
            status = self.status_script.pop(0)
        else:
            status = self.respond(item) if self.respond is not None else 200
        if status < 300:
            self.received.append(item)
            self._queue.put_nowait(item)
        return JSONResponse({"ok": status < 300}, status_code=status)

    async def next(self, timeout_s: float = 60.0) -> Received:
        async with asyncio.timeout(timeout_s):
            return await self._queue.get()

    async def __aenter__(self) -> RecordingSink:
        app = Starlette(routes=[Route("/orders", self._handle, methods=["POST"])])
        self._server = _Server(
            uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="off")
        )
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None and self._task is not None
        self._server.should_exit = True
        await self._task


SHOP_CONFIG = f"""
mappings: {ROOT / "mappings"}
connections:
  shop:
    connector: shopify
    options: {{webhook_secret: env:TEST_SHOPIFY_SECRET}}
"""
"""The start of a test's hub.yaml: the repository's mappings and the Shopify webhook source
`shop` (signed with :data:`SECRET`, read from TEST_SHOPIFY_SECRET). The test's other connections
and its routes follow."""


def config_text(
    destination_url: str | None, extra_routes: str = "", *, retry: str = "", limits: str = ""
) -> str:
    """hub.yaml: the Shopify source, and with a destination URL the `erp` HTTP destination and
    its route (``retry`` and ``limits`` are inline YAML for that route and connection)."""
    text = f"""
mappings: {ROOT / "mappings"}
connections:
  shop:
    connector: shopify
    options:
      webhook_secret: env:TEST_SHOPIFY_SECRET
"""
    if destination_url:
        text += f"""
  erp:
    connector: http
    options:
      url: {destination_url}
    limits: {{{limits}}}
"""
    text += """
routes:
  - name: shop-orders-in
    from: shop
    mapping: shopify/orders_create
"""
    if destination_url:
        text += f"""
  - name: orders-to-erp
    from: canonical.order
    to: erp
    retry: {{{retry}}}
"""
    return text + extra_routes


class HubFactory:
    """Starts hubs on the session's broker, each with its own topics and consumer groups."""

    def __init__(self, bootstrap: str, tmp: pytest.TempPathFactory) -> None:
        self.bootstrap = bootstrap
        self.tmp = tmp
        self._hubs: list[Hub] = []

    def settings(self, **overrides: Any) -> Settings:
        state = self.tmp.mktemp("hub")
        values: dict[str, Any] = {
            "kafka_bootstrap_servers": self.bootstrap,
            "kafka_topic_prefix": f"t{uuid.uuid4().hex[:10]}.",
            "kafka_partitions": 1,
            "state_dir": state,
            "http_port": 0,
            "ingress_publish_timeout_s": 10.0,
            "retry_initial_delay_s": 0.05,
            "retry_max_delay_s": 0.2,
            "breaker_open_s": 0.1,
            "breaker_max_open_s": 0.5,
            "config": state / "hub.yaml",
        }
        values.update(overrides)
        return Settings(**values)

    async def start(
        self,
        destination_url: str | None = None,
        *,
        wait: bool = True,
        config: str | None = None,
        roles: frozenset[str] = frozenset({"ingress", "workers"}),
        settings: Settings | None = None,
        resolver: Any = None,
        **overrides: Any,
    ) -> Hub:
        """A hub on new topics; or, given the ``settings`` of an earlier one, a restart of it."""
        settings = settings or self.settings(**overrides)
        settings.config.write_text(config or config_text(destination_url))
        cfg = load_config(settings.config)
        mappings = load_mappings(cfg.mappings_dir)
        check_routes(cfg, mappings)
        hub = Hub(settings, cfg, mappings, resolver=resolver, roles=roles)
        self._hubs.append(hub)
        await hub.start()
        if wait:
            await hub.wait_ready()
        return hub

    async def close(self) -> None:
        for hub in self._hubs:
            await hub.stop()


async def post(
    hub: Hub,
    body: bytes,
    headers: dict[str, str],
    connection: str = "shop",
    client: httpx.AsyncClient | None = None,
) -> httpx.Response:
    """POST a webhook; pass ``client`` when sending many (a new client per request is slow)."""
    if client is not None:
        return await client.post(
            f"{hub.base_url}/webhooks/{connection}", content=body, headers=headers
        )
    async with httpx.AsyncClient(timeout=30) as new:
        return await post(hub, body, headers, connection, new)


async def topic_records(bootstrap: str, topic: str) -> list[Any]:
    """Every record in ``topic`` now.

    Tansu answers ListOffsets with the base offset of the last batch + 1, so end offsets can
    undercount; this reads from the beginning until the broker has nothing more to give."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        out: list[Any] = []
        empty_polls = 0
        async with asyncio.timeout(60):
            while empty_polls < 3:
                batch = await consumer.getmany(timeout_ms=300)
                records = [r for recs in batch.values() for r in recs]
                empty_polls = 0 if records else empty_polls + 1
                out.extend(records)
        return sorted(out, key=lambda r: (r.partition, r.offset))
    finally:
        await consumer.stop()


def header(record: Any, name: str) -> str | None:
    for k, v in record.headers or ():
        if k == name:
            return bytes(v).decode()
    return None


async def until(predicate: Callable[[], Any], timeout_s: float = 60.0) -> None:
    """Wait until ``await predicate()`` is true (a test fails on the timeout, never on time)."""
    async with asyncio.timeout(timeout_s):
        while True:
            if await predicate():
                return
            await asyncio.sleep(0.05)
