"""Spec: composite search parameters (https://hl7.org/fhir/R4/search.html#composite)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.spec.search.cases import Case, check

TITLE = "Composite parameters"
INTRO = (
    "A composite joins the values of its components with `$`, in the order R4 defines, and "
    "matches only when **one** element satisfies every component: "
    "`component-code-value-quantity=http://loinc.org|8480-6$gt140` finds a blood pressure "
    "whose *systolic* component is above 140, not one whose diastolic is. Each component "
    "takes the syntax of its type, prefixes included. Every R4 composite is supported "
    "(token, quantity, date, string and number components)."
)
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


def _q(value: float) -> dict[str, Any]:
    return {"value": value, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}


def _bp(oid: str, systolic: float, diastolic: float) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
        "component": [
            {"code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
             "valueQuantity": _q(systolic)},
            {"code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
             "valueQuantity": _q(diastolic)},
        ],
    }  # fmt: skip


def _obs(oid: str, code: str, **value: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        **value,
    }


DATA = [
    _bp("bp-normal", 120, 80),
    _bp("bp-high", 150, 95),
    _obs("sys-only", "8480-6", valueQuantity=_q(140)),
    _obs("smoker", "72166-2", valueCodeableConcept={
        "coding": [{"system": "http://snomed.info/sct", "code": "77176002"}]}),
    _obs("covid", "94500-6", valueString="Positive"),
    _obs("onset", "21112-8", valueDateTime="2020-03-04"),
]  # fmt: skip

CASES = [
    Case(f"Observation?component-code-value-quantity={LOINC}|8480-6$gt130", ("bp-high",),
         "one component must satisfy both parts"),
    Case(f"Observation?component-code-value-quantity={LOINC}|8462-4$lt90", ("bp-normal",),
         "the diastolic component"),
    Case(f"Observation?component-code-value-quantity=8480-6$120|{UCUM}|mm[Hg]", ("bp-normal",),
         "quantity with units"),
    Case("Observation?component-code-value-quantity=8480-6$gt140,8462-4$lt85",
         ("bp-high", "bp-normal"), "comma: OR of whole composite values"),
    Case("Observation?component-code-value-quantity=8480-6$gt100"
         "&component-code-value-quantity=8462-4$gt90", ("bp-high",), "AND"),
    Case(f"Observation?code-value-quantity={LOINC}|8480-6$ge140", ("sys-only",),
         "the observation's own code and value"),
    Case(f"Observation?combo-code-value-quantity={LOINC}|8480-6$ge140",
         ("bp-high", "sys-only"), "combo: the observation or its components"),
    Case(f"Observation?code-value-concept={LOINC}|72166-2$http://snomed.info/sct|77176002",
         ("smoker",), "token$token"),
    Case("Observation?code-value-concept=72166-2$8517006", (), "token$token, no match"),
    Case("Observation?code-value-string=94500-6$pos", ("covid",), "token$string: starts-with"),
    Case("Observation?code-value-date=21112-8$2020", ("onset",), "token$date"),
    Case("Observation?code-value-date=21112-8$gt2020-06", (), "token$date with a prefix"),
    Case("Observation?component-code-value-quantity:missing=true",
         ("sys-only", "smoker", "covid", "onset"), ":missing"),
    Case("Observation?component-code-value-quantity=8480-6", 400, "every component is needed"),
    Case("Observation?component-code-value-quantity=8480-6$high", 400, "bad number: 400"),
    Case("Observation?code-value-date=21112-8$soon", 400, "bad date: 400"),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_composite(searchable: TestClient, case: Case) -> None:
    check(searchable, case)
