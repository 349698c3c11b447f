"""Search: typed component columns on idx_composite; PostgreSQL column-pair statistics.

Composite rows gain typed columns for their components (see
``sharedcare.record.search.composite``) and an index on ``(param, code1)``, so composite
searches compare values in SQL instead of parsing JSON. Existing composite rows are rebuilt
from the stored resources. On PostgreSQL, extended statistics on (param, value) column pairs
let the planner estimate how selective a search is (without them it guessed a common code
matched 350 rows, not 15,000, and chose a plan 800 times slower).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21 20:55:00
"""

from __future__ import annotations

from typing import Any

import orjson
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_COLUMNS: list[tuple[str, Any]] = [
    ("code1", sa.Text()),
    ("system1", sa.Text()),
    ("code2", sa.Text()),
    ("system2", sa.Text()),
    ("unit2", sa.Text()),
    ("number2", sa.Numeric()),
    ("low2", sa.BigInteger()),
    ("high2", sa.BigInteger()),
    ("number3", sa.Numeric()),
]


#: PostgreSQL statistics on column pairs: each parameter has its own value distribution, so
#: the planner must see (param, value) together to estimate how many rows a search matches.
_STATISTICS = [
    ("st_idx_token_param_code", "idx_token", "param, code"),
    ("st_idx_token_param_system", "idx_token", "param, system"),
    ("st_idx_reference_param_target", "idx_reference", "param, target_type"),
    ("st_idx_date_param_low", "idx_date", "param, low"),
    ("st_idx_quantity_param_code", "idx_quantity", "param, code"),
]


def upgrade() -> None:
    for name, kind in _COLUMNS:
        op.add_column("idx_composite", sa.Column(name, kind, nullable=True))
    op.create_index("ix_idx_composite_code1", "idx_composite", ["param", "code1"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        for name, table, columns in _STATISTICS:
            op.execute(
                f"CREATE STATISTICS IF NOT EXISTS {name} (mcv, dependencies) "
                f"ON {columns} FROM {table}"
            )
    _rebuild()


def _rebuild() -> None:
    """Re-extract the composite rows of resources already stored (none in a new database)."""
    from sharedcare.fhir.search_index import CompositeValue, extract_index
    from sharedcare.record.search.composite import COMPOSITE_COLUMNS, composite_columns

    bind = op.get_bind()
    if bind.execute(sa.text("SELECT count(*) FROM idx_composite")).scalar() == 0:
        return
    params = {
        (t, c): i
        for i, t, c in bind.execute(sa.text("SELECT id, resource_type, code FROM search_param"))
    }
    bind.execute(sa.text("DELETE FROM idx_composite"))
    content = "content::text" if bind.dialect.name == "postgresql" else "content"
    rows = bind.execute(
        sa.text(f"SELECT pk, resource_type, {content} FROM resource WHERE deleted = false")
    )
    names = ["param", "components", "res", *COMPOSITE_COLUMNS]
    insert = sa.text(
        f"INSERT INTO idx_composite ({', '.join(names)}) "
        f"VALUES ({', '.join(':' + n for n in names)})"
    )
    batch: dict[tuple[Any, ...], dict[str, Any]] = {}
    for pk, rtype, doc in rows:
        if doc is None:
            continue
        for value in extract_index(orjson.loads(doc)):
            if not isinstance(value, CompositeValue) or (rtype, value.param) not in params:
                continue
            key = orjson.dumps([list(c) for c in value.components], default=str).decode()
            row = [params[(rtype, value.param)], key, pk, *composite_columns(value.components)]
            batch[(row[0], key, pk)] = dict(zip(names, row, strict=True))
    if batch:
        bind.execute(insert, list(batch.values()))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name, _, _ in _STATISTICS:
            op.execute(f"DROP STATISTICS IF EXISTS {name}")
    op.drop_index("ix_idx_composite_code1", table_name="idx_composite")
    with op.batch_alter_table("idx_composite") as batch_op:
        for name, _ in reversed(_COLUMNS):
            batch_op.drop_column(name)
