"""The audit trail read through FHIR: ``GET /fhir/AuditEvent``, on SQLite and PostgreSQL.

Decision 0024: AuditEvents are served from the append-only ``audit_event`` table, searched
with R4 semantics, paged by a keyset cursor, and never written through the API. Reading
the trail is itself audited, once per read or search.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import text

from sharedcare.api.app import create_app
from sharedcare.config import Settings
from sharedcare.db.engine import create_engine, write_connection
from sharedcare.db.migrate import alembic_config, current_revision, head_revision, upgrade
from sharedcare.record.audit_search import _encode_cursor, page_statement, parse_trail_search
from sharedcare.record.context import RequestContext
from sharedcare.record.instants import to_instant
from sharedcare.record.loader import load_paths, loadable_files
from sharedcare.record.repository import Repository
from sharedcare.record.sqlstore import SqlStore
from tests.support.identity import without_realtime_matching
from tests.support.postgres import Cluster

AUDITOR = {"X-Sharedcare-User": "caldicott.guardian", "X-Sharedcare-Role": "auditor"}
CLINICIAN = {"X-Sharedcare-User": "dr.jones", "Content-Type": "application/fhir+json"}
NURSE = {"X-Sharedcare-User": "nurse.adams", "Content-Type": "application/fhir+json"}


@pytest.fixture
def client(database: str) -> Iterator[TestClient]:
    with (
        without_realtime_matching(),
        TestClient(create_app(Settings(database_url=database))) as client,
    ):
        yield client


def _patient(client: TestClient, headers: dict[str, str]) -> str:
    created = client.post(
        "/fhir/Patient", json={"resourceType": "Patient", "gender": "female"}, headers=headers
    )
    assert created.status_code == 201
    return str(created.json()["id"])


def _search(client: TestClient, query: str, **headers: str) -> dict[str, Any]:
    response = client.get(f"/fhir/AuditEvent?{query}", headers={**AUDITOR, **headers})
    assert response.status_code == 200, response.text
    return dict(response.json())


def _events(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry", [])]


def _rows(database: str, where: str = "1 = 1") -> list[Any]:
    engine = create_engine(database)
    with engine.connect() as connection:
        rows = connection.execute(
            text(f"SELECT pk, recorded, interaction, agent, patient FROM audit_event WHERE {where}")
        ).all()
    engine.dispose()
    return list(rows)


def test_events_read_and_search_in_balp_shape(client: TestClient, database: str) -> None:
    pid = _patient(client, CLINICIAN)
    assert client.get(f"/fhir/Patient/{pid}", headers=NURSE).status_code == 200

    bundle = _search(client, f"patient={pid}")
    events = _events(bundle)
    assert bundle["type"] == "searchset" and bundle["total"] == 2
    read, create = events  # newest first
    assert read["subtype"][0]["code"] == "read" and create["subtype"][0]["code"] == "create"
    assert read["type"]["code"] == "rest" and read["action"] == "R" and read["outcome"] == "0"
    assert read["agent"][0]["who"]["identifier"]["value"] == "nurse.adams"
    assert {"reference": f"Patient/{pid}"} in [e.get("what") for e in read["entity"]]
    assert read["meta"]["versionId"] == "1"
    assert bundle["entry"][0]["fullUrl"].endswith(f"/fhir/AuditEvent/{read['id']}")

    one = client.get(f"/fhir/AuditEvent/{read['id']}", headers=AUDITOR)
    assert one.status_code == 200 and one.json() == read
    assert one.headers["etag"] == 'W/"1"'
    assert client.get(f"/fhir/AuditEvent/{read['id']}/_history/1", headers=AUDITOR).json() == read
    assert client.get(f"/fhir/AuditEvent/{read['id']}/_history/2").status_code == 404
    assert client.get("/fhir/AuditEvent/999999999").status_code == 404
    assert client.get("/fhir/AuditEvent/not-a-number").status_code == 404
    posted = client.post(
        "/fhir/AuditEvent/_search",
        data={"patient": pid, "_sort": "date", "_count": "2"},
        headers=AUDITOR,
    )
    assert [e["id"] for e in _events(posted.json())] == [create["id"], read["id"]]
    compartment = client.get(f"/fhir/Patient/{pid}/AuditEvent", headers=AUDITOR).json()
    assert [e["id"] for e in _events(compartment)][-2:] == [read["id"], create["id"]]


def test_search_parameters_follow_r4(client: TestClient, database: str) -> None:
    first = _patient(client, CLINICIAN)
    second = _patient(client, NURSE)
    client.get(f"/fhir/Patient/{first}", headers=NURSE)
    client.get("/fhir/Patient/missing", headers=NURSE)  # a failure: outcome 4
    client.delete(f"/fhir/Patient/{second}", headers=NURSE)

    everything = {str(r.pk): r for r in _rows(database)}

    def ids(query: str) -> set[str]:
        # Only the events written above: each search adds its own (with the patient searched).
        found = {e["id"] for e in _events(_search(client, query + "&_count=1000"))}
        return found & set(everything)

    by_agent = {k for k, r in everything.items() if r.agent == "nurse.adams"}
    assert ids("agent:identifier=nurse.adams") == by_agent
    assert ids("agent:identifier=|nurse.adams") == by_agent
    assert ids("agent:identifier=http://other|nurse.adams") == set()
    assert ids("agent-name=NURSE") == by_agent
    assert ids("agent-name:exact=NURSE") == set()
    assert ids("agent-name:contains=adam") == by_agent
    assert ids("agent-name=nurse,dr.j") == by_agent | {
        k for k, r in everything.items() if r.agent == "dr.jones"
    }
    touched = {k for k, r in everything.items() if r.patient == f"Patient/{first}"}
    assert ids(f"patient={first}") == ids(f"patient=Patient/{first}") == touched
    assert ids(f"patient={first}&agent:identifier=nurse.adams") == touched & by_agent
    assert ids(f"entity=Patient/{first}") == touched
    assert ids("patient:missing=true") == {k for k, r in everything.items() if r.patient is None}
    deletes = {k for k, r in everything.items() if r.interaction == "delete"}
    assert ids("action=D") == ids("subtype=delete") == deletes
    assert ids("action=http://hl7.org/fhir/audit-event-action|D") == deletes
    assert ids("subtype=http://hl7.org/fhir/restful-interaction|delete,read") == {
        k for k, r in everything.items() if r.interaction in {"delete", "read"}
    }
    failed = ids("outcome=4")
    assert len(failed) == 1 and everything[failed.pop()].interaction == "read"
    assert ids("type=rest") == ids("") and ids("type=other") == set()
    some = sorted(everything, key=int)[:2]
    assert ids(f"_id={','.join(some)}") == set(some)


def test_date_prefixes_compare_recorded_with_the_value_range(
    client: TestClient, database: str
) -> None:
    _patient(client, CLINICIAN)
    _patient(client, CLINICIAN)
    rows = sorted(_rows(database), key=lambda r: (r.recorded, r.pk))
    pivot = rows[-1]
    instant = to_instant(pivot.recorded)  # millisecond precision: covers [ms, ms + 1)
    low = pivot.recorded - pivot.recorded % 1000
    high = low + 1000
    at = {str(r.pk) for r in rows if low <= r.recorded < high}

    def ids(query: str) -> set[str]:
        bundle = _search(client, f"{query}&agent:identifier=dr.jones&_count=1000")
        return {e["id"] for e in _events(bundle)}

    jones = {str(r.pk) for r in rows}
    assert ids(f"date={instant}") == ids(f"date=eq{instant}") == at
    assert ids(f"date=ge{instant}") == {str(r.pk) for r in rows if r.recorded >= low}
    assert ids(f"date=gt{instant}") == {str(r.pk) for r in rows if r.recorded >= high}
    assert ids(f"date=le{instant}") == {str(r.pk) for r in rows if r.recorded < high}
    assert ids(f"date=lt{instant}") == {str(r.pk) for r in rows if r.recorded < low}
    assert ids(f"date=ne{instant}") == jones - at
    assert ids("date=ge2000&date=lt2100") == ids("date=2000,1999-12-31T00:00:00Z,ge2001") == jones
    assert ids("date=lt2000") == set()
    bad = client.get("/fhir/AuditEvent?date=yesterday")
    assert bad.status_code == 400 and "date" in bad.json()["issue"][0]["diagnostics"]


def test_pages_are_stable_newest_first_and_complete(client: TestClient, database: str) -> None:
    for _ in range(7):
        _patient(client, CLINICIAN)
    query = "agent:identifier=dr.jones&_count=3"
    seen: list[str] = []
    bundle = _search(client, query)
    assert bundle["total"] == 7
    pages = 0
    while True:
        pages += 1
        seen += [e["id"] for e in _events(bundle)]
        _patient(client, CLINICIAN)  # new events must not shift the pages being read
        links = {link["relation"]: link["url"] for link in bundle["link"]}
        if "next" not in links:
            break
        parts = urlsplit(links["next"])
        assert dict(parse_qsl(parts.query))["agent:identifier"] == "dr.jones"
        bundle = _search(client, parts.query)
    assert pages == 3 and len(seen) == len(set(seen)) == 7
    recorded = {str(r.pk): (r.recorded, r.pk) for r in _rows(database)}
    assert [recorded[i] for i in seen] == sorted((recorded[i] for i in seen), reverse=True)

    oldest = _search(client, "agent:identifier=dr.jones&_sort=date&_count=2&_total=none")
    assert "total" not in oldest
    assert [e["id"] for e in _events(oldest)] == seen[::-1][:2]
    cursor = {link["relation"]: link["url"] for link in oldest["link"]}["next"]
    other_order = client.get(
        urlsplit(cursor).path + "?" + urlsplit(cursor).query.replace("_sort=date", "_sort=-date")
    )
    assert other_order.status_code == 400  # a cursor belongs to one order
    assert client.get("/fhir/AuditEvent?_cursor=junk").status_code == 400


def test_unknown_parameters_are_strict_or_lenient(client: TestClient) -> None:
    strict = client.get("/fhir/AuditEvent?colour=red", headers={"Prefer": "handling=strict"})
    assert strict.status_code == 400
    assert "colour" in strict.json()["issue"][0]["diagnostics"]
    lenient = client.get("/fhir/AuditEvent?colour=red&_count=5")
    assert lenient.status_code == 200
    assert "colour" not in lenient.json()["link"][0]["url"]
    for bad in ("agent=dr.jones", "outcome:text=0", "_sort=agent", "_count=5000", "_total=some"):
        response = client.get(f"/fhir/AuditEvent?{bad}")
        assert response.status_code == 400, bad
        assert response.json()["resourceType"] == "OperationOutcome"


def test_reading_the_trail_is_audited_once_per_request(client: TestClient, database: str) -> None:
    pid = _patient(client, CLINICIAN)
    for _ in range(5):
        client.get(f"/fhir/Patient/{pid}", headers=CLINICIAN)
    before = len(_rows(database))
    bundle = _search(client, f"patient={pid}&_count=100")
    assert len(bundle["entry"]) == 6
    after = _rows(database, "agent = 'caldicott.guardian'")
    assert len(_rows(database)) == before + 1  # one event, not one per event returned
    (search,) = after
    assert search.interaction == "search-type" and search.patient == f"Patient/{pid}"
    event_id = bundle["entry"][0]["resource"]["id"]
    client.get(f"/fhir/AuditEvent/{event_id}", headers=AUDITOR)
    reads = _rows(database, "agent = 'caldicott.guardian' AND interaction = 'read'")
    assert len(reads) == 1 and reads[0].patient == f"Patient/{pid}"
    # The trail's own events are in the trail, and reading them adds one more each time.
    own = _search(client, "agent:identifier=caldicott.guardian")
    assert own["total"] == 2
    assert _search(client, "agent:identifier=caldicott.guardian")["total"] == 3


def test_the_trail_never_changes_and_others_events_are_kept_beside_it(
    client: TestClient, database: str, tmp_path: Path
) -> None:
    _patient(client, CLINICIAN)
    event = _events(_search(client, "_count=1"))[0]
    eid = event["id"]
    trail_before = _search(client, "_count=1")["total"]
    forged = {"resourceType": "AuditEvent", **{k: v for k, v in event.items() if k != "meta"}}
    refused = [
        client.put(f"/fhir/AuditEvent/{eid}", json=forged, headers=CLINICIAN),  # the trail's
        client.put("/fhir/AuditEvent/123456", json={**forged, "id": "123456"}, headers=CLINICIAN),
        client.delete(f"/fhir/AuditEvent/{eid}", headers=CLINICIAN),
        client.delete("/fhir/AuditEvent/no-such-event", headers=CLINICIAN),
        client.delete("/fhir/AuditEvent?outcome=0", headers=CLINICIAN),
    ]
    for response in refused:
        assert response.status_code == 405, response.request.url
        assert response.headers["allow"] == "GET"
        assert response.json()["issue"][0]["code"] == "not-supported"
    for path in ("/fhir/AuditEvent/_history", f"/fhir/AuditEvent/{eid}/_history"):
        assert client.get(path).status_code == 405
    # Every refusal is itself in the trail, as a failure.
    failures = _search(client, "outcome=4&agent:identifier=dr.jones")
    assert failures["total"] == len(refused)

    # Another system records its own AuditEvent (IHE BALP audit source): kept as sent, in
    # the record, under an id that is never the trail's; it never changes either.
    sent = {k: v for k, v in forged.items() if k != "id"}
    posted = client.post("/fhir/AuditEvent", json=sent, headers=CLINICIAN)
    assert posted.status_code == 201, posted.text
    kept_id = posted.json()["id"]
    assert not kept_id.isdigit()
    assert client.get(f"/fhir/AuditEvent/{kept_id}").json()["agent"] == forged["agent"]
    assert client.get(f"/fhir/AuditEvent/{kept_id}/_history/1").status_code == 200
    assert client.put("/fhir/AuditEvent/pas-1", json={**sent, "id": "pas-1"}).status_code == 201
    changed = {**sent, "id": "pas-1", "outcome": "8"}
    assert client.put("/fhir/AuditEvent/pas-1", json=changed).status_code == 405
    assert client.delete(f"/fhir/AuditEvent/{kept_id}").status_code == 405
    # The trail itself gained only the events of these interactions, none of them copies.
    assert _search(client, f"_id={eid}")["total"] == 1
    assert _search(client, "_count=1")["total"] > trail_before

    def bundle(kind: str, *entries: dict[str, Any]) -> Any:
        body = {"resourceType": "Bundle", "type": kind, "entry": list(entries)}
        return client.post("/fhir", json=body, headers=CLINICIAN)

    put = {"request": {"method": "PUT", "url": f"AuditEvent/{eid}"}, "resource": forged}
    delete = {"request": {"method": "DELETE", "url": "AuditEvent?outcome=0"}}
    read = {"request": {"method": "GET", "url": f"AuditEvent/{eid}"}}
    kept = {"request": {"method": "GET", "url": f"AuditEvent/{kept_id}"}}
    search = {"request": {"method": "GET", "url": "AuditEvent?_count=2"}}
    assert bundle("transaction", put).status_code == 405
    assert bundle("transaction", delete).status_code == 405
    batch = bundle("batch", put, delete, read, kept, search).json()
    statuses = [e["response"]["status"] for e in batch["entry"]]
    assert statuses == ["405", "405", "200 OK", "200 OK", "200 OK"]
    assert batch["entry"][2]["resource"]["id"] == eid
    assert batch["entry"][3]["resource"]["id"] == kept_id
    assert len(batch["entry"][4]["resource"]["entry"]) == 2

    # `sharedcare load` may record others' AuditEvents too, but never with a trail id.
    (tmp_path / "sent.ndjson").write_text(
        json.dumps({**sent, "id": "gp-audit-1"}) + "\n" + json.dumps(forged) + "\n"
    )
    store = SqlStore(create_engine(database))
    repo = Repository(store, RequestContext(user="loader", role="system"))
    report = load_paths(repo, loadable_files([tmp_path]))
    assert report.written == 1 and len(report.problems) == 1
    store.engine.dispose()
    engine = create_engine(database)
    with engine.connect() as connection:
        stored = connection.scalars(
            text("SELECT id FROM resource WHERE resource_type = 'AuditEvent'")
        ).all()
    engine.dispose()
    assert sorted(stored) == sorted([kept_id, "pas-1", "gp-audit-1"])


@pytest.fixture(params=["sqlite", "postgresql"])
def empty(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a database with no tables yet."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    cluster: Cluster = request.getfixturevalue("postgres_cluster")
    admin = create_engine(cluster.url)
    name = f"trail_{tmp_path.name[-20:].replace('-', '_').lower()}"
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    yield cluster.url_for(name)


def test_events_stored_before_0010_are_served_and_the_migration_reverses(empty: str) -> None:
    engine = create_engine(empty)
    upgrade(engine, "0009")
    old = {  # as 0009's writer stored them: a random id in the document
        "resourceType": "AuditEvent",
        "id": "2b0c2a4e-3f59-4a57-9d2e-6c1f1d9e8a11",
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
        },
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": "read"}],
        "action": "R",
        "recorded": "2026-11-01T10:00:00.000Z",
        "outcome": "0",
        "agent": [{"who": {"identifier": {"value": "dr.old"}}, "requestor": True}],
        "source": {"observer": {"display": "sharedcare"}},
    }
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO audit_event (recorded, interaction, outcome, agent, patient, content) "
                "VALUES (1793527200000000, 'read', '0', 'dr.old', 'Patient/p1', :content)"
            ),
            {"content": json.dumps(old)},
        )
    upgrade(engine)
    engine.dispose()
    with (
        without_realtime_matching(),
        TestClient(create_app(Settings(database_url=empty))) as client,
    ):
        (event,) = _events(_search(client, "patient=p1&agent:identifier=dr.old"))
        assert event["id"] == "1" and event["agent"] == old["agent"]
        assert event["meta"] == {"versionId": "1", "lastUpdated": "2026-11-01T10:00:00.000Z"}
    engine = create_engine(empty)
    config = alembic_config()
    with write_connection(engine) as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0009")
    assert current_revision(engine) == "0009"
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    engine.dispose()


#: Searches of the trail and the index that must serve their page in order (migration 0010).
PLANS = {
    "newest first": ([], "ix_audit_event_recorded_pk"),
    "one patient": ([("patient", "p1")], "ix_audit_event_patient_recorded"),
    "one user": ([("agent:identifier", "dr.jones")], "ix_audit_event_agent_recorded"),
    "one user, oldest first, after a cursor": (
        [("agent:identifier", "dr.jones"), ("_sort", "date"), ("_cursor", "CURSOR")],
        "ix_audit_event_agent_recorded",
    ),
    "one patient within dates": (
        [("patient", "p1"), ("date", "ge2026-01-01"), ("date", "lt2026-02")],
        "ix_audit_event_patient_recorded",
    ),
}


@pytest.mark.parametrize("name", sorted(PLANS))
def test_pages_are_read_in_index_order_without_sorting(database: str, name: str) -> None:
    params, index = PLANS[name]
    cursor = _encode_cursor(
        1_790_000_000_000_000, 42, name != "one user, oldest first, after a cursor"
    )
    params = [(k, cursor if v == "CURSOR" else v) for k, v in params]
    engine = create_engine(database)
    try:
        with engine.connect() as connection:
            dialect = connection.dialect.name
            query = parse_trail_search(params, strict=True, dialect=dialect)
            sql = str(
                page_statement(query, dialect).compile(
                    connection, compile_kwargs={"literal_binds": True}
                )
            )
            if dialect == "postgresql":
                for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
                    connection.exec_driver_sql(f"SET {setting} = off")
                plan = "\n".join(r[0] for r in connection.exec_driver_sql(f"EXPLAIN {sql}"))
                assert "Sort" not in plan, plan
            else:
                rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}").all()
                plan = "\n".join(str(r[-1]) for r in rows)
                assert "TEMP B-TREE" not in plan, plan
            assert index in plan, plan
    finally:
        engine.dispose()
