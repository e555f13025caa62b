"""The embedded broker's CPU per record as it holds more: Tansu (memory storage) alone, no hub.

One aiokafka producer sends 2 KB records at a steady rate to one topic while one consumer reads
them at the tail; between measurements the producer fills the topic up to the next ``--stored``
figure. Each step reports Tansu's CPU (from /proc) per record produced, with the consumer
reading (``--mode both``) or without one (``--mode produce``).

    .venv/bin/python -m bench.broker
    .venv/bin/python -m bench.broker --stored 0,30000,90000 --mode produce
"""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench import core
from hub.broker import EmbeddedBroker

RECORD = b"x" * 2000
TOPIC = "bench.broker"


def cpu_s(pid: int) -> float:
    return core.proc_cpu_seconds(pid) or 0.0


async def run(stored: list[int], mode: str, seconds: float, interval: float) -> None:
    with EmbeddedBroker() as broker:
        (pid,) = core.child_pids_named("tansu")
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers, linger_ms=5)
        await producer.start()
        read = 0

        async def consume() -> None:
            nonlocal read
            while True:
                batch = await consumer.getmany(timeout_ms=500)
                read += sum(len(records) for records in batch.values())

        reader = None
        if mode == "both":
            consumer = AIOKafkaConsumer(
                TOPIC,
                bootstrap_servers=broker.bootstrap_servers,
                group_id="bench.broker",
                auto_offset_reset="latest",
                fetch_max_wait_ms=50,
            )
            await consumer.start()
            reader = asyncio.create_task(consume())
            await asyncio.sleep(6)  # the group join
        total = 0
        try:
            print(f"{'stored':>8} {'produced/s':>11} {'read/s':>7} {'CPU%':>5} {'ms/rec':>7}")
            for target in stored:
                if total < target:
                    more = range(target - total)
                    await asyncio.gather(*[await producer.send(TOPIC, RECORD) for _ in more])
                    total = target
                    await asyncio.sleep(3)
                cpu0, t0, read0, n = cpu_s(pid), time.monotonic(), read, 0
                while time.monotonic() - t0 < seconds:
                    await producer.send(TOPIC, RECORD)
                    n += 1
                    await asyncio.sleep(interval)
                await asyncio.sleep(0.5)
                dt = time.monotonic() - t0
                used = cpu_s(pid) - cpu0
                total += n
                print(
                    f"{target:>8,} {n / dt:>11.0f} {(read - read0) / dt:>7.0f} "
                    f"{100 * used / dt:>5.1f} {1000 * used / n:>7.2f}",
                    flush=True,
                )
        finally:
            if reader is not None:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
                await consumer.stop()
            await producer.stop()


def main(argv: list[str] | None = None) -> int:
    p = core.parser("bench.broker", __doc__)
    p.add_argument("--stored", default="0,30000,90000", help="records held before each step")
    p.add_argument("--mode", choices=("both", "produce"), default="both")
    p.add_argument("--seconds", type=float, default=10.0, help="length of each step")
    p.add_argument("--interval", type=float, default=0.002, help="pause between records (s)")
    args = p.parse_args(argv)
    stored = [int(x) for x in args.stored.split(",")]
    asyncio.run(run(stored, args.mode, args.seconds, args.interval))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
