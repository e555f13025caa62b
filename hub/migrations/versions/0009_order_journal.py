"""The order journal (hub.journal): each order's steps, for ``GET /api/orders/{ref}``.

Revision ID: 0009_order_journal
Revises: 0008_auth
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_order_journal"
down_revision: str | None = "0008_auth"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "order_journal",
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("step", sa.String(16), nullable=False),
        sa.Column("route", sa.String(64), nullable=False, server_default=""),
        sa.Column("golden_id", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(32)),
        sa.Column("number", sa.String(255)),
        sa.Column("email", sa.String(255)),
        sa.Column("connection", sa.String(64)),
        sa.Column("system", sa.String(64)),
        sa.Column("external_id", sa.String(255)),
        sa.Column("correlation_id", sa.String(64)),
        sa.PrimaryKeyConstraint("event_id", "step", "route", name="order_journal_pkey"),
    )
    op.create_index("ix_order_journal_golden_id", "order_journal", ["golden_id", "at"])
    op.create_index("ix_order_journal_number", "order_journal", ["number"])
    op.create_index("ix_order_journal_email", "order_journal", ["email"])
    op.create_index("ix_order_journal_at", "order_journal", ["at"])


def downgrade() -> None:
    op.drop_table("order_journal")
