"""Delivery HTTP client: CPU per POST of connectors.rest (on aiohttp), bare aiohttp and httpx.

Each is measured against bench.sink, the connectors' HTTP layer as the http destination uses it.

The sink runs in its own process; this process only sends. Each client POSTs the same ~2 KB JSON
body with the headers the http destination sends (content-type, Idempotency-Key, ce-*), keeping
``--in-flight`` requests going, and the figure is this process's CPU time per request
(``time.process_time``), so the sink's share is not in it. Each client is run ``--rounds``
times, alternating, and the best round is reported.

    .venv/bin/python -m bench.client
    .venv/bin/python -m bench.client --requests 5000 --clients rest,aiohttp,httpx
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import uvloop

from bench import core

BODY = b'{"id": "ord_1", "note": "' + b"x" * 2000 + b'"}'
HEADERS = {
    "content-type": "application/json",
    "idempotency-key": "0b6f6c1ce4c95c7f9c1e0f6a2b8a4e11",
    "ce-id": "0b6f6c1ce4c95c7f9c1e0f6a2b8a4e11",
    "ce-source": "/mappings/shopify/orders_create",
    "ce-type": "hub.order",
    "ce-specversion": "1.0",
    "ce-time": "2026-12-02T06:00:00.000Z",
    "ce-subject": "ord_1",
    "ce-correlationid": "6a1c9e0b4f3d4c2a8e7b5d9f1a3c5e7b",
}

Post = Callable[[], Awaitable[int]]


async def make(kind: str, url: str) -> tuple[Post, Callable[[], Awaitable[None]]]:
    if kind == "rest":
        from connectors.rest import RestClient

        client = RestClient("sink", url, timeout_s=30)
        await client.open()

        async def post_rest() -> int:
            return (await client.request("POST", content=BODY, headers=HEADERS)).status

        return post_rest, client.close
    if kind == "aiohttp":
        import aiohttp

        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), cookie_jar=aiohttp.DummyCookieJar()
        )

        async def post_aiohttp() -> int:
            async with session.post(url, data=BODY, headers=HEADERS, allow_redirects=False) as r:
                return r.status

        return post_aiohttp, session.close
    if kind == "httpx":
        import httpx

        hx = httpx.AsyncClient(trust_env=False, timeout=30)

        async def post_httpx() -> int:
            return (await hx.post(url, content=BODY, headers=HEADERS)).status_code

        return post_httpx, hx.aclose
    raise SystemExit(f"unknown client {kind!r}")


async def round_(kind: str, url: str, requests: int, in_flight: int) -> tuple[float, float]:
    post, close = await make(kind, url)
    gate = asyncio.Semaphore(in_flight)

    async def one() -> int:
        async with gate:
            return await post()

    try:
        await asyncio.gather(*(one() for _ in range(min(500, requests))))  # connections, caches
        wall, cpu = time.perf_counter(), time.process_time()
        statuses = await asyncio.gather(*(one() for _ in range(requests)))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        await close()
    if set(statuses) != {200}:
        raise SystemExit(f"{kind}: unexpected answers {sorted(set(statuses))}")
    return requests / wall, cpu / requests * 1e6


def main(argv: list[str] | None = None) -> int:
    p = core.parser("bench.client", __doc__)
    p.add_argument("--clients", default="rest,aiohttp", help="comma-separated: rest,aiohttp,httpx")
    p.add_argument("--requests", type=int, default=20_000, help="requests per round")
    p.add_argument("--in-flight", type=int, default=16, help="requests in flight")
    p.add_argument("--rounds", type=int, default=3, help="rounds per client (best is shown)")
    args = p.parse_args(argv)
    port = core.free_port()
    argv = [sys.executable, "-m", "bench.sink", "--port", str(port)]
    env = core.clean_env(PYTHONPATH=str(core.ROOT))
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        sink = core.Server("sink", argv, env, core.ROOT, Path(tmp) / "sink.log").start(stack)
        sink.wait_ready(port, 30)
        url = f"http://{core.HOST}:{port}/ok/erp"
        best: dict[str, tuple[float, float]] = {}
        for _ in range(args.rounds):
            for kind in args.clients.split(","):
                rate, cpu = uvloop.run(round_(kind, url, args.requests, args.in_flight))
                if kind not in best or cpu < best[kind][1]:
                    best[kind] = (rate, cpu)
        print(f"{'client':10} {'req/s':>8} {'CPU us/request':>15}")
        for kind, (rate, cpu) in best.items():
            print(f"{kind:10} {rate:8,.0f} {cpu:15.1f}")
        print(f"{args.requests} POSTs of {len(BODY)} bytes per round, {args.in_flight} in flight")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
