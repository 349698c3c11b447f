"""Search: counting a whole type from indexes; estimates for ``system|code`` tokens.

* ``Observation?_total=accurate`` (or ``_summary=count``) with no other parameter counts
  the live resources of a type. ``deleted`` is in no index, so PostgreSQL read the whole
  table for it (220-340 ms for 600,000 Observations at 1M resources). With a partial index
  of the deleted rows only (small: few resources are deleted), the count is that of the
  type, an index-only scan of ``(resource_type, last_updated)``, less that of its deleted
  rows: 55-60 ms.
* On PostgreSQL, statistics on ``idx_token (param, code, system_id)``: the planner took
  the code and the system as independent and estimated 28,055 rows for
  ``code=http://loinc.org|8480-6`` (100,000 match), which ``_total=estimate`` reports and
  plans rely on. With the three columns' most common values it estimates 102,206. They
  are filled by the next ``ANALYZE`` (autovacuum, or ``VACUUM ANALYZE`` after a bulk load).

See ``docs/decisions/0012-search-round-trips-and-plans.md``.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-22 00:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_STATISTICS = "st_idx_token_param_code_system"


def upgrade() -> None:
    op.create_index(
        "ix_resource_deleted_type",
        "resource",
        ["resource_type"],
        postgresql_where=sa.text("deleted"),
        sqlite_where=sa.text("deleted = 1"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"CREATE STATISTICS IF NOT EXISTS {_STATISTICS} (mcv) "
            "ON param, code, system_id FROM idx_token"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP STATISTICS IF EXISTS {_STATISTICS}")
    op.drop_index("ix_resource_deleted_type", table_name="resource")
