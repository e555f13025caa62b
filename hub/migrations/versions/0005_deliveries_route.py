"""Deliveries per route: ``deliveries`` gains ``route``, and its primary key becomes
(destination, event_id, route).

Two routes to one destination are two deliveries of an event, each with its own idempotency
key and record (connectors.base.idempotency_key_for), so a retry of one route never resends the
other. The rows already there get route '' (``hub.db.EVERY_ROUTE``): they were recorded when an
event was recorded once all of its routes to the destination had succeeded, so '' counts as
delivered for every route of that destination, and an upgrade resends nothing.

SQLite cannot change a primary key in place: the table is copied. PostgreSQL alters it: the new
column with its default fills the existing rows.

Revision ID: 0005_deliveries_route
Revises: 0004_shared_circuits
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_deliveries_route"
down_revision: str | None = "0004_shared_circuits"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EVERY_ROUTE = ""


def _when() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    key = ["destination", "event_id", "route"]
    if op.get_bind().dialect.name == "sqlite":
        # Copied by hand: the primary key of a table an older hub made has no name to drop.
        op.create_table(
            "_deliveries_new",
            sa.Column("destination", sa.String(64), nullable=False),
            sa.Column("event_id", sa.String(64), nullable=False),
            sa.Column("route", sa.String(64), nullable=False, server_default=EVERY_ROUTE),
            sa.Column("delivered_at", _when(), nullable=False),
            sa.PrimaryKeyConstraint(*key, name="deliveries_pkey"),
        )
        op.execute(
            "INSERT INTO _deliveries_new (destination, event_id, route, delivered_at) "
            "SELECT destination, event_id, '', delivered_at FROM deliveries"
        )
        op.drop_table("deliveries")  # and its index
        op.rename_table("_deliveries_new", "deliveries")
        op.create_index("ix_deliveries_delivered_at", "deliveries", ["delivered_at"])
        return
    op.add_column(
        "deliveries",
        sa.Column("route", sa.String(64), nullable=False, server_default=EVERY_ROUTE),
    )
    op.drop_constraint("deliveries_pkey", "deliveries", type_="primary")
    op.create_primary_key("deliveries_pkey", "deliveries", key)


def downgrade() -> None:
    # One row per (destination, event) again: an event counts as delivered when any of its
    # routes was (the older hub would not resend it, nor send its other routes).
    op.execute(
        "DELETE FROM deliveries WHERE route <> (SELECT MIN(d.route) FROM deliveries d "
        "WHERE d.destination = deliveries.destination AND d.event_id = deliveries.event_id)"
    )
    if op.get_bind().dialect.name == "sqlite":
        op.create_table(
            "_deliveries_old",
            sa.Column("destination", sa.String(64), nullable=False),
            sa.Column("event_id", sa.String(64), nullable=False),
            sa.Column("delivered_at", _when(), nullable=False),
            sa.PrimaryKeyConstraint("destination", "event_id", name="deliveries_pkey"),
        )
        op.execute(
            "INSERT INTO _deliveries_old (destination, event_id, delivered_at) "
            "SELECT destination, event_id, delivered_at FROM deliveries"
        )
        op.drop_table("deliveries")
        op.rename_table("_deliveries_old", "deliveries")
        op.create_index("ix_deliveries_delivered_at", "deliveries", ["delivered_at"])
        return
    op.drop_constraint("deliveries_pkey", "deliveries", type_="primary")
    op.drop_column("deliveries", "route")
    op.create_primary_key("deliveries_pkey", "deliveries", ["destination", "event_id"])
