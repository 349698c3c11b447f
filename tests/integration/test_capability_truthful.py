"""``GET /fhir/metadata`` claims only what the server serves (issue 3: "a truthful
CapabilityStatement, generated from what is implemented").

Every interaction and search parameter the statement lists is exercised over HTTP: for
AuditEvent (served from the audit trail, decision 0024) every one of them, and the writes
it does not list are refused; for every other type its searches (each listed parameter,
under ``Prefer: handling=strict``, so an unserved one would be a 400) and its type-level
interactions; for Patient every interaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sharedcare.api.app import create_app
from sharedcare.config import Settings
from sharedcare.fhir.definitions import search_parameters
from tests.support.identity import without_realtime_matching

STRICT = {"Prefer": "handling=strict", "Content-Type": "application/fhir+json"}
#: A value each search parameter type accepts.
SAMPLES = {
    "number": "1",
    "date": "ge2020-01-01",
    "string": "a",
    "token": "a",
    "reference": "x1",
    "quantity": "1",
    "uri": "http://example.org/a",
}
AUDIT_SAMPLES = {"agent": ("agent:identifier", "dr.jones"), "entity": ("entity", "Patient/x1")}
ALL_INTERACTIONS = {
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
}


@pytest.fixture
def client(database: str) -> Iterator[TestClient]:
    with (
        without_realtime_matching(),
        TestClient(create_app(Settings(database_url=database)), headers=STRICT) as client,
    ):
        yield client


def _resources(client: TestClient) -> dict[str, dict[str, Any]]:
    statement = client.get("/fhir/metadata").json()
    return {r["type"]: r for r in statement["rest"][0]["resource"]}


def _interaction(client: TestClient, rtype: str, code: str, id: str) -> Any:
    """Perform one RESTful interaction on ``rtype`` (https://hl7.org/fhir/R4/http.html)."""
    body = {"resourceType": rtype, "id": id}
    if code == "read":
        return client.get(f"/fhir/{rtype}/{id}")
    if code == "vread":
        return client.get(f"/fhir/{rtype}/{id}/_history/1")
    if code == "update":
        return client.put(f"/fhir/{rtype}/{id}", json={**body, "gender": "male"})
    if code == "patch":
        return client.patch(f"/fhir/{rtype}/{id}", json=[])
    if code == "delete":
        return client.delete(f"/fhir/{rtype}/{id}")
    if code == "history-instance":
        return client.get(f"/fhir/{rtype}/{id}/_history")
    if code == "history-type":
        return client.get(f"/fhir/{rtype}/_history")
    if code == "create":
        return client.post(f"/fhir/{rtype}", json={"resourceType": rtype})
    assert code == "search-type"
    return client.get(f"/fhir/{rtype}?_count=1")


def _sample(rtype: str, param: dict[str, Any]) -> str:
    """A value ``param`` accepts; a composite's joins one per component with ``$``."""
    if param["type"] != "composite":
        return SAMPLES[param["type"]]
    components = search_parameters(rtype)[param["name"]].components
    assert components, (rtype, param["name"])
    return "$".join(SAMPLES[c.type] for c in components)


def test_audit_event_claims_exactly_what_is_served(client: TestClient) -> None:
    client.post("/fhir/Patient", json={"resourceType": "Patient"})  # leaves one event
    audit = _resources(client)["AuditEvent"]
    event_id = client.get("/fhir/AuditEvent?_count=1").json()["entry"][0]["resource"]["id"]
    claimed = {i["code"] for i in audit["interaction"]}
    assert claimed == {"read", "vread", "search-type", "create"}
    for code in sorted(ALL_INTERACTIONS):
        if code == "create":  # an AuditEvent another system sends (a valid one: type, agent…)
            sent = client.get(f"/fhir/AuditEvent/{event_id}").json()
            sent.pop("id"), sent.pop("meta", None)
            response = client.post("/fhir/AuditEvent", json=sent)
        else:
            response = _interaction(client, "AuditEvent", code, event_id)
        if code in claimed:
            assert response.status_code == (201 if code == "create" else 200), (code, response)
        else:
            assert response.status_code in {405, 404}, (code, response.status_code)
            if code != "patch":  # no PATCH route at all (not claimed for any type)
                assert response.status_code == 405, code
    assert not audit["conditionalCreate"] and not audit["conditionalUpdate"]
    assert audit["conditionalDelete"] == "not-supported" and not audit["readHistory"]
    for param in audit["searchParam"]:
        name, value = AUDIT_SAMPLES.get(param["name"], (param["name"], SAMPLES[param["type"]]))
        response = client.get(f"/fhir/AuditEvent?{name}={value}")
        assert response.status_code == 200, (param["name"], response.text)
    assert client.get("/fhir/AuditEvent?not-a-parameter=1").status_code == 400


def test_every_type_serves_the_searches_it_claims(client: TestClient) -> None:
    for rtype, resource in _resources(client).items():
        claimed = {i["code"] for i in resource["interaction"]}
        for code in {"search-type", "history-type"} & claimed:
            response = _interaction(client, rtype, code, "x1")
            assert response.status_code == 200, (rtype, code, response.text)
        if rtype == "AuditEvent":
            continue
        for param in resource["searchParam"]:
            response = client.get(
                f"/fhir/{rtype}?{param['name']}={_sample(rtype, param)}&_count=0&_total=none"
            )
            assert response.status_code == 200, (rtype, param["name"], response.text)


def test_patient_serves_every_interaction_it_claims(client: TestClient) -> None:
    patient = _resources(client)["Patient"]
    created = client.post("/fhir/Patient", json={"resourceType": "Patient"})
    assert created.status_code == 201
    pid = created.json()["id"]
    order = ["read", "vread", "update", "history-instance", "history-type", "search-type"]
    claimed = [i["code"] for i in patient["interaction"]]
    assert set(claimed) == {*order, "create", "delete"}
    for code in order:
        response = _interaction(client, "Patient", code, pid)
        assert response.status_code == 200, (code, response.text)
    assert _interaction(client, "Patient", "delete", pid).status_code == 204
