"""Record store: resources, history, typed search indexes, audit events.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 20:16:32.655356
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

JSON_DOCUMENT = sa.Text().with_variant(postgresql.JSONB(), "postgresql")


revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_event",
        sa.Column(
            "pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("recorded", sa.BigInteger(), nullable=False),
        sa.Column("interaction", sa.String(length=32), nullable=False),
        sa.Column("outcome", sa.String(length=4), nullable=False),
        sa.Column("agent", sa.String(length=200), nullable=False),
        sa.Column("patient", sa.String(length=100), nullable=True),
        sa.Column("content", JSON_DOCUMENT, nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_audit_event")),
    )
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_event_patient"), ["patient"], unique=False)
        batch_op.create_index("ix_audit_event_recorded", ["recorded"], unique=False)

    op.create_table(
        "idx_composite",
        sa.Column("param", sa.SmallInteger(), nullable=False),
        sa.Column("components", sa.Text(), nullable=False),
        sa.Column("res", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("param", "components", "res", name=op.f("pk_idx_composite")),
        sqlite_with_rowid=False,
    )
    with op.batch_alter_table("idx_composite", schema=None) as batch_op:
        batch_op.create_index("ix_idx_composite_res", ["res"], unique=False)

    op.create_table(
        "idx_date",
        sa.Column("param", sa.SmallInteger(), nullable=False),
        sa.Column("low", sa.BigInteger(), nullable=False),
        sa.Column("high", sa.BigInteger(), nullable=False),
        sa.Column("res", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("param", "low", "high", "res", name=op.f("pk_idx_date")),
        sqlite_with_rowid=False,
    )
    with op.batch_alter_table("idx_date", schema=None) as batch_op:
        batch_op.create_index("ix_idx_date_res", ["res"], unique=False)

    op.create_table(
        "idx_number",
        sa.Column("param", sa.SmallInteger(), nullable=False),
        sa.Column("value", sa.Numeric(), nullable=False),
        sa.Column("res", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("param", "value", "res", name=op.f("pk_idx_number")),
        sqlite_with_rowid=False,
    )
    with op.batch_alter_table("idx_number", schema=None) as batch_op:
        batch_op.create_index("ix_idx_number_res", ["res"], unique=False)

    op.create_table(
        "idx_quantity",
        sa.Column("param", sa.SmallInteger(), nullable=False),
        sa.Column("value", sa.Numeric(), nullable=False),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("system", sa.Text(), nullable=False),
        sa.Column("unit", sa.Text(), nullable=False),
        sa.Column("res", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "param", "value", "code", "system", "unit", "res", name=op.f("pk_idx_quantity")
        ),
        sqlite_with_rowid=False,
    )
    with op.batch_alter_table("idx_quantity", schema=None) as batch_op:
        batch_op.create_index("ix_idx_quantity_res", ["res"], unique=False)

    op.create_table(
        "idx_reference",
        sa.Column("param", sa.SmallInteger(), nullable=False),
        sa.Column("target_id", sa.String(length=64), nullable=False),
        sa.Column("target_type", sa.String(length=64), nullable=False),
        sa.Column("res", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint(
            "param",
            "target_id",
            "target_type",
            "res",
            "version",
            "url",
            name=op.f("pk_idx_reference"),
        ),
        sqlite_with_rowid=False,
    )
    with op.batch_alter_table("idx_reference", schema=None) as batch_op:
        batch_op.create_index("ix_idx_reference_res", ["res"], unique=False)

    op.create_table(
        "idx_string",
        sa.Column("param", sa.SmallInteger(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("exact", sa.Text(), nullable=False),
        sa.Column("res", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("param", "value", "exact", "res", name=op.f("pk_idx_string")),
        sqlite_with_rowid=False,
    )
    with op.batch_alter_table("idx_string", schema=None) as batch_op:
        batch_op.create_index("ix_idx_string_res", ["res"], unique=False)

    op.create_table(
        "idx_token",
        sa.Column("param", sa.SmallInteger(), nullable=False),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("system", sa.Text(), nullable=False),
        sa.Column("res", sa.BigInteger(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint(
            "param", "code", "system", "res", "text", name=op.f("pk_idx_token")
        ),
        sqlite_with_rowid=False,
    )
    with op.batch_alter_table("idx_token", schema=None) as batch_op:
        batch_op.create_index("ix_idx_token_res", ["res"], unique=False)

    op.create_table(
        "idx_uri",
        sa.Column("param", sa.SmallInteger(), nullable=False),
        sa.Column("uri", sa.Text(), nullable=False),
        sa.Column("res", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("param", "uri", "res", name=op.f("pk_idx_uri")),
        sqlite_with_rowid=False,
    )
    with op.batch_alter_table("idx_uri", schema=None) as batch_op:
        batch_op.create_index("ix_idx_uri_res", ["res"], unique=False)

    op.create_table(
        "resource",
        sa.Column(
            "pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("resource_type", sa.String(length=64), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("last_updated", sa.BigInteger(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("content", JSON_DOCUMENT, nullable=True),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_resource")),
        sa.UniqueConstraint("resource_type", "id", name=op.f("uq_resource_resource_type_id")),
    )
    with op.batch_alter_table("resource", schema=None) as batch_op:
        batch_op.create_index(
            "ix_resource_type_updated", ["resource_type", "last_updated"], unique=False
        )

    op.create_table(
        "resource_history",
        sa.Column("resource_type", sa.String(length=64), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("last_updated", sa.BigInteger(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("content", JSON_DOCUMENT, nullable=True),
        sa.PrimaryKeyConstraint(
            "resource_type", "id", "version_id", name=op.f("pk_resource_history")
        ),
    )
    with op.batch_alter_table("resource_history", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_resource_history_last_updated"), ["last_updated"], unique=False
        )

    op.create_table(
        "search_param",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("resource_type", sa.String(length=64), nullable=False),
        sa.Column("code", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_search_param")),
        sa.UniqueConstraint(
            "resource_type", "code", name=op.f("uq_search_param_resource_type_code")
        ),
    )


def downgrade() -> None:
    op.drop_table("search_param")
    with op.batch_alter_table("resource_history", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_resource_history_last_updated"))

    op.drop_table("resource_history")
    with op.batch_alter_table("resource", schema=None) as batch_op:
        batch_op.drop_index("ix_resource_type_updated")

    op.drop_table("resource")
    with op.batch_alter_table("idx_uri", schema=None) as batch_op:
        batch_op.drop_index("ix_idx_uri_res")

    op.drop_table("idx_uri")
    with op.batch_alter_table("idx_token", schema=None) as batch_op:
        batch_op.drop_index("ix_idx_token_res")

    op.drop_table("idx_token")
    with op.batch_alter_table("idx_string", schema=None) as batch_op:
        batch_op.drop_index("ix_idx_string_res")

    op.drop_table("idx_string")
    with op.batch_alter_table("idx_reference", schema=None) as batch_op:
        batch_op.drop_index("ix_idx_reference_res")

    op.drop_table("idx_reference")
    with op.batch_alter_table("idx_quantity", schema=None) as batch_op:
        batch_op.drop_index("ix_idx_quantity_res")

    op.drop_table("idx_quantity")
    with op.batch_alter_table("idx_number", schema=None) as batch_op:
        batch_op.drop_index("ix_idx_number_res")

    op.drop_table("idx_number")
    with op.batch_alter_table("idx_date", schema=None) as batch_op:
        batch_op.drop_index("ix_idx_date_res")

    op.drop_table("idx_date")
    with op.batch_alter_table("idx_composite", schema=None) as batch_op:
        batch_op.drop_index("ix_idx_composite_res")

    op.drop_table("idx_composite")
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_event_recorded")
        batch_op.drop_index(batch_op.f("ix_audit_event_patient"))

    op.drop_table("audit_event")
