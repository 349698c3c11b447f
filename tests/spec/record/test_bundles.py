"""Spec: batch and transaction Bundles posted to the base URL.

https://hl7.org/fhir/R4/http.html#transaction — the processing rules
(https://hl7.org/fhir/R4/http.html#trules: order DELETE, POST, PUT, GET; ``urn:uuid:``
resolution; conditional references; all-or-nothing) and the batch rules
(https://hl7.org/fhir/R4/http.html#brules: independent entries, one outcome each). Each case
is a table row run on SQLite and PostgreSQL; what the server does is described in
docs/reference/bundles.md.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response

NHS = "https://fhir.nhs.uk/Id/nhs-number"
URN_P = "urn:uuid:6a2f1f7e-8c3b-4a8e-9f1e-0b1c2d3e4f50"
URN_Q = "urn:uuid:6a2f1f7e-8c3b-4a8e-9f1e-0b1c2d3e4f51"
URN_O = "urn:uuid:6a2f1f7e-8c3b-4a8e-9f1e-0b1c2d3e4f52"
NOT_GOLDEN = "_tag:not=https://sharedcare.nhs.uk/CodeSystem/identity|golden"
URN_MISSING = "urn:uuid:00000000-0000-4000-8000-000000000000"


def patient(nhs: str, **more: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": NHS, "value": nhs}],
        "name": [{"family": "Testperson", "given": ["Alex"]}],
        "gender": "female",
        "birthDate": "1948-07-05",
        **more,
    }


def observation(**more: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        **more,
    }


def entry(
    method: str,
    url: str,
    resource: dict[str, Any] | None = None,
    full_url: str | None = None,
    **request: Any,
) -> dict[str, Any]:
    """One Bundle.entry; ``request`` adds ifNoneExist, ifMatch and the like."""
    item: dict[str, Any] = {"request": {"method": method, "url": url, **request}}
    if resource is not None:
        item["resource"] = resource
    if full_url is not None:
        item["fullUrl"] = full_url
    return item


def post_bundle(fhir: TestClient, kind: str, *entries: dict[str, Any]) -> Response:
    body = {"resourceType": "Bundle", "type": kind, "entry": list(entries)}
    response: Response = fhir.post("/fhir", json=body)
    return response


def ok_bundle(fhir: TestClient, kind: str, *entries: dict[str, Any]) -> list[dict[str, Any]]:
    """Post a bundle that must succeed; its response entries."""
    response = post_bundle(fhir, kind, *entries)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["resourceType"] == "Bundle"
    assert body["type"] == f"{kind}-response"
    assert len(body["entry"]) == len(entries)
    return list(body["entry"])


def put_patient(fhir: TestClient, id: str, nhs: str) -> dict[str, Any]:
    response = fhir.put(f"/fhir/Patient/{id}", json=patient(nhs, id=id))
    assert response.status_code == 201, response.text
    return dict(response.json())


def search_ids(fhir: TestClient, query: str) -> list[str]:
    """Ids a search finds, leaving out the identity service's golden Patients."""
    if query.startswith("Patient"):
        query += ("&" if "?" in query else "?") + NOT_GOLDEN
    response = fhir.get(f"/fhir/{query}")
    assert response.status_code == 200, response.text
    return [e["resource"]["id"] for e in response.json().get("entry", [])]


def history_size(fhir: TestClient) -> int:
    response = fhir.get("/fhir/_history?_count=1000")
    assert response.status_code == 200, response.text
    return len(response.json().get("entry", []))


def audit_count(fhir: TestClient, query: str) -> int:
    """AuditEvents of this client's interactions (not the identity service's) ``query`` finds."""
    response = fhir.get(f"/fhir/AuditEvent?{query}&agent-name=spec-tests&_count=1")
    assert response.status_code == 200, response.text
    return int(response.json()["total"])


def id_of(response_entry: dict[str, Any]) -> str:
    """The id in a response entry's ``Type/id/_history/n`` location."""
    return str(response_entry["response"]["location"].split("/")[1])


