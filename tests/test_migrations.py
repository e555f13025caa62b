"""The schema's migrations (hub/migrations): they make what the models say, keep the rows of a
database made before them, refuse a database a newer hub migrated, run once when replicas start
together, and `hub db current` / `hub db upgrade` report them. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import DateTime, column, func, insert, inspect, select, table, text
from sqlalchemy.engine import Connection

from hub import migrations
from hub.db import (
    EVERY_ROUTE,
    Database,
    dead_letters,
    deliveries,
    metadata,
    poll_cursors,
    retries,
)
from hub.db import webhook_receipts as receipts
from hub.errors import DatabaseNotUpgraded, DatabaseSchemaError, DatabaseTooNew

from .support.databases import database_url
from .test_cli import hub

FIXTURES = Path(__file__).parent / "fixtures" / "pre_alembic"
# What a newer hub's migration leaves: a revision this code does not know.
LATER = text("UPDATE alembic_version SET version_num = '0999_later'")
BEFORE_ROUTES = "0004_shared_circuits"  # the revision before 0005_deliveries_route
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The URL of an empty database."""
    async with database_url(request.param, tmp_path) as fresh:
        yield fresh


async def on(url: str, work: Any) -> Any:
    """``work(sync connection)`` in one transaction on a Database of its own."""
    db = Database(url)
    try:
        return await db.run(work)
    finally:
        await db.close()


def differences(conn: Connection) -> list[Any]:
    """What `alembic revision --autogenerate` would write: the models against the database."""
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


def tables(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names())


async def test_an_empty_database_upgraded_to_head_is_what_the_models_say(url: str) -> None:
    db = Database(url)
    try:
        assert await db.revision() is None
        await db.start()
        assert await db.revision() == migrations.head()
    finally:
        await db.close()
    assert await on(url, differences) == []
    assert await on(url, tables) == {*metadata.tables, "alembic_version"}


async def make_pre_alembic_database(url: str) -> None:
    """The tables as an older hub made them (tests/fixtures/pre_alembic), with rows in them."""
    dialect = "sqlite" if url.startswith("sqlite") else "postgresql"
    script = "\n".join(
        line
        for line in (FIXTURES / f"{dialect}.sql").read_text().splitlines()
        if not line.startswith("--")
    )
    at = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)

    def fill(conn: Connection) -> None:
        for statement in script.split(";"):
            if statement.strip():
                conn.exec_driver_sql(statement)
        conn.execute(  # the columns that table had then
            insert(receipts).values(
                connection="shop", delivery_id="d-1", event_id="evt-1", received_at=at
            )
        )
        old_deliveries = table(  # the columns that table had then (no route)
            "deliveries",
            column("destination"),
            column("event_id"),
            column("delivered_at", DateTime(timezone=True)),
        )
        conn.execute(
            insert(old_deliveries).values(destination="erp", event_id="evt-1", delivered_at=at)
        )
        conn.execute(insert(poll_cursors).values(connection="feed", cursor="page-7", polled_at=at))
        record = {
            "source_topic": "hub.ingest",
            "source_partition": 0,
            "source_offset": 41,
            "key": b"k",
            "value": b'{"id": 1}',
            "headers": [["ce_id", "evt-2"]],
        }
        conn.execute(
            insert(dead_letters).values(
                id="dl-1",
                failed_at=at,
                stage="deliver",
                error_class="DeliveryRejected",
                error="422 from erp",
                attempts=1,
                event_id="evt-2",
                status="open",
                replays=0,
                **record,
            )
        )
        conn.execute(
            insert(retries).values(
                worker="hub.delivery",
                event_id="evt-3",
                stage="deliver",
                attempts=2,
                attempt_times=["2026-12-01T10:00:00Z"],
                next_attempt_at=at,
                parked_at=at,
                **record,
            )
        )

    await on(url, fill)


