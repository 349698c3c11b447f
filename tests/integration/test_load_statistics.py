"""Integration: a bulk load leaves PostgreSQL's planner with statistics of the record tables.

Tables never analysed are planned from guesses until autovacuum's next round; on a store just
loaded, a composite search was planned as a nested loop taking seconds
(``docs/decisions/0011-record-footprint.md``, addendum of session 11). ``load_paths`` ends
with :meth:`~sharedcare.record.sqlstore.SqlStore.refresh_statistics`.
"""

from __future__ import annotations

from pathlib import Path

import orjson
from sqlalchemy import Engine, text

from sharedcare.record.context import RequestContext
from sharedcare.record.loader import load_paths
from sharedcare.record.repository import Repository
from sharedcare.record.sqlstore import SqlStore
from tests.support.identity import without_realtime_matching


def _analysed(engine: Engine) -> set[str]:
    """The record tables ``ANALYZE`` has run on (autovacuum's own runs are not counted)."""
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT relname FROM pg_stat_user_tables WHERE last_analyze IS NOT NULL")
        )
        return {name for (name,) in rows}


def test_a_load_refreshes_the_record_tables_statistics(engine: Engine, tmp_path: Path) -> None:
    lines = [
        {
            "resourceType": "Observation",
            "id": f"o{n}",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
            "valueQuantity": {"value": 100 + n, "unit": "mmHg"},
        }
        for n in range(20)
    ]
    path = tmp_path / "observations.ndjson"
    path.write_bytes(b"\n".join(orjson.dumps(line) for line in lines))
    store = SqlStore(engine)
    store.ensure_params()
    postgres = engine.dialect.name == "postgresql"
    if postgres:
        assert "idx_token" not in _analysed(engine)
    with without_realtime_matching():
        report = load_paths(Repository(store, RequestContext.system()), [path])
    assert report.written == 20
    if postgres:
        assert {"resource", "idx_token", "idx_quantity", "idx_reference"} <= _analysed(engine)
