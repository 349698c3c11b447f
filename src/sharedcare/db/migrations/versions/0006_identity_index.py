"""Identity: the persisted master patient index (goldens, links, reviews, merges, trail).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-21 22:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    state = op.create_table(
        "identity_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_identity_state"),
    )
    op.bulk_insert(state, [{"id": 1, "version": 0}])
    op.create_table(
        "identity_golden",
        sa.Column("golden_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("replaced_by", sa.String(64), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("golden_id", name="pk_identity_golden"),
    )
    op.create_table(
        "identity_link",
        sa.Column("source_id", sa.String(64), nullable=False),
        sa.Column("source_system", sa.String(300), nullable=False),
        sa.Column("source_version", sa.Integer(), nullable=False),
        sa.Column("golden_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("band", sa.String(12), nullable=False),
        sa.Column("match_weight", sa.Float(), nullable=True),
        sa.Column("probability", sa.Float(), nullable=True),
        sa.Column("matched_source_id", sa.String(64), nullable=True),
        sa.Column("candidates", sa.Integer(), nullable=False),
        sa.Column("evidence", sa.LargeBinary(), nullable=True),
        sa.Column("decided_by", sa.String(200), nullable=False),
        sa.Column("decided_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("source_id", name="pk_identity_link"),
    )
    op.create_index("ix_identity_link_golden_id", "identity_link", ["golden_id"])
    op.create_table(
        "identity_review",
        sa.Column("id", _KEY, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("source_id", sa.String(64), nullable=False),
        sa.Column("golden_id", sa.String(64), nullable=False),
        sa.Column("candidate_golden_id", sa.String(64), nullable=False),
        sa.Column("match_weight", sa.Float(), nullable=False),
        sa.Column("probability", sa.Float(), nullable=False),
        sa.Column("evidence", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("reviewer", sa.String(200), nullable=True),
        sa.Column("reason", sa.String(2000), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("decided_at", sa.BigInteger(), nullable=True),
        sa.Column("merge_id", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_identity_review"),
    )
    op.create_index("ix_identity_review_status_id", "identity_review", ["status", "id"])
    op.create_table(
        "identity_merge",
        sa.Column("id", _KEY, autoincrement=True, nullable=False),
        sa.Column("kept", sa.String(64), nullable=False),
        sa.Column("retired", sa.String(64), nullable=False),
        sa.Column("moved", sa.LargeBinary(), nullable=False),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("undone_by", sa.String(200), nullable=True),
        sa.Column("undone_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_identity_merge"),
    )
    op.create_table(
        "identity_trail",
        sa.Column("id", _KEY, autoincrement=True, nullable=False),
        sa.Column("recorded", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(24), nullable=False),
        sa.Column("source_id", sa.String(64), nullable=True),
        sa.Column("golden_id", sa.String(64), nullable=True),
        sa.Column("other_golden_id", sa.String(64), nullable=True),
        sa.Column("detail", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_identity_trail"),
    )
    op.create_index("ix_identity_trail_golden_id", "identity_trail", ["golden_id"])


def downgrade() -> None:
    op.drop_index("ix_identity_trail_golden_id", table_name="identity_trail")
    op.drop_table("identity_trail")
    op.drop_table("identity_merge")
    op.drop_index("ix_identity_review_status_id", table_name="identity_review")
    op.drop_table("identity_review")
    op.drop_index("ix_identity_link_golden_id", table_name="identity_link")
    op.drop_table("identity_link")
    op.drop_table("identity_golden")
    op.drop_table("identity_state")
