"""What the hub knows each system holds (hub.sync): echo and loop prevention.

Revision ID: 0010_sync_state
Revises: 0009_order_journal
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_sync_state"
down_revision: str | None = "0009_order_journal"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sync_state",
        sa.Column("entity", sa.String(32), nullable=False),
        sa.Column("system", sa.String(64), nullable=False),
        sa.Column("golden_id", sa.String(64), nullable=False),
        sa.Column("route", sa.String(128), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("event_id", sa.String(255), nullable=False),
        sa.Column("pending", sa.Text(), nullable=False),
        sa.Column("judged_event", sa.String(255), nullable=True),
        sa.Column("judged_echo", sa.Boolean(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("entity", "system", "golden_id", "route", name="sync_state_pkey"),
    )
    op.create_index(
        "ix_sync_state_fingerprint", "sync_state", ["entity", "system", "route", "fingerprint"]
    )


def downgrade() -> None:
    op.drop_index("ix_sync_state_fingerprint", table_name="sync_state")
    op.drop_table("sync_state")
