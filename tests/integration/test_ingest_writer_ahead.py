"""Work the ingest writer does while it plans a batch ahead, off its write transaction.

The planning thread builds each write's index rows without their resource key and reads
each written Patient's demographics for matching (decision 0034, addendum of session 10);
the write transaction puts the keys in. What is stored must be exactly what building it all
in the transaction stores. The identity trail of a batch goes in one statement on
PostgreSQL, with the rows and ids the one-row-at-a-time insert gave.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, text

from sharedcare.fhir.search_index import extract_index
from sharedcare.identity import store as rows
from sharedcare.identity.changes import SourcePatient, person_of, read_ahead
from sharedcare.ingest.preplan import Preplanner
from sharedcare.ingest.stages import Stage
from sharedcare.ingest.writer import ToWrite, write_preplanned
from sharedcare.record.sqlstore import PendingWrite, SqlStore
from sharedcare.record.store_rows import INDEX_TABLES
from tests.support.hl7_traffic import message, stored_for_writer


def _stored(engine: Engine, numbers: range) -> list[ToWrite]:
    return stored_for_writer(engine, [message(i, patients=12) for i in numbers])


def _normal(values: tuple[Any, ...]) -> tuple[Any, ...]:
    """Values compared as text, numbers by value (SQLite gives 4.0 back as 4)."""
    return tuple(
        v
        if v is None or isinstance(v, str)
        else str(v)
        if isinstance(v, int)
        else str(Decimal(str(v)).normalize())
        for v in values
    )


def _all_resources(engine: Engine) -> list[tuple[str, str, int]]:
    with engine.connect() as connection:
        query = text("SELECT resource_type, id, version_id FROM resource")
        return [(r[0], r[1], r[2]) for r in connection.execute(query)]


def _index_rows_by_resource(
    engine: Engine,
) -> dict[tuple[str, str], set[tuple[str, tuple[Any, ...]]]]:
    """Every index row of every resource, its key replaced by the resource's type and id."""
    found: dict[tuple[str, str], set[tuple[str, tuple[Any, ...]]]] = {}
    with engine.connect() as connection:
        for table in INDEX_TABLES.values():
            columns = [c.name for c in table.columns if c.name != "res"]
            query = text(
                f"SELECT r.resource_type, r.id, {', '.join('i.' + c for c in columns)} "
                f"FROM {table.name} i JOIN resource r ON r.pk = i.res"
            )
            for row in connection.execute(query):
                found.setdefault((row[0], row[1]), set()).add((table.name, _normal(row[2:])))
    return found


def test_rows_built_ahead_are_the_rows_built_in_the_transaction(engine: Engine) -> None:
    store = SqlStore(engine)  # its parameter ids not loaded yet: planning loads them
    planner = Preplanner(engine, store)
    # Two batches (creates, then updates of the same patients: A08s move them home), each
    # planned ahead and written as planned.
    for numbers in (range(0, 40), range(40, 80)):
        ticket = planner.plan(_stored(engine, numbers))
        assert ticket.preplanned is not None
        writes = [w for writes in ticket.preplanned.plan.rounds for w in writes]
        assert writes and all(w.rows is not None for w in writes if not w.deleted)
        # The keys put in later give exactly the rows built with them from the start, in
        # the same order (the order rows are inserted in).
        pks = {(w.resource_type, w.id): n + 1 for n, w in enumerate(writes)}
        ahead = store._index_rows(writes, pks)
        built = [w.rows for w in writes]
        for w in writes:
            w.rows = None
        direct = store._index_rows(writes, pks)
        assert {t.name: list(r) for t, r in ahead.items()} == {
            t.name: list(r) for t, r in direct.items()
        }
        for w, prebuilt in zip(writes, built, strict=True):
            w.rows = prebuilt
        patients = ticket.preplanned.plan.patients
        assert patients and all(
            p.record is not None and p.record == person_of(p.id, p.content) for p in patients
        )
        outcomes, as_planned = write_preplanned(engine, store, ticket.preplanned)
        planner.finished(ticket, as_planned)
        assert as_planned and {o.stage for o in outcomes} == {Stage.WRITTEN.value}

    # What is stored is what each resource's current content gives, built in one go (by a
    # store of its own: nothing it holds comes from the writer's).
    stored = _index_rows_by_resource(engine)
    fresh = SqlStore(engine)
    fresh.ensure_params()
    with engine.connect() as connection:
        current = fresh.read_many(connection, [(t, i) for t, i, _ in _all_resources(engine)])
    assert {t for t, _ in current} == {
        "Patient",
        "Encounter",
        "Observation",
        "DiagnosticReport",
        "Location",
    }
    assert set(stored) == set(current)  # every resource has index rows
    expected: dict[tuple[str, str], set[tuple[str, tuple[Any, ...]]]] = {}
    for key, resource in current.items():
        write = PendingWrite(
            key[0], key[1], resource.version_id, 0, False, None, extract_index(resource.json())
        )
        for table, values in fresh._index_rows([write], {key: 0}).items():
            at = [c.name for c in table.columns].index("res")
            for row in values:
                expected.setdefault(key, set()).add((table.name, _normal(row[:at] + row[at + 1 :])))
    assert stored == expected


def test_a_patient_whose_demographics_cannot_be_read_is_left_to_matching() -> None:
    bad = SourcePatient("p1", 1, {"resourceType": "Patient", "birthDate": "not a date"})
    assert read_ahead(bad) is bad and bad.record is None
    good = SourcePatient(
        "p2",
        1,
        {
            "resourceType": "Patient",
            "meta": {"source": "PAS"},
            "name": [{"family": "Tester", "given": ["Alex"]}],
            "birthDate": "1965-04-12",
        },
    )
    ahead = read_ahead(good)
    assert ahead.record == person_of("p2", good.content) and ahead.record.source == "PAS"
    assert ahead == good  # the record is not part of the patient's identity


def test_a_batch_trail_in_one_statement_is_the_trail_row_by_row(pg_engine: Engine) -> None:
    entries = [
        rows.TrailEntry("link", "s1", "g1", None, {"weight": 12.5, "why": "Zoë's NHS number"}),
        rows.TrailEntry("relink", "s2", "g2", "g1", None),
        rows.TrailEntry("unmatched", "s3", detail={"reason": "birthDate"}),
        rows.TrailEntry("review-open", None, "g3", "g4", {}),
    ]
    with pg_engine.begin() as connection:
        newest = rows.insert_trail(connection, "feed:pas", entries, 1_700_000_000_000_001)
        assert newest is not None
        # The same entries through SQLAlchemy's insert (the statement used before, and on
        # SQLite).
        old = connection.execute(
            rows._INSERT_TRAIL, rows.trail_rows("feed:pas", entries, 1_700_000_000_000_001)
        )
        assert max(int(r) for r in old.scalars()) > newest
    with pg_engine.connect() as connection:
        found = connection.execute(
            text(
                "SELECT id, recorded, actor, action, source_id, golden_id, other_golden_id, "
                "detail FROM identity_trail ORDER BY id"
            )
        ).all()
    assert found[len(entries) - 1][0] == newest  # the newest id of the batch is returned
    batch, row_by_row = found[: len(entries)], found[len(entries) :]
    assert [r[3] for r in batch] == [e.action for e in entries]  # ids in the entries' order
    assert [_trail_row(r) for r in batch] == [_trail_row(r) for r in row_by_row]


def _trail_row(row: Any) -> tuple[Any, ...]:
    return (*row[1:-1], None if row[-1] is None else bytes(row[-1]))
