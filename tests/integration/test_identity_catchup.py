"""Patients a crash left unlinked are linked when the server starts (and the index is
loaded then, not at the first Patient write), on SQLite and PostgreSQL.

A Patient whose real-time match did not run (the process died between the write's commit
and its match, decision 0020) is simulated by writing it with real-time matching off
(:func:`tests.support.identity.without_realtime_matching`).
"""

from __future__ import annotations

import time
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, select

from sharedcare.api.app import create_app
from sharedcare.config import Settings
from sharedcare.db.tables import IdentityGolden, IdentityLink, Resource
from sharedcare.identity.batch import link_all, sync_patients
from sharedcare.identity.catchup import catch_up, find_unlinked
from sharedcare.identity.service import IdentityService, SourcePatient, identity_service
from sharedcare.record.context import RequestContext
from sharedcare.record.instants import now_us
from sharedcare.record.repository import Repository
from sharedcare.record.sqlstore import SqlStore
from tests.integration.test_identity_realtime import _person, active_goldens, links, patient
from tests.support.identity import without_realtime_matching
from tests.support.server import serving

GP = {"X-Sharedcare-User": "gp-system", "X-Sharedcare-Organisation": "Y0001"}


def _versions(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        return dict(
            connection.execute(
                select(Resource.id, Resource.version_id).where(
                    Resource.resource_type == "Patient", Resource.deleted.is_(False)
                )
            ).all()
        )


def test_a_patient_committed_without_a_match_is_linked_after_a_restart(database: str) -> None:
    settings = Settings(database_url=database)
    with TestClient(create_app(settings), headers=GP) as client:
        app: Any = client.app
        app.state.identity_warmup.join()  # its own start-up work done
        # Linked as written, then changed and deleted while matching was not running.
        assert client.put("/fhir/Patient/changed", json=patient("changed")).status_code == 201
        other = patient("gone", given="Maria", family="Other", nhs="9434765870")
        assert client.put("/fhir/Patient/gone", json=other).status_code == 201
        engine: Engine = app.state.engine
        linked_before = links(engine)
        with without_realtime_matching():
            assert client.put("/fhir/Patient/new", json=patient("new")).status_code == 201
            moved = patient("changed", given="Alexandra", postcode="DT1 1AA")
            assert client.put("/fhir/Patient/changed", json=moved).status_code == 200
            assert client.delete("/fhir/Patient/gone").status_code == 204
        assert set(find_unlinked(engine)) == {"new", "changed", "gone"}
        assert "new" not in links(engine) and links(engine)["changed"][1] == 1
        identity_service(engine)._matcher = None  # the process's index goes with it
    assert set(linked_before) == {"changed", "gone"}

    with TestClient(create_app(settings), headers=GP) as client:  # the restart
        app = client.app
        app.state.identity_warmup.join()
        report = app.state.identity_warmup.report
        assert (report.found, report.placed, report.removed) == (3, 2, 1)
        engine = app.state.engine
        found = links(engine)
        assert set(found) == {"new", "changed"}
        assert found["changed"][1] == 2  # linked at its current version
        assert found["new"][0] == found["changed"][0]  # the same person: one golden record
        assert find_unlinked(engine) == []
        assert client.get(f"/fhir/Patient/{found['new'][0]}").status_code == 200


def test_the_index_is_loaded_at_start_and_the_first_write_does_not_rebuild(
    database: str,
) -> None:
    settings = Settings(database_url=database)
    with TestClient(create_app(settings), headers=GP) as client:
        app: Any = client.app
        app.state.identity_warmup.join()  # its own start-up work done
        assert client.put("/fhir/Patient/a", json=patient("a")).status_code == 201
        identity_service(app.state.engine)._matcher = None  # as after a restart
    with TestClient(create_app(settings), headers=GP) as client:
        app = client.app
        app.state.identity_warmup.join()
        assert app.state.identity_warmup.report.warmed
        service = identity_service(app.state.engine)
        loaded = service.last_rebuild_seconds
        assert client.put("/fhir/Patient/b", json=patient("b")).status_code == 201
        # Matched against the index loaded at start: not rebuilt by the first write.
        assert service.last_rebuild_seconds is loaded
        found = links(app.state.engine)
        assert found["a"][0] == found["b"][0]


def test_an_index_warmed_before_another_process_changed_identity_catches_up(
    database: str,
) -> None:
    engine = create_engine(database)
    store = SqlStore(engine)
    try:
        warmed, other = IdentityService(), IdentityService()  # two processes' indexes
        assert warmed.warm(engine)
        assert not warmed.warm(engine)  # loaded already
        repo = Repository(store, RequestContext.system())
        with without_realtime_matching():
            repo.update("Patient", "x", patient("x"))
            repo.update("Patient", "y", patient("y"))
        with other.transaction(engine, store) as work:  # the other process links "x"
            sync_patients(work, ["x"])
        rebuilt = warmed.last_rebuild_seconds
        with warmed.transaction(engine, store) as work:
            stored = store.read(work.connection, "Patient", "y")
            assert stored is not None
            (decision,) = work.place([SourcePatient("y", 1, stored.json())])
        assert warmed.last_rebuild_seconds == rebuilt  # caught up, not rebuilt
        assert decision.golden_id == links(engine)["x"][0]  # it saw the other's change
    finally:
        engine.dispose()


def test_workers_starting_together_link_each_patient_once(database: str) -> None:
    engine = create_engine(database)
    store = SqlStore(engine)
    people, records = 6, 2
    try:
        repo = Repository(store, RequestContext.system())
        with without_realtime_matching():
            for record in range(records):
                for n in range(people):
                    resource = _person(n, record)
                    repo.update("Patient", resource["id"], resource)
        unlinked = set(find_unlinked(engine))
        assert len(unlinked) == people * records
        with serving(database, workers=2):
            deadline = time.monotonic() + 60
            while find_unlinked(engine) and time.monotonic() < deadline:
                time.sleep(0.2)
        found = links(engine)
        assert set(found) == unlinked
        versions = _versions(engine)
        assert all(found[s][1] == versions[s] for s in unlinked)
        goldens = {n: {found[f"p{n}-r{r}"][0] for r in range(records)} for n in range(people)}
        assert all(len(g) == 1 for g in goldens.values()), goldens
        assert active_goldens(engine) == {g.pop() for g in goldens.values()}
        with engine.connect() as connection:
            assert connection.scalar(select(IdentityGolden.golden_id).limit(1)) is not None
            linked = connection.scalars(select(IdentityLink.source_id)).all()
        assert len(linked) == len(set(linked))
        report = link_all(engine, store)
        assert (report.matched, report.removed) == (0, 0)
        assert catch_up(engine, store).found == 0
    finally:
        engine.dispose()


def test_a_backlog_larger_than_a_crash_leaves_is_left_to_the_batch_link(database: str) -> None:
    engine = create_engine(database)
    store = SqlStore(engine)
    try:
        repo = Repository(store, RequestContext.system())
        with without_realtime_matching():
            for n in range(3):
                given = ["Ann", "Bea", "Cat"][n]
                repo.update("Patient", f"b{n}", patient(f"b{n}", given=given, nhs=None))
        report = catch_up(engine, store, limit=2)
        assert report.too_many and report.found == 0
        assert links(engine) == {}  # nothing linked behind the operator's back
        report = catch_up(engine, store, limit=3)
        assert not report.too_many and report.found == 3
        assert set(links(engine)) == {"b0", "b1", "b2"}
    finally:
        engine.dispose()


def test_only_patients_written_before_the_worker_started_are_caught_up(database: str) -> None:
    engine = create_engine(database)
    store = SqlStore(engine)
    try:
        repo = Repository(store, RequestContext.system())
        with without_realtime_matching():
            repo.update("Patient", "early", patient("early", given="Ann", nhs=None))
            started = now_us()
            repo.update("Patient", "late", patient("late", given="Bea", nhs=None))
        # "late" was written after the start: this process would have matched it live.
        assert catch_up(engine, store, before_us=started).found == 1
        assert set(links(engine)) == {"early"}
    finally:
        engine.dispose()