async def test_a_database_made_before_migrations_is_adopted_and_keeps_its_rows(url: str) -> None:
    await make_pre_alembic_database(url)
    assert await on(url, differences) != []  # a column and two tables short of the models

    db = Database(url)
    try:
        assert await db.revision() is None
        await db.start()
        assert await db.revision() == migrations.head()
        # the rows, read as the hub reads them
        assert await db.webhook_events("shop", ["d-1"]) == {"d-1": ("evt-1", None)}
        # recorded before routes were: it stands for every route (0005_deliveries_route)
        assert await db.delivered("erp", ["evt-1", "evt-9"]) == {("evt-1", EVERY_ROUTE)}
        await db.record_webhooks([("shop", "d-2", "evt-4")], broker_incarnation="run-1")
        assert await db.webhook_events("shop", ["d-2"]) == {"d-2": ("evt-4", "run-1")}

        def rows(conn: Connection) -> tuple[Any, ...]:
            return (
                conn.execute(select(poll_cursors.c.cursor)).scalars().all(),
                conn.execute(select(dead_letters.c.id, dead_letters.c.value)).all(),
                conn.execute(select(retries.c.event_id, retries.c.headers)).all(),
            )

        cursors, letters, parked = await db.run(rows)
        assert cursors == ["page-7"]
        assert [tuple(r) for r in letters] == [("dl-1", b'{"id": 1}')]
        assert [tuple(r) for r in parked] == [("evt-3", [["ce_id", "evt-2"]])]
    finally:
        await db.close()
    assert await on(url, differences) == []


async def test_deliveries_recorded_before_routes_keep_counting_for_every_route(url: str) -> None:
    """0005_deliveries_route: a database at the revision before, with deliveries recorded once
    per (destination, event), upgrades to one row per route without losing a row; each old row
    gets route '' and stands for every route, so nothing is resent after the upgrade."""
    at = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)

    def at_baseline(conn: Connection) -> None:
        command.upgrade(migrations.alembic_config(conn), BEFORE_ROUTES)
        conn.execute(
            text(
                "INSERT INTO deliveries (destination, event_id, delivered_at) VALUES "
                "('erp', 'evt-1', :at), ('erp', 'evt-2', :at), ('crm', 'evt-1', :at)"
            ),
            {"at": at},
        )

    await on(url, at_baseline)
    db = Database(url)
    try:
        await db.start()
        assert await db.revision() == migrations.head()
        assert await db.delivered("erp", ["evt-1", "evt-2", "evt-3"]) == {
            ("evt-1", EVERY_ROUTE),
            ("evt-2", EVERY_ROUTE),
        }
        assert await db.delivered("crm", ["evt-1"]) == {("evt-1", EVERY_ROUTE)}
        # from now on per route: two routes of one event are two rows
        await db.record_deliveries("erp", [("evt-3", "a"), ("evt-3", "b"), ("evt-3", "a")])
        assert await db.delivered("erp", ["evt-3"]) == {("evt-3", "a"), ("evt-3", "b")}
    finally:
        await db.close()

    def key(conn: Connection) -> list[str]:
        return list(inspect(conn).get_pk_constraint("deliveries")["constrained_columns"])

    assert await on(url, key) == ["destination", "event_id", "route"]
    assert await on(url, differences) == []

    def downgraded(conn: Connection) -> list[tuple[str, str]]:
        command.downgrade(migrations.alembic_config(conn), BEFORE_ROUTES)
        rows = conn.execute(text("SELECT destination, event_id FROM deliveries"))
        return sorted((d, e) for d, e in rows)

    # back to one row per (destination, event): an event delivered through any route
    assert await on(url, downgraded) == [
        ("crm", "evt-1"),
        ("erp", "evt-1"),
        ("erp", "evt-2"),
        ("erp", "evt-3"),
    ]
    assert await on(url, key) == ["destination", "event_id"]


