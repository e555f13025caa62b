"""The dead-letter list on PostgreSQL with 100,000 dead letters: the first page, a deep page by
OFFSET and the same page by keyset (``after``), and a free-text search, as the ops API runs them
(:meth:`hub.deadletters.DeadLetterStore.search`). ``python -m bench.deadletters [--rows N]``.

Makes (and drops) its own database on HUB_TEST_POSTGRES_URL's server."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from hub.db import Database, dead_letters
from hub.deadletters import DeadLetterStore, Filter

SERVER = os.environ.get(
    "HUB_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)


def row(n: int, start: datetime) -> dict[str, object]:
    return {
        "id": f"dl{n:07d}",
        "failed_at": start - timedelta(milliseconds=n * 37),
        "stage": ("map", "deliver", "validate")[n % 3],
        "error_class": ("MappingFailed", "DeliveryFailed", "SchemaInvalid")[n % 3],
        "error": f"failure {n}",
        "attempts": 1,
        "connection": ("shop", "crm")[n % 2],
        "destination": ("erp", None)[n % 2],
        "event_id": str(uuid.uuid4()),
        "correlation_id": str(uuid.uuid4()),
        "source_topic": "hub.ingest",
        "source_partition": 0,
        "source_offset": n,
        "value": json.dumps({"id": n, "email": f"c{n}@example.com", "note": "x" * 300}).encode(),
        "headers": [],
        "status": "open",
        "replays": 0,
    }


async def timed(work, times: int = 7) -> float:  # type: ignore[no-untyped-def]
    took = []
    for _ in range(times):
        t = time.perf_counter()
        await work()
        took.append(time.perf_counter() - t)
    return statistics.median(took) * 1000


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    name = f"bench_dl_{uuid.uuid4().hex[:8]}"
    admin = SERVER.replace("+asyncpg", "")
    conn = await asyncpg.connect(admin)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    url = SERVER.rsplit("/", 1)[0] + f"/{name}"
    db = Database(url)
    try:
        await db.start()
        start = datetime(2026, 12, 1, tzinfo=UTC)
        for chunk in range(0, args.rows, 5000):
            rows = [row(n, start) for n in range(chunk, min(chunk + 5000, args.rows))]
            async with db.engine.begin() as c:
                await c.execute(dead_letters.insert(), rows)
        async with db.engine.begin() as c:
            await c.exec_driver_sql("ANALYZE dead_letters")
        store = DeadLetterStore(db)
        flt = Filter(status="open")
        deep = args.rows - 100
        _, page = await store.search(flt, 1, deep - 1)
        after = (datetime.fromisoformat(page[0]["failed_at"]), page[0]["id"])
        results = {
            "first page (50)": await timed(lambda: store.search(flt, 50)),
            f"page at offset {deep}": await timed(lambda: store.search(flt, 50, deep)),
            "same page by keyset": await timed(lambda: store.search(flt, 50, 0, after)),
            "free text q (50)": await timed(
                lambda: store.search(Filter(status="open", q="c99999@"), 50)
            ),
        }
        print(f"PostgreSQL, {args.rows} dead letters, median of 7 (ms, count(*) included):")
        for what, ms in results.items():
            print(f"  {what:28s} {ms:8.1f}")
    finally:
        await db.close()
        conn = await asyncpg.connect(admin)
        await conn.execute(f'DROP DATABASE "{name}"')
        await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
