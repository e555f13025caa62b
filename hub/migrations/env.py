"""Alembic's environment for the hub's revisions.

The hub migrates over a connection of its own, in a transaction under its schema lock, passed
as ``config.attributes["connection"]`` (:mod:`hub.migrations`). Run by the ``alembic`` command
(developers: README "Schema changes") it opens the database named by HUB_DATABASE_URL, else
``sqlalchemy.url`` of alembic.ini (a scratch SQLite file).
"""

from __future__ import annotations

import asyncio
import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from hub.db import metadata

config = context.config


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # Revisions must run on SQLite too, which alters a table by copying it.
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _from_url(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run_migrations)
            await connection.commit()
    finally:
        await engine.dispose()


def _url() -> str:
    url = os.environ.get("HUB_DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("set HUB_DATABASE_URL or sqlalchemy.url in alembic.ini")
    return url


given = config.attributes.get("connection")
if given is not None:
    run_migrations(given)
elif context.is_offline_mode():
    context.configure(
        url=_url(), target_metadata=metadata, literal_binds=True, render_as_batch=True
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    if config.config_file_name is not None:  # the alembic command: its ini's logging
        fileConfig(config.config_file_name)
    asyncio.run(_from_url(_url()))
