"""Bulk Data ``$export`` (https://hl7.org/fhir/uv/bulkdata/export.html) on SQLite and PostgreSQL.

Kick-off, status polling and download at system, Patient and Group level; ``_type``,
``_since`` (with deletions), file splitting, cancellation, bad parameters and lenient
handling, the access gate and audit, and jobs surviving a server restart.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text, update

from sharedcare.db.engine import create_engine, write_connection
from sharedcare.db.tables import BulkExportJob
from sharedcare.fhir.validation import has_errors, validate
from sharedcare.plugins import hookimpl, plugin_manager
from sharedcare.record.bulk import JobStore, parse_kickoff
from tests.spec.bulk.bulk_support import ASYNC, download, export, ids, kick_off, store, wait

LOINC = "http://loinc.org"


def _people(n: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"resourceType": "Organization", "id": "org1", "name": "Dorset County Hospital"},
        {"resourceType": "Practitioner", "id": "dr1", "name": [{"family": "Khan"}]},
    ]
    for i in range(n):
        out.append({"resourceType": "Patient", "id": f"p{i}", "gender": "female"})
        for k in ("a", "b"):
            out.append(
                {
                    "resourceType": "Observation",
                    "id": f"o{i}{k}",
                    "status": "final",
                    "code": {"coding": [{"system": LOINC, "code": "8867-4"}]},
                    "subject": {"reference": f"Patient/p{i}"},
                    "performer": [{"reference": "Practitioner/dr1"}],
                    "valueQuantity": {"value": 60 + i, "unit": "/min"},
                }
            )
        out.append(
            {
                "resourceType": "Encounter",
                "id": f"e{i}",
                "status": "finished",
                "class": {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                    "code": "AMB",
                },
                "subject": {"reference": f"Patient/p{i}"},
                "serviceProvider": {"reference": "Organization/org1"},
            }
        )
    return out


def _group(gid: str, members: list[str], inactive: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "resourceType": "Group",
        "id": gid,
        "type": "person",
        "actual": True,
        "member": [
            {"entity": {"reference": f"Patient/{m}"}, "inactive": m in inactive} for m in members
        ],
    }


def test_system_export_every_resource_valid_and_counted(bulk: TestClient) -> None:
    store(bulk, _people(3))
    manifest = export(bulk, "/fhir/$export")
    assert manifest["request"].endswith("/fhir/$export")
    assert manifest["requiresAccessToken"] is True
    assert manifest["error"] == []
    assert manifest["transactionTime"].endswith("Z")
    found = download(bulk, manifest)
    assert ids(found) == {
        "Organization": {"org1"},
        "Practitioner": {"dr1"},
        "Patient": {"p0", "p1", "p2"},
        "Observation": {f"o{i}{k}" for i in range(3) for k in "ab"},
        "Encounter": {"e0", "e1", "e2"},
    }
    for resources in found.values():
        for resource in resources:
            assert not has_errors(validate(resource)), resource["id"]
            assert resource["meta"]["versionId"] == "1"


def test_status_is_202_with_progress_until_a_worker_runs_it(bulk: TestClient) -> None:
    store(bulk, _people(1))
    bulk.app.state.bulk_worker.stop()  # type: ignore[attr-defined]
    status_url = kick_off(bulk, "/fhir/$export")
    for _ in range(2):
        response = bulk.get(status_url)
        assert response.status_code == 202
        assert response.headers["x-progress"] == "queued"
        assert response.headers["retry-after"] == "2"
    worker_type = type(bulk.app.state.bulk_worker)  # type: ignore[attr-defined]
    worker = worker_type(
        bulk.app.state.store,  # type: ignore[attr-defined]
        bulk.app.state.bulk_jobs,  # type: ignore[attr-defined]
        file_limit=100,
    )
    worker.start()
    try:
        assert wait(bulk, status_url).status_code == 200
    finally:
        worker.stop()


def test_patient_level_exports_the_patient_compartments_only(bulk: TestClient) -> None:
    store(bulk, [*_people(2), _group("g1", ["p0"])])
    found = ids(download(bulk, export(bulk, "/fhir/Patient/$export")))
    # Organization and Practitioner are outside the Patient compartment; Group is in it
    # (Group.member).
    assert found == {
        "Patient": {"p0", "p1"},
        "Observation": {"o0a", "o0b", "o1a", "o1b"},
        "Encounter": {"e0", "e1"},
        "Group": {"g1"},
    }


def test_group_level_exports_active_members_compartments(bulk: TestClient) -> None:
    store(bulk, [*_people(4), _group("g1", ["p0", "p2", "p3"], inactive=("p3",))])
    found = ids(download(bulk, export(bulk, "/fhir/Group/g1/$export")))
    assert found == {
        "Patient": {"p0", "p2"},
        "Observation": {"o0a", "o0b", "o2a", "o2b"},
        "Encounter": {"e0", "e2"},
        "Group": {"g1"},
    }
    only = ids(download(bulk, export(bulk, "/fhir/Group/g1/$export?_type=Observation")))
    assert only == {"Observation": {"o0a", "o0b", "o2a", "o2b"}}
    missing = bulk.get("/fhir/Group/nope/$export", headers=ASYNC)
    assert missing.status_code == 404
    assert missing.json()["resourceType"] == "OperationOutcome"


def test_type_filter_and_repeats(bulk: TestClient) -> None:
    store(bulk, _people(2))
    found = ids(download(bulk, export(bulk, "/fhir/$export?_type=Patient,Organization")))
    assert found == {"Patient": {"p0", "p1"}, "Organization": {"org1"}}
    repeated = export(bulk, "/fhir/$export?_type=Patient&_type=Encounter&_outputFormat=ndjson")
    assert ids(download(bulk, repeated)) == {"Patient": {"p0", "p1"}, "Encounter": {"e0", "e1"}}
    nothing = export(bulk, "/fhir/$export?_type=Medication")
    assert nothing["output"] == []


def test_since_returns_changes_and_deletions(bulk: TestClient) -> None:
    store(bulk, _people(2))
    time.sleep(0.01)
    since = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    time.sleep(0.01)
    changed = {"resourceType": "Patient", "id": "p0", "gender": "male"}
    assert bulk.put("/fhir/Patient/p0", json=changed).status_code == 200
    assert bulk.delete("/fhir/Observation/o1a").status_code == 204
    manifest = export(bulk, f"/fhir/$export?_since={since}")
    found = download(bulk, manifest)
    # Only what changed after _since (the identity service may add a golden-record Patient).
    assert set(found) == {"Patient"}
    patients = {r["id"]: r for r in found["Patient"]}
    assert "p0" in patients and "p1" not in patients
    assert patients["p0"]["gender"] == "male", "only the latest version is exported"
    deleted = download(bulk, manifest, "deleted")
    assert [b["entry"][0]["request"] for b in deleted["Bundle"]] == [
        {"method": "DELETE", "url": "Observation/o1a"}
    ]
    assert all(b["type"] == "transaction" for b in deleted["Bundle"])
    # Without _since, deleted resources are simply absent.
    everything = ids(download(bulk, export(bulk, "/fhir/$export?_type=Observation")))
    assert everything == {"Observation": {"o0a", "o0b", "o1b"}}


def test_large_types_are_split_across_files(make_client: Callable[..., TestClient]) -> None:
    client = make_client(bulk_export_file_limit=2)
    store(client, _people(5))
    manifest = export(client, "/fhir/$export?_type=Patient")
    assert [(o["type"], o["count"]) for o in manifest["output"]] == [
        ("Patient", 2),
        ("Patient", 2),
        ("Patient", 1),
    ]
    assert ids(download(client, manifest)) == {"Patient": {f"p{i}" for i in range(5)}}


def test_cancel_removes_the_job_and_its_files(bulk: TestClient) -> None:
    store(bulk, _people(1))
    status_url = kick_off(bulk, "/fhir/$export")
    manifest = wait(bulk, status_url).json()
    folder = bulk.app.state.bulk_jobs.folder  # type: ignore[attr-defined]
    assert any(folder.iterdir())
    response = bulk.delete(status_url)
    assert response.status_code == 202
    assert response.json()["resourceType"] == "OperationOutcome"
    gone = bulk.get(status_url)
    assert gone.status_code == 404
    assert gone.json()["issue"][0]["code"] == "not-found"
    assert bulk.get(manifest["output"][0]["url"]).status_code == 404
    assert not any(folder.iterdir()), "the files are removed"
    assert bulk.delete(status_url).status_code == 404


def test_cancel_a_queued_job(bulk: TestClient) -> None:
    bulk.app.state.bulk_worker.stop()  # type: ignore[attr-defined]
    status_url = kick_off(bulk, "/fhir/Patient/$export")
    assert bulk.delete(status_url).status_code == 202
    assert bulk.get(status_url).status_code == 404


@pytest.mark.parametrize(
    ("url", "headers", "expression"),
    [
        ("/fhir/$export", {"Prefer": "handling=strict"}, "Prefer"),
        ("/fhir/$export", {**ASYNC, "Accept": "text/html"}, "Accept"),
        ("/fhir/$export?_outputFormat=text/csv", ASYNC, "_outputFormat"),
        ("/fhir/$export?_since=last-tuesday", ASYNC, "_since"),
        ("/fhir/$export?_type=NotAType", ASYNC, "_type"),
        ("/fhir/Patient/$export?_type=Organization", ASYNC, "_type"),
        ("/fhir/$export?_elements=id", ASYNC, "_elements"),
        ("/fhir/$export?_typeFilter=Patient%3Fgender%3Dmale", ASYNC, "_typeFilter"),
        ("/fhir/$export?_count=10", ASYNC, "_count"),
    ],
)
def test_bad_kick_off_is_a_400_outcome(
    bulk: TestClient, url: str, headers: dict[str, str], expression: str
) -> None:
    response = bulk.get(url, headers=headers)
    assert response.status_code == 400, response.text
    issue = response.json()["issue"][0]
    assert issue["severity"] == "error"
    assert issue["expression"] == [expression]
    assert "content-location" not in response.headers


def _post_kick_off(client: TestClient, url: str, parameters: list[dict[str, Any]]) -> Any:
    body = {"resourceType": "Parameters", "parameter": parameters}
    return client.post(url, json=body, headers=ASYNC)


def test_post_kick_off_takes_a_parameters_body(bulk: TestClient) -> None:
    store(bulk, [*_people(2), _group("g1", ["p1"])])
    response = _post_kick_off(
        bulk,
        "/fhir/Group/g1/$export",
        [
            {"name": "_type", "valueString": "Patient,Encounter"},
            {"name": "_outputFormat", "valueString": "application/fhir+ndjson"},
            {"name": "_since", "valueInstant": "2000-01-01T00:00:00Z"},
        ],
    )
    assert response.status_code == 202, response.text
    finished = wait(bulk, response.headers["content-location"])
    assert finished.status_code == 200, finished.text
    assert ids(download(bulk, finished.json())) == {"Patient": {"p1"}, "Encounter": {"e1"}}


@pytest.mark.parametrize(
    ("url", "body", "expression"),
    [
        ("/fhir/$export", b"not json", "Parameters"),
        ("/fhir/$export", b'{"resourceType": "Patient"}', "Parameters"),
        ("/fhir/$export?_type=Patient", b"", "Parameters"),
        (
            "/fhir/$export",
            b'{"resourceType": "Parameters", "parameter": [{"valueString": "Patient"}]}',
            "Parameters.parameter[0]",
        ),
        (
            "/fhir/$export",
            b'{"resourceType": "Parameters", "parameter": [{"name": "_type"}]}',
            "Parameters.parameter[0]",
        ),
        (
            "/fhir/Patient/$export",
            b'{"resourceType": "Parameters", "parameter": '
            b'[{"name": "patient", "valueReference": {"reference": "Patient/p0"}}]}',
            "patient",
        ),
    ],
)
def test_bad_post_kick_off_is_a_400_outcome(
    bulk: TestClient, url: str, body: bytes, expression: str
) -> None:
    response = bulk.post(
        url, content=body, headers={**ASYNC, "Content-Type": "application/fhir+json"}
    )
    assert response.status_code == 400, response.text
    issue = response.json()["issue"][0]
    assert issue["expression"] == [expression]
    assert "content-location" not in response.headers


def test_lenient_handling_ignores_and_reports(bulk: TestClient) -> None:
    store(bulk, _people(1))
    manifest = export(
        bulk,
        "/fhir/$export?_type=Patient,NotAType&_elements=id",
        Prefer="respond-async, handling=lenient",
    )
    assert ids(download(bulk, manifest)) == {"Patient": {"p0"}}
    outcomes = download(bulk, manifest, "error")["OperationOutcome"]
    expressions = sorted(o["issue"][0]["expression"][0] for o in outcomes)
    assert expressions == ["_elements", "_type"]


class RefuseObservations:
    @hookimpl
    def check_access(
        self, context: Any, interaction: str, resource_type: str | None, resource_id: str | None
    ) -> str | None:
        if context.user == "no-observations" and resource_type == "Observation":
            return "this user may not see Observations"
        if context.user == "no-exports" and interaction == "operation":
            return "this user may not run operations"
        if context.user == "no-p1" and resource_type == "Patient" and resource_id == "p1":
            return "no legitimate relationship"
        return None


@pytest.fixture
def gate() -> Iterator[None]:
    plugin = RefuseObservations()
    plugin_manager().register(plugin, name="test-bulk-gate")
    try:
        yield
    finally:
        plugin_manager().unregister(plugin)


def _audit(database: str) -> list[tuple[str, str, str]]:
    engine = create_engine(database)
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT agent, outcome, content FROM audit_event ORDER BY pk")
        ).all()
    engine.dispose()
    return [(agent, outcome, str(content)) for agent, outcome, content in rows]


def test_exports_are_gated_and_audited(bulk: TestClient, gate: None, database: str) -> None:
    store(bulk, [*_people(2), _group("g1", ["p0", "p1"])])
    limited = {"X-Sharedcare-User": "no-observations"}
    manifest = export(bulk, "/fhir/$export", **limited)
    found = ids(download(bulk, manifest, headers=limited))
    assert "Observation" not in found
    assert found["Patient"] == {"p0", "p1"}
    refused = download(bulk, manifest, "error", headers=limited)
    assert refused["OperationOutcome"][0]["issue"][0]["code"] == "forbidden"

    no_p1 = {"X-Sharedcare-User": "no-p1"}
    group = export(bulk, "/fhir/Group/g1/$export", **no_p1)
    member_ids = ids(download(bulk, group, headers=no_p1))
    assert member_ids["Patient"] == {"p0"}
    assert member_ids["Observation"] == {"o0a", "o0b"}

    response = bulk.get("/fhir/$export", headers={**ASYNC, "X-Sharedcare-User": "no-exports"})
    assert response.status_code == 403
    assert response.json()["issue"][0]["code"] == "forbidden"

    # Another user cannot see the job or its files.
    mine = kick_off(bulk, "/fhir/$export?_type=Patient")
    theirs = {"X-Sharedcare-User": "someone-else"}
    assert bulk.get(mine, headers=theirs).status_code == 404
    finished = wait(bulk, mine).json()
    assert bulk.get(finished["output"][0]["url"], headers=theirs).status_code == 404
    assert bulk.delete(mine, headers=theirs).status_code == 404

    events = _audit(database)
    assert any(
        a == "no-exports" and o == "4" and "bulkdata/OperationDefinition/export" in c
        for a, o, c in events
    )
    assert any(a == "bulk-tests" and "$export kick-off" in c for a, _, c in events)
    assert any(a == "no-observations" and "file download" in c for a, _, c in events)
    assert any(a == "no-observations" and "wrote 7 resources" in c for a, _, c in events)


def test_capability_statement_advertises_export(bulk: TestClient) -> None:
    statement = bulk.get("/fhir/metadata").json()
    rest = statement["rest"][0]
    assert [op["name"] for op in rest["operation"]] == ["export"]
    by_type = {r["type"]: {op["name"] for op in r["operation"]} for r in rest["resource"]}
    assert "export" in by_type["Patient"]
    assert "export" in by_type["Group"]
    assert "export" not in by_type["Observation"]


def test_finished_job_survives_a_restart(make_client: Callable[..., TestClient]) -> None:
    first = make_client()
    store(first, _people(2))
    status_url = kick_off(first, "/fhir/$export?_type=Patient")
    manifest = wait(first, status_url).json()
    first.__exit__(None, None, None)

    second = make_client()
    again = second.get(status_url)
    assert again.status_code == 200
    assert again.json() == manifest
    assert ids(download(second, manifest)) == {"Patient": {"p0", "p1"}}


def test_job_left_running_by_a_dead_server_is_run_again(
    make_client: Callable[..., TestClient], database: str
) -> None:
    client = make_client()
    store(client, _people(2))
    client.app.state.bulk_worker.stop()  # type: ignore[attr-defined]
    status_url = kick_off(client, "/fhir/$export?_type=Encounter")
    job_id = status_url.rsplit("/", 1)[1]
    engine = create_engine(database)
    jobs = JobStore(engine, client.app.state.bulk_jobs.folder, 10**9)  # type: ignore[attr-defined]
    dead = f"{socket.gethostname()}:{2**22 + 7}:gone"  # above Linux's largest pid
    with write_connection(engine) as connection:
        connection.execute(
            update(BulkExportJob.__table__)  # type: ignore[arg-type]
            .where(BulkExportJob.__table__.c.id == job_id)
            .values(status="running", worker=dead, heartbeat_at=time.time_ns() // 1000, attempts=1)
        )
    assert client.get(status_url).status_code == 202
    client.__exit__(None, None, None)

    restarted = make_client()
    manifest = wait(restarted, status_url).json()
    assert ids(download(restarted, manifest)) == {"Encounter": {"e0", "e1"}}
    job = jobs.get(job_id)
    assert job is not None and job.attempts == 2
    engine.dispose()


def test_a_job_that_keeps_dying_is_marked_failed(bulk: TestClient, database: str) -> None:
    bulk.app.state.bulk_worker.stop()  # type: ignore[attr-defined]
    status_url = kick_off(bulk, "/fhir/$export")
    job_id = status_url.rsplit("/", 1)[1]
    engine = create_engine(database)
    jobs = JobStore(engine, bulk.app.state.bulk_jobs.folder, 10**9)  # type: ignore[attr-defined]
    with write_connection(engine) as connection:
        connection.execute(
            update(BulkExportJob.__table__)  # type: ignore[arg-type]
            .where(BulkExportJob.__table__.c.id == job_id)
            .values(status="running", worker="elsewhere:1:x", heartbeat_at=0, attempts=3)
        )
    assert jobs.claim_next("test-worker") is None
    response = bulk.get(status_url)
    assert response.status_code == 500
    assert "interrupted 3 times" in response.json()["issue"][0]["diagnostics"]
    engine.dispose()


def test_parse_kickoff_merges_repeats_and_keeps_order() -> None:
    spec = parse_kickoff("system", [("_type", "Patient,Observation"), ("_type", "Patient")])
    assert spec.types == ("Patient", "Observation")
    assert parse_kickoff("patient", []).types is None


def test_two_workers_run_each_job_once(bulk: TestClient) -> None:
    """As with ``serve --workers 2``: every process runs a worker; each job is claimed once."""
    store(bulk, _people(2))
    state = bulk.app.state  # type: ignore[attr-defined]
    state.bulk_worker.stop()
    urls = [kick_off(bulk, f"/fhir/$export?_type={t}") for t in ("Patient", "Encounter") * 2]
    assert len(set(urls)) == 4
    too_many = bulk.get("/fhir/$export", headers=ASYNC)
    assert too_many.status_code == 429, "a fifth export in progress is refused"
    assert too_many.json()["issue"][0]["code"] == "throttled"
    assert int(too_many.headers["retry-after"]) > 0
    workers = [
        type(state.bulk_worker)(state.store, state.bulk_jobs, file_limit=100) for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    try:
        manifests = [wait(bulk, url).json() for url in urls]
    finally:
        for worker in workers:
            worker.stop()
    assert [sum(o["count"] for o in m["output"]) for m in manifests] == [2] * 4
    for url in urls:
        job = state.bulk_jobs.get(url.rsplit("/", 1)[1])
        assert job.attempts == 1, "claimed by exactly one worker"


def test_finished_exports_expire(make_client: Callable[..., TestClient]) -> None:
    client = make_client(bulk_export_expiry_hours=0.5 / 3600)  # half a second
    store(client, _people(1))
    status_url = kick_off(client, "/fhir/$export?_type=Patient")
    manifest = wait(client, status_url).json()
    jobs = client.app.state.bulk_jobs  # type: ignore[attr-defined]
    job_id = status_url.rsplit("/", 1)[1]
    assert jobs.folder_for(job_id).is_dir()
    time.sleep(0.6)
    expired = client.get(status_url)
    assert expired.status_code == 404
    assert "expired" in expired.json()["issue"][0]["diagnostics"]
    assert client.get(manifest["output"][0]["url"]).status_code == 404
    assert jobs.expire() == 1
    assert not jobs.folder_for(job_id).exists()
    assert jobs.get(job_id) is None


def test_keyset_pages_lose_and_repeat_nothing(
    bulk: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages of 3 rows over resources that share one lastUpdated (one transaction)."""
    from sharedcare.record.bulk import exporter

    monkeypatch.setattr(exporter, "PAGE", 3)
    store(bulk, _people(4))
    expected = ids(download(bulk, export(bulk, "/fhir/$export")))  # primary-key pages
    assert sum(len(v) for v in expected.values()) == 2 + 4 * 4
    typed = ids(download(bulk, export(bulk, "/fhir/$export?_type=Patient,Observation")))
    assert typed == {"Patient": expected["Patient"], "Observation": expected["Observation"]}
    since = download(bulk, export(bulk, "/fhir/$export?_since=2020-01-01T00:00:00Z"))
    assert ids(since) == expected
    assert sum(len(v) for v in since.values()) == 18, "no resource twice"
    patients = ids(download(bulk, export(bulk, "/fhir/Patient/$export")))
    assert patients == {t: expected[t] for t in ("Patient", "Observation", "Encounter")}
