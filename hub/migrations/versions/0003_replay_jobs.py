"""Bulk replay jobs in the database (hub.replayjobs), so every hub process answers for them.

Revision ID: 0003_replay_jobs
Revises: 0002_crosswalk
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_replay_jobs"
down_revision: str | None = "0002_crosswalk"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "replay_jobs",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("filter", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("errors", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("instance", sa.String(128), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="replay_jobs_pkey"),
    )
    op.create_index("ix_replay_jobs_started_at", "replay_jobs", ["started_at"])
    op.create_index("ix_replay_jobs_heartbeat_at", "replay_jobs", ["heartbeat_at"])


def downgrade() -> None:
    op.drop_table("replay_jobs")
