"""The Kafka bus: client settings, topic creation, the publisher and consumers.

Producing goes through :class:`Publisher` (librdkafka via confluent-kafka, acks=all): its
publish latency inside the uvicorn loop stayed low where aiokafka's ``send_and_wait`` stalled
(BRIEF.md). Consuming and administration use aiokafka.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
from collections import deque
from collections.abc import Sequence
from typing import Any

import confluent_kafka
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from .envelope import CloudEvent, to_kafka
from .errors import BrokerUnavailable
from .settings import Settings

log = logging.getLogger(__name__)


def aiokafka_config(settings: Settings, bootstrap: str) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "client_id": settings.kafka_client_id,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        ctx = ssl.create_default_context(
            cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
        )
        if settings.kafka_ssl_certfile:
            ctx.load_cert_chain(
                str(settings.kafka_ssl_certfile),
                str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None,
            )
        cfg["ssl_context"] = ctx
    if settings.kafka_sasl_mechanism:
        cfg["sasl_mechanism"] = settings.kafka_sasl_mechanism
        cfg["sasl_plain_username"] = settings.kafka_sasl_username
        if settings.kafka_sasl_password is not None:
            cfg["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return cfg


def librdkafka_config(settings: Settings, bootstrap: str) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "client.id": settings.kafka_client_id,
        "security.protocol": settings.kafka_security_protocol.lower(),
    }
    if settings.kafka_ssl_cafile:
        cfg["ssl.ca.location"] = str(settings.kafka_ssl_cafile)
    if settings.kafka_ssl_certfile:
        cfg["ssl.certificate.location"] = str(settings.kafka_ssl_certfile)
    if settings.kafka_ssl_keyfile:
        cfg["ssl.key.location"] = str(settings.kafka_ssl_keyfile)
    if settings.kafka_sasl_mechanism:
        cfg["sasl.mechanism"] = settings.kafka_sasl_mechanism
        cfg["sasl.username"] = settings.kafka_sasl_username or ""
        if settings.kafka_sasl_password is not None:
            cfg["sasl.password"] = settings.kafka_sasl_password.get_secret_value()
    return cfg


async def ensure_topics(settings: Settings, bootstrap: str, topics: Sequence[str]) -> list[str]:
    """Create the topics that do not exist yet; returns the ones created."""
    admin = AIOKafkaAdminClient(**aiokafka_config(settings, bootstrap))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if missing:
            try:
                await admin.create_topics(
                    [
                        NewTopic(t, settings.kafka_partitions, settings.kafka_replication_factor)
                        for t in missing
                    ]
                )
            except TopicAlreadyExistsError:
                pass  # another hub instance created it first
            log.info("created topics %s", ", ".join(missing))
        return missing
    finally:
        await admin.close()


_Ack = tuple[asyncio.Future[None], "confluent_kafka.KafkaError | None"]


class Publisher:
    """Publishes CloudEvents with acks=all; ``publish`` returns once the broker has them."""

    def __init__(self, settings: Settings, bootstrap: str, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._producer = confluent_kafka.Producer(
            {
                **librdkafka_config(settings, bootstrap),
                "acks": "all",
                "linger.ms": settings.kafka_linger_ms,
                "message.timeout.ms": max(1, int(timeout_s * 1000) - 50),
                "socket.keepalive.enable": True,
                "logger": logging.getLogger("librdkafka"),  # through our handler and filter
            }
        )
        self._stop = threading.Event()
        # delivery reports, appended during poll() or flush(), drained by the poller thread
        self._acks: deque[_Ack] = deque()
        self._poller = threading.Thread(target=self._poll, name="kafka-publisher", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        """Serve librdkafka's delivery reports; hand each round's to the loop in one call.

        One ``call_soon_threadsafe`` per record was a wake-up of the event loop (and a GIL
        hand-over) per record; a produce request acknowledges many records at once."""
        while not self._stop.is_set():
            self._producer.poll(0.05)
            self._hand_over()

    def _hand_over(self) -> None:
        acks = self._acks
        if not acks:
            return
        batch: list[_Ack] = []
        try:
            while True:
                batch.append(acks.popleft())
        except IndexError:
            pass
        try:
            batch[0][0].get_loop().call_soon_threadsafe(_settle_all, batch)
        except RuntimeError:  # the loop is closed: nobody waits for these any more
            pass

    def send(
        self, topic: str, event: CloudEvent, extra_headers: Sequence[tuple[str, bytes]] = ()
    ) -> asyncio.Future[None]:
        """Queue one event; the future resolves when the broker acknowledged it."""
        key, value, headers = to_kafka(event)
        return self.send_raw(topic, key, value, [*headers, *extra_headers])

    def send_raw(
        self, topic: str, key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, Any]]
    ) -> asyncio.Future[None]:
        """Queue one record as it is (dead letters keep the original record whole)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        acks = self._acks

        def delivered(err: confluent_kafka.KafkaError | None, _msg: Any) -> None:
            acks.append((fut, err))  # in the thread that runs poll() or flush()

        try:
            record_headers: list[tuple[str, str | bytes | None]] = list(headers)
            self._producer.produce(
                topic, value=value, key=key, headers=record_headers, on_delivery=delivered
            )
        except BufferError:
            fut.set_exception(BrokerUnavailable("the publish queue is full"))
        except confluent_kafka.KafkaException as exc:
            fut.set_exception(BrokerUnavailable(str(exc)))
        return fut

    async def publish(self, topic: str, event: CloudEvent) -> None:
        await self.wait([self.send(topic, event)])

    async def wait(self, futures: Sequence[asyncio.Future[None]]) -> None:
        if not futures:
            return
        try:
            async with asyncio.timeout(self.timeout_s):
                await asyncio.gather(*futures)
        except TimeoutError:
            raise BrokerUnavailable(
                f"the broker did not acknowledge within {self.timeout_s:g}s"
            ) from None

    async def ping(self, timeout_s: float = 2.0) -> bool:
        def probe() -> bool:
            try:
                self._producer.list_topics(timeout=timeout_s)
                return True
            except confluent_kafka.KafkaException:
                return False

        return await asyncio.to_thread(probe)

    async def close(self) -> None:
        await asyncio.to_thread(self._producer.flush, self.timeout_s)
        self._stop.set()
        await asyncio.to_thread(self._poller.join)
        self._hand_over()  # reports that flush() served after the poller's last round


def _settle_all(acks: list[_Ack]) -> None:
    for fut, err in acks:
        _settle(fut, err)


def _settle(fut: asyncio.Future[None], err: confluent_kafka.KafkaError | None) -> None:
    if fut.done():
        return
    if err is None:
        fut.set_result(None)
    else:
        fut.set_exception(BrokerUnavailable(f"broker refused the event: {err.str()}"))


def consumer(
    settings: Settings, bootstrap: str, group: str, topics: Sequence[str]
) -> AIOKafkaConsumer:
    """A group consumer that never commits on its own: workers commit after their output."""
    return AIOKafkaConsumer(
        *topics,
        **aiokafka_config(settings, bootstrap),
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=500,
        # How long the broker may hold a fetch open waiting for data. Tansu holds it the whole
        # time instead of answering when data arrives: at the default 500 ms that added ~100 ms
        # per hop (bench/pipeline); 50 ms costs a few % of a core when idle.
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
        fetch_min_bytes=settings.kafka_fetch_min_bytes,
    )


__all__ = ["KafkaError", "Publisher", "consumer", "ensure_topics"]
