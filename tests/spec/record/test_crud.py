"""Spec: create, read, vread, update, delete and conditional interactions.

https://hl7.org/fhir/R4/http.html — each case is a table row run on SQLite and PostgreSQL.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9990000018"}],
    "name": [{"family": "Testperson", "given": ["Alex"]}],
    "gender": "female",
    "birthDate": "1948-07-05",
}


def create(fhir: TestClient, resource: dict[str, Any] | None = None) -> dict[str, Any]:
    response = fhir.post("/fhir/Patient", json=resource or PATIENT)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def test_create_assigns_id_version_and_meta(fhir: TestClient) -> None:
    response = fhir.post("/fhir/Patient", json=PATIENT)
    assert response.status_code == 201
    body = response.json()
    assert body["id"]
    assert body["meta"]["versionId"] == "1"
    assert body["meta"]["lastUpdated"].endswith("Z")
    assert body["meta"]["source"] == "urn:sharedcare:source:RBD:spec-tests"
    assert response.headers["etag"] == 'W/"1"'
    assert response.headers["location"].endswith(f"/fhir/Patient/{body['id']}/_history/1")
    assert response.headers["last-modified"].endswith("GMT")


def test_read_returns_what_was_stored(fhir: TestClient) -> None:
    created = create(fhir)
    response = fhir.get(f"/fhir/Patient/{created['id']}")
    assert response.status_code == 200
    assert response.json() == created
    assert response.headers["etag"] == 'W/"1"'
    assert response.headers["content-type"].startswith("application/fhir+json")


def test_update_makes_a_new_version_and_vread_keeps_the_old(fhir: TestClient) -> None:
    created = create(fhir)
    changed = {**created, "gender": "male"}
    response = fhir.put(f"/fhir/Patient/{created['id']}", json=changed)
    assert response.status_code == 200
    assert response.json()["meta"]["versionId"] == "2"
    old = fhir.get(f"/fhir/Patient/{created['id']}/_history/1").json()
    assert old["gender"] == "female"
    assert fhir.get(f"/fhir/Patient/{created['id']}").json()["gender"] == "male"


def test_update_with_no_change_keeps_the_version(fhir: TestClient) -> None:
    created = create(fhir)
    response = fhir.put(f"/fhir/Patient/{created['id']}", json=created)
    assert response.status_code == 200
    assert response.json()["meta"]["versionId"] == "1"


def test_update_as_create_with_a_client_id(fhir: TestClient) -> None:
    response = fhir.put("/fhir/Patient/dch-12345", json={**PATIENT, "id": "dch-12345"})
    assert response.status_code == 201
    assert fhir.get("/fhir/Patient/dch-12345").json()["id"] == "dch-12345"


@pytest.mark.parametrize(
    ("if_match", "status"),
    [('W/"1"', 200), ('W/"2"', 412), ('"1"', 200), ("nonsense", 400)],
)
def test_if_match_locks_optimistically(fhir: TestClient, if_match: str, status: int) -> None:
    created = create(fhir)
    response = fhir.put(
        f"/fhir/Patient/{created['id']}",
        json={**created, "gender": "other"},
        headers={"If-Match": if_match},
    )
    assert response.status_code == status
    if status != 200:
        assert response.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize(
    ("if_match", "status"),
    [('W/"1"', 204), ('W/"2"', 412), ('"1"', 204), ("nonsense", 400)],
)
def test_if_match_locks_a_delete(fhir: TestClient, if_match: str, status: int) -> None:
    """https://hl7.org/fhir/R4/http.html#concurrency: a stale ETag refuses the delete."""
    created = create(fhir)
    response = fhir.delete(f"/fhir/Patient/{created['id']}", headers={"If-Match": if_match})
    assert response.status_code == status
    still_there = fhir.get(f"/fhir/Patient/{created['id']}").status_code == 200
    assert still_there == (status != 204)
    if status != 204:
        assert response.json()["resourceType"] == "OperationOutcome"


def test_delete_with_if_match_of_a_deleted_resource_is_412(fhir: TestClient) -> None:
    created = create(fhir)
    assert fhir.delete(f"/fhir/Patient/{created['id']}").status_code == 204
    response = fhir.delete(f"/fhir/Patient/{created['id']}", headers={"If-Match": 'W/"2"'})
    assert response.status_code == 412


def test_delete_then_read_is_gone_and_history_remains(fhir: TestClient) -> None:
    created = create(fhir)
    assert fhir.delete(f"/fhir/Patient/{created['id']}").status_code == 204
    gone = fhir.get(f"/fhir/Patient/{created['id']}")
    assert gone.status_code == 410
    assert gone.json()["issue"][0]["code"] == "deleted"
    assert fhir.get(f"/fhir/Patient/{created['id']}/_history/1").status_code == 200
    history = fhir.get(f"/fhir/Patient/{created['id']}/_history").json()
    assert [e["request"]["method"] for e in history["entry"]] == ["DELETE", "POST"]
    # Deleting again is idempotent.
    assert fhir.delete(f"/fhir/Patient/{created['id']}").status_code == 204


