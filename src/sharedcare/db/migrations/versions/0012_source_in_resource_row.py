"""Fewer index rows: ``_source`` from the resource row; narrowed reference parameters
read the rows of the parameter they narrow.

* Every resource has a ``meta.source`` (the server sets one when the client does not), so
  ``idx_uri`` held one ``_source`` row per resource: 243 bytes per resource on PostgreSQL.
  The value is already in the stored JSON, and sources are few, so an expression index on
  ``(resource_type, meta.source)`` serves ``_source`` searches instead (PostgreSQL
  deduplicates its equal keys into posting lists of 6-byte row pointers).
* ``Observation.patient`` is ``Observation.subject.where(resolve() is Patient)``: its rows
  repeated the ``subject`` rows whose target is a Patient. Such parameters (47 in R4,
  ``sharedcare.record.derived.narrowed_from``) now store no rows; searches read the other
  parameter's rows with ``target_type = T``.

See ``docs/decisions/0011-record-footprint.md`` (addendum of 2026-11-22). The upgrade
creates the index and deletes rows; nothing is re-parsed. The downgrade rebuilds the rows
(``_source`` from the stored JSON, as the index extraction wrote it: string sources of live
resources; narrowed parameters from the rows they narrow) and drops the index.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-22 15:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_INDEX = "ix_resource_source"
_SOURCE_PARAMS = "SELECT id FROM search_param WHERE code = '_source'"


def _source(dialect: str, table: str = "resource", *, bytewise: bool = False) -> str:
    """``meta.source`` as ``sharedcare.db.tables.meta_source`` renders it (the index and
    the searches must use the same expression; ``bytewise``: in the C collation)."""
    if dialect == "postgresql":
        expression = f"(({table}.content -> 'meta') ->> 'source')"
        return f'({expression} COLLATE "C")' if bytewise else expression
    return f"json_extract({table}.content, '$.meta.source')"


def _is_string(dialect: str, table: str = "resource") -> str:
    if dialect == "postgresql":
        return f"jsonb_typeof({table}.content -> 'meta' -> 'source') = 'string'"
    return f"json_type({table}.content, '$.meta.source') = 'text'"


def _narrowed() -> list[tuple[int, int, str]]:
    """``(param, base param, target type)`` for every stored narrowed parameter."""
    from sharedcare.record.derived import narrowed_from

    rows = op.get_bind().execute(sa.text("SELECT id, resource_type, code FROM search_param"))
    ids = {(rtype, code): pk for pk, rtype, code in rows}
    out = []
    for (rtype, code), pk in sorted(ids.items()):
        narrowed = narrowed_from(rtype, code)
        if narrowed and (rtype, narrowed[0]) in ids:
            out.append((pk, ids[(rtype, narrowed[0])], narrowed[1]))
    return out


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    expression = _source(dialect, bytewise=True).replace("resource.", "")
    op.create_index(_INDEX, "resource", ["resource_type", sa.text(expression)])
    op.execute(f"DELETE FROM idx_uri WHERE param IN ({_SOURCE_PARAMS})")
    narrowed = [str(param) for param, _, _ in _narrowed()]
    if narrowed:
        op.execute(f"DELETE FROM idx_reference WHERE param IN ({', '.join(narrowed)})")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for param, base, target in _narrowed():
        op.get_bind().execute(
            sa.text(
                "INSERT INTO idx_reference (param, target_id, target_type, res, version, url) "
                "SELECT :param, target_id, target_type, res, version, url FROM idx_reference "
                "WHERE param = :base AND target_type = :target ORDER BY res"
            ),
            {"param": param, "base": base, "target": target},
        )
    op.execute(
        "INSERT INTO idx_uri (param, uri, res) "
        f"SELECT search_param.id, {_source(dialect)}, resource.pk "
        "FROM resource JOIN search_param ON search_param.resource_type = resource.resource_type "
        "AND search_param.code = '_source' "
        f"WHERE NOT resource.deleted AND {_is_string(dialect)} "
        "ORDER BY resource.pk"
    )
    op.drop_index(_INDEX, "resource")
