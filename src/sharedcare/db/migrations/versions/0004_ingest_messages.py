"""Ingest: the message table (raw messages and their pipeline stage) and identity actions.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "message",
        sa.Column("id", _KEY, autoincrement=True, nullable=False),
        sa.Column("feed_id", sa.Integer(), nullable=False),
        sa.Column("sender_key", sa.String(420), nullable=False),
        sa.Column("control_id", sa.String(200), nullable=False),
        sa.Column("message_type", sa.String(40), nullable=False),
        sa.Column("received_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.Column("written_at", sa.BigInteger(), nullable=True),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("stage", sa.String(20), nullable=False),
        sa.Column("error_stage", sa.String(20), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("resource_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(["feed_id"], ["feed.id"], name="fk_message_feed_id_feed"),
        sa.PrimaryKeyConstraint("id", name="pk_message"),
        sa.UniqueConstraint("sender_key", "control_id", name="uq_message_sender_key_control_id"),
    )
    op.create_index("ix_message_stage_id", "message", ["stage", "id"])
    op.create_index("ix_message_feed_id_received_at", "message", ["feed_id", "received_at"])
    op.create_table(
        "identity_action",
        sa.Column("id", _KEY, autoincrement=True, nullable=False),
        sa.Column("message_id", _KEY, nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"], ["message.id"], name="fk_identity_action_message_id_message"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_identity_action"),
    )
    op.create_index("ix_identity_action_message_id", "identity_action", ["message_id"])


def downgrade() -> None:
    op.drop_index("ix_identity_action_message_id", table_name="identity_action")
    op.drop_table("identity_action")
    op.drop_index("ix_message_feed_id_received_at", table_name="message")
    op.drop_index("ix_message_stage_id", table_name="message")
    op.drop_table("message")
