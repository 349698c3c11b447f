"""Spec: ``_source`` (https://hl7.org/fhir/R4/search.html#_source), a uri parameter on
``meta.source`` that every resource has (the server sets one when the client does not).

It is served from the resource row itself, not from index rows
(``docs/decisions/0011-record-footprint.md``), so it is checked here with every uri match,
``:missing``, sorting and paging, chains, ``_has`` and counts, on both databases.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.spec.search.cases import Case, check, search

LAB = "http://example.org/feeds/lab"
DEFAULT = "urn:sharedcare:source:RBD:search-spec"  # organisation and user of the spec client


def _with(resource: dict[str, Any], source: str | None) -> dict[str, Any]:
    if source:
        resource["meta"] = {"source": source}
    return resource


def _observation(oid: str, patient: str, source: str | None) -> dict[str, Any]:
    observation = {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"text": "x"},
        "subject": {"reference": f"Patient/{patient}"},
    }
    return _with(observation, source)


DATA = [
    _with({"resourceType": "Patient", "id": "p1"}, LAB),
    _with({"resourceType": "Patient", "id": "p2"}, None),
    _observation("o1", "p1", f"{LAB}/run/1"),
    _observation("o2", "p2", LAB),
    _observation("o3", "p1", None),
    _observation("o4", "p2", "http://other.org/x"),
]

CASES = [
    Case(f"Observation?_source={LAB}", ("o2",), "exact"),
    Case(f"Observation?_source={LAB.upper()}", (), "case-sensitive"),
    Case(f"Observation?_source={DEFAULT}", ("o3",), "the server's source"),
    Case(f"Observation?_source={LAB},http://other.org/x", ("o2", "o4"), "comma: OR"),
    Case("Observation?_source:below=http://example.org/feeds", ("o1", "o2"), ":below"),
    Case(f"Observation?_source:below={LAB}/", ("o1", "o2"), ":below, trailing slash"),
    Case(f"Observation?_source:above={LAB}/run/1/more", ("o1", "o2"), ":above"),
    Case("Observation?_source:missing=true", (), ":missing: every resource has one"),
    Case("Observation?_source:missing=false", ("o1", "o2", "o3", "o4"), ":missing=false"),
    Case("Observation?_source:contains=lab", 400, "string modifiers do not apply"),
    Case("Observation?_sort=_source", ("o2", "o1", "o4", "o3"), "sort", ordered=True),
    Case("Observation?_sort=-_source", ("o3", "o4", "o1", "o2"), "sort, descending",
         ordered=True),
    Case(f"Observation?_source:below={LAB}&_sort=-_source", ("o1", "o2"), "match and sort",
         ordered=True),
    Case(f"Observation?patient._source={LAB}", ("o1", "o3"), "chained"),
    Case(f"Observation?patient._source:missing=false&_source={LAB}", ("o2",), "chained, and"),
    Case("Patient?_has:Observation:patient:_source=http://other.org/x", ("p2",), "_has"),
    Case(f"Patient?_source={LAB}&_total=accurate", ("p1",), "counted"),
    Case("Observation?_source:below=http://example.org&_total=accurate", ("o1", "o2"),
         "counted, :below"),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_source(searchable: TestClient, case: Case) -> None:
    check(searchable, case)


@pytest.mark.parametrize("order", ["_source", "-_source"])
def test_pages_sorted_by_source_follow_on(searchable: TestClient, order: str) -> None:
    """Keyset paging with ``_source`` as the sort key shows every match once, in order."""
    whole = search(searchable, Case(f"Observation?_sort={order}", ()))
    expected = [e["resource"]["id"] for e in whole.json()["entry"]]
    seen: list[str] = []
    response = search(searchable, Case(f"Observation?_sort={order}&_count=1", ()))
    while True:
        bundle = response.json()
        seen += [e["resource"]["id"] for e in bundle.get("entry", [])]
        following = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        if not following:
            break
        response = searchable.get("/fhir" + following[0].split("/fhir", 1)[1])
    assert seen == expected and len(expected) == 4
