"""Ingest: a message's stage in a narrow table of its own, ``message_stage``.

The ingest writer moves every message it writes to ``written``. With the stage in the
``message`` row, each of those updates copied the ~1 KB row (the raw bytes) and added an
entry to each of its four indexes (``stage`` is indexed, so PostgreSQL could not update it
in place). The columns that change as a message moves on (stage, failure, times, resource
count, attempts) now have a row of their own with two indexes, the key and
``(stage, id)``; ``message`` keeps what was received (keys, type, time, raw bytes) and its
three other indexes. The two rows of a message are written by one statement (one
transaction on SQLite) and share the id; there is no foreign key between them, whose check
would lock every new message row in the listener's group commit.

Every existing message gets its stage row with its values; the columns then leave
``message`` (on PostgreSQL ``DROP COLUMN`` does not rewrite the table: rows written before
keep their old bytes until they are rewritten). The downgrade puts them back from the
stage rows.

See ``docs/decisions/0034-ingest-writer-rows-and-parameters.md`` (addendum of 2026-11-22,
session 9).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-22 15:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# The moved columns, in their order in 0004's message table, with their SQL types.
_MOVED = (
    ("updated_at", "BIGINT"),
    ("written_at", "BIGINT"),
    ("stage", "VARCHAR(20)"),
    ("error_stage", "VARCHAR(20)"),
    ("error", "TEXT"),
    ("resource_count", "INTEGER"),
    ("attempts", "INTEGER"),
)
_COLUMNS = ", ".join(name for name, _ in _MOVED)


def upgrade() -> None:
    op.create_table(
        "message_stage",
        sa.Column("id", _KEY, autoincrement=False, nullable=False),
        sa.Column("stage", sa.String(20), nullable=False),
        sa.Column("error_stage", sa.String(20), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.Column("written_at", sa.BigInteger(), nullable=True),
        sa.Column("resource_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_message_stage"),
    )
    op.execute(
        f"INSERT INTO message_stage (id, {_COLUMNS}) SELECT id, {_COLUMNS} FROM message ORDER BY id"
    )
    op.create_index("ix_message_stage_stage_id", "message_stage", ["stage", "id"])
    op.drop_index("ix_message_stage_id", table_name="message")
    # ALTER TABLE … DROP COLUMN on both (SQLite since 3.35): no re-creation of a table that
    # other tables' foreign keys point at. SQLite rewrites every row once per dropped column;
    # PostgreSQL only marks the column dropped.
    for name, _ in _MOVED:
        op.execute(f"ALTER TABLE message DROP COLUMN {name}")


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for name, sql_type in _MOVED:
        if name in ("resource_count", "attempts"):
            op.execute(f"ALTER TABLE message ADD COLUMN {name} {sql_type} DEFAULT 0 NOT NULL")
        elif sqlite and name in ("stage", "updated_at"):
            # SQLite adds a NOT NULL column only with a default; every row gets its value below.
            default = "''" if name == "stage" else "0"
            op.execute(
                f"ALTER TABLE message ADD COLUMN {name} {sql_type} DEFAULT {default} NOT NULL"
            )
        else:
            op.execute(f"ALTER TABLE message ADD COLUMN {name} {sql_type}")
    if sqlite:
        op.execute(
            f"UPDATE message SET ({_COLUMNS}) = (SELECT {_COLUMNS} FROM message_stage s "
            "WHERE s.id = message.id)"
        )
    else:
        assignments = ", ".join(f"{name} = s.{name}" for name, _ in _MOVED)
        op.execute(f"UPDATE message SET {assignments} FROM message_stage s WHERE s.id = message.id")
        op.execute("ALTER TABLE message ALTER COLUMN stage SET NOT NULL")
        op.execute("ALTER TABLE message ALTER COLUMN updated_at SET NOT NULL")
    op.create_index("ix_message_stage_id", "message", ["stage", "id"])
    op.drop_index("ix_message_stage_stage_id", table_name="message_stage")
    op.drop_table("message_stage")
