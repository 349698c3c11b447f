"""Spec: parameters that are the union of others (``Observation.combo-*``) search as the union.

The store keeps no index rows of its own for such a parameter (``sharedcare.record.derived``);
these cases pin that searching, ``:missing`` and ``_sort`` still see every value the R4
definition gives it: https://hl7.org/fhir/R4/observation.html#search (``combo-code`` is
``Observation.code | Observation.component.code``).
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.spec.search.cases import Case, check

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
SNOMED = "http://snomed.info/sct"


def _q(value: float) -> dict[str, Any]:
    return {"value": value, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}


DATA = [
    {"resourceType": "Observation", "id": "bp", "status": "final",
     "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
     "component": [
         {"code": {"coding": [{"system": LOINC, "code": "8480-6"}]}, "valueQuantity": _q(150)},
         {"code": {"coding": [{"system": LOINC, "code": "8462-4"}]}, "valueQuantity": _q(95)},
     ]},
    {"resourceType": "Observation", "id": "sys", "status": "final",
     "code": {"coding": [{"system": LOINC, "code": "8480-6"}]}, "valueQuantity": _q(130)},
    {"resourceType": "Observation", "id": "smoker", "status": "final",
     "code": {"coding": [{"system": LOINC, "code": "72166-2"}]},
     "valueCodeableConcept": {"coding": [{"system": SNOMED, "code": "77176002"}]}},
    {"resourceType": "Observation", "id": "absent", "status": "final",
     "code": {"coding": [{"system": LOINC, "code": "8310-5"}]},
     "dataAbsentReason": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                                "data-absent-reason", "code": "unknown"}]}},
]  # fmt: skip

CASES = [
    Case(f"Observation?combo-code={LOINC}|8480-6", ("bp", "sys"), "own code or a component's"),
    Case("Observation?combo-code=85354-9", ("bp",), "the panel's own code"),
    Case("Observation?combo-code=|8480-6", (), "|code: only codes without a system"),
    Case(f"Observation?combo-code={LOINC}|", ("bp", "sys", "smoker", "absent"), "system|"),
    Case("Observation?combo-code:not=8480-6", ("smoker", "absent"), ":not over the union"),
    Case("Observation?combo-value-quantity=gt140", ("bp",), "a component's value"),
    Case(f"Observation?combo-value-quantity=130|{UCUM}|mm[Hg]", ("sys",), "the own value"),
    Case("Observation?combo-value-quantity:missing=true", ("smoker", "absent"), ":missing"),
    Case("Observation?combo-value-quantity:missing=false", ("bp", "sys"), ":missing=false"),
    Case(f"Observation?combo-value-concept={SNOMED}|77176002", ("smoker",), "value-concept"),
    Case("Observation?combo-data-absent-reason=unknown", ("absent",), "data-absent-reason"),
    Case(f"Observation?combo-code-value-quantity={LOINC}|8462-4$gt90", ("bp",),
         "composite over components"),
    Case(f"Observation?combo-code-value-quantity={LOINC}|8480-6$gt120", ("bp", "sys"),
         "composite over the observation or its components"),
    Case("Observation?combo-value-quantity=gt0&_sort=combo-value-quantity", ("bp", "sys"),
         "_sort by the lowest value, components included: 95 (bp) before 130", ordered=True),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_derived(searchable: TestClient, case: Case) -> None:
    check(searchable, case)
