"""Master data: an index on mdm_keys(crosswalk_id), so a known record's changed attributes
replace its keys without scanning every record's.

Revision ID: 0007_mdm_keys_by_record
Revises: 0006_mdm
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007_mdm_keys_by_record"
down_revision: str | None = "0006_mdm"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_mdm_keys_crosswalk_id", "mdm_keys", ["crosswalk_id"])


def downgrade() -> None:
    op.drop_index("ix_mdm_keys_crosswalk_id", table_name="mdm_keys")
