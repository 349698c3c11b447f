"""SqlStore's batch write path and batched audit rows, on SQLite and PostgreSQL.

PostgreSQL takes a path of its own (array parameters, one statement for every update);
these check that both databases end with the same rows: history, current versions, index
rows replaced on update and removed on delete, and a stale version refused.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, select, text

from sharedcare.db.engine import write_connection
from sharedcare.db.tables import AuditRecord, IdxToken, ResourceHistory
from sharedcare.fhir.search_index import IndexValue, StringValue, TokenValue
from sharedcare.record.audit import AuditEntry, write_audit
from sharedcare.record.context import RequestContext
from sharedcare.record.errors import ConcurrentUpdate
from sharedcare.record.repository import Repository
from sharedcare.record.sqlstore import INDEX_TABLES, PendingWrite, SqlStore
from sharedcare.record.sqlstore_pg import RES_COLUMN


def _write(id_: str, version: int, code: str | None, *, deleted: bool = False) -> PendingWrite:
    content = None if deleted else orjson.dumps({"resourceType": "Observation", "id": id_})
    index: list[IndexValue] = (
        [] if code is None else [TokenValue("code", "http://loinc.org", code, None)]
    )
    return PendingWrite("Observation", id_, version, 1_000 + version, deleted, content, index)


def _codes(engine: Engine, store: SqlStore) -> dict[str, set[str]]:
    """Token codes indexed under Observation ``code``, per resource id."""
    param = store.param_id("Observation", "code")
    table = IdxToken.__table__
    with engine.connect() as connection:
        pks = {pk: id_ for (_, id_), (pk, _, _) in store.existing(connection, _keys()).items()}
        rows = connection.execute(
            select(table.c.res, table.c.code).where(table.c.param == param)
        ).all()
    found: dict[str, set[str]] = {}
    for res, code in rows:
        found.setdefault(pks[res], set()).add(code)
    return found


def _keys() -> list[tuple[str, str]]:
    return [("Observation", f"o{n}") for n in range(6)]


def test_batch_updates_keep_history_and_replace_index_rows(engine: Engine) -> None:
    store = SqlStore(engine)
    with write_connection(engine) as connection:
        store.apply(connection, [_write(f"o{n}", 1, f"c{n}") for n in range(5)])
    with write_connection(engine) as connection:
        store.apply(
            connection,
            [
                _write("o1", 2, "new1"),
                _write("o3", 2, None, deleted=True),
                _write("o5", 1, "c5"),  # a create in the same batch as updates
                _write("o4", 2, "c4"),  # unchanged index value
            ],
        )
    with engine.connect() as connection:
        current = store.read_many(connection, _keys())
        history = connection.execute(
            select(ResourceHistory.id, ResourceHistory.version_id).order_by(ResourceHistory.id)
        ).all()
    assert {k[1]: (v.version_id, v.deleted) for k, v in current.items()} == {
        "o0": (1, False),
        "o1": (2, False),
        "o2": (1, False),
        "o3": (2, True),
        "o4": (2, False),
        "o5": (1, False),
    }
    assert current[("Observation", "o3")].content is None
    assert current[("Observation", "o1")].json() == {"resourceType": "Observation", "id": "o1"}
    assert [tuple(row) for row in history] == [("o1", 1), ("o3", 1), ("o4", 1)]
    assert _codes(engine, store) == {
        "o0": {"c0"},
        "o1": {"new1"},
        "o2": {"c2"},
        "o4": {"c4"},
        "o5": {"c5"},
    }


def test_a_stale_version_in_a_batch_writes_nothing(engine: Engine) -> None:
    store = SqlStore(engine)
    with write_connection(engine) as connection:
        store.apply(connection, [_write("o0", 1, "c0"), _write("o1", 1, "c1")])
    with pytest.raises(ConcurrentUpdate), write_connection(engine) as connection:
        store.apply(connection, [_write("o0", 2, "x"), _write("o1", 3, "y")])
    with pytest.raises(ConcurrentUpdate), write_connection(engine) as connection:
        store.apply(connection, [_write("o2", 1, "z"), _write("o2", 1, "z")])  # same create
    with engine.connect() as connection:
        current = store.read_many(connection, _keys())
    assert {k[1]: v.version_id for k, v in current.items()} == {"o0": 1, "o1": 1}
    assert _codes(engine, store) == {"o0": {"c0"}, "o1": {"c1"}}


def test_write_audit_stores_every_event_of_a_batch(engine: Engine) -> None:
    context = RequestContext.system()
    entries = [
        AuditEntry("create", "0", "Observation", "o1", 1, patient="Patient/p1"),
        AuditEntry("update", "0", "Observation", "o2", 2),
        AuditEntry("delete", "4", "Observation", "o3", description="gone"),
    ]
    with write_connection(engine) as connection:
        write_audit(connection, context, entries)
        write_audit(connection, context, [])
    table = AuditRecord.__table__
    with engine.connect() as connection:
        rows = connection.execute(
            select(
                table.c.interaction,
                table.c.outcome,
                table.c.agent,
                table.c.patient,
                table.c.content,
            ).order_by(table.c.pk)
        ).all()
    assert [(r.interaction, r.outcome, r.agent, r.patient) for r in rows] == [
        ("create", "0", "sharedcare", "Patient/p1"),
        ("update", "0", "sharedcare", None),
        ("delete", "4", "sharedcare", None),
    ]
    # psycopg hands jsonb back parsed; SQLite gives the text
    events = [r.content if isinstance(r.content, dict) else orjson.loads(r.content) for r in rows]
    assert [e["action"] for e in events] == ["C", "U", "D"]
    assert events[2]["outcomeDesc"] == "gone"
    assert events[0]["entity"][0]["what"] == {"reference": "Observation/o1/_history/1"}


def _patient(id_: str, family: str, city: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": id_,
        "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": f"9{id_}"}],
        "name": [{"family": family, "given": ["Ann"]}],
        "birthDate": "1950-02-03",
        "address": [{"city": city, "postalCode": "DT1 1AA"}],
    }


def _stored_rows(engine: Engine, pk: int) -> dict[str, set[tuple[Any, ...]]]:
    """Every index row of the resource ``pk``, per table."""
    with engine.connect() as connection:
        return {
            table.name: {
                tuple(row) for row in connection.execute(select(table).where(table.c.res == pk))
            }
            for table in INDEX_TABLES.values()
        }


def _row_versions(engine: Engine, table: str, pk: int) -> set[str]:
    """PostgreSQL: the creating transaction of each of a resource's rows in ``table``."""
    with engine.connect() as connection:
        return {
            str(x)
            for (x,) in connection.execute(
                text(f"SELECT xmin::text FROM {table} WHERE res = :pk"), {"pk": pk}
            )
        }


