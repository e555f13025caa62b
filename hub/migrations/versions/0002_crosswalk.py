"""The crosswalk: (entity, system, external id) -> golden id, with who linked it, when and why.

Revision ID: 0002_crosswalk
Revises: 0001_baseline
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_crosswalk"
down_revision: str | None = "0001_baseline"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "crosswalk",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("entity", sa.String(32), nullable=False),
        sa.Column("system", sa.String(64), nullable=False),
        sa.Column("external_id", sa.String(255), nullable=False),
        sa.Column("golden_id", sa.String(64), nullable=False),
        sa.Column("version", sa.String(255), nullable=True),
        sa.Column("linked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("linked_by", sa.String(128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="crosswalk_pkey"),
        sa.UniqueConstraint("entity", "system", "external_id", name="uq_crosswalk_external_id"),
    )
    op.create_index("ix_crosswalk_golden_id", "crosswalk", ["entity", "golden_id", "system"])


def downgrade() -> None:
    op.drop_table("crosswalk")