def assert_outcome(response: Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["severity"] == "error"
    if code:
        assert outcome["issue"][0]["code"] == code
    return dict(outcome)


# -- transaction: responses, order, urn:uuid ---------------------------------------------


def test_transaction_response_has_one_entry_per_request_in_order(fhir: TestClient) -> None:
    """https://hl7.org/fhir/R4/http.html#transaction-response: status, location, etag and
    lastModified for every entry, in the order of the request."""
    put_patient(fhir, "old-1", "9990000042")
    put_patient(fhir, "upd-1", "9990000050")
    responses = ok_bundle(
        fhir,
        "transaction",
        entry("GET", "Patient?identifier=9990000018"),
        entry("PUT", "Patient/upd-1", patient("9990000050", id="upd-1", gender="male")),
        entry("POST", "Patient", patient("9990000018"), URN_P),
        entry("DELETE", "Patient/old-1"),
        entry("PUT", "Patient/new-1", patient("9990000069", id="new-1")),
    )
    statuses = [e["response"]["status"] for e in responses]
    assert statuses == ["200 OK", "200 OK", "201 Created", "204 No Content", "201 Created"]
    created = responses[2]["response"]
    new_id = id_of(responses[2])
    assert created["location"] == f"Patient/{new_id}/_history/1"
    assert created["etag"] == 'W/"1"'
    assert created["lastModified"].endswith("Z")
    assert responses[1]["response"]["location"] == "Patient/upd-1/_history/2"
    assert responses[1]["response"]["etag"] == 'W/"2"'
    assert responses[4]["response"]["location"] == "Patient/new-1/_history/1"
    stored = fhir.get(f"/fhir/Patient/{new_id}").json()
    assert stored["meta"]["lastUpdated"] == created["lastModified"]
    assert fhir.get("/fhir/Patient/old-1").status_code == 410
    assert fhir.get("/fhir/Patient/upd-1").json()["gender"] == "male"


def test_gets_run_after_the_writes(fhir: TestClient) -> None:
    """https://hl7.org/fhir/R4/http.html#trules: GETs are processed last, so a search in the
    transaction sees what its POSTs and PUTs wrote, wherever it stands in the Bundle."""
    responses = ok_bundle(
        fhir,
        "transaction",
        entry("GET", f"Patient?identifier=9990000018&{NOT_GOLDEN}"),
        entry("GET", "Patient/client-1"),
        entry("POST", "Patient", patient("9990000018")),
        entry("PUT", "Patient/client-1", patient("9990000026", id="client-1")),
    )
    found = responses[0]["resource"]
    assert found["type"] == "searchset"
    assert [e["resource"]["id"] for e in found["entry"]] == [id_of(responses[2])]
    assert responses[1]["resource"]["id"] == "client-1"
    assert responses[1]["response"]["etag"] == 'W/"1"'


def test_deletes_run_before_the_creates(fhir: TestClient) -> None:
    """https://hl7.org/fhir/R4/http.html#trules: DELETEs are processed first, so a
    conditional delete does not see a resource the same transaction creates, even when the
    POST comes first in the Bundle."""
    old = put_patient(fhir, "old-1", "9990000018")
    responses = ok_bundle(
        fhir,
        "transaction",
        entry("POST", "Patient", patient("9990000018")),
        entry("DELETE", f"Patient?identifier={NHS}|9990000018"),
    )
    assert [e["response"]["status"] for e in responses] == ["201 Created", "204 No Content"]
    assert fhir.get(f"/fhir/Patient/{old['id']}").status_code == 410
    assert search_ids(fhir, "Patient?identifier=9990000018") == [id_of(responses[0])]


@pytest.mark.parametrize(
    ("where", "fragment", "found"),
    [
        (
            "subject",
            {"subject": {"reference": URN_P}},
            lambda o: [o["subject"]["reference"]],
        ),
        (
            "a list of references",
            {"performer": [{"reference": URN_O}, {"reference": URN_P}]},
            lambda o: [r["reference"] for r in o["performer"]],
        ),
        (
            "an extension",
            {
                "extension": [
                    {
                        "url": "https://example.org/fhir/StructureDefinition/about",
                        "valueReference": {"reference": URN_P},
                    }
                ]
            },
            lambda o: [o["extension"][0]["valueReference"]["reference"]],
        ),
        (
            "a contained resource",
            {
                "contained": [
                    {"resourceType": "Specimen", "id": "s1", "subject": {"reference": URN_P}}
                ],
                "specimen": {"reference": "#s1"},
            },
            lambda o: [o["contained"][0]["subject"]["reference"], o["specimen"]["reference"]],
        ),
        (
            "a backbone element",
            {
                "referenceRange": [{"text": "normal"}],
                "component": [
                    {
                        "code": {"text": "rate"},
                        "valueString": "fast",
                        "extension": [
                            {
                                "url": "https://example.org/fhir/StructureDefinition/by",
                                "valueReference": {"reference": URN_O},
                            }
                        ],
                    }
                ],
            },
            lambda o: [o["component"][0]["extension"][0]["valueReference"]["reference"]],
        ),
    ],
)
def test_urn_uuid_references_are_rewritten_everywhere(
    fhir: TestClient, where: str, fragment: dict[str, Any], found: Any
) -> None:
    """https://hl7.org/fhir/R4/http.html#trules: every reference to an entry's ``urn:uuid:``
    fullUrl becomes the id the server gave that entry, whatever the entry order."""
    responses = ok_bundle(
        fhir,
        "transaction",
        entry("POST", "Observation", observation(**copy.deepcopy(fragment))),
        entry("POST", "Patient", patient("9990000018"), URN_P),
        entry("POST", "Organization", {"resourceType": "Organization", "name": "DCH"}, URN_O),
    )
    names = {URN_P: f"Patient/{id_of(responses[1])}", URN_O: f"Organization/{id_of(responses[2])}"}
    stored = fhir.get(f"/fhir/Observation/{id_of(responses[0])}").json()
    expected = [names.get(r["reference"], r["reference"]) for r in _references(fragment)]
    assert found(stored) == expected, where
    assert "urn:uuid" not in str(stored)


def _references(fragment: Any) -> list[dict[str, Any]]:
    """Reference objects in ``fragment``, depth first, in the order the lambdas read them."""
    if isinstance(fragment, list):
        return [r for item in fragment for r in _references(item)]
    if not isinstance(fragment, dict):
        return []
    if set(fragment) == {"reference"}:
        return [fragment]
    return [r for value in fragment.values() for r in _references(value)]


def test_urn_uuid_in_uri_elements_and_narrative_is_rewritten(fhir: TestClient) -> None:
    """https://hl7.org/fhir/R4/http.html#trules: "Servers SHALL replace all matching links in
    the bundle, whether they are found in the resource ids, resource references, elements of
    type uri, url, oid, uuid, and <a href="" & <img src="" in the narrative"."""
    document = {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": {"reference": URN_P},
        "text": {
            "status": "generated",
            "div": f'<div xmlns="http://www.w3.org/1999/xhtml"><a href="{URN_P}">patient</a>'
            f'<img src="{URN_Q}"/></div>',
        },
        "content": [{"attachment": {"contentType": "text/plain", "url": URN_Q}}],
    }
    binary = {"resourceType": "Binary", "contentType": "text/plain", "data": "aGVsbG8="}
    responses = ok_bundle(
        fhir,
        "transaction",
        entry("POST", "DocumentReference", document),
        entry("POST", "Patient", patient("9990000018"), URN_P),
        entry("POST", "Binary", binary, URN_Q),
    )
    p, b = f"Patient/{id_of(responses[1])}", f"Binary/{id_of(responses[2])}"
    stored = fhir.get(f"/fhir/DocumentReference/{id_of(responses[0])}").json()
    assert stored["subject"]["reference"] == p
    assert stored["content"][0]["attachment"]["url"] == b
    assert f'href="{p}"' in stored["text"]["div"]
    assert f'src="{b}"' in stored["text"]["div"]


def test_circular_references_between_new_resources(fhir: TestClient) -> None:
    """https://hl7.org/fhir/R4/http.html#trules: "including circular references"."""
    first = patient("9990000018", link=[{"other": {"reference": URN_Q}, "type": "seealso"}])
    second = patient("9990000026", link=[{"other": {"reference": URN_P}, "type": "seealso"}])
    responses = ok_bundle(
        fhir,
        "transaction",
        entry("POST", "Patient", first, URN_P),
        entry("POST", "Patient", second, URN_Q),
    )
    p, q = id_of(responses[0]), id_of(responses[1])
    assert fhir.get(f"/fhir/Patient/{p}").json()["link"][0]["other"]["reference"] == f"Patient/{q}"
    assert fhir.get(f"/fhir/Patient/{q}").json()["link"][0]["other"]["reference"] == f"Patient/{p}"


def test_put_with_a_urn_uuid_full_url_is_referenced_by_its_id(fhir: TestClient) -> None:
    """A PUT entry's fullUrl names the resource at ``request.url``."""
    responses = ok_bundle(
        fhir,
        "transaction",
        entry("POST", "Observation", observation(subject={"reference": URN_P})),
        entry("PUT", "Patient/dch-1", patient("9990000018", id="dch-1"), URN_P),
    )
    stored = fhir.get(f"/fhir/Observation/{id_of(responses[0])}").json()
    assert stored["subject"]["reference"] == "Patient/dch-1"


# -- transaction: conditional create, update and references -------------------------------


@pytest.mark.parametrize(
    ("existing", "criteria", "status", "patients"),
    [
        (True, f"identifier={NHS}|9990000018", "200 OK", 1),
        (False, f"identifier={NHS}|9990000018", "201 Created", 1),
        (True, f"identifier={NHS}|9990000026", "201 Created", 2),
    ],
)
def test_conditional_create_in_a_transaction(
    fhir: TestClient, existing: bool, criteria: str, status: str, patients: int
) -> None:
    """https://hl7.org/fhir/R4/http.html#trules: ``ifNoneExist`` that finds a resource
    creates nothing, and references to the entry's ``urn:uuid:`` name the one found."""
    if existing:
        put_patient(fhir, "found-1", "9990000018")
    responses = ok_bundle(
        fhir,
        "transaction",
        entry("POST", "Patient", patient("9990000018"), URN_P, ifNoneExist=criteria),
        entry("POST", "Observation", observation(subject={"reference": URN_P})),
    )
    assert responses[0]["response"]["status"] == status
    target = id_of(responses[0])
    if status == "200 OK":
        assert target == "found-1"
        assert responses[0]["response"]["location"] == "Patient/found-1/_history/1"
        history = fhir.get("/fhir/Patient/found-1/_history").json()
        assert len(history["entry"]) == 1
    obs = fhir.get(f"/fhir/Observation/{id_of(responses[1])}").json()
    assert obs["subject"]["reference"] == f"Patient/{target}"
    assert len(search_ids(fhir, "Patient")) == patients


def test_conditional_update_in_a_transaction(fhir: TestClient) -> None:
    """https://hl7.org/fhir/R4/http.html#trules: ``PUT Type?criteria`` updates the one match
    or creates; a reference to the entry's fullUrl names the resource it resolved to."""
    put_patient(fhir, "found-1", "9990000018")
    responses = ok_bundle(
        fhir,
        "transaction",
        entry(
            "PUT",
            f"Patient?identifier={NHS}|9990000018",
            patient("9990000018", gender="male"),
            URN_P,
        ),
        entry("PUT", f"Patient?identifier={NHS}|9990000026", patient("9990000026"), URN_Q),
        entry(
            "POST",
            "Observation",
            observation(subject={"reference": URN_P}, performer=[{"reference": URN_Q}]),
        ),
    )
    assert [e["response"]["status"] for e in responses] == ["200 OK", "201 Created", "201 Created"]
    assert responses[0]["response"]["location"] == "Patient/found-1/_history/2"
    obs = fhir.get(f"/fhir/Observation/{id_of(responses[2])}").json()
    assert obs["subject"]["reference"] == "Patient/found-1"
    assert obs["performer"][0]["reference"] == f"Patient/{id_of(responses[1])}"


def test_conditional_reference_is_resolved(fhir: TestClient) -> None:
    """https://hl7.org/fhir/R4/http.html#trules: a reference ``Patient?identifier=…`` is
    replaced by the one resource the search finds."""
    put_patient(fhir, "found-1", "9990000018")
    responses = ok_bundle(
        fhir,
        "transaction",
        entry(
            "POST",
            "Observation",
            observation(subject={"reference": f"Patient?identifier={NHS}|9990000018"}),
        ),
        entry(
            "POST",
            "Observation",
            observation(subject={"reference": f"Patient?identifier={NHS}|9990000018"}),
        ),
    )
    for response in responses:
        obs = fhir.get(f"/fhir/Observation/{id_of(response)}").json()
        assert obs["subject"]["reference"] == "Patient/found-1"


@pytest.mark.parametrize(
    ("matching", "status", "code"),
    [(0, 404, "not-found"), (2, 412, "multiple-matches")],
)
def test_conditional_reference_must_match_exactly_one(
    fhir: TestClient, matching: int, status: int, code: str
) -> None:
    """https://hl7.org/fhir/R4/http.html#trules: "if there are no matches, or multiple
    matches, the transaction fails, and an error is returned"; nothing is written."""
    for n in range(matching):
        put_patient(fhir, f"twin-{n}", "9990000018")
    before = history_size(fhir)
    response = post_bundle(
        fhir,
        "transaction",
        entry("POST", "Patient", patient("9990000026")),
        entry(
            "POST",
            "Observation",
            observation(subject={"reference": f"Patient?identifier={NHS}|9990000018"}),
        ),
    )
    outcome = assert_outcome(response, status, code)
    assert "Bundle.entry[1]" in outcome["issue"][0]["diagnostics"]
    assert "9990000018" not in response.text  # the criteria may hold patient data
    assert search_ids(fhir, "Patient?identifier=9990000026") == []
    assert search_ids(fhir, "Observation") == []
    assert history_size(fhir) == before


# -- transaction: all or nothing ----------------------------------------------------------


@pytest.mark.parametrize(
    ("failing", "status", "code"),
    [
        pytest.param(
            entry("POST", "Patient", {"resourceType": "Patient", "gender": "dragon"}),
            400,
            None,
            id="invalid-resource",
        ),
        pytest.param(
            entry("PUT", "Patient/base-1", patient("9990000042", id="base-1"), ifMatch='W/"9"'),
            412,
            "conflict",
            id="put-if-match",
        ),
        pytest.param(
            entry("DELETE", "Patient/base-1", ifMatch='W/"9"'),
            412,
            "conflict",
            id="delete-if-match",
        ),
        pytest.param(
            entry("POST", "Observation", observation(subject={"reference": URN_MISSING})),
            400,
            "invalid",
            id="urn-no-entry-declares",
        ),
        pytest.param(
            entry("PUT", "Patient?family=Testperson", patient("9990000042")),
            412,
            "multiple-matches",
            id="conditional-update-two-matches",
        ),
        pytest.param(
            entry("POST", "Patient", patient("9990000042"), ifNoneExist="family=Testperson"),
            412,
            "multiple-matches",
            id="conditional-create-two-matches",
        ),
        pytest.param(
            entry("PUT", "Patient/base-9", patient("9990000042", id="other")),
            400,
            "invalid",
            id="put-id-differs",
        ),
        pytest.param(
            entry("PUT", "Patient", patient("9990000042")),
            400,
            "invalid",
            id="put-without-id",
        ),
        pytest.param(entry("DELETE", "Patient"), 400, "invalid", id="delete-without-id"),
        pytest.param(
            entry("POST", "Patient/base-9", patient("9990000042")),
            400,
            "invalid",
            id="post-with-id",
        ),
        pytest.param(
            entry("POST", "Observation", patient("9990000042")),
            400,
            "invalid",
            id="post-type-differs",
        ),
        pytest.param(
            entry("POST", "Patient", patient("9990000042"), ifNoneExist="nonsense"),
            400,
            "invalid",
            id="if-none-exist-no-criteria",
        ),
        pytest.param(
            entry("PATCH", "Patient/base-1", {"resourceType": "Parameters"}),
            400,
            "not-supported",
            id="patch",
        ),
    ],
)
def test_one_failing_entry_fails_the_whole_transaction(
    fhir: TestClient, failing: dict[str, Any], status: int, code: str | None
) -> None:
    """https://hl7.org/fhir/R4/http.html#transaction: "if any resource […] fails, then the
    whole transaction fails": no entry is written (search and history show nothing new) and
    the response is one OperationOutcome with the failing entry's status."""
    put_patient(fhir, "base-1", "9990000018")
    put_patient(fhir, "base-2", "9990000026")
    put_patient(fhir, "base-3", "9990000050")
    before = history_size(fhir)
    response = post_bundle(
        fhir,
        "transaction",
        entry("POST", "Patient", patient("9990000034"), URN_P),
        entry("PUT", "Patient/base-2", patient("9990000026", id="base-2", gender="male")),
        entry("DELETE", "Patient/base-3"),
        entry("POST", "Observation", observation(subject={"reference": URN_P})),
        failing,
    )
    outcome = assert_outcome(response, status, code)
    assert any("Bundle.entry[4]" in i.get("diagnostics", "") for i in outcome["issue"]) or any(
        e.startswith("Bundle.entry[4]") for i in outcome["issue"] for e in i.get("expression", [])
    )
    assert search_ids(fhir, "Patient?identifier=9990000034") == []
    assert search_ids(fhir, "Observation") == []
    assert fhir.get("/fhir/Patient/base-3").status_code == 200
    assert fhir.get("/fhir/Patient/base-2").json()["meta"]["versionId"] == "1"
    assert fhir.get("/fhir/Patient/base-1").json()["meta"]["versionId"] == "1"
    assert history_size(fhir) == before


@pytest.mark.parametrize(
    "entries",
    [
        pytest.param(
            [
                entry("PUT", "Patient/base-1", patient("9990000018", id="base-1")),
                entry("PUT", "Patient/base-1", patient("9990000018", id="base-1", gender="male")),
            ],
            id="put-put",
        ),
        pytest.param(
            [
                entry("PUT", "Patient/base-1", patient("9990000018", id="base-1", gender="male")),
                entry("DELETE", "Patient/base-1"),
            ],
            id="put-delete",
        ),
        pytest.param(
            [entry("DELETE", "Patient/base-1"), entry("DELETE", "Patient/base-1")],
            id="delete-delete",
        ),
        pytest.param(
            [
                entry("PUT", f"Patient?identifier={NHS}|9990000018", patient("9990000018")),
                entry("PUT", "Patient/base-1", patient("9990000018", id="base-1", gender="male")),
            ],
            id="conditional-put-resolves-to-the-same",
        ),
        pytest.param(
            [
                entry("DELETE", f"Patient?identifier={NHS}|9990000018"),
                entry("PUT", "Patient/base-1", patient("9990000018", id="base-1", gender="male")),
            ],
            id="conditional-delete-resolves-to-the-same",
        ),
        pytest.param(
            [
                entry(
                    "POST",
                    "Patient",
                    patient("9990000018"),
                    ifNoneExist=f"identifier={NHS}|9990000018",
                ),
                entry("PUT", "Patient/base-1", patient("9990000018", id="base-1", gender="male")),
            ],
            id="conditional-create-finds-the-same",
        ),
        pytest.param(
            [
                entry("POST", "Patient", patient("9990000026"), URN_P),
                entry("POST", "Patient", patient("9990000034"), URN_P),
            ],
            id="same-full-url",
        ),
    ],
)
def test_two_entries_for_the_same_resource_fail(
    fhir: TestClient, entries: list[dict[str, Any]]
) -> None:
    """https://hl7.org/fhir/R4/http.html#trules: "If any resource identities (including
    resolved identities from conditional update/delete) overlap in steps 1-3, then the
    transaction SHALL fail"; fullUrls are unique in a Bundle (bdl-7)."""
    put_patient(fhir, "base-1", "9990000018")
    before = history_size(fhir)
    response = post_bundle(fhir, "transaction", *entries)
    assert_outcome(response, 400, "invalid")
    assert fhir.get("/fhir/Patient/base-1").json()["meta"]["versionId"] == "1"
    assert history_size(fhir) == before


@pytest.mark.parametrize("kind", ["batch", "transaction"])
@pytest.mark.parametrize(
    ("if_match", "status"), [('W/"1"', "204"), ('W/"2"', "412"), ("nonsense", "400")]
)
def test_if_match_on_a_delete(fhir: TestClient, kind: str, if_match: str, status: str) -> None:
    """https://hl7.org/fhir/R4/bundle-definitions.html#Bundle.entry.request.ifMatch: the
    delete happens only if the current version is the one named."""
    put_patient(fhir, "base-1", "9990000018")
    response = post_bundle(fhir, kind, entry("DELETE", "Patient/base-1", ifMatch=if_match))
    if kind == "batch" or status == "204":
        assert response.status_code == 200, response.text
        assert response.json()["entry"][0]["response"]["status"].split()[0] == status
    else:
        assert_outcome(response, int(status))
    assert fhir.get("/fhir/Patient/base-1").status_code == (410 if status == "204" else 200)
    failures = audit_count(fhir, "subtype=delete&outcome=4")
    assert failures == (0 if status == "204" or kind == "transaction" else 1)


def test_a_failed_read_in_a_transaction_does_not_undo_its_writes(fhir: TestClient) -> None:
    """GETs run after the writes have committed (docs/reference/bundles.md): a read that
    fails carries its OperationOutcome in its entry, like a batch entry."""
    responses = ok_bundle(
        fhir,
        "transaction",
        entry("POST", "Patient", patient("9990000018")),
        entry("GET", "Patient/does-not-exist"),
    )
    assert responses[0]["response"]["status"] == "201 Created"
    assert responses[1]["response"]["status"].startswith("404")
    assert responses[1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert len(search_ids(fhir, "Patient")) == 1


# -- batch ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failing", "status"),
    [
        pytest.param(
            entry("POST", "Patient", {"resourceType": "Patient", "gender": "dragon"}),
            "400",
            id="invalid-resource",
        ),
        pytest.param(
            entry("PUT", "Patient/base-1", patient("9990000018", id="base-1"), ifMatch='W/"9"'),
            "412",
            id="if-match",
        ),
        pytest.param(entry("GET", "Patient/does-not-exist"), "404", id="read-missing"),
        pytest.param(
            entry("PUT", "Patient?family=Testperson", patient("9990000042")),
            "412",
            id="conditional-update-two-matches",
        ),
        pytest.param(
            entry("PUT", "Patient/base-1", patient("9990000018", id="x")), "400", id="id-differs"
        ),
        pytest.param(entry("PUT", "Patient", patient("9990000042")), "400", id="put-without-id"),
        pytest.param(entry("DELETE", "Patient"), "400", id="delete-without-id"),
        pytest.param(
            entry("DELETE", "Patient/base-1", ifMatch='W/"9"'), "412", id="delete-if-match"
        ),
        pytest.param(
            entry("POST", "Observation", patient("9990000042")), "400", id="post-type-differs"
        ),
    ],
)
def test_batch_entries_fail_on_their_own(
    fhir: TestClient, failing: dict[str, Any], status: str
) -> None:
    """https://hl7.org/fhir/R4/http.html#brules: each entry succeeds or fails by itself; a
    failed entry carries an OperationOutcome in ``response.outcome``."""
    put_patient(fhir, "base-1", "9990000018")
    put_patient(fhir, "base-2", "9990000026")
    responses = ok_bundle(
        fhir,
        "batch",
        entry("POST", "Patient", patient("9990000034")),
        failing,
        entry("DELETE", "Patient/base-2"),
        entry("GET", "Patient/base-1"),
    )
    assert responses[0]["response"]["status"] == "201 Created"
    assert responses[1]["response"]["status"].split()[0] == status
    assert responses[1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert responses[2]["response"]["status"] == "204 No Content"
    assert responses[3]["response"]["status"] == "200 OK"
    assert len(search_ids(fhir, "Patient?identifier=9990000034")) == 1
    assert fhir.get("/fhir/Patient/base-2").status_code == 410
    assert fhir.get("/fhir/Patient/base-1").json()["meta"]["versionId"] == "1"


def test_batch_entries_may_not_refer_to_each_other(fhir: TestClient) -> None:
    """https://hl7.org/fhir/R4/http.html#brules: "there SHALL be no interdependencies between
    the different entries in the Bundle […] Servers SHALL validate that this is the case":
    an entry naming another entry's fullUrl fails with 400 (use a transaction); the others
    are processed."""
    responses = ok_bundle(
        fhir,
        "batch",
        entry("POST", "Patient", patient("9990000018"), URN_P),
        entry("POST", "Observation", observation(subject={"reference": URN_P})),
    )
    assert responses[0]["response"]["status"] == "201 Created"
    assert responses[1]["response"]["status"].startswith("400")
    issue = responses[1]["response"]["outcome"]["issue"][0]
    assert "transaction" in issue["diagnostics"]
    assert search_ids(fhir, "Observation") == []


@pytest.mark.parametrize(("matching", "status"), [(1, "201"), (0, "404"), (2, "412")])
def test_batch_conditional_reference(fhir: TestClient, matching: int, status: str) -> None:
    """A conditional reference in a batch entry is resolved against the record as it is
    then; if it does not match exactly one resource that entry fails, and only that one."""
    for n in range(matching):
        put_patient(fhir, f"twin-{n}", "9990000018")
    reference = f"Patient?identifier={NHS}|9990000018"
    responses = ok_bundle(
        fhir,
        "batch",
        entry("POST", "Observation", observation(subject={"reference": reference})),
        entry("POST", "Patient", patient("9990000026")),
    )
    assert responses[0]["response"]["status"].split()[0] == status
    assert responses[1]["response"]["status"] == "201 Created"
    stored = [fhir.get(f"/fhir/Observation/{i}").json() for i in search_ids(fhir, "Observation")]
    assert [o["subject"]["reference"] for o in stored] == (
        ["Patient/twin-0"] if matching == 1 else []
    )


def test_batch_conditional_create_and_read(fhir: TestClient) -> None:
    """https://hl7.org/fhir/R4/http.html#brules: conditional creates and searches work in a
    batch as they do on their own."""
    put_patient(fhir, "found-1", "9990000018")
    responses = ok_bundle(
        fhir,
        "batch",
        entry("POST", "Patient", patient("9990000018"), ifNoneExist=f"identifier={NHS}|9990000018"),
        entry("GET", f"Patient?identifier=9990000018&{NOT_GOLDEN}"),
        entry("GET", "Patient/found-1/_history/1"),
    )
    assert responses[0]["response"]["status"] == "200 OK"
    assert id_of(responses[0]) == "found-1"
    assert responses[1]["resource"]["total"] == 1
    assert responses[2]["resource"]["id"] == "found-1"


# -- bad bundles ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["batch", "transaction"])
@pytest.mark.parametrize(
    "body",
    [
        pytest.param(patient("9990000018"), id="not-a-bundle"),
        pytest.param([1, 2], id="not-an-object"),
        pytest.param(
            {"resourceType": "Bundle", "type": "collection", "entry": []}, id="collection"
        ),
        pytest.param({"resourceType": "Bundle", "type": "document", "entry": []}, id="document"),
        pytest.param({"resourceType": "Bundle", "entry": []}, id="no-type"),
        pytest.param({"entry": {}}, id="entry-not-a-list"),
        pytest.param({"entry": [{"resource": patient("9990000018")}]}, id="no-request"),
        pytest.param({"entry": ["Patient"]}, id="entry-not-an-object"),
        pytest.param({"entry": [{"request": {"method": "POST"}}]}, id="no-url"),
        pytest.param({"entry": [entry("FETCH", "Patient")]}, id="bad-method"),
        pytest.param({"entry": [entry("GET", "Dragon/1")]}, id="unknown-type"),
        pytest.param({"entry": [entry("GET", "")]}, id="empty-url"),
        pytest.param({"entry": [entry("POST", "Patient")]}, id="post-without-resource"),
        pytest.param(
            {"entry": [{"request": {"method": "POST", "url": "Patient"}, "resource": [1]}]},
            id="resource-not-an-object",
        ),
        pytest.param(
            {"entry": [entry("POST", "Patient", patient("1"), ifNoneExist=5)]},
            id="if-none-exist-not-text",
        ),
        pytest.param(
            {"entry": [entry("PUT", "Patient/a", patient("1", id="a"), ifMatch=1)]},
            id="if-match-not-text",
        ),
        pytest.param(
            {"entry": [{**entry("POST", "Patient", patient("1")), "fullUrl": 7}]},
            id="full-url-not-text",
        ),
    ],
)
def test_bad_bundles_are_400_with_an_operation_outcome(
    fhir: TestClient, kind: str, body: Any
) -> None:
    """https://hl7.org/fhir/R4/http.html#transaction: the base URL takes a batch or a
    transaction Bundle, every entry with a request; anything else is a 400, never a 500, and
    nothing is written."""
    if isinstance(body, dict) and "resourceType" not in body:
        body = {"resourceType": "Bundle", "type": kind, **body}
    response = fhir.post("/fhir", json=body)
    assert_outcome(response, 400)
    assert search_ids(fhir, "Patient") == []


def test_an_empty_transaction_is_an_empty_response(fhir: TestClient) -> None:
    assert ok_bundle(fhir, "transaction") == []
    assert ok_bundle(fhir, "batch") == []


# -- audit ---------------------------------------------------------------------------------


def test_a_transaction_audits_every_write(fhir: TestClient) -> None:
    """Every interaction of a transaction has its AuditEvent (decision 0015,
    https://profiles.ihe.net/ITI/BALP/): one per write with its action, naming the resource
    and its patient, and one for the transaction."""
    put_patient(fhir, "upd-1", "9990000018")
    put_patient(fhir, "del-1", "9990000026")
    counts = {a: audit_count(fhir, f"action={a}&outcome=0") for a in "CUD"}
    transactions = audit_count(fhir, "subtype=transaction")
    responses = ok_bundle(
        fhir,
        "transaction",
        entry("POST", "Patient", patient("9990000034"), URN_P),
        entry("POST", "Observation", observation(subject={"reference": URN_P})),
        entry("PUT", "Patient/upd-1", patient("9990000018", id="upd-1", gender="male")),
        entry("DELETE", "Patient/del-1"),
    )
    after = {a: audit_count(fhir, f"action={a}&outcome=0") for a in "CUD"}
    assert {a: after[a] - counts[a] for a in "CUD"} == {"C": 2, "U": 1, "D": 1}
    assert audit_count(fhir, "subtype=transaction&outcome=0") == transactions + 1
    p, o = id_of(responses[0]), id_of(responses[1])
    assert audit_count(fhir, f"entity=Observation/{o}&action=C") == 1
    assert audit_count(fhir, f"patient=Patient/{p}&action=C") == 2  # itself and the Observation
    assert audit_count(fhir, "patient=Patient/del-1&action=D") == 1


def test_a_failed_transaction_is_audited_and_audits_no_write(fhir: TestClient) -> None:
    """A failed transaction has one AuditEvent with a failure outcome; no write is audited
    as done, because none was."""
    creates = audit_count(fhir, "action=C")
    response = post_bundle(
        fhir,
        "transaction",
        entry("POST", "Patient", patient("9990000034")),
        entry("POST", "Patient", {"resourceType": "Patient", "gender": "dragon"}),
    )
    assert_outcome(response, 400)
    assert audit_count(fhir, "subtype=transaction&outcome=4") == 1
    assert audit_count(fhir, "action=C") == creates


def test_a_batch_audits_each_entry(fhir: TestClient) -> None:
    """Each batch entry is an interaction of its own, audited on success and on failure."""
    creates = audit_count(fhir, "action=C&outcome=0")
    failures = audit_count(fhir, "subtype=create&outcome=4")
    ok_bundle(
        fhir,
        "batch",
        entry("POST", "Patient", patient("9990000034")),
        entry("POST", "Patient", patient("9990000042")),
        entry("POST", "Patient", {"resourceType": "Patient", "gender": "dragon"}),
    )
    assert audit_count(fhir, "action=C&outcome=0") == creates + 2
    assert audit_count(fhir, "subtype=create&outcome=4") == failures + 1
