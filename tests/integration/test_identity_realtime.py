"""Real-time matching of Patients written through the FHIR API, bundles and ``sharedcare load``
(decision 0020), on SQLite and PostgreSQL: linked as they are written, re-matched on
update, removed on delete, golden records never matched as sources, and a consistent
index after concurrent writes through two worker processes of the real server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, func, select
from typer.testing import CliRunner

from sharedcare.api.app import create_app
from sharedcare.cli.main import app as cli
from sharedcare.config import Settings
from sharedcare.db.tables import (
    AuditRecord,
    IdentityGolden,
    IdentityLink,
    IdentityState,
    IdentityTrail,
    Resource,
)
from sharedcare.identity import realtime
from sharedcare.identity import store as rows
from sharedcare.identity.batch import link_all
from sharedcare.identity.golden import GOLDEN_SOURCE
from sharedcare.identity.nhs_number import NHS_NUMBER_SYSTEM
from sharedcare.identity.service import IdentityService
from sharedcare.ingest.hl7v2.mapping import map_message
from sharedcare.ingest.stages import Stage
from sharedcare.ingest.store import FeedRegistry, Incoming, store_messages
from sharedcare.ingest.writer import ToWrite, write_messages
from sharedcare.plugins import plugin_manager
from sharedcare.record.context import RequestContext
from sharedcare.record.repository import Repository
from sharedcare.record.sqlstore import SqlStore
from tests.integration.test_identity_persistence import A28
from tests.support.server import serving

NHS = "9434765919"
OTHER_NHS = "9434765870"
GP = {"X-Sharedcare-User": "gp-system", "X-Sharedcare-Organisation": "Y0001"}


def patient(
    pid: str | None = None,
    *,
    given: str = "Alexandra",
    family: str = "Tester",
    birth: str = "1965-04-12",
    nhs: str | None = NHS,
    postcode: str = "BH1 1AA",
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "name": [{"use": "official", "family": family, "given": [given]}],
        "gender": "female",
        "birthDate": birth,
        "address": [{"use": "home", "line": ["1 High Street"], "postalCode": postcode}],
    }
    if pid is not None:
        resource["id"] = pid
    if nhs:
        resource["identifier"] = [{"system": NHS_NUMBER_SYSTEM, "value": nhs}]
    return resource


@pytest.fixture
def client(database: str) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(database_url=database))) as client:
        yield client


def _state(client: TestClient) -> tuple[Engine, SqlStore]:
    app: Any = client.app
    return app.state.engine, app.state.store


def links(engine: Engine) -> dict[str, tuple[str, int]]:
    """Golden id and matched version of every linked source."""
    with engine.connect() as connection:
        return {
            r.source_id: (r.golden_id, r.source_version)
            for r in connection.execute(
                select(IdentityLink.source_id, IdentityLink.golden_id, IdentityLink.source_version)
            )
        }


def active_goldens(engine: Engine) -> set[str]:
    with engine.connect() as connection:
        return set(
            connection.scalars(
                select(IdentityGolden.golden_id).where(IdentityGolden.status == "active")
            )
        )


def seealso(client: TestClient, golden_id: str) -> set[str]:
    golden = client.get(f"/fhir/Patient/{golden_id}").json()
    assert golden["meta"]["source"] == GOLDEN_SOURCE
    return {
        link["other"]["reference"].removeprefix("Patient/")
        for link in golden.get("link", [])
        if link["type"] == "seealso"
    }


def ingest(engine: Engine, store: SqlStore, text: str) -> None:
    stored = store_messages(
        engine,
        [Incoming("hl7v2", "PAS", "RBD", "C1", "ADT", text.encode(), Stage.MAPPED)],
        FeedRegistry(),
    )
    items = [ToWrite(stored[0].message_id, stored[0].feed, map_message(text.encode()))]
    assert all(o.stage == "written" for o in write_messages(engine, store, items))


def test_posted_patient_joins_the_golden_record_of_an_hl7_patient(client: TestClient) -> None:
    engine, store = _state(client)
    ingest(engine, store, A28)
    [(hl7_source, (golden_id, _))] = links(engine).items()

    response = client.post("/fhir/Patient", json=patient(given="Alex"), headers=GP)
    assert response.status_code == 201
    gp_source = response.json()["id"]
    # Linked when the response came back, with no batch run.
    assert links(engine)[gp_source] == (golden_id, 1)
    assert seealso(client, golden_id) == {hl7_source, gp_source}
    assert link_all(engine, store).matched == 0
    # The ingest writer matched its own Patient once; the hook did not match it again.
    with engine.connect() as connection:
        actions = list(
            connection.scalars(
                select(IdentityTrail.action).where(IdentityTrail.source_id == hl7_source)
            )
        )
    assert actions == ["link"]


def test_transaction_bundle_with_two_records_of_one_person_gives_one_golden(
    client: TestClient,
) -> None:
    engine, _ = _state(client)
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{n}0000000-0000-4000-8000-000000000000",
                "resource": patient(given=given, postcode=postcode),
                "request": {"method": "POST", "url": "Patient"},
            }
            for n, given, postcode in ((1, "Alexandra", "BH1 1AA"), (2, "Alex", "BH2 2BB"))
        ],
    }
    response = client.post("/fhir", json=bundle, headers=GP)
    assert response.status_code == 200
    ids = [e["response"]["location"].split("/")[1] for e in response.json()["entry"]]
    found = links(engine)
    assert set(found) == set(ids)
    assert found[ids[0]][0] == found[ids[1]][0]
    assert active_goldens(engine) == {found[ids[0]][0]}


def test_an_update_of_identity_fields_rematches_and_a_delete_unlinks(client: TestClient) -> None:
    engine, store = _state(client)
    for pid in ("gp-a", "gp-b"):
        assert client.put(f"/fhir/Patient/{pid}", json=patient(pid), headers=GP).status_code == 201
    first = links(engine)
    assert first["gp-a"][0] == first["gp-b"][0]

    # gp-b was a mistake: it is someone else. The update moves it to a golden of its own.
    other = patient("gp-b", given="Zed", family="Else", birth="1990-01-01", nhs=OTHER_NHS)
    assert client.put("/fhir/Patient/gp-b", json=other, headers=GP).status_code == 200
    second = links(engine)
    assert second["gp-b"][1] == 2
    assert second["gp-b"][0] != second["gp-a"][0]
    assert seealso(client, second["gp-a"][0]) == {"gp-a"}
    assert seealso(client, second["gp-b"][0]) == {"gp-b"}
    with engine.connect() as connection:
        relinks = connection.scalar(
            select(func.count()).where(
                IdentityTrail.action == "relink", IdentityTrail.source_id == "gp-b"
            )
        )
    assert relinks == 1

    # An update that leaves identity fields alone keeps the golden record.
    moved = {**other, "telecom": [{"system": "phone", "value": "01202 000000"}]}
    assert client.put("/fhir/Patient/gp-b", json=moved, headers=GP).status_code == 200
    assert links(engine)["gp-b"] == (second["gp-b"][0], 3)

    # A delete takes it out of the index at once; its golden record has no sources left.
    assert client.delete("/fhir/Patient/gp-b", headers=GP).status_code == 204
    assert "gp-b" not in links(engine)
    assert second["gp-b"][0] not in active_goldens(engine)
    assert client.get(f"/fhir/Patient/{second['gp-b'][0]}").json()["active"] is False
    assert link_all(engine, store).removed == 0


def test_a_golden_record_is_never_matched_as_a_source(client: TestClient) -> None:
    engine, store = _state(client)
    client.put("/fhir/Patient/gp-a", json=patient("gp-a"), headers=GP)
    [(golden_id, _)] = links(engine).values()
    golden = client.get(f"/fhir/Patient/{golden_id}").json()
    # Written back through the API (an administrator's correction, say): still no source.
    golden["telecom"] = [{"system": "phone", "value": "01202 000000"}]
    assert client.put(f"/fhir/Patient/{golden_id}", json=golden).status_code == 200
    assert set(links(engine)) == {"gp-a"}
    assert link_all(engine, store).matched == 0
    assert set(links(engine)) == {"gp-a"}
    assert active_goldens(engine) == {golden_id}


def test_conditional_writes_by_nhs_number_never_land_on_the_golden_record(
    client: TestClient,
) -> None:
    engine, _ = _state(client)
    criteria = f"identifier={NHS_NUMBER_SYSTEM}|{NHS}"
    created = client.put(f"/fhir/Patient?{criteria}", json=patient(), headers=GP)
    assert created.status_code == 201
    source = created.json()["id"]
    [(golden_id, _)] = links(engine).values()
    # The golden record carries the same NHS number, but the search finds the source only.
    assert client.get(f"/fhir/Patient?{criteria}").json()["total"] == 2
    updated = client.put(f"/fhir/Patient?{criteria}", json=patient(given="Alex"), headers=GP)
    assert (updated.status_code, updated.json()["id"]) == (200, source)
    again = client.post("/fhir/Patient", json=patient(), headers={**GP, "If-None-Exist": criteria})
    assert (again.status_code, again.json()["id"]) == (200, source)
    assert links(engine) == {source: (golden_id, 2)}


def test_a_write_whose_matching_did_not_run_is_linked_by_the_batch_run(
    client: TestClient,
) -> None:
    engine, store = _state(client)
    manager = plugin_manager()
    manager.unregister(realtime)  # as if the process stopped between commit and matching
    try:
        assert client.put("/fhir/Patient/gp-a", json=patient("gp-a")).status_code == 201
    finally:
        manager.register(realtime, name="sharedcare.identity.realtime")
    assert links(engine) == {}
    report = link_all(engine, store)
    assert report.matched == 1
    assert set(links(engine)) == {"gp-a"}


def test_sharedcare_load_matches_as_it_writes(database: str, tmp_path: Path) -> None:
    lines = [patient(f"ld-{n}", postcode=f"BH{n} 1AA") for n in range(3)]
    lines.append(patient("ld-x", given="Zed", family="Else", birth="1990-01-01", nhs=OTHER_NHS))
    path = tmp_path / "patients.ndjson"
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in lines))
    result = CliRunner().invoke(cli, ["load", str(path), "--database", database])
    assert result.exit_code == 0, result.output
    engine = create_engine(database)
    try:
        found = links(engine)
        assert set(found) == {"ld-0", "ld-1", "ld-2", "ld-x"}
        assert len({found[f"ld-{n}"][0] for n in range(3)}) == 1
        assert len(active_goldens(engine)) == 2
    finally:
        engine.dispose()


def test_writes_waiting_their_turn_are_matched_in_one_transaction(database: str) -> None:
    engine = create_engine(database)
    store = SqlStore(engine)
    repo = Repository(store, RequestContext(user="gp-system", organisation="Y0001"))
    group = realtime._group_of(store)
    try:
        # Hold the turn, as a request being matched would, while two writes queue behind it.
        group._turn.acquire()
        try:
            writers = [
                threading.Thread(target=repo.update, args=("Patient", pid, patient(pid)))
                for pid in ("q1", "q2")
            ]
            for writer in writers:
                writer.start()
            deadline = time.monotonic() + 60
            while len(group._queue) < 2:
                assert time.monotonic() < deadline, "the writes did not queue"
                time.sleep(0.01)
            with engine.connect() as connection:
                before = connection.scalar(select(IdentityState.version))
        finally:
            group._turn.release()
        for writer in writers:
            writer.join(timeout=60)
        with engine.connect() as connection:
            after = connection.scalar(select(IdentityState.version))
        assert before is not None
        assert after == before + 1  # one identity transaction for both
        found = links(engine)
        assert set(found) == {"q1", "q2"} and found["q1"][0] == found["q2"][0]
    finally:
        engine.dispose()


# -- two worker processes of the real server ---------------------------------------------------


def _nhs(n: int) -> str:
    """A valid NHS number (modulus 11) for person ``n``."""
    base = 943_470_000 + n * 7
    while True:
        digits = str(base)
        check = 11 - sum(int(d) * (10 - i) for i, d in enumerate(digits)) % 11
        if check != 10:
            return digits + str(0 if check == 11 else check)
        base += 1


GIVEN = ["Ada", "Bram", "Cleo", "Dev", "Esme", "Fionn", "Gita", "Huw", "Ines", "Jago"]
FAMILY = ["Ashdown", "Blyth", "Corfe", "Durnford", "Eype", "Fontmell", "Gussage", "Hinton"]


def _person(n: int, record: int) -> dict[str, Any]:
    return patient(
        f"p{n}-r{record}",
        given=GIVEN[n % len(GIVEN)],
        family=FAMILY[n % len(FAMILY)] + ("" if n < len(FAMILY) else f"-{n}"),
        birth=f"19{40 + n:02d}-03-1{n % 9}",
        nhs=_nhs(n),
        postcode=f"DT{n} {record}AB",
    )


def test_concurrent_writes_through_two_workers_leave_a_consistent_index(database: str) -> None:
    people, records = 12, 3
    with serving(database, workers=2) as (_, base):

        def write(job: tuple[int, int]) -> int:
            n, record = job
            resource = _person(n, record)
            # A connection of its own per request, so the requests spread over both workers.
            with httpx.Client(base_url=base, timeout=60, headers=GP) as http:
                response = http.put(f"/fhir/Patient/{resource['id']}", json=resource)
                if n % 4 == 0 and record == 0:  # some are deleted again straight away
                    http.delete(f"/fhir/Patient/{resource['id']}")
                return response.status_code

        jobs = [(n, r) for r in range(records) for n in range(people)]
        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(write, jobs))
        assert set(statuses) == {201}

    engine = create_engine(database)
    try:
        deleted = {f"p{n}-r0" for n in range(0, people, 4)}
        live = {f"p{n}-r{r}" for n, r in jobs} - deleted
        with engine.connect() as connection:
            versions = dict(
                connection.execute(
                    select(Resource.id, Resource.version_id).where(
                        Resource.resource_type == "Patient", Resource.id.in_(sorted(live))
                    )
                ).all()
            )
        found = links(engine)
        # Every live source is linked at its current version; the deleted ones are not.
        assert set(found) == live
        assert all(found[s][1] == versions[s] for s in live)
        # One golden record per person, listing exactly that person's live sources.
        client_goldens = {}
        for n in range(people):
            goldens = {found[s][0] for s in live if s.startswith(f"p{n}-")}
            assert len(goldens) == 1, (n, goldens)
            client_goldens[n] = goldens.pop()
        assert active_goldens(engine) == set(client_goldens.values())
        store = SqlStore(engine)
        repo = Repository(store, RequestContext.system())
        for n, golden_id in client_goldens.items():
            golden = repo.read("Patient", golden_id).json()
            listed = {
                link["other"]["reference"].removeprefix("Patient/") for link in golden["link"]
            }
            assert listed == {s for s in live if s.startswith(f"p{n}-")}
        # A fresh index rebuilt from the tables agrees, and the batch run finds nothing to do.
        fresh = IdentityService()
        with engine.connect() as connection:
            fresh.rebuild(connection)
        assert all(fresh.golden_of(s) == found[s][0] for s in live)
        report = link_all(engine, store)
        assert (report.matched, report.removed) == (0, 0)
    finally:
        engine.dispose()


def test_patient_states_give_version_deletion_and_linked_version(client: TestClient) -> None:
    """The one statement a real-time match reads before deciding what to place."""
    engine, _ = _state(client)
    assert client.put("/fhir/Patient/gp-a", json=patient("gp-a")).status_code == 201
    manager = plugin_manager()
    manager.unregister(realtime)  # gp-a's second version and gp-b are not matched
    try:
        assert client.put("/fhir/Patient/gp-a", json=patient("gp-a", given="Alex")).is_success
        assert client.put("/fhir/Patient/gp-b", json=patient("gp-b", nhs=None)).is_success
        assert client.delete("/fhir/Patient/gp-b").is_success
    finally:
        manager.register(realtime, name="sharedcare.identity.realtime")
    with engine.connect() as connection:
        states = rows.patient_states(connection, ["gp-a", "gp-b", "absent"])
    assert states == {
        "gp-a": rows.PatientState(version=2, deleted=False, linked_version=1),
        "gp-b": rows.PatientState(version=2, deleted=True, linked_version=None),
    }


def test_a_new_golden_record_is_created_at_version_one_with_its_audit_event(
    client: TestClient,
) -> None:
    """A golden id handed out in the transaction is written without reading it first."""
    engine, _ = _state(client)
    assert client.put("/fhir/Patient/gp-a", json=patient("gp-a")).status_code == 201
    ((golden_id, _),) = links(engine).values()
    with engine.connect() as connection:
        stored = connection.execute(
            select(Resource.version_id, Resource.deleted).where(
                Resource.resource_type == "Patient", Resource.id == golden_id
            )
        ).one()
        audits = connection.execute(
            select(AuditRecord.interaction).where(AuditRecord.patient == f"Patient/{golden_id}")
        ).all()
    assert (stored.version_id, stored.deleted) == (1, False)
    assert [a.interaction for a in audits] == ["create"]