def test_recreate_after_delete(fhir: TestClient) -> None:
    created = create(fhir)
    fhir.delete(f"/fhir/Patient/{created['id']}")
    response = fhir.put(f"/fhir/Patient/{created['id']}", json=created)
    assert response.status_code == 201
    assert response.json()["meta"]["versionId"] == "3"


def test_conditional_create_finds_the_existing_resource(fhir: TestClient) -> None:
    created = create(fhir)
    criteria = "identifier=https://fhir.nhs.uk/Id/nhs-number|9990000018"
    response = fhir.post("/fhir/Patient", json=PATIENT, headers={"If-None-Exist": criteria})
    assert response.status_code == 200
    assert response.json()["id"] == created["id"]
    other = fhir.post(
        "/fhir/Patient", json=PATIENT, headers={"If-None-Exist": "identifier=|9990000026"}
    )
    assert other.status_code == 201


def test_conditional_create_with_two_matches_is_412(fhir: TestClient) -> None:
    create(fhir)
    create(fhir)
    response = fhir.post(
        "/fhir/Patient", json=PATIENT, headers={"If-None-Exist": "family=Testperson"}
    )
    assert response.status_code == 412


def test_conditional_update(fhir: TestClient) -> None:
    created = create(fhir)
    body = {**PATIENT, "gender": "unknown"}
    response = fhir.put("/fhir/Patient?identifier=9990000018", json=body)
    assert response.status_code == 200
    assert response.json()["id"] == created["id"]
    assert response.json()["gender"] == "unknown"
    new = fhir.put("/fhir/Patient?identifier=9990000034", json=PATIENT)
    assert new.status_code == 201


def test_conditional_delete(fhir: TestClient) -> None:
    created = create(fhir)
    assert fhir.delete("/fhir/Patient?identifier=9990000018").status_code == 204
    assert fhir.get(f"/fhir/Patient/{created['id']}").status_code == 410


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("GET", "/fhir/Patient/does-not-exist", None, 404, "not-found"),
        ("GET", "/fhir/Dragon/1", None, 404, "not-supported"),
        ("GET", "/fhir/Patient/x/_history/9", None, 404, "not-found"),
        ("POST", "/fhir/Patient", {"resourceType": "Patient", "gender": "dragon"}, 400, None),
        ("POST", "/fhir/Patient", {"resourceType": "Patient", "colour": "blue"}, 400, None),
        ("POST", "/fhir/Patient", {"resourceType": "Observation"}, 400, "invalid"),
        ("POST", "/fhir/Patient", [1, 2], 400, "invalid"),
        ("PUT", "/fhir/Patient/a", {"resourceType": "Patient", "id": "b"}, 400, "invalid"),
        ("GET", "/fhir/Patient?birthdate=not-a-date", None, 400, "invalid"),
        ("GET", "/fhir/Patient?_count=lots", None, 400, "invalid"),
    ],
)
def test_bad_requests_get_an_operation_outcome(
    fhir: TestClient, method: str, path: str, body: Any, status: int, code: str | None
) -> None:
    response = fhir.request(method, path, json=body)
    assert response.status_code == status, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    if code:
        assert outcome["issue"][0]["code"] == code


def test_validation_names_the_offending_path(fhir: TestClient) -> None:
    response = fhir.post("/fhir/Patient", json={"resourceType": "Patient", "gender": "dragon"})
    issue = response.json()["issue"][0]
    assert "Patient.gender" in (issue.get("expression") or [issue.get("diagnostics")])[0]
    assert "dragon" not in response.text


def test_malformed_json_is_400_not_500(fhir: TestClient) -> None:
    response = fhir.post("/fhir/Patient", content=b"{not json")
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["issue"][0]["diagnostics"]


def test_xml_is_415(fhir: TestClient) -> None:
    response = fhir.post(
        "/fhir/Patient", content=b"<Patient/>", headers={"Content-Type": "application/fhir+xml"}
    )
    assert response.status_code == 415


def test_validate_operation(fhir: TestClient) -> None:
    ok = fhir.post("/fhir/Patient/$validate", json=PATIENT).json()
    assert ok["issue"][0]["severity"] == "information"
    bad = fhir.post("/fhir/Patient/$validate", json={"resourceType": "Patient", "gender": 1})
    assert bad.json()["issue"][0]["severity"] == "error"


def test_capability_statement_is_truthful(fhir: TestClient) -> None:
    statement = fhir.get("/fhir/metadata").json()
    assert statement["fhirVersion"] == "4.0.1"
    resources = {r["type"]: r for r in statement["rest"][0]["resource"]}
    assert len(resources) > 140
    patient = resources["Patient"]
    assert {"read", "vread", "create", "update", "delete"} <= {
        i["code"] for i in patient["interaction"]
    }
    params = {p["name"] for p in patient["searchParam"]}
    assert {"family", "birthdate", "identifier", "general-practitioner"} <= params
