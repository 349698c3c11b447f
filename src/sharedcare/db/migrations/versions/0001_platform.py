"""Platform tables: organisations and feeds.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "organisation",
        sa.Column("ods_code", sa.String(16), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.current_timestamp(),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("ods_code", name="pk_organisation"),
    )
    op.create_table(
        "feed",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("organisation_ods_code", sa.String(16), nullable=True),
        sa.Column("protocol", sa.String(20), nullable=False),
        sa.Column("sending_application", sa.String(200), nullable=False),
        sa.Column("sending_facility", sa.String(200), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.current_timestamp(),
            nullable=False,
        ),
        sa.Column("last_message_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("message_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("error_count", sa.Integer(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(
            ["organisation_ods_code"],
            ["organisation.ods_code"],
            name="fk_feed_organisation_ods_code_organisation",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_feed"),
        sa.UniqueConstraint(
            "protocol",
            "sending_application",
            "sending_facility",
            name="uq_feed_protocol_sending_application_sending_facility",
        ),
    )
    op.create_index("ix_feed_organisation_ods_code", "feed", ["organisation_ods_code"])


def downgrade() -> None:
    op.drop_index("ix_feed_organisation_ods_code", table_name="feed")
    op.drop_table("feed")
    op.drop_table("organisation")
