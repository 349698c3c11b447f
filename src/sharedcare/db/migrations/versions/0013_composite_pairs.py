"""No rows for composites that are pairs of other parameters.

``Observation.code-value-quantity`` and ``code-value-concept`` are composites on the
Observation itself whose components are exactly the ``code`` parameter and the
``value-quantity`` / ``value-concept`` parameter (``sharedcare.record.derived.
composite_pair``): their ``idx_composite`` rows were every pair of those parameters' values
on the resource, 193 bytes per resource on PostgreSQL. They now store no rows; a search
matches a resource with a row of each parameter satisfying its component
(``sharedcare.record.search.composite``).

See ``docs/decisions/0011-record-footprint.md`` (addendum of 2026-11-22, session 11). The
upgrade deletes the rows. The downgrade rebuilds them from the stored JSON of the live
resources with the index extraction, as the 0012 store wrote them (the stored ``code`` and
``value-*`` rows hold systems as keys, not the URIs the composite rows hold).

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-22 19:40:00
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_BATCH = 2000
_COLUMNS = (
    "param",
    "code1",
    "combo",
    "res",
    "system1",
    "code2",
    "system2",
    "unit2",
    "number2",
    "low2",
    "high2",
    "number3",
)


def _pairs() -> list[tuple[int, str, str]]:
    """``(param, resource type, code)`` of every stored composite pair."""
    from sharedcare.record.derived import composite_pair

    rows = op.get_bind().execute(sa.text("SELECT id, resource_type, code FROM search_param"))
    return sorted((pk, rtype, code) for pk, rtype, code in rows if composite_pair(rtype, code))


def upgrade() -> None:
    params = [str(int(param)) for param, _, _ in _pairs()]
    if params:
        op.execute(f"DELETE FROM idx_composite WHERE param IN ({', '.join(params)})")


def _pages(resource_type: str) -> Iterable[Sequence[Any]]:
    """The live resources of a type, ``(pk, JSON text)``, a page at a time in key order
    (each page is read before its rows are written: SQLite has one connection)."""
    content = "content::text" if op.get_bind().dialect.name == "postgresql" else "content"
    statement = sa.text(
        f"SELECT pk, {content} FROM resource WHERE resource_type = :t AND deleted = false "
        f"AND pk > :after ORDER BY pk LIMIT {_BATCH}"
    )
    after = -(2**63)
    while True:
        page = op.get_bind().execute(statement, {"t": resource_type, "after": after}).all()
        if not page:
            return
        yield page
        after = page[-1][0]


def downgrade() -> None:
    from sharedcare.fhir.search_index import CompositeValue, extract_index
    from sharedcare.record.store_rows import index_row

    by_type: dict[str, dict[str, int]] = {}
    for param, rtype, code in _pairs():
        by_type.setdefault(rtype, {})[code] = param
    insert = sa.text(
        f"INSERT INTO idx_composite ({', '.join(_COLUMNS)}) "
        f"VALUES ({', '.join(':' + c for c in _COLUMNS)})"
    )
    for rtype, params in by_type.items():
        for page in _pages(rtype):
            rows: dict[tuple[Any, ...], dict[str, Any]] = {}
            for pk, doc in page:
                if doc is None:
                    continue
                for value in extract_index(orjson.loads(doc)):
                    found = params.get(value[0])
                    if found is None or not isinstance(value, CompositeValue):
                        continue
                    row = index_row(value, found, pk)
                    assert row is not None
                    rows[row[:4]] = dict(zip(_COLUMNS, row, strict=True))
            if rows:
                op.get_bind().execute(insert, list(rows.values()))
