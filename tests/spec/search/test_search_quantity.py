"""Spec: quantity search parameters (https://hl7.org/fhir/R4/search.html#quantity)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.spec.search.cases import Case, check

TITLE = "Quantity parameters"
INTRO = (
    "`[prefix]number|system|code`: the number compares as for number parameters; a system "
    "must match exactly; the code matches the quantity's code or its unit text. "
    "`number` alone matches any unit. Units are not converted (UCUM canonicalisation is not "
    "done), so `120|http://unitsofmeasure.org|mm[Hg]` does not match a value in kPa."
)
UCUM = "http://unitsofmeasure.org"


def _obs(oid: str, value: float, unit: str, code: str | None, system: str | None) -> Any:
    quantity: dict[str, Any] = {"value": value, "unit": unit}
    if code:
        quantity["code"] = code
    if system:
        quantity["system"] = system
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"text": "measurement"},
        "valueQuantity": quantity,
    }


DATA = [
    _obs("bp120", 120, "mmHg", "mm[Hg]", UCUM),
    _obs("bp80", 80, "mmHg", "mm[Hg]", UCUM),
    _obs("glucose", 5.4, "mmol/L", "mmol/L", UCUM),
    _obs("pulse", 120, "beats/minute", "/min", None),
]

CASES = [
    Case("Observation?value-quantity=120", ("bp120", "pulse"), "any unit"),
    Case(f"Observation?value-quantity=120|{UCUM}|mm[Hg]", ("bp120",), "number|system|code"),
    Case("Observation?value-quantity=120||mm[Hg]", ("bp120",), "number||code"),
    Case("Observation?value-quantity=120||mmHg", ("bp120",), "the code may be the unit text"),
    Case("Observation?value-quantity=120||/min", ("pulse",), "no system on the value"),
    Case("Observation?value-quantity=gt100", ("bp120", "pulse"), "gt"),
    Case(f"Observation?value-quantity=lt100|{UCUM}|mm[Hg]", ("bp80",), "lt with units"),
    Case(f"Observation?value-quantity=5.4|{UCUM}|mmol/L", ("glucose",), "decimal"),
    Case("Observation?value-quantity=5", ("glucose",), "precision: 5 is [4.5, 5.5)"),
    Case("Observation?value-quantity=ap110", ("bp120", "pulse"), "ap: within 10%"),
    Case("Observation?value-quantity=le80,ge100||/min", ("bp80", "glucose", "pulse"),
         "comma: OR"),
    Case("Observation?value-quantity=ge80&value-quantity=le100", ("bp80",), "AND"),
    Case(f"Observation?value-quantity=120|{UCUM}|kPa", (), "units are not converted"),
    Case("Observation?value-quantity:missing=false", ("bp120", "bp80", "glucose", "pulse"),
         ":missing"),
    Case("Observation?value-quantity=100|mm", 400, "two parts: 400"),
    Case("Observation?value-quantity=high", 400, "not a number: 400"),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_quantity(searchable: TestClient, case: Case) -> None:
    check(searchable, case)
