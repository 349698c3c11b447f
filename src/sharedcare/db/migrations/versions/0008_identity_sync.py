"""Identity: the index version of each link's and golden record's last change.

A process whose in-memory index is behind (another process changed the index) reads only
the rows changed since the version it knows, instead of rebuilding the whole index. Also an
index on review pairs, so a pair already queued or rejected is not queued again.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-21 22:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("identity_link", "identity_golden"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column("changed", sa.BigInteger(), nullable=False, server_default="0")
            )
        op.create_index(f"ix_{table}_changed", table, ["changed"])
    op.create_index(
        "ix_identity_review_golden_id_candidate_golden_id",
        "identity_review",
        ["golden_id", "candidate_golden_id"],
    )


def downgrade() -> None:
    op.drop_index("ix_identity_review_golden_id_candidate_golden_id", table_name="identity_review")
    for table in ("identity_golden", "identity_link"):
        op.drop_index(f"ix_{table}_changed", table_name=table)
        with op.batch_alter_table(table) as batch:
            batch.drop_column("changed")
