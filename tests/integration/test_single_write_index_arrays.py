"""On PostgreSQL one write's index rows go in as arrays, and they are the batch path's rows.

A single write (the REST path) inserts a table's rows with one ``INSERT … SELECT FROM
ROWS FROM (…)`` taking each column as an array once the table has
``sqlstore_pg.ARRAY_ROWS`` rows, and with one ``VALUES`` row each below that
(``docs/decisions/0021-single-write-pipeline.md``). A batch ``COPY``s them. Whichever way
they go in, a resource's rows must be the same values (numerics, NULL composite columns,
large keys) in the same heap order (decision 0019).
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, text

from sharedcare.db.engine import write_connection
from sharedcare.record import sqlstore_pg
from sharedcare.record.context import RequestContext
from sharedcare.record.repository import Repository
from sharedcare.record.sqlstore import INDEX_TABLES, SqlStore


def _patient() -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": f"urn:test:{n}", "value": f"id-{n}"} for n in range(4)],
        "name": [
            {"family": "O'Brien", "given": ["Siân", 'Quote "q"', "Back\\slash"]},
            {"family": "Ng", "given": ["Ann"], "prefix": ["Dr"]},
        ],
        "gender": "female",
        "birthDate": "1961-03-09",
        "address": [{"line": ["1 High St"], "city": "Leeds", "postalCode": "LS1 4AB"}],
        "telecom": [{"system": "phone", "value": "0113 000 0000"}],
    }


def _observation() -> dict[str, Any]:
    def component(code: str, value: str) -> dict[str, Any]:
        return {
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "valueQuantity": {
                "value": float(value) if "." in value else int(value),
                "unit": "mmHg",
                "system": "http://unitsofmeasure.org",
                "code": "mm[Hg]",
            },
        }

    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}], "text": "BP"},
        "subject": {"reference": "Patient/p1"},
        "effectivePeriod": {"start": "2024-02-01T10:00:00Z", "end": "2024-02-01T10:05:00Z"},
        "component": [
            component("8480-6", "120"),
            component("8462-4", "80.50"),
            component("8478-0", "93.333333333333"),
        ],
    }


def _rows(engine: Engine, table: str, pk: int) -> list[tuple[Any, ...]]:
    """A resource's rows in heap order, without ``res``."""
    names = [c.name for c in INDEX_TABLES_BY_NAME[table].columns if c.name != "res"]
    with engine.connect() as connection:
        return [
            tuple(row)
            for row in connection.execute(
                text(f"SELECT {', '.join(names)} FROM {table} WHERE res = :pk ORDER BY ctid"),
                {"pk": pk},
            )
        ]


INDEX_TABLES_BY_NAME = {t.name: t for t in INDEX_TABLES.values()}


def _pk(engine: Engine, resource_type: str, id: str) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(
                text("SELECT pk FROM resource WHERE resource_type = :t AND id = :i"),
                {"t": resource_type, "i": id},
            ).scalar_one()
        )


@pytest.mark.parametrize("make", [_patient, _observation])
def test_a_single_writes_index_rows_are_the_batch_rows_in_the_same_order(
    pg_engine: Engine, make: Any
) -> None:
    engine = pg_engine
    store = SqlStore(engine)
    store.ensure_params()
    repo = Repository(store, RequestContext.system())
    content = make()
    kind = content["resourceType"]

    def write(id: str, version: int, batch: bool = False) -> None:
        writes = [
            repo.prepare(
                make(), id=f"{id}{n}", version_id=version, now=1_000 + version, existed=version > 1
            )
            for n in range(2 if batch else 1)
        ]
        with write_connection(engine) as connection:
            store.apply(connection, writes)

    write("batch", 1, batch=True)  # two resources: COPY
    write("single", 1)  # a create: the key comes from the sequence
    write("updated", 1)
    write("updated", 2)  # an update: the stored key
    reference = {t: _rows(engine, t, _pk(engine, kind, "batch0")) for t in INDEX_TABLES_BY_NAME}
    assert max(len(rows) for rows in reference.values()) >= sqlstore_pg.ARRAY_ROWS
    assert any(0 < len(rows) < sqlstore_pg.ARRAY_ROWS for rows in reference.values())
    for id in ("single0", "updated0"):
        pk = _pk(engine, kind, id)
        for table, rows in reference.items():
            assert _rows(engine, table, pk) == rows, (id, table)
    if kind == "Observation":  # numerics and NULL composite columns went through arrays
        assert len(reference["idx_quantity"]) >= sqlstore_pg.ARRAY_ROWS
        assert len(reference["idx_composite"]) >= sqlstore_pg.ARRAY_ROWS
        assert any(None in row for row in reference["idx_composite"])
