"""A real-time match on PostgreSQL sends its last statements and its ``COMMIT`` in one
pipeline and reads the Patients' states with the version's bump (decision 0031, addendum
of 2026-11-22, session 8): the same links, golden records, index rows, reviews, trail and
AuditEvents as the statement-by-statement path, and the same failure model (decision 0020:
the Patient write stands, the next batch run links it)."""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterator, Sequence
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, create_engine, text

from sharedcare.identity import realtime
from sharedcare.identity import store as rows
from sharedcare.identity.batch import SyncReport, link_all, sync_patients
from sharedcare.identity.service import identity_service
from sharedcare.record.context import RequestContext
from sharedcare.record.repository import Repository
from sharedcare.record.sqlstore import SqlStore
from sharedcare.record.store_rows import INDEX_TABLES
from tests.integration.test_identity_realtime import patient
from tests.support.postgres import Cluster

_INDEX_TABLES = tuple(table.name for table in INDEX_TABLES.values())
_numbers = itertools.count()
# Golden ids are server-assigned (sharedcare.record.resources.new_id): 26 base-32 digits.
_GOLDEN_ID = re.compile(r"\b[0-7][0-9a-hjkmnp-tv-z]{25}\b")


@pytest.fixture
def two_databases(postgres_cluster: Cluster, postgres_template: str) -> Iterator[list[Engine]]:
    """Two fresh migrated PostgreSQL databases (copies of the session's template)."""
    admin = create_engine(postgres_cluster.url)
    # New names every time: the identity service of a process is kept per database URL.
    names = [f"sharedcare_commit_{os.getpid()}_{next(_numbers)}" for _ in range(2)]
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        for name in names:
            connection.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{postgres_template}"'))
    admin.dispose()
    engines = [create_engine(postgres_cluster.url_for(name)) for name in names]
    try:
        yield engines
    finally:
        for engine in engines:
            engine.dispose()
        admin = create_engine(postgres_cluster.url)
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            for name in names:
                connection.execute(text(f'DROP DATABASE "{name}"'))
        admin.dispose()


def _one_statement_at_a_time(
    store: SqlStore,
    patient_ids: Sequence[str],
    written: Any = None,
) -> SyncReport:
    """``realtime.match_written`` as it was: no pipelined commit, states read on their own."""
    with identity_service(store.engine).transaction(store.engine, store) as work:
        return sync_patients(work, patient_ids, written)


def _writes(repo: Repository) -> None:
    """New people, a second record of one (same NHS number), a near match (a review), an
    update that keeps its place, an update that moves, a delete."""
    repo.update("Patient", "gp-a", patient("gp-a"))
    repo.update("Patient", "pas-a", patient("pas-a", given="Alex"))
    repo.update(
        "Patient",
        "gp-b",
        patient("gp-b", given="Bernard", family="Other", nhs=None, birth="1950-01-02"),
    )
    # Same name and birth date as gp-a, no NHS number, another postcode: a possible match.
    repo.update("Patient", "gp-c", patient("gp-c", nhs=None, postcode="SO1 9ZZ"))
    repo.update("Patient", "gp-a", dict(patient("gp-a"), language="cy"))
    repo.update(
        "Patient",
        "gp-b",
        patient("gp-b", given="Bernadette", family="Other", nhs=None, birth="1951-03-04"),
    )
    repo.delete("Patient", "pas-a")
    repo.update("Patient", "gp-d", patient("gp-d", given="Dora", family="New", nhs=None))


def _labels(engine: Engine) -> dict[str, str]:
    """Golden ids named by the order they first appear in the trail (the same in both)."""
    names: dict[str, str] = {}
    with engine.connect() as connection:
        for golden_id, other in connection.execute(
            text("SELECT golden_id, other_golden_id FROM identity_trail ORDER BY id")
        ):
            for g in (golden_id, other):
                if g is not None and g not in names:
                    names[g] = f"G{len(names)}"
    return names


