"""Master data: golden records, source records, match keys, review tasks, history
(hub.mdm_service).

Revision ID: 0006_mdm
Revises: 0005_deliveries_route
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_mdm"
down_revision: str | None = "0005_deliveries_route"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "mdm_golden",
        sa.Column("golden_id", sa.String(64), nullable=False),
        sa.Column("entity", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("merged_into", sa.String(64), nullable=True),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("golden_id", name="mdm_golden_pkey"),
    )
    op.create_index("ix_mdm_golden_entity_status", "mdm_golden", ["entity", "status"])
    op.create_table(
        "mdm_records",
        sa.Column("crosswalk_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("normalised", sa.JSON(), nullable=False),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("problems", sa.JSON(), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("crosswalk_id", name="mdm_records_pkey"),
    )
    op.create_table(
        "mdm_keys",
        sa.Column("entity", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("key", sa.String(512), nullable=False),
        sa.Column("crosswalk_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("entity", "kind", "key", "crosswalk_id", name="mdm_keys_pkey"),
    )
    op.create_table(
        "mdm_reviews",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("entity", sa.String(32), nullable=False),
        sa.Column("golden_id", sa.String(64), nullable=False),
        sa.Column("system", sa.String(64), nullable=False),
        sa.Column("external_id", sa.String(255), nullable=False),
        sa.Column("candidates", sa.JSON(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("explanation", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sa.String(128), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decision", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="mdm_reviews_pkey"),
    )
    op.create_index("ix_mdm_reviews_status", "mdm_reviews", ["status", "entity", "id"])
    op.create_table(
        "mdm_history",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("entity", sa.String(32), nullable=False),
        sa.Column("golden_id", sa.String(64), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="mdm_history_pkey"),
    )
    op.create_index("ix_mdm_history_golden_id", "mdm_history", ["entity", "golden_id", "id"])
    op.create_index("ix_mdm_history_action", "mdm_history", ["action", "id"])


def downgrade() -> None:
    op.drop_table("mdm_history")
    op.drop_table("mdm_reviews")
    op.drop_table("mdm_keys")
    op.drop_table("mdm_records")
    op.drop_table("mdm_golden")
