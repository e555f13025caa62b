"""The hub's schema: Alembic revisions in ``versions/``, applied when the hub starts.

``Database.start`` (every ``hub up``) and ``hub db upgrade`` bring the database to the head
revision on a connection of their own, one process at a time (see :meth:`hub.db.Database.
migrate`). A database made before Alembic (tables, no ``alembic_version``) is adopted: the
baseline revision completes its tables (columns and indexes added since they were made) instead
of creating them. A database at a revision this code does not know was migrated by a newer hub:
it is refused (:class:`hub.errors.DatabaseTooNew`), never downgraded.

The configuration is built here, from this package's path: nothing is read from the working
directory. ``alembic.ini`` at the repository root is for developers' ``alembic revision
--autogenerate`` (README "Schema changes").
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from ..errors import DatabaseNotUpgraded, DatabaseSchemaError, DatabaseTooNew

HERE = Path(__file__).parent


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration for this package's revisions; with ``connection``, env.py
    migrates over it (in the transaction it is in) instead of opening one from a URL."""
    config = Config()
    # set_main_option interpolates: a % in the path is escaped.
    config.set_main_option("script_location", str(HERE).replace("%", "%%"))
    config.set_main_option("file_template", "%%(rev)s")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head() -> str:
    """The newest revision this code knows."""
    found = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert found is not None, "hub/migrations/versions holds no revision"
    return found


def current(target: str | Connection) -> str | None:
    """The revision a database (a URL or a connection) is at; None: none recorded (an empty
    database, or one made before Alembic)."""
    if isinstance(target, str):
        return asyncio.run(_url_current(target))
    heads = MigrationContext.configure(target).get_current_heads()
    return heads[0] if heads else None


@dataclass(frozen=True)
class Upgrade:
    """What an upgrade found and did."""

    before: str | None  # the revision the database was at; None: none recorded
    after: str
    adopted: bool = False  # the database was made before Alembic (tables, no revision)

    @property
    def changed(self) -> bool:
        return self.before != self.after

    def __str__(self) -> str:
        if not self.changed:
            return f"database schema at {self.after} (head)"
        if self.adopted:
            return f"database made before migrations adopted and upgraded to {self.after}"
        if self.before is None:
            return f"database schema created at {self.after}"
        return f"database schema upgraded from {self.before} to {self.after}"


def upgrade(target: str | Connection) -> Upgrade:
    """Bring a database (a URL, or a connection in a transaction the caller commits) to the head
    revision. With a URL it runs as ``hub up`` does, under the schema lock (a sync caller only).

    Raises DatabaseTooNew if the database is at a revision this code does not know."""
    if isinstance(target, str):
        return asyncio.run(_url_upgrade(target))
    before = check(target, migrate=True)
    adopted = before is None and bool(inspect(target).get_table_names())
    try:
        command.upgrade(alembic_config(target), "head")
    except Exception as exc:
        raise DatabaseSchemaError(
            f"upgrading the database schema from {before or 'no revision'} to {head()} failed "
            "(rolled back): "
            f"{exc.__class__.__name__}: {exc}"
        ) from exc
    return Upgrade(before, head(), adopted)


def known(revision: str | None) -> bool:
    """Whether this code knows ``revision`` (None, no revision, it knows)."""
    if revision is None:
        return True
    try:
        return ScriptDirectory.from_config(alembic_config()).get_revision(revision) is not None
    except Exception:  # alembic's ResolutionError and kin: an id it has never seen
        return False


def check(connection: Connection, *, migrate: bool) -> str | None:
    """The database's revision, if this code can run on it: refused if it is newer than this
    code (DatabaseTooNew), or, where migrations do not run here (``migrate=False``), older than
    the head (DatabaseNotUpgraded)."""
    newest = head()
    at = current(connection)
    if not known(at):
        raise DatabaseTooNew(
            f"the database schema is at revision {at}, which this hub does not know (its "
            f"newest is {newest}): a newer hub has migrated it; upgrade the hub, or point "
            "it at another database"
        )
    if not migrate and at != newest:
        raise DatabaseNotUpgraded(
            f"the database schema is at {at or 'no revision (empty)'}, this hub needs {newest}, "
            "and migrations do not run here (HUB_DB_MIGRATE=false): run `hub db upgrade` first"
        )
    return at


async def _url_upgrade(url: str) -> Upgrade:
    from ..db import Database

    db = Database(url)
    try:
        return await db.migrate()
    finally:
        await db.close()


async def _url_current(url: str) -> str | None:
    from ..db import Database

    db = Database(url)
    try:
        return await db.revision()
    finally:
        await db.close()
