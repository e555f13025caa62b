"""The embedded broker's backlog, kept across a graceful restart of the hub.

The embedded Tansu keeps its records in memory only, so whatever it holds is gone when the hub
stops. Some of that the hub has answered 202 for and not finished: the events of a destination
that is down (they wait in Kafka by design, see :mod:`hub.workers.delivery`), a mapper that is
behind. So on a graceful stop (SIGINT, SIGTERM, ``Hub.stop``) the hub reads, for every topic its
workers read, each record at or after the lowest offset the topic's consumer groups committed,
and writes them to ``<state dir>/embedded-broker-backlog.jsonl``. On the next start, before any
worker runs, it publishes them again, waits for the broker's acknowledgement and only then
removes the file. Records that some group had already handled come back too: their outputs carry
deterministic ids and deliveries are recorded, so they have no second effect.

A hub killed outright (SIGKILL, the OOM killer) cannot save anything, but Tansu outlives it: the
next start in the same state folder finds it (``hub.broker.EmbeddedBroker.orphan``), saves what
it holds the same way, stops it, and goes on as above. What this cannot cover is the broker's
own end: a power cut, or Tansu killed too. That is why the embedded broker is for trying the hub
and for tests; production uses a Kafka cluster (``HUB_KAFKA_BOOTSTRAP_SERVERS``), which keeps its
records itself.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
from collections.abc import Mapping, Set
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from .bus import Publisher, aiokafka_config
from .settings import Settings

log = logging.getLogger(__name__)

FILE_NAME = "embedded-broker-backlog.jsonl"


def backlog_path(settings: Settings) -> Path:
    return settings.state_dir / FILE_NAME


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)


async def _committed(
    settings: Settings, bootstrap: str, group: str, tps: list[TopicPartition]
) -> dict[TopicPartition, int | None]:
    """What ``group`` committed on each partition (None: nothing yet), without joining it."""
    consumer = AIOKafkaConsumer(
        **aiokafka_config(settings, bootstrap), group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        return {tp: await consumer.committed(tp) for tp in tps}
    finally:
        await consumer.stop()


async def _read_from(
    settings: Settings, bootstrap: str, starts: dict[TopicPartition, int]
) -> list[Any]:
    """Every record from ``starts`` on, to the end of each partition, in offset order.

    Tansu answers ListOffsets with the base offset of the last batch + 1, so the end offsets it
    gives can undercount: reading stops once every partition is past them and a poll brings
    nothing more."""
    consumer = AIOKafkaConsumer(
        **aiokafka_config(settings, bootstrap),
        enable_auto_commit=False,
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
    )
    await consumer.start()
    try:
        tps = list(starts)
        consumer.assign(tps)
        for tp, offset in starts.items():
            consumer.seek(tp, offset)
        ends = await consumer.end_offsets(tps)
        out: list[Any] = []
        while True:
            batch = await consumer.getmany(timeout_ms=300)
            for records in batch.values():
                out.extend(records)
            if not batch and all([await consumer.position(tp) >= ends[tp] for tp in tps]):
                break
        return sorted(out, key=lambda r: (r.topic, r.partition, r.offset))
    finally:
        await consumer.stop()


async def save(
    settings: Settings, bootstrap: str, readers: Mapping[str, Set[str]], path: Path
) -> int:
    """Write what the consumer groups in ``readers`` (topic -> groups reading it) have not all
    committed to ``path``; returns how many records. Nothing to keep: no file."""
    probe = AIOKafkaConsumer(**aiokafka_config(settings, bootstrap), enable_auto_commit=False)
    await probe.start()
    try:
        existing = await probe.topics()
        partitions = {
            topic: sorted(probe.partitions_for_topic(topic) or ())
            for topic in readers
            if topic in existing
        }
    finally:
        await probe.stop()
    starts: dict[TopicPartition, int] = {}
    groups: dict[str, list[TopicPartition]] = {}
    for topic, numbers in partitions.items():
        for group in readers[topic]:
            groups.setdefault(group, []).extend(TopicPartition(topic, p) for p in numbers)
    for group, tps in groups.items():
        for tp, offset in (await _committed(settings, bootstrap, group, tps)).items():
            starts[tp] = min(starts.get(tp, offset or 0), offset or 0)
    records = await _read_from(settings, bootstrap, starts) if starts else []
    if records:
        await asyncio.to_thread(_write, path, records)
    return len(records)


def _write(path: Path, records: list[Any]) -> None:
    """All of them or nothing: a file written to its side, synced, then renamed. A file still
    there (its records not yet published again: the start failed) is kept at its head."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        earlier = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        earlier = ""
    with tmp.open("w", encoding="utf-8") as f:
        f.write(earlier)
        for r in records:
            line = {
                "topic": r.topic,
                "partition": r.partition,
                "offset": r.offset,
                "key": _b64(r.key),
                "value": _b64(r.value),
                "headers": [[name, _b64(value)] for name, value in r.headers or ()],
            }
            f.write(json.dumps(line, separators=(",", ":")) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _read(path: Path) -> list[dict[str, Any]] | None:
    try:
        with path.open(encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return None


async def restore(publisher: Publisher, path: Path, chunk: int = 1000) -> int:
    """Publish the records saved in ``path`` again, in their order, and remove the file once
    the broker acknowledged them all; returns how many. No file: 0."""
    items = await asyncio.to_thread(_read, path)
    if items is None:
        return 0
    pending: list[asyncio.Future[None]] = []
    for item in items:
        headers = [(name, _unb64(value)) for name, value in item["headers"]]
        pending.append(
            publisher.send_raw(item["topic"], _unb64(item["key"]), _unb64(item["value"]), headers)
        )
        if len(pending) >= chunk:
            await publisher.wait(pending)
            pending = []
    await publisher.wait(pending)
    await asyncio.to_thread(path.unlink)
    return len(items)
