"""What each system last reported of an object, as each route to another system would write it
(hub.sync): a change that carries nothing new for a destination is not sent to it.

Revision ID: 0012_sync_seen
Revises: 0011_sync_clock
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_sync_seen"
down_revision: str | None = "0011_sync_clock"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sync_seen",
        sa.Column("entity", sa.String(32), nullable=False),
        sa.Column("system", sa.String(64), nullable=False),
        sa.Column("golden_id", sa.String(64), nullable=False),
        sa.Column("route", sa.String(128), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("previous", sa.String(64)),
        sa.Column("event_id", sa.String(255), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("entity", "system", "golden_id", "route", name="sync_seen_pkey"),
    )


def downgrade() -> None:
    op.drop_table("sync_seen")
