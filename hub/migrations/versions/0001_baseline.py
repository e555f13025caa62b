"""Baseline: every table as the hub made them before Alembic.

On an empty database it creates them. A database made before Alembic (tables, no
alembic_version) is completed instead: the tables it lacks are created, and a table made by an
older hub gets the columns and indexes added since (which ``create_all`` never added: the hub
added the nullable columns itself at each start). Its rows are kept.

Self-contained on purpose: the tables are written out here, not taken from hub.db, so a later
change to the models cannot change what this revision did. Constraint names are PostgreSQL's
defaults (hub.db.NAMING_CONVENTION), which later revisions address.

Revision ID: 0001_baseline
Revises:
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001_baseline"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# hub.db.NAMING_CONVENTION as it was at this revision.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "%(table_name)s_%(column_0_N_name)s_key",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "%(table_name)s_%(column_0_name)s_fkey",
    "pk": "%(table_name)s_pkey",
}


def _when() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    present = set(inspector.get_table_names())

    def table(name: str, *elements: sa.Column[object] | sa.Constraint) -> None:
        if name not in present:
            op.create_table(name, *elements)
            return
        have = {c["name"] for c in inspector.get_columns(name)}
        for column in elements:
            if isinstance(column, sa.Column) and column.name not in have:
                if not column.nullable:  # never happened: create_all only ever added tables
                    raise RuntimeError(f"{name} lacks its NOT NULL column {column.name}")
                op.add_column(name, column)
        unnamed = [u for u in inspector.get_unique_constraints(name) if not u["name"]]
        if unnamed:
            # SQLite keeps no name for a constraint made without one: the table is copied
            # with the names later revisions address (retries_worker_event_id_key).
            with op.batch_alter_table(name, recreate="always", naming_convention=NAMING_CONVENTION):
                pass

    def index(name: str, table_name: str, *columns: str, unique: bool = False) -> None:
        if table_name in present and name in {
            ix["name"] for ix in inspector.get_indexes(table_name)
        }:
            return
        op.create_index(name, table_name, list(columns), unique=unique)

    table(
        "webhook_receipts",
        sa.Column("connection", sa.String(64), nullable=False),
        sa.Column("delivery_id", sa.String(255), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("received_at", _when(), nullable=False),
        sa.Column("broker_incarnation", sa.String(32), nullable=True),
        sa.PrimaryKeyConstraint("connection", "delivery_id", name="webhook_receipts_pkey"),
    )
    index("ix_webhook_receipts_received_at", "webhook_receipts", "received_at")
    table(
        "poll_cursors",
        sa.Column("connection", sa.String(64), nullable=False),
        sa.Column("cursor", sa.Text(), nullable=True),
        sa.Column("polled_at", _when(), nullable=True),
        sa.Column("owner", sa.String(64), nullable=True),
        sa.Column("lease_until", _when(), nullable=True),
        sa.PrimaryKeyConstraint("connection", name="poll_cursors_pkey"),
    )
    table(
        "deliveries",
        sa.Column("destination", sa.String(64), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("delivered_at", _when(), nullable=False),
        sa.PrimaryKeyConstraint("destination", "event_id", name="deliveries_pkey"),
    )
    index("ix_deliveries_delivered_at", "deliveries", "delivered_at")
    table(
        "dead_letters",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("failed_at", _when(), nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("error_class", sa.String(64), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("connection", sa.String(64), nullable=True),
        sa.Column("route", sa.String(64), nullable=True),
        sa.Column("mapping", sa.String(255), nullable=True),
        sa.Column("mapping_version", sa.String(32), nullable=True),
        sa.Column("destination", sa.String(64), nullable=True),
        sa.Column("event_id", sa.String(64), nullable=True),
        sa.Column("event_type", sa.String(255), nullable=True),
        sa.Column("correlation_id", sa.String(64), nullable=True),
        sa.Column("source_topic", sa.String(255), nullable=False),
        sa.Column("source_partition", sa.Integer(), nullable=False),
        sa.Column("source_offset", sa.Integer(), nullable=False),
        sa.Column("key", sa.LargeBinary(), nullable=True),
        sa.Column("value", sa.LargeBinary(), nullable=True),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("replay_of", sa.String(64), nullable=True),
        sa.Column("replays", sa.Integer(), nullable=False),
        sa.Column("replayed_at", _when(), nullable=True),
        sa.Column("replayed_value", sa.LargeBinary(), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.Column("discarded_at", _when(), nullable=True),
        sa.Column("attempt_times", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="dead_letters_pkey"),
    )
    for column in (
        "stage",
        "error_class",
        "connection",
        "destination",
        "event_id",
        "correlation_id",
        "status",
    ):
        index(f"ix_dead_letters_{column}", "dead_letters", column)
    table(
        "replay_attempts",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("dead_letter_id", sa.String(64), nullable=False),
        sa.Column("replayed_at", _when(), nullable=False),
        sa.Column("edited", sa.Boolean(), nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=True),
        sa.Column("job_id", sa.String(36), nullable=True),
        sa.Column("sent", sa.Boolean(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="replay_attempts_pkey"),
    )
    index("ix_replay_attempts_dead_letter_id", "replay_attempts", "dead_letter_id")
    table(
        "replay_outcomes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("attempt_id", sa.String(36), nullable=False),
        sa.Column("at", _when(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="replay_outcomes_pkey"),
    )
    index("ix_replay_outcomes_attempt_id", "replay_outcomes", "attempt_id")
    table(
        "retries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("worker", sa.String(128), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("route", sa.String(64), nullable=True),
        sa.Column("order_key", sa.String(255), nullable=True),
        sa.Column("source_topic", sa.String(255), nullable=False),
        sa.Column("source_partition", sa.Integer(), nullable=False),
        sa.Column("source_offset", sa.Integer(), nullable=False),
        sa.Column("key", sa.LargeBinary(), nullable=True),
        sa.Column("value", sa.LargeBinary(), nullable=True),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("attempt_times", sa.JSON(), nullable=False),
        sa.Column("first_failed_at", _when(), nullable=True),
        sa.Column("next_attempt_at", _when(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("error_class", sa.String(64), nullable=True),
        sa.Column("parked_at", _when(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="retries_pkey"),
        sa.UniqueConstraint("worker", "event_id", name="retries_worker_event_id_key"),
    )
    index("ix_retries_due", "retries", "worker", "next_attempt_at")
    index("ix_retries_key", "retries", "worker", "order_key", "id")


def downgrade() -> None:
    for name in (
        "retries",
        "replay_outcomes",
        "replay_attempts",
        "dead_letters",
        "deliveries",
        "poll_cursors",
        "webhook_receipts",
    ):
        op.drop_table(name)
