"""An operator's pause of a destination (hub.circuits): who paused it, when and why, on its
circuit's row, which every delivery process reads already.

Revision ID: 0013_destination_pause
Revises: 0012_sync_seen
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_destination_pause"
down_revision: str | None = "0012_sync_seen"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for column in (
        sa.Column("paused_at", sa.DateTime(timezone=True)),
        sa.Column("paused_by", sa.String(128)),
        sa.Column("pause_reason", sa.String(500)),
    ):
        op.add_column("circuits", column)


def downgrade() -> None:
    for name in ("pause_reason", "paused_by", "paused_at"):  # SQLite 3.35+ drops columns too
        op.drop_column("circuits", name)
