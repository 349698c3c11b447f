"""The store's write paths leave exactly the index rows the writes carry, on both databases.

The resource and index rows go straight through the driver (``COPY`` and array statements
on PostgreSQL, ``executemany`` on SQLite), for a single REST write and for a large batch
alike. A first version needs no lookup of an existing row; a create that races another
create of the same id is refused (``ConcurrentUpdate``).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, select

from sharedcare.db.engine import write_connection
from sharedcare.record.context import RequestContext
from sharedcare.record.errors import ConcurrentUpdate
from sharedcare.record.repository import Repository
from sharedcare.record.sqlstore import INDEX_TABLES, PendingWrite, SqlStore


def _observation(n: int) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "identifier": [{"system": "urn:test", "value": f"obs-{n}"}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Pulse"}]},
        "subject": {"reference": f"Patient/p{n % 7}"},
        "effectiveDateTime": f"2024-05-{1 + n % 28:02d}T10:00:00Z",
        "valueQuantity": {
            "value": 60 + n % 40 + 0.5,
            "unit": "beats/min",
            "system": "http://unitsofmeasure.org",
            "code": "/min",
        },
        "note": [{"text": f"note {n}"}],
    }


def _norm(value: Any) -> Any:
    if isinstance(value, Decimal | float):
        return round(float(value), 6)
    if isinstance(value, bool):
        return int(value)
    return value


def _rows_in_database(engine: Engine) -> dict[str, set[tuple[Any, ...]]]:
    found: dict[str, set[tuple[Any, ...]]] = {}
    with engine.connect() as connection:
        for table in INDEX_TABLES.values():
            rows = connection.execute(select(*table.columns)).all()
            found[table.name] = {tuple(_norm(v) for v in row) for row in rows}
    return found


def _expected(store: SqlStore, engine: Engine, writes: list[PendingWrite]) -> dict[str, set[Any]]:
    with engine.connect() as connection:
        keys = [(w.resource_type, w.id) for w in writes]
        pks = {key: found[0] for key, found in store.existing(connection, keys).items()}
    expected: dict[str, set[tuple[Any, ...]]] = {t.name: set() for t in INDEX_TABLES.values()}
    for table, rows in store._index_rows(writes, pks).items():
        expected[table.name] |= {tuple(_norm(v) for v in row) for row in rows}
    return expected


@pytest.mark.parametrize("count", [1, 150])
def test_index_rows_match_the_writes(engine: Engine, count: int) -> None:
    store = SqlStore(engine)
    store.ensure_params()
    repo = Repository(store, RequestContext.system())
    writes = [
        repo.prepare(_observation(n), id=f"o{n}", version_id=1, now=1_000_000 + n, existed=False)
        for n in range(count)
    ]
    with write_connection(engine) as connection:
        store.apply(connection, writes)
    expected = _expected(store, engine, writes)
    assert sum(len(rows) for rows in expected.values()) >= 5 * count
    assert _rows_in_database(engine) == expected


def test_an_update_replaces_the_index_rows(engine: Engine) -> None:
    store = SqlStore(engine)
    repo = Repository(store, RequestContext.system())
    first = repo.prepare(_observation(1), id="o1", version_id=1, now=1_000, existed=False)
    with write_connection(engine) as connection:
        store.apply(connection, [first])
    changed = _observation(2)
    second = repo.prepare(changed, id="o1", version_id=2, now=2_000, existed=True)
    with write_connection(engine) as connection:
        store.apply(connection, [second])
    assert _rows_in_database(engine) == _expected(store, engine, [second])
    with engine.connect() as connection:
        stored = store.read(connection, "Observation", "o1")
    assert stored is not None and stored.version_id == 2 and not stored.deleted


def test_a_create_racing_another_create_of_the_same_id_is_refused(engine: Engine) -> None:
    store = SqlStore(engine)
    repo = Repository(store, RequestContext.system())
    one = repo.prepare(_observation(1), id="same", version_id=1, now=1_000, existed=False)
    two = repo.prepare(_observation(2), id="same", version_id=1, now=2_000, existed=False)
    with write_connection(engine) as connection:
        store.apply(connection, [one])
    with pytest.raises(ConcurrentUpdate), write_connection(engine) as connection:
        store.apply(connection, [two])
    with engine.connect() as connection:
        stored = store.read(connection, "Observation", "same")
    assert stored is not None and stored.last_updated == 1_000
    assert _rows_in_database(engine) == _expected(store, engine, [one])
