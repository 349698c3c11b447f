"""On PostgreSQL a resource's index rows are written together, in resource key order.

A search that checks a second condition for each candidate (``family=…&given=…``, a broad
code paged in date order) probes ``ix_idx_*_res`` and then reads the rows it points at from
the table's heap. When a resource's rows sit side by side that is one heap page per probe;
scattered, it was one page per row (about four for a token, ten for a string: 880 against
534 buffers for a broad page, 515 against 268 for a string search, 1M resources,
``docs/decisions/0019-index-row-layout.md``). The store writes each table's rows of a batch
in ascending resource key order (``SqlStore._index_rows``); in a fresh table the heap keeps
that order, which this test reads back through ``ctid``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, text

from sharedcare.db.engine import write_connection
from sharedcare.record.context import RequestContext
from sharedcare.record.repository import Repository
from sharedcare.record.sqlstore import INDEX_TABLES, SqlStore


def _patient(n: int) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:test", "value": f"id-{n}"}],
        "name": [{"family": f"Family{n % 13}", "given": [f"Given{n % 7}", f"Middle{n}"]}],
        "gender": "female" if n % 2 else "male",
        "birthDate": f"19{50 + n % 40}-0{1 + n % 9}-1{n % 10}",
        "address": [{"city": f"Town{n % 5}", "postalCode": f"AB{n % 10} 1CD"}],
    }


def _heap_order(engine: Engine, table: str) -> list[int]:
    with engine.connect() as connection:
        return list(connection.execute(text(f"SELECT res FROM {table} ORDER BY ctid")).scalars())


def test_each_resources_index_rows_are_adjacent_in_the_heap(pg_engine: Engine) -> None:
    engine = pg_engine
    store = SqlStore(engine)
    store.ensure_params()
    repo = Repository(store, RequestContext.system())
    batch = [
        repo.prepare(_patient(n), id=f"b{n}", version_id=1, now=1_000_000 + n, existed=False)
        for n in range(200)
    ]
    with write_connection(engine) as connection:
        store.apply(connection, batch)
    for n in range(5):  # single writes: the REST path
        single = repo.prepare(
            _patient(1000 + n), id=f"s{n}", version_id=1, now=2_000_000 + n, existed=False
        )
        with write_connection(engine) as connection:
            store.apply(connection, [single])
    checked = 0
    for table in INDEX_TABLES.values():
        order = _heap_order(engine, table.name)
        assert order == sorted(order), table.name
        checked += len(order)
    assert checked >= 205 * 5
