"""The newest change of each object by its source's timestamp (hub.sync): last writer wins.

Revision ID: 0011_sync_clock
Revises: 0010_sync_state
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_sync_clock"
down_revision: str | None = "0010_sync_state"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sync_clock",
        sa.Column("entity", sa.String(32), nullable=False),
        sa.Column("golden_id", sa.String(64), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("system", sa.String(64), nullable=False),
        sa.Column("event_id", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("entity", "golden_id", name="sync_clock_pkey"),
    )


def downgrade() -> None:
    op.drop_table("sync_clock")
