"""``Patient/{id}/$everything`` (https://hl7.org/fhir/R4/patient-operation-everything.html).

The patient and their compartment (https://hl7.org/fhir/R4/compartmentdefinition-patient.html),
with ``_type``, ``_since``, ``_count`` paging, deletions left out, and nobody else's data.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient


def _obs(oid: str, patient: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"text": "heart rate"},
        "subject": {"reference": f"Patient/{patient}"},
    }


def _put(fhir: TestClient, resources: list[dict[str, Any]]) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
            for r in resources
        ],
    }
    assert fhir.post("/fhir", json=bundle).status_code == 200


def _ids(body: dict[str, Any]) -> list[str]:
    return [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in body["entry"]]


def test_everything_is_the_patient_and_their_compartment(fhir: TestClient) -> None:
    _put(
        fhir,
        [
            {"resourceType": "Patient", "id": "a"},
            {"resourceType": "Patient", "id": "b"},
            {"resourceType": "Organization", "id": "org", "name": "GP"},
            _obs("oa1", "a"),
            _obs("oa2", "a"),
            _obs("ob1", "b"),
            {
                "resourceType": "Encounter",
                "id": "ea",
                "status": "finished",
                "class": {"code": "AMB"},
                "subject": {"reference": "Patient/a"},
                "serviceProvider": {"reference": "Organization/org"},
            },
        ],
    )
    body = fhir.get("/fhir/Patient/a/$everything").json()
    # Identity matched Patient a as it was written; its golden record links to it, so it is
    # in a's compartment (Patient.link, in the Patient CompartmentDefinition).
    [golden] = [i for i in _ids(body) if i.startswith("Patient/") and i != "Patient/a"]
    assert body["total"] == 5
    assert sorted(_ids(body)) == sorted(
        ["Encounter/ea", "Observation/oa1", "Observation/oa2", "Patient/a", golden]
    )

    typed = fhir.get("/fhir/Patient/a/$everything?_type=Observation").json()
    assert sorted(_ids(typed)) == ["Observation/oa1", "Observation/oa2"]
    with_patient = fhir.get("/fhir/Patient/a/$everything?_type=Patient,Encounter").json()
    assert sorted(_ids(with_patient)) == sorted(["Encounter/ea", "Patient/a", golden])

    first = fhir.get("/fhir/Patient/a/$everything?_count=3").json()
    second = fhir.get("/fhir/Patient/a/$everything?_count=3&_offset=3").json()
    assert (first["total"], second["total"]) == (5, 5)
    assert len(first["entry"]) == 3 and len(second["entry"]) == 2
    assert set(_ids(first)).isdisjoint(_ids(second))
    assert any(link["relation"] == "next" for link in first["link"])

    time.sleep(0.01)
    since = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    time.sleep(0.01)
    _put(fhir, [{**_obs("oa2", "a"), "status": "amended"}])
    assert fhir.delete("/fhir/Observation/oa1").status_code == 204
    changed = fhir.get(f"/fhir/Patient/a/$everything?_since={since}").json()
    assert _ids(changed) == ["Observation/oa2"]
    after_delete = fhir.get("/fhir/Patient/a/$everything").json()
    assert after_delete["total"] == 4
    assert "Observation/oa1" not in _ids(after_delete)

    assert fhir.get("/fhir/Patient/nobody/$everything").status_code == 404


def _links(body: dict[str, Any]) -> dict[str, str]:
    return {link["relation"]: link["url"].split("testserver", 1)[1] for link in body["link"]}


def _follow(fhir: TestClient, path: str, relation: str = "next") -> list[list[str]]:
    pages = []
    while True:
        body = fhir.get(path).json()
        pages.append(_ids(body))
        path = _links(body).get(relation, "")
        if not path:
            return pages


def test_pages_follow_by_cursor_and_never_shift(fhir: TestClient) -> None:
    """Paging links carry a keyset ``_cursor`` (as search's do, decision 0010): following
    ``next`` shows every resource once, ``previous`` walks back, and a resource deleted
    from a page already seen does not make the next page skip one."""
    _put(fhir, [{"resourceType": "Patient", "id": "p"}, *[_obs(f"o{i}", "p") for i in range(8)]])
    everything = fhir.get("/fhir/Patient/p/$everything").json()
    all_ids = _ids(everything)
    assert len(all_ids) == everything["total"] >= 9

    for count in (1, 2, 3, 4):
        pages = _follow(fhir, f"/fhir/Patient/p/$everything?_count={count}")
        assert [i for page in pages for i in page] == all_ids
        assert all(len(page) == count for page in pages[:-1])

    first = fhir.get("/fhir/Patient/p/$everything?_count=3").json()
    assert "_cursor=" in _links(first)["next"] and "previous" not in _links(first)
    second = fhir.get(_links(first)["next"]).json()
    assert _ids(second) == all_ids[3:6]
    back = fhir.get(_links(second)["previous"]).json()
    assert _ids(back) == all_ids[:3]

    # Delete a resource the client has already seen, then follow ``next``: nothing skipped.
    seen = _ids(second)[0]
    assert fhir.delete(f"/fhir/{seen}").status_code == 204
    third = fhir.get(_links(second)["next"]).json()
    assert _ids(third) == all_ids[6:9]
    assert third["total"] == everything["total"] - 1


def test_bad_paging_values_are_400_and_audited(fhir: TestClient) -> None:
    _put(fhir, [{"resourceType": "Patient", "id": "q"}])
    for params in ({"_cursor": "not-a-cursor"}, {"_cursor": "W10", "_offset": "2"}):
        response = fhir.get("/fhir/Patient/q/$everything", params=params)
        assert response.status_code == 400, response.text
        assert response.json()["resourceType"] == "OperationOutcome"
    failures = fhir.get("/fhir/Patient/q/AuditEvent", params={"outcome": "4"}).json()
    assert failures["total"] == 2
