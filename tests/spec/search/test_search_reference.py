"""Spec: reference parameters, chains and _has (https://hl7.org/fhir/R4/search.html#reference)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.spec.search.cases import Case, check

TITLE = "Reference parameters, chaining and reverse chaining"
INTRO = (
    "A reference matches by `id` (any type), `Type/id`, `:Type` with an id, or an absolute "
    "URL (which also matches a local reference to the same `Type/id`). `:identifier` "
    "matches `Reference.identifier` as a token. A chain (`subject:Patient.name=smith`, "
    "https://hl7.org/fhir/R4/search.html#chaining) searches the referenced resources; "
    "without a type the chain applies to every target type that has the parameter, and "
    "chains may be several links long. `_has:Type:reference:parameter=value` "
    "(https://hl7.org/fhir/R4/search.html#has) finds resources that are referred to by a "
    "resource matching the parameter; `_has` nests."
)
NHS = "https://fhir.nhs.uk/Id/nhs-number"
LOINC = "http://loinc.org"


def _obs(oid: str, subject: dict[str, Any] | None, code: str, **more: Any) -> dict[str, Any]:
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        **more,
    }
    if subject is not None:
        obs["subject"] = subject
    return obs


DATA = [
    {"resourceType": "Organization", "id": "dch", "name": "Dorset County Hospital"},
    {"resourceType": "Organization", "id": "poole", "name": "Poole Hospital"},
    {"resourceType": "Practitioner", "id": "gp1", "name": [{"family": "Brown"}]},
    {"resourceType": "Patient", "id": "pt1", "name": [{"family": "Smith"}],
     "identifier": [{"system": NHS, "value": "9990000018"}],
     "generalPractitioner": [{"reference": "Practitioner/gp1"}],
     "managingOrganization": {"reference": "Organization/dch"}},
    {"resourceType": "Patient", "id": "pt2", "name": [{"family": "Jones"}],
     "identifier": [{"system": NHS, "value": "9990000026"}],
     "managingOrganization": {"reference": "Organization/poole"}},
    {"resourceType": "Encounter", "id": "en1", "status": "finished",
     "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
     "subject": {"reference": "Patient/pt1"}},
    _obs("ob1", {"reference": "Patient/pt1"}, "8480-6",
         performer=[{"reference": "Practitioner/gp1"}], encounter={"reference": "Encounter/en1"}),
    _obs("ob2", {"reference": "Patient/pt2"}, "8462-4"),
    _obs("ob3", {"reference": "https://fhir.example.org/Patient/ext9"}, "8480-6"),
    _obs("ob4", {"identifier": {"system": NHS, "value": "9990000034"}}, "8480-6"),
    _obs("ob5", None, "8480-6"),
    {"resourceType": "Provenance", "id": "prov1", "recorded": "2024-05-01T10:00:00Z",
     "target": [{"reference": "Observation/ob1"}],
     "agent": [{"who": {"reference": "Practitioner/gp1"}}]},
]  # fmt: skip

CASES = [
    Case("Observation?subject=Patient/pt1", ("ob1",), "Type/id"),
    Case("Observation?subject=pt1", ("ob1",), "id alone: any type"),
    Case("Observation?subject:Patient=pt2", ("ob2",), ":Type with an id"),
    Case("Observation?subject:Group=pt2", (), ":Type must match"),
    Case("Observation?patient=pt1", ("ob1",), "patient: subject when it is a Patient"),
    Case("Observation?subject=https://fhir.example.org/Patient/ext9", ("ob3",), "absolute URL"),
    Case("Observation?subject=Patient/ext9", ("ob3",), "an absolute URL ending Type/id"),
    Case("Observation?subject=Patient/pt1/_history/1", ("ob1",), "a versioned reference"),
    Case(f"Observation?subject:identifier={NHS}|9990000034", ("ob4",), ":identifier"),
    Case("Observation?subject:missing=true", ("ob5",), ":missing"),
    Case("Observation?subject=Patient/pt1,Patient/pt2", ("ob1", "ob2"), "comma: OR"),
    Case(f"Observation?subject:Patient.identifier={NHS}|9990000026", ("ob2",),
         "chain to a token"),
    Case("Observation?subject:Patient.name=smith", ("ob1",), "chain to a string"),
    Case("Observation?subject.name=smith", ("ob1",), "chain without a type"),
    Case("Observation?patient.name=jones,smith", ("ob1", "ob2"), "chain with OR"),
    Case("Observation?subject:Patient.organization.name=poole", ("ob2",), "a two-link chain"),
    Case("Observation?encounter.subject=Patient/pt1", ("ob1",), "chain to a reference"),
    Case("Observation?subject.name=smith&code=8480-6", ("ob1",), "chain AND another parameter"),
    Case("Patient?general-practitioner=Practitioner/gp1", ("pt1",), "another reference"),
    Case("Patient?organization.name=dorset", ("pt1",), "chain from Patient"),
    Case("Patient?_has:Observation:patient:code=8480-6", ("pt1",), "_has"),
    Case("Patient?_has:Observation:subject:code=8462-4", ("pt2",), "_has via subject"),
    Case("Patient?_has:Observation:patient:_has:Provenance:target:agent=Practitioner/gp1",
         ("pt1",), "nested _has"),
    Case("Practitioner?_has:Observation:performer:subject.name=smith", ("gp1",),
         "_has with a chain"),
    Case("Observation?subject.nonsense=1", ("ob1", "ob2", "ob3", "ob4", "ob5"),
         "unknown chained parameter: ignored under lenient handling"),
    Case("Observation?subject.nonsense=1", 400, "... and refused under strict handling",
         strict=True),
    Case("Observation?subject:Foo.name=x", 400, "the chain type must be a resource type"),
    Case("Patient?_has:Observation:nonsense:code=x", 400, "_has needs a reference parameter"),
    Case("Patient?_has:Observation", 400, "_has needs Type:reference:parameter"),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_reference(searchable: TestClient, case: Case) -> None:
    check(searchable, case)
