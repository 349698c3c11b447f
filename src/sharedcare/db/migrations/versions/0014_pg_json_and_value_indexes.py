"""PostgreSQL: resources stored as ``json`` text; token and reference searches through
value indexes instead of primary keys.

``resource.content`` and ``resource_history.content`` become ``json``: the compact text the
store writes, smaller than ``jsonb``'s binary form (655 against 781 bytes per resource in
the record benchmark) and read back without conversion. SQL that reads into the documents
casts to ``jsonb`` (the ``:of-type`` check, the analytics views). Rows converted here keep
``jsonb``'s text form (a space after each ``:`` and ``,``); new writes are compact.

On PostgreSQL the primary keys of ``idx_token`` and ``idx_reference`` led with the
parameter and value and ended with ``res``, so each was the search index itself. Rows
arrive in key order within a value (every ``status = final`` row with a growing ``res``),
so a full leaf page split in half and its left half stayed half empty: 328 and 229 bytes
per resource after the record benchmark's import. Now:

* ``ix_idx_token_value (param, code, system_id) INCLUDE (res)``, not unique: 189-199 bytes
  per resource (rows of one value are ordered by their place in the heap, and a page full
  of one value splits where new rows go); searches and counts still read ``res`` from the
  index alone.
* ``ix_idx_reference_value (param, target_id, target_type, url)``, not unique: equal keys
  are deduplicated into posting lists of 6-byte row pointers (36-37 bytes per resource); a
  reference search reads its few rows' ``res`` from the heap.

``resource``'s unique key on (type, id) becomes ``(id, resource_type)``: server ids are
time-ordered, so new keys land at the index's right edge and its pages fill, where under each
type they split half full (101 against 82 bytes per resource).

SQLite keeps both primary keys and its key on (type, id) (its tables are stored WITHOUT
ROWID in key order, and its B-trees fill either way). See
``docs/decisions/0011-record-footprint.md`` (addendum of session 11) for the measurements.
The downgrade removes duplicate rows (which the keys would have refused), restores the keys
and drops the value indexes.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-22 19:30:00
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

#: table, primary key name, key columns, value index name, value index definition
_TABLES = (
    (
        "idx_token",
        "pk_idx_token",
        ("param", "code", "system_id", "res", "text"),
        "ix_idx_token_value",
        "(param, code, system_id) INCLUDE (res)",
    ),
    (
        "idx_reference",
        "pk_idx_reference",
        ("param", "target_id", "target_type", "res", "version", "url"),
        "ix_idx_reference_value",
        "(param, target_id, target_type, url)",
    ),
)


_DOCUMENTS = ("resource", "resource_history")
#: The unique key on (type, id) before, and after with the id first.
_KEYS = (
    ("uq_resource_resource_type_id", "resource_type, id"),
    ("uq_resource_id_resource_type", "id, resource_type"),
)


def _swap_key(old: tuple[str, str], new: tuple[str, str]) -> None:
    op.execute(f"ALTER TABLE resource ADD CONSTRAINT {new[0]} UNIQUE ({new[1]})")
    op.execute(f"ALTER TABLE resource DROP CONSTRAINT {old[0]}")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in _DOCUMENTS:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN content TYPE json USING content::json")
    _swap_key(*_KEYS)
    for table, key, _columns, index, definition in _TABLES:
        op.execute(f"ALTER TABLE {table} DROP CONSTRAINT {key}")
        op.execute(f"CREATE INDEX {index} ON {table} {definition}")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, key, columns, index, _definition in _TABLES:
        same = " AND ".join(f"a.{c} = b.{c}" for c in columns)
        op.execute(f"DELETE FROM {table} a USING {table} b WHERE a.ctid > b.ctid AND {same}")
        op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {key} PRIMARY KEY ({', '.join(columns)})")
        op.execute(f"DROP INDEX {index}")
    _swap_key(_KEYS[1], _KEYS[0])
    for table in _DOCUMENTS:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN content TYPE jsonb USING content::jsonb")