async def test_an_adopted_database_still_at_the_baseline_columns_is_completed(url: str) -> None:
    """An older hub's table missing a nullable column it gained later (what _add_new_columns
    added at every start before migrations): the baseline adds it."""
    await make_pre_alembic_database(url)
    await on(url, lambda c: c.exec_driver_sql("ALTER TABLE dead_letters DROP COLUMN attempt_times"))
    db = Database(url)
    try:
        await db.start()
    finally:
        await db.close()

    def columns(conn: Connection) -> set[str]:
        return {c["name"] for c in inspect(conn).get_columns("dead_letters")}

    assert "attempt_times" in await on(url, columns)
    assert (
        await on(url, lambda c: c.execute(select(func.count()).select_from(dead_letters)).scalar())
        == 1
    )


async def test_a_failed_upgrade_says_why_and_leaves_the_database_as_it_was(url: str) -> None:
    """The migrations run in one transaction (SQLite's DDL is transactional too): a revision
    that fails midway leaves nothing of the ones before it, or of its own first steps."""
    await make_pre_alembic_database(url)
    # a table no hub ever made: the baseline cannot add a NOT NULL column to its rows
    await on(url, lambda c: c.exec_driver_sql("ALTER TABLE deliveries DROP COLUMN delivered_at"))
    before = await on(url, tables)
    db = Database(url)
    try:
        with pytest.raises(DatabaseSchemaError) as failed:
            await db.start()
        assert await db.revision() is None
    finally:
        await db.close()
    message = str(failed.value)
    assert message.startswith(
        f"upgrading the database schema from no revision to {migrations.head()} failed"
    )
    assert "deliveries lacks its NOT NULL column delivered_at" in message
    assert await on(url, tables) == before  # no replay tables, no alembic_version

    def receipt_columns(conn: Connection) -> set[str]:
        return {c["name"] for c in inspect(conn).get_columns("webhook_receipts")}

    assert "broker_incarnation" not in await on(url, receipt_columns)  # added, rolled back
    assert await on(url, lambda c: c.execute(select(deliveries.c.event_id)).all()) == [("evt-1",)]


async def test_a_database_a_newer_hub_migrated_is_refused(url: str) -> None:
    db = Database(url)
    try:
        await db.start()
    finally:
        await db.close()
    await on(
        url, lambda c: c.execute(text("UPDATE alembic_version SET version_num = '0999_later'"))
    )

    for migrate in (True, False):
        db = Database(url)
        try:
            with pytest.raises(DatabaseTooNew) as refused:
                await db.start(migrate=migrate)
        finally:
            await db.close()
        assert "0999_later" in str(refused.value)
        assert migrations.head() in str(refused.value)
        assert "upgrade the hub" in str(refused.value)
    assert await on(
        url, lambda c: c.execute(text("SELECT version_num FROM alembic_version")).all()
    ) == [("0999_later",)]


async def test_without_migrations_a_database_behind_is_refused_and_left_alone(url: str) -> None:
    """HUB_DB_MIGRATE=false: the hub only checks the schema (a job migrates)."""
    db = Database(url)
    try:
        with pytest.raises(DatabaseNotUpgraded, match="hub db upgrade"):
            await db.start(migrate=False)
        assert await db.run(tables) == set()  # no DDL
        await db.migrate()
        await db.start(migrate=False)  # at the head: starts
    finally:
        await db.close()


