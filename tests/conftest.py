"""Shared fixtures: one real Tansu broker per test session, hubs and HTTP sinks per test."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest

from hub.broker import EmbeddedBroker

from .support.harness import HubFactory, RecordingSink

PG_URL = os.environ.get(
    "HUB_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as b:
        yield b


@pytest.fixture
async def sink() -> AsyncIterator[RecordingSink]:
    async with RecordingSink() as s:
        yield s


@pytest.fixture
async def hubs(
    broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[HubFactory]:
    factory = HubFactory(broker.bootstrap_servers, tmp_path_factory)
    try:
        yield factory
    finally:
        await factory.close()
