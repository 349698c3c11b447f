"""Spec: result parameters, compartments and error handling
(https://hl7.org/fhir/R4/search.html#return)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from fastapi.testclient import TestClient

from tests.spec.search.cases import Case, check
from tests.support.identity import without_realtime_matching

TITLE = "Sorting, paging, includes, summaries and compartments"
INTRO = (
    "`_sort` takes several keys, `-` for descending; resources without a value sort last. "
    "The default order is most recently updated first. `_count` sets the page size (at most "
    "1000); `next` / `previous` links carry a keyset `_cursor`, so pages stay stable while "
    "data changes (see docs/decisions/0010-search-paging.md). `_total` is `accurate` unless "
    "asked otherwise (`none` skips counting; `estimate` uses the PostgreSQL planner). "
    "`_include` / `_revinclude` (with `:iterate`) add resources with `search.mode = include`; "
    "`_summary` (`true`, `text`, `data`, `count`) and `_elements` return part of each match, "
    "tagged SUBSETTED. `Patient/{id}/{type}?…` searches the Patient compartment as the "
    "official CompartmentDefinition defines it. Unknown parameters are ignored (and left out "
    "of the self link) unless the request says `Prefer: handling=strict`, which makes them a "
    "400."
)
LOINC = "http://loinc.org"


def _patient(pid: str, family: str, birth: str | None, org: str | None = None) -> Any:
    patient: dict[str, Any] = {"resourceType": "Patient", "id": pid, "name": [{"family": family}]}
    if birth:
        patient["birthDate"] = birth
    if org:
        patient["managingOrganization"] = {"reference": f"Organization/{org}"}
    patient["text"] = {
        "status": "generated",
        "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{pid}</div>',
    }
    return patient


def _obs(oid: str, subject: str, code: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": f"Patient/{subject}"},
    }


DATA = [
    {"resourceType": "Organization", "id": "org", "name": "Dorset County Hospital"},
    _patient("ann", "Adams", "1980-02-02", "org"),
    _patient("bob", "Brown", "1970-01-01"),
    _patient("cat", "Brown", "1990-03-03"),
    _patient("dan", "Clark", None),
    _obs("o1", "ann", "8480-6"),
    _obs("o2", "ann", "8462-4"),
    _obs("o3", "bob", "8480-6"),
    {"resourceType": "Provenance", "id": "prov", "recorded": "2024-05-01T10:00:00Z",
     "target": [{"reference": "Observation/o1"}],
     "agent": [{"who": {"reference": "Organization/org"}}]},
]  # fmt: skip

CASES = [
    Case("Patient?_sort=birthdate", ("bob", "ann", "cat", "dan"), "ascending; no value last",
         ordered=True),
    Case("Patient?_sort=-birthdate", ("cat", "ann", "bob", "dan"), "descending", ordered=True),
    Case("Patient?_sort=family,-birthdate", ("ann", "cat", "bob", "dan"), "several keys",
         ordered=True),
    Case("Patient?_sort=_id", ("ann", "bob", "cat", "dan"), "by id", ordered=True),
    Case("Patient", ("dan", "cat", "bob", "ann"), "default: most recently updated first",
         ordered=True),
    Case("Observation?code=8480-6&_include=Observation:subject", ("o1", "o3"),
         "_include", include=("Patient/ann", "Patient/bob")),
    Case("Observation?_id=o1&_include=Observation:subject:Patient", ("o1",),
         "_include with a target type", include=("Patient/ann",)),
    Case("Observation?_id=o1&_include=Observation:subject:Group", ("o1",),
         "... that does not match"),
    Case("Observation?_id=o2&_include=Observation:*", ("o2",), "_include of every reference",
         include=("Patient/ann",)),
    Case("Observation?_id=o1&_include=Observation:subject&_include:iterate=Patient:organization",
         ("o1",), "_include:iterate follows included resources",
         include=("Patient/ann", "Organization/org")),
    Case("Patient?_id=ann&_revinclude=Observation:subject", ("ann",), "_revinclude",
         include=("Observation/o1", "Observation/o2")),
    Case("Patient?_id=ann&_revinclude=Observation:subject&_revinclude:iterate=Provenance:target",
         ("ann",), "_revinclude:iterate",
         include=("Observation/o1", "Observation/o2", "Provenance/prov")),
    Case("Patient?_id=ann&_include=Observation:subject", 400,
         "_include must start from the searched type (or use :iterate)"),
    Case("Patient/ann/Observation", ("o1", "o2"), "Patient compartment"),
    Case("Patient/ann/Observation?code=8480-6", ("o1",), "compartment and a parameter"),
    Case("Patient/bob/Patient", ("bob",), "the patient is in its own compartment"),
    Case("Patient/ann/Organization", 400, "Organization is not in the Patient compartment"),
    Case("Patient?nonsense=1&family=brown", ("bob", "cat"), "unknown parameter: ignored"),
    Case("Patient?nonsense=1", 400, "... or 400 under strict handling", strict=True),
    Case("Patient?_sort=nonsense", 400, "unknown sort key"),
    Case("Patient?_count=-1", 400, "_count out of range"),
    Case("Patient?_count=lots", 400, "_count not a number"),
    Case("Patient?_total=maybe", 400, "_total must be none, estimate or accurate"),
    Case("Patient?_summary=short", 400, "_summary must be a known mode"),
    Case("Patient?_cursor=bm9wZQ", 400, "a cursor that does not belong to the search"),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_results(searchable: TestClient, case: Case) -> None:
    check(searchable, case)


def _ids(bundle: dict[str, Any]) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", [])]


def _link(bundle: dict[str, Any], relation: str) -> str | None:
    return next((x["url"] for x in bundle["link"] if x["relation"] == relation), None)


def _follow(client: TestClient, url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    response = client.get(parts.path, params=parse_qsl(parts.query))
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_pages_follow_next_and_previous(searchable: TestClient) -> None:
    first = searchable.get("/fhir/Patient?_sort=_id&_count=2").json()
    assert _ids(first) == ["ann", "bob"] and first["total"] == 4
    assert _link(first, "previous") is None
    second = _follow(searchable, _link(first, "next") or "")
    assert _ids(second) == ["cat", "dan"]
    assert _link(second, "next") is None
    back = _follow(searchable, _link(second, "previous") or "")
    assert _ids(back) == ["ann", "bob"]


def test_pages_stay_stable_while_data_changes(searchable: TestClient) -> None:
    first = searchable.get("/fhir/Patient?_sort=_id&_count=2").json()
    assert _ids(first) == ["ann", "bob"]
    # A new resource sorting before the cursor and a change to one shown already must not
    # shift the next page (offset paging would repeat "bob").
    # (Without identity's golden record for it, which would outlive the delete.)
    with without_realtime_matching():
        searchable.put("/fhir/Patient/aaa", json={"resourceType": "Patient", "id": "aaa"})
        second = _follow(searchable, _link(first, "next") or "")
        assert _ids(second) == ["cat", "dan"]
        searchable.delete("/fhir/Patient/aaa")


def test_total_modes_and_summary_count(searchable: TestClient) -> None:
    assert "total" not in searchable.get("/fhir/Patient?_total=none").json()
    accurate = searchable.get("/fhir/Patient?_count=1&_total=accurate").json()
    assert accurate["total"] == 4 and len(accurate["entry"]) == 1
    estimate = searchable.get("/fhir/Patient?_count=1&_total=estimate").json()
    assert estimate["total"] >= 1
    counted = searchable.get("/fhir/Observation?code=8480-6&_summary=count").json()
    assert counted["total"] == 2 and not counted.get("entry")


def test_summary_and_elements_subset_the_matches(searchable: TestClient) -> None:
    bundle = searchable.get("/fhir/Patient?_id=ann&_elements=birthDate").json()
    resource = bundle["entry"][0]["resource"]
    assert set(resource) == {"resourceType", "id", "meta", "birthDate"}
    assert resource["meta"]["tag"][-1]["code"] == "SUBSETTED"
    summary = searchable.get("/fhir/Patient?_id=ann&_summary=true").json()
    assert "text" not in summary["entry"][0]["resource"]
    assert "name" in summary["entry"][0]["resource"]
    text = searchable.get("/fhir/Patient?_id=ann&_summary=text").json()
    assert set(text["entry"][0]["resource"]) == {"resourceType", "id", "meta", "text"}
    data = searchable.get("/fhir/Patient?_id=ann&_summary=data").json()
    assert "text" not in data["entry"][0]["resource"] and "name" in data["entry"][0]["resource"]


def test_self_link_shows_what_was_used(searchable: TestClient) -> None:
    bundle = searchable.get("/fhir/Patient?nonsense=1&family=brown&_sort=_id").json()
    query = dict(parse_qsl(urlsplit(_link(bundle, "self") or "").query))
    assert query == {"family": "brown", "_sort": "_id", "_count": "20"}


def test_post_search_matches_get(searchable: TestClient) -> None:
    form = {"family": "brown", "_sort": "_id"}
    posted = searchable.post(
        "/fhir/Patient/_search",
        data=form,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert posted.status_code == 200, posted.text
    assert _ids(posted.json()) == ["bob", "cat"]
    self_link = _link(posted.json(), "self") or ""
    assert "/_search" not in self_link and "family=brown" in self_link


def test_malformed_values_are_400_operation_outcomes(searchable: TestClient) -> None:
    response = searchable.get("/fhir/Patient?birthdate=not-a-date")
    assert response.status_code == 400
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "not-a-date" not in outcome["issue"][0]["diagnostics"]
    check(searchable, Case("Patient?birthdate=not-a-date", 400))