async def test_hubs_starting_together_on_an_empty_database_migrate_it_once(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Replicas starting at once: one migrates under the schema lock, the others wait for it
    and find the schema at the head."""
    caplog.set_level(logging.INFO, logger="hub.db")
    databases = [Database(url) for _ in range(3)]
    try:
        results = await asyncio.gather(*(d.start() for d in databases), return_exceptions=True)
        assert results == [None, None, None]
        made = [r.getMessage() for r in caplog.records if r.name == "hub.db"]
        assert made == [f"database schema created at {migrations.head()}"]
        assert await databases[0].revision() == migrations.head()
    finally:
        for d in databases:
            await d.close()
    assert await on(url, differences) == []


async def test_a_hub_opening_a_new_sqlite_database_another_holds_waits_for_it(
    tmp_path: Path,
) -> None:
    """A replica that opens the file while another is switching a new database to WAL or
    migrating it: SQLite answers "database is locked" at once, without its busy wait, to the
    switch to WAL. The hub tries again until the other is done (this failed one start in ten
    of test_hubs_starting_together_on_an_empty_database_migrate_it_once)."""
    path = tmp_path / "hub.db"
    other = sqlite3.connect(path, isolation_level=None)  # a new file, not yet in WAL mode
    other.execute("CREATE TABLE theirs (x)")
    other.execute("BEGIN IMMEDIATE")  # writing: the hub may read, but not switch to WAL
    other.execute("INSERT INTO theirs VALUES (1)")
    database = Database(f"sqlite+aiosqlite:///{path}")
    try:
        starting = asyncio.create_task(database.start())
        await asyncio.sleep(0.3)  # the hub's start meanwhile: refused by SQLite, tried again
        assert not starting.done()  # before: DatabaseUnavailable, "database is locked"
        other.execute("COMMIT")
        await starting
        assert await database.revision() == migrations.head()
    finally:
        other.close()
        await database.close()


def test_hub_up_without_migrations_refuses_a_database_behind(tmp_path: Path) -> None:
    """HUB_DB_MIGRATE=false: `hub up` checks the schema, says what to run, and changes nothing."""
    state = tmp_path / "state"
    result = hub(
        "up",
        "-c",
        "examples/hub.yaml",
        HUB_DB_MIGRATE="false",
        HUB_STATE_DIR=str(state),
        SHOPIFY_WEBHOOK_SECRET="s" * 32,
        ERP_AUTHORIZATION="Bearer " + "t" * 32,
    )
    assert result.returncode == 1, result.stderr
    assert "migrations do not run here (HUB_DB_MIGRATE=false): run `hub db upgrade`" in (
        result.stderr
    )
    url = f"sqlite+aiosqlite:///{state / 'hub.db'}"
    assert asyncio.run(on(url, tables)) == set()


def test_hub_db_current_and_upgrade(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}"
    head = migrations.head()

    before = hub("db", "current", "--url", url)
    assert before.returncode == 1, before.stderr
    assert f"`hub db upgrade` brings it to {head}" in before.stdout

    upgraded = hub("db", "upgrade", HUB_DATABASE_URL=url)  # the URL from the environment
    assert upgraded.returncode == 0, upgraded.stderr
    assert upgraded.stdout.splitlines() == [
        f"database: {url}",
        f"database schema created at {head}",
    ]
    again = hub("db", "upgrade", "--url", url)
    assert again.stdout.splitlines()[-1] == f"database schema at {head} (head)"

    now = hub("db", "current", HUB_DATABASE_URL=url)
    assert now.returncode == 0, now.stderr
    assert now.stdout.splitlines() == [f"database: {url}", f"revision: {head} (head)"]
    assert now.stderr == ""  # alembic's own INFO lines stay out of it


def test_hub_db_commands_refuse_a_database_a_newer_hub_migrated(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}"
    assert hub("db", "upgrade", "--url", url).returncode == 0
    asyncio.run(on(url, lambda c: c.execute(LATER)))
    current = hub("db", "current", "--url", url)
    assert current.returncode == 1
    assert "0999_later, unknown to this hub" in current.stdout
    refused = hub("db", "upgrade", "--url", url)
    assert refused.returncode == 1
    assert "error: the database schema is at revision 0999_later" in refused.stderr
    assert "upgrade the hub" in refused.stderr


def test_hub_db_hides_the_password_of_the_url() -> None:
    result = hub("db", "current", "--url", "postgresql+asyncpg://hub:s3cret-pw@127.0.0.1:1/hub")
    assert result.returncode == 1
    assert "cannot open the database" in result.stderr
    assert "s3cret-pw" not in result.stdout + result.stderr
