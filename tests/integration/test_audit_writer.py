"""Every FHIR interaction leaves a stored AuditEvent, through the group-commit audit writer.

The API server hands the AuditEvents of reads, searches and failures to an
:class:`~sharedcare.record.audit_writer.AuditWriter`
(``docs/decisions/0015-audit-group-commit.md``).
These tests hold it to its promises on both databases: every request is audited, failures
included; nothing is answered before its event is stored (a request whose event cannot be
stored fails); and what is queued is committed when the writer closes.
"""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from sharedcare.api.app import create_app
from sharedcare.config import Settings
from sharedcare.db.engine import create_engine
from sharedcare.record.audit import AuditEntry
from sharedcare.record.audit_writer import AuditUnavailable, AuditWriter
from sharedcare.record.context import RequestContext

HEADERS = {"Content-Type": "application/fhir+json", "X-Sharedcare-User": "audit-tests"}
PATIENT: dict[str, Any] = {"resourceType": "Patient", "gender": "female"}


def _audit(url: str) -> Counter[tuple[str, str]]:
    engine = create_engine(url)
    with engine.connect() as connection:
        # Not the golden records' events: identity writes those as it matches the Patients.
        rows = connection.execute(
            text(
                "SELECT interaction, outcome FROM audit_event WHERE agent != 'sharedcare:identity'"
            )
        ).all()
    engine.dispose()
    return Counter((interaction, outcome) for interaction, outcome in rows)


def test_every_request_is_audited_success_and_failure(database: str) -> None:
    with TestClient(create_app(Settings(database_url=database)), headers=HEADERS) as client:
        created = client.post("/fhir/Patient", json=PATIENT)
        assert created.status_code == 201
        rid = created.json()["id"]
        statuses = [
            client.get(f"/fhir/Patient/{rid}").status_code,
            client.get(f"/fhir/Patient/{rid}/_history/1").status_code,
            client.get("/fhir/Patient/no-such-patient").status_code,
            client.get(f"/fhir/Patient/{rid}/_history/9").status_code,
            client.get("/fhir/Patient?gender=female").status_code,
            client.put(f"/fhir/Patient/{rid}", json={**PATIENT, "id": rid, "gender": "male"}),
            client.put(f"/fhir/Patient/{rid}", json={**PATIENT, "id": "other"}).status_code,
            client.delete(f"/fhir/Patient/{rid}").status_code,
            client.get(f"/fhir/Patient/{rid}").status_code,
        ]
        statuses[5] = statuses[5].status_code
        assert statuses == [200, 200, 404, 404, 200, 200, 400, 204, 410]
        # Concurrent reads share batches; each still gets its own event.
        other = client.post("/fhir/Patient", json=PATIENT).json()["id"]
        with ThreadPoolExecutor(8) as pool:
            codes = list(
                pool.map(lambda _: client.get(f"/fhir/Patient/{other}").status_code, range(40))
            )
        assert codes == [200] * 40
    audited = _audit(database)
    assert audited[("create", "0")] == 2
    assert audited[("read", "0")] == 41
    assert audited[("vread", "0")] == 1
    assert audited[("read", "4")] == 2  # not found, then gone
    assert audited[("vread", "4")] == 1
    assert audited[("search-type", "0")] == 1
    assert audited[("update", "0")] == 1
    assert audited[("update", "4")] == 1
    assert audited[("delete", "0")] == 1
    assert sum(audited.values()) == 51


def test_the_stored_event_has_the_balp_shape(database: str) -> None:
    with TestClient(create_app(Settings(database_url=database)), headers=HEADERS) as client:
        rid = client.post("/fhir/Patient", json=PATIENT).json()["id"]
        assert client.get(f"/fhir/Patient/{rid}").status_code == 200
    engine = create_engine(database)
    with engine.connect() as connection:
        row = connection.execute(
            text("SELECT content, patient FROM audit_event WHERE interaction = 'read'")
        ).one()
    engine.dispose()
    content = row.content if isinstance(row.content, (dict)) else orjson.loads(row.content)
    assert row.patient == f"Patient/{rid}"
    assert content["resourceType"] == "AuditEvent"
    assert content["type"]["code"] == "rest"
    assert content["subtype"][0]["code"] == "read"
    assert content["action"] == "R"
    assert content["agent"][0]["who"]["identifier"]["value"] == "audit-tests"
    assert {"reference": f"Patient/{rid}"} in [e.get("what") for e in content["entity"]]


def test_a_request_whose_event_cannot_be_stored_fails(database: str) -> None:
    app = create_app(Settings(database_url=database))
    with TestClient(app, headers=HEADERS, raise_server_exceptions=False) as client:
        rid = client.post("/fhir/Patient", json=PATIENT).json()["id"]
        engine: Engine = app.state.engine
        with engine.begin() as connection:
            connection.execute(text("ALTER TABLE audit_event RENAME TO audit_event_away"))
        try:
            read = client.get(f"/fhir/Patient/{rid}")
            search = client.get("/fhir/Patient?gender=female")
        finally:
            with engine.begin() as connection:
                connection.execute(text("ALTER TABLE audit_event_away RENAME TO audit_event"))
        assert read.status_code == 500, "a read must not be answered unaudited"
        assert read.json()["resourceType"] == "OperationOutcome"
        assert "gender" not in read.text
        assert search.status_code == 500
        assert client.get(f"/fhir/Patient/{rid}").status_code == 200


def test_the_writer_commits_what_is_queued_when_it_closes(engine: Engine) -> None:
    writer = AuditWriter(engine)
    context = RequestContext(user="closing")
    futures = []
    lock = threading.Lock()

    def submit(n: int) -> None:
        future = writer.submit(context, [AuditEntry("read", "0", "Patient", f"p{n}")])
        with lock:
            futures.append(future)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(submit, range(300)))
    writer.close()
    assert all(f.done() and f.exception() is None for f in futures)
    with engine.connect() as connection:
        stored = connection.execute(
            text("SELECT count(*) FROM audit_event WHERE agent = 'closing'")
        ).scalar()
    assert stored == 300
    with pytest.raises(AuditUnavailable):
        writer.write(context, [AuditEntry("read", "0", "Patient", "late")])
    writer.close()  # idempotent


def test_the_app_flushes_the_writer_on_shutdown(database: str) -> None:
    app = create_app(Settings(database_url=database))
    context = RequestContext(user="shutdown")
    with TestClient(app):
        writer: AuditWriter = app.state.audit_writer
        futures = [
            writer.submit(context, [AuditEntry("search-type", "0", "Patient")]) for _ in range(50)
        ]
    assert all(f.done() for f in futures)
    assert _audit(database)[("search-type", "0")] == 50
