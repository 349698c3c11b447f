"""Record store footprint: 64-bit keys in index rows; no rows for derived parameters.

See ``docs/decisions/0011-record-footprint.md``:

* ``idx_token.system`` and ``idx_quantity.system`` (URIs of 30+ bytes, repeated in every row
  and every index entry) become ``system_id``, the URI's 64-bit key
  (``sharedcare.record.keys.system_key``);
* ``idx_composite`` loses ``components`` (the combination's JSON, ~160 bytes, part of the key
  and so copied into every index) for ``combo``, its 64-bit key, and its key now leads with
  ``(param, code1)`` so the separate ``(param, code1)`` index goes;
* rows of parameters that are exactly the union of others (``Observation.combo-code`` …,
  ``sharedcare.record.derived``) are deleted: searches read the others' rows.

Existing rows are converted in place (no resource is re-parsed). Downgrading rebuilds the old
tables by re-extracting index values from the stored resources.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-21 21:55:00
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_BATCH = 5000
_OLD_STATISTICS = [
    ("st_idx_token_param_code", "idx_token", "param, code"),
    ("st_idx_token_param_system", "idx_token", "param, system"),
    ("st_idx_quantity_param_code", "idx_quantity", "param, code"),
]
_NEW_STATISTICS = [
    ("st_idx_token_param_code", "idx_token", "param, code"),
    ("st_idx_token_param_system", "idx_token", "param, system_id"),
    ("st_idx_quantity_param_code", "idx_quantity", "param, code"),
]
_COMPOSITE_TAIL: list[tuple[str, Any]] = [
    ("system1", sa.Text()),
    ("code2", sa.Text()),
    ("system2", sa.Text()),
    ("unit2", sa.Text()),
    ("number2", sa.Numeric()),
    ("low2", sa.BigInteger()),
    ("high2", sa.BigInteger()),
    ("number3", sa.Numeric()),
]


def _new_token() -> list[Any]:
    return [
        sa.Column("param", sa.SmallInteger(), nullable=False),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("system_id", sa.BigInteger(), nullable=False),
        sa.Column("res", sa.BigInteger(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("param", "code", "system_id", "res", "text", name="pk_idx_token"),
    ]


def _old_token() -> list[Any]:
    return [
        sa.Column("param", sa.SmallInteger(), nullable=False),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("system", sa.Text(), nullable=False),
        sa.Column("res", sa.BigInteger(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("param", "code", "system", "res", "text", name="pk_idx_token"),
    ]


def _new_quantity() -> list[Any]:
    return [
        sa.Column("param", sa.SmallInteger(), nullable=False),
        sa.Column("value", sa.Numeric(), nullable=False),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("system_id", sa.BigInteger(), nullable=False),
        sa.Column("unit", sa.Text(), nullable=False),
        sa.Column("res", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "param", "value", "code", "system_id", "unit", "res", name="pk_idx_quantity"
        ),
    ]


def _old_quantity() -> list[Any]:
    return [
        sa.Column("param", sa.SmallInteger(), nullable=False),
        sa.Column("value", sa.Numeric(), nullable=False),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("system", sa.Text(), nullable=False),
        sa.Column("unit", sa.Text(), nullable=False),
        sa.Column("res", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "param", "value", "code", "system", "unit", "res", name="pk_idx_quantity"
        ),
    ]


def _new_composite() -> list[Any]:
    return [
        sa.Column("param", sa.SmallInteger(), nullable=False),
        sa.Column("code1", sa.Text(), nullable=False),
        sa.Column("combo", sa.BigInteger(), nullable=False),
        sa.Column("res", sa.BigInteger(), nullable=False),
        *(sa.Column(name, kind, nullable=True) for name, kind in _COMPOSITE_TAIL),
        sa.PrimaryKeyConstraint("param", "code1", "combo", "res", name="pk_idx_composite"),
    ]


def _old_composite() -> list[Any]:
    return [
        sa.Column("param", sa.SmallInteger(), nullable=False),
        sa.Column("components", sa.Text(), nullable=False),
        sa.Column("res", sa.BigInteger(), nullable=False),
        sa.Column("code1", sa.Text(), nullable=True),
        *(sa.Column(name, kind, nullable=True) for name, kind in _COMPOSITE_TAIL),
        sa.PrimaryKeyConstraint("param", "components", "res", name="pk_idx_composite"),
    ]


def _postgres() -> bool:
    return bool(op.get_bind().dialect.name == "postgresql")


def _replace(
    name: str,
    columns: list[Any],
    indexes: list[tuple[str, list[str]]],
    old_indexes: list[str],
    rows: Callable[[], Iterable[list[dict[str, Any]]]],
) -> None:
    """Swap table ``name`` for a new shape, filled in batches from ``rows()`` (which may read
    the old table, renamed ``<name>_old``)."""
    bind = op.get_bind()
    for index in old_indexes:
        op.drop_index(index, table_name=name)
    op.rename_table(name, f"{name}_old")
    if _postgres():
        op.execute(f"ALTER TABLE {name}_old RENAME CONSTRAINT pk_{name} TO pk_{name}_old")
    table = op.create_table(name, *columns, sqlite_with_rowid=False)
    for batch in rows():
        if batch:
            bind.execute(table.insert(), batch)
    op.drop_table(f"{name}_old")
    for index, cols in indexes:
        op.create_index(index, name, cols, unique=False)


def _stream(query: str) -> Iterable[Sequence[Any]]:
    statement = sa.text(query).execution_options(stream_results=True)
    result = op.get_bind().execute(statement)
    yield from result.partitions(_BATCH)


def _derived_params() -> list[int]:
    from sharedcare.record.derived import derived_from

    rows = op.get_bind().execute(sa.text("SELECT id, resource_type, code FROM search_param"))
    return [pk for pk, rtype, code in rows if derived_from(rtype, code)]


def upgrade() -> None:
    from sharedcare.record.keys import combination_key, system_key

    derived = _derived_params()
    if derived:
        marks = ", ".join(str(int(p)) for p in derived)
        for table in ("idx_token", "idx_quantity", "idx_composite"):
            op.execute(f"DELETE FROM {table} WHERE param IN ({marks})")
    if _postgres():
        for name, _, _ in _OLD_STATISTICS:
            op.execute(f"DROP STATISTICS IF EXISTS {name}")

    def tokens() -> Iterable[list[dict[str, Any]]]:
        for part in _stream("SELECT param, code, system, res, text FROM idx_token_old"):
            yield [
                {"param": p, "code": c, "system_id": system_key(s), "res": r, "text": t}
                for p, c, s, r, t in part
            ]

    def quantities() -> Iterable[list[dict[str, Any]]]:
        query = "SELECT param, value, code, system, unit, res FROM idx_quantity_old"
        for part in _stream(query):
            yield [
                {"param": p, "value": v, "code": c, "system_id": system_key(s), "unit": u, "res": r}
                for p, v, c, s, u, r in part
            ]

    tail = [name for name, _ in _COMPOSITE_TAIL]

    def composites() -> Iterable[list[dict[str, Any]]]:
        query = f"SELECT param, components, res, code1, {', '.join(tail)} FROM idx_composite_old"
        for part in _stream(query):
            yield [
                {
                    "param": row[0],
                    "code1": row[3] or "",
                    "combo": combination_key(row[1]),
                    "res": row[2],
                    **dict(zip(tail, row[4:], strict=True)),
                }
                for row in part
            ]

    _replace(
        "idx_token", _new_token(), [("ix_idx_token_res", ["res"])], ["ix_idx_token_res"], tokens
    )
    _replace(
        "idx_quantity",
        _new_quantity(),
        [("ix_idx_quantity_res", ["res"])],
        ["ix_idx_quantity_res"],
        quantities,
    )
    _replace(
        "idx_composite",
        _new_composite(),
        [("ix_idx_composite_res", ["res"])],
        ["ix_idx_composite_res", "ix_idx_composite_code1"],
        composites,
    )
    _statistics(_NEW_STATISTICS)


def _statistics(statistics: list[tuple[str, str, str]]) -> None:
    if _postgres():
        for name, table, columns in statistics:
            op.execute(
                f"CREATE STATISTICS IF NOT EXISTS {name} (mcv, dependencies) "
                f"ON {columns} FROM {table}"
            )


def downgrade() -> None:
    """Rebuild the 0006 shapes by re-extracting token, quantity and composite values."""
    if _postgres():
        for name, _, _ in _NEW_STATISTICS:
            op.execute(f"DROP STATISTICS IF EXISTS {name}")
    extracted = _extract()
    _replace(
        "idx_token",
        _old_token(),
        [("ix_idx_token_res", ["res"])],
        ["ix_idx_token_res"],
        lambda: [extracted["token"]],
    )
    _replace(
        "idx_quantity",
        _old_quantity(),
        [("ix_idx_quantity_res", ["res"])],
        ["ix_idx_quantity_res"],
        lambda: [extracted["quantity"]],
    )
    _replace(
        "idx_composite",
        _old_composite(),
        [("ix_idx_composite_res", ["res"]), ("ix_idx_composite_code1", ["param", "code1"])],
        ["ix_idx_composite_res"],
        lambda: [extracted["composite"]],
    )
    _statistics(_OLD_STATISTICS)


def _extract() -> dict[str, list[dict[str, Any]]]:
    from sharedcare.fhir.search_index import (
        CompositeValue,
        QuantityValue,
        TokenValue,
        extract_index,
    )
    from sharedcare.record.search.composite import COMPOSITE_COLUMNS, composite_columns

    bind = op.get_bind()
    params = {
        (t, c): i
        for i, t, c in bind.execute(sa.text("SELECT id, resource_type, code FROM search_param"))
    }
    content = "content::text" if _postgres() else "content"
    out: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = {
        "token": {},
        "quantity": {},
        "composite": {},
    }
    query = f"SELECT pk, resource_type, {content} FROM resource WHERE deleted = false"
    for part in _stream(query):
        for pk, rtype, doc in part:
            if doc is None:
                continue
            for value in extract_index(orjson.loads(doc)):
                param = params.get((rtype, value[0]))
                if param is None or value[0] in ("_id", "_lastUpdated"):  # resource columns
                    continue
                if isinstance(value, TokenValue):
                    row = {
                        "param": param,
                        "code": (value.code or "")[:512],
                        "system": value.system or "",
                        "res": pk,
                        "text": (value.text or "")[:512],
                    }
                    out["token"][tuple(row.values())] = row
                elif isinstance(value, QuantityValue):
                    row = {
                        "param": param,
                        "value": value.value,
                        "code": value.code or "",
                        "system": value.system or "",
                        "unit": value.unit or "",
                        "res": pk,
                    }
                    out["quantity"][tuple(row.values())] = row
                elif isinstance(value, CompositeValue):
                    key = orjson.dumps([list(c) for c in value.components], default=str).decode()
                    cols = composite_columns(value.components)
                    row = {"param": param, "components": key, "res": pk}
                    row.update(zip(COMPOSITE_COLUMNS, cols, strict=True))
                    out["composite"][(param, key, pk)] = row
    return {kind: list(rows.values()) for kind, rows in out.items()}
