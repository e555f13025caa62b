"""A fresh state database for a test: a SQLite file, or a new PostgreSQL database (dropped
after). Several :class:`hub.db.Database` objects (or hub processes) can open the one URL, as
several hub processes share one database in production."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

POSTGRES_URL = os.environ.get(
    "HUB_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def new_postgres_database() -> tuple[str, str]:
    """A fresh database on the test server: (SQLAlchemy URL, name). PostgreSQL unreachable
    skips the test (fails it under ``CI=true``)."""
    try:
        admin = await asyncpg.connect(_dsn(POSTGRES_URL), timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        reason = f"PostgreSQL at {POSTGRES_URL} is not reachable: {exc!r}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true: the state tests must run against PostgreSQL)")
        pytest.skip(f"{reason}; set HUB_TEST_POSTGRES_URL or start PostgreSQL")
    name = f"hub_test_{uuid.uuid4().hex[:12]}"
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False), name


async def drop_postgres_database(name: str) -> None:
    admin = await asyncpg.connect(_dsn(POSTGRES_URL), timeout=10)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def database_url(kind: str, tmp_path: Path) -> AsyncIterator[str]:
    """``kind`` is ``sqlite`` or ``postgresql`` (see :func:`new_postgres_database`)."""
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'state' / 'hub.db'}"
        return
    url, name = await new_postgres_database()
    try:
        yield url
    finally:
        await drop_postgres_database(name)


@pytest.fixture(
    name="database_url", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
async def hub_database_overrides(request: pytest.FixtureRequest) -> AsyncIterator[dict[str, str]]:
    """A hub's settings overrides (fixture ``database_url``): its default SQLite, or a fresh
    PostgreSQL database. Import it into a test module to use it."""
    if request.param == "sqlite":
        yield {}
        return
    url, name = await new_postgres_database()
    try:
        yield {"database_url": url}
    finally:
        await drop_postgres_database(name)