def test_a_batch_update_ends_with_exactly_the_new_index_rows(engine: Engine) -> None:
    """An update's index rows are those of its new content, whatever was stored before.

    On PostgreSQL a batch compares the new rows with the stored ones and rewrites a
    resource's rows only in the tables where they changed (``sqlstore_pg.index_changes``);
    a row the new content does not give (here one added by hand, as an older extraction
    might have left) goes, and the rows of a table where nothing changed stay in place.
    """
    store = SqlStore(engine)
    repo = Repository(store, RequestContext.system())
    first = [
        repo.prepare(_patient(p, "Smith", "Dorchester"), id=p, version_id=1, now=1, existed=False)
        for p in ("p1", "p2", "p3")
    ]
    with write_connection(engine) as connection:
        store.apply(connection, first)
    with engine.connect() as connection:
        pks = {
            i: pk
            for (_, i), (pk, _, _) in store.existing(
                connection, [("Patient", p) for p in ("p1", "p2", "p3")]
            ).items()
        }
    family = store.param_id("Patient", "family")
    string: Any = INDEX_TABLES[StringValue]
    with write_connection(engine) as connection:  # a row p2's content does not give
        connection.execute(
            string.insert().values(param=family, value="stale", exact="Stale", res=pks["p2"])
        )
    before = (
        _row_versions(engine, "idx_token", pks["p1"])
        if engine.dialect.name == "postgresql"
        else set()
    )
    second = [
        repo.prepare(
            _patient("p1", "Smith", "Bridport"), id="p1", version_id=2, now=2, existed=True
        ),
        repo.prepare(
            _patient("p2", "Smith", "Dorchester"), id="p2", version_id=2, now=2, existed=True
        ),
        PendingWrite("Patient", "p3", 2, 2, True, None, [], True),  # deleted
        repo.prepare(
            _patient("p4", "Jones", "Wareham"), id="p4", version_id=1, now=2, existed=False
        ),
    ]
    with write_connection(engine) as connection:
        store.apply(connection, second)
    with engine.connect() as connection:
        pks["p4"] = store.existing(connection, [("Patient", "p4")])[("Patient", "p4")][0]
    keys = {("Patient", p): pk for p, pk in pks.items()}
    expected = store._index_rows([w for w in second if not w.deleted], keys)
    for write in second:
        pk = pks[write.id]
        wanted = {
            table.name: {row for row in rows if row[RES_COLUMN[table]] == pk}
            for table, rows in expected.items()
        }
        found = {name: rows for name, rows in _stored_rows(engine, pk).items() if rows}
        assert found == {name: rows for name, rows in wanted.items() if rows}, write.id
    assert _stored_rows(engine, pks["p3"]) == {t.name: set() for t in INDEX_TABLES.values()}
    cities = {
        row[2]
        for row in _stored_rows(engine, pks["p1"])["idx_string"]
        if row[0] == store.param_id("Patient", "address-city")
    }
    assert cities == {"Bridport"}
    if engine.dialect.name == "postgresql":  # the identifier did not change: not rewritten
        assert _row_versions(engine, "idx_token", pks["p1"]) == before
        # p1's string rows were written again together (side by side, decision 0019)
        assert len(_row_versions(engine, "idx_string", pks["p1"])) == 1
        assert _row_versions(engine, "idx_string", pks["p1"]) != before