def _snapshot(engine: Engine) -> dict[str, Any]:
    """Everything identity wrote, golden ids replaced by labels, times left out."""
    names = _labels(engine)

    def named(value: Any) -> Any:
        as_text = bytes(value).decode() if isinstance(value, bytes | memoryview) else value
        if isinstance(as_text, str):
            return _GOLDEN_ID.sub(lambda m: names.get(m.group(0), m.group(0)), as_text)
        return value

    def table(sql: str) -> list[tuple[Any, ...]]:
        with engine.connect() as connection:
            return [tuple(named(v) for v in row) for row in connection.execute(text(sql))]

    goldens = table(
        "SELECT r.id, r.version_id, r.deleted, r.content::text FROM resource r "
        "JOIN identity_golden g ON g.golden_id = r.id ORDER BY r.id"
    )
    golden_content = sorted((g[0], g[1], g[2], _without_time(g[3])) for g in goldens)
    # Every column but the row's key (``res``: the databases number their rows alike
    # only by chance).
    index = {
        t: sorted(
            table(
                f"SELECT r.id, (to_jsonb(i) - 'res')::text FROM {t} i "
                "JOIN resource r ON r.pk = i.res JOIN identity_golden g ON g.golden_id = r.id"
            )
        )
        for t in _INDEX_TABLES
    }
    return {
        "links": table(
            "SELECT source_id, source_system, source_version, golden_id, kind, band, "
            "match_weight, probability, matched_source_id, candidates, evidence, decided_by "
            "FROM identity_link ORDER BY source_id"
        ),
        "goldens": table(
            "SELECT golden_id, status, replaced_by FROM identity_golden ORDER BY golden_id"
        ),
        "golden_content": sorted(golden_content),
        "index": index,
        "reviews": table(
            "SELECT kind, source_id, golden_id, candidate_golden_id, match_weight, probability, "
            "evidence, status FROM identity_review ORDER BY id"
        ),
        "trail": table(
            "SELECT actor, action, source_id, golden_id, other_golden_id, detail "
            "FROM identity_trail ORDER BY id"
        ),
        "audit": table("SELECT interaction, outcome, agent, patient FROM audit_event ORDER BY pk"),
        "version": table("SELECT version FROM identity_state"),
    }


def _without_time(content: str) -> str:
    document = orjson.loads(content)
    document.get("meta", {}).pop("lastUpdated", None)
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS).decode()


def test_pipelined_commit_leaves_what_one_statement_at_a_time_left(
    two_databases: list[Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    context = RequestContext(user="gp-system", organisation="Y0001", role="system")
    snapshots = []
    for n, engine in enumerate(two_databases):
        store = SqlStore(engine)
        store.ensure_params()
        with monkeypatch.context() as patched:
            if n == 1:
                patched.setattr(realtime, "match_written", _one_statement_at_a_time)
            _writes(Repository(store, context))
        service = identity_service(engine)
        with engine.connect() as connection:
            # The newest trail id the process remembers is the table's (``_catch_up``).
            assert service._trail_seen == rows.last_trail_id(connection)
        snapshots.append(_snapshot(engine))
    new, old = snapshots
    assert new["reviews"], "the writes queue a review"
    assert {row[1] for row in new["trail"]} >= {"link", "review-open", "remove"}
    for part in new:
        assert new[part] == old[part], part


def test_a_failed_pipelined_commit_leaves_the_write_for_the_batch_run(
    two_databases: list[Engine], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    engine = two_databases[0]
    store = SqlStore(engine)
    store.ensure_params()
    repo = Repository(store, RequestContext(user="gp-system", organisation="Y0001", role="system"))
    repo.update("Patient", "gp-a", patient("gp-a"))  # loads the index
    # The trail's insert fails inside the pipeline, so its COMMIT never runs.
    monkeypatch.setattr(rows, "PG_INSERT_TRAIL", "INSERT INTO identity_trail_missing VALUES (%s)")
    with caplog.at_level("WARNING", logger="sharedcare.identity.realtime"):
        repo.update("Patient", "gp-b", patient("gp-b", given="Bernard", nhs=None))
    assert "real-time matching of 1 written Patient(s) failed" in caplog.text
    with engine.connect() as connection:
        assert (
            connection.scalar(
                text(
                    "SELECT count(*) FROM resource WHERE resource_type = 'Patient' AND id = 'gp-b'"
                )
            )
            == 1
        )  # the write stands
        assert (
            connection.scalar(text("SELECT count(*) FROM identity_link WHERE source_id = 'gp-b'"))
            == 0
        )
        goldens_before = connection.scalar(text("SELECT count(*) FROM identity_golden"))
    assert goldens_before == 1
    monkeypatch.undo()
    report = link_all(engine, store)
    assert report.matched == 1
    with engine.connect() as connection:
        linked: dict[str, int] = dict(
            connection.execute(text("SELECT source_id, source_version FROM identity_link")).all()
        )
    assert linked == {"gp-a": 1, "gp-b": 1}
