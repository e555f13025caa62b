"""Shared fixtures: one real Kafka-compatible broker per test session, hubs and HTTP sinks per
test.

The broker is the embedded Tansu unless ``HUB_TEST_KAFKA_BOOTSTRAP_SERVERS`` names a Kafka
cluster (plaintext listener) to run the suite against instead; every hub a test starts has its
own topic and consumer-group prefix, so runs never see each other's records. Tests of the
embedded broker itself (its backlog, its death) start their own Tansu either way."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest

from hub.broker import EmbeddedBroker

from .support.harness import Cluster, ExternalCluster, HubFactory, RecordingSink

PG_URL = os.environ.get(
    "HUB_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)


EXTERNAL_KAFKA = os.environ.get("HUB_TEST_KAFKA_BOOTSTRAP_SERVERS", "")


@pytest.fixture(scope="session")
def broker() -> Iterator[Cluster]:
    if EXTERNAL_KAFKA:
        yield ExternalCluster(EXTERNAL_KAFKA)
        return
    with EmbeddedBroker() as b:
        yield b


@pytest.fixture
async def sink() -> AsyncIterator[RecordingSink]:
    async with RecordingSink() as s:
        yield s


@pytest.fixture
async def hubs(
    broker: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[HubFactory]:
    factory = HubFactory(broker.bootstrap_servers, tmp_path_factory)
    try:
        yield factory
    finally:
        await factory.close()
