"""Spec: number search parameters (https://hl7.org/fhir/R4/search.html#number)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.spec.search.cases import Case, check

TITLE = "Number parameters"
INTRO = (
    "Numbers take the same prefixes as dates. Without a prefix (or with `eq`) the search "
    "value's precision sets a range: `0.5` matches [0.45, 0.55), `100` matches [99.5, 100.5) "
    "and `1e2` matches [50, 150). `ap` widens the range to 10% of the value. Shown with "
    "RiskAssessment `probability`."
)


def _risk(rid: str, probability: float | None) -> dict[str, Any]:
    risk: dict[str, Any] = {
        "resourceType": "RiskAssessment",
        "id": rid,
        "status": "final",
        "subject": {"reference": "Patient/p1"},
    }
    if probability is not None:
        risk["prediction"] = [{"probabilityDecimal": probability}]
    return risk


DATA = [
    _risk("r005", 0.05),
    _risk("r050", 0.5),
    _risk("r055", 0.55),
    _risk("r100", 100),
    _risk("none", None),
]

CASES = [
    Case("RiskAssessment?probability=0.5", ("r050",), "precision: [0.45, 0.55)"),
    Case("RiskAssessment?probability=0.55", ("r055",), "more digits, narrower range"),
    Case("RiskAssessment?probability=0.50", ("r050",), "0.50 is [0.495, 0.505)"),
    Case("RiskAssessment?probability=gt0.5", ("r055", "r100"), "gt"),
    Case("RiskAssessment?probability=ge0.5", ("r050", "r055", "r100"), "ge"),
    Case("RiskAssessment?probability=lt0.5", ("r005",), "lt"),
    Case("RiskAssessment?probability=le0.05", ("r005",), "le"),
    Case("RiskAssessment?probability=ne0.5", ("r005", "r055", "r100"), "ne"),
    Case("RiskAssessment?probability=100", ("r100",), "an integer"),
    Case("RiskAssessment?probability=1e2", ("r100",), "exponent form: [50, 150)"),
    Case("RiskAssessment?probability=ap95", ("r100",), "ap: within 10%"),
    Case("RiskAssessment?probability=ap80", (), "ap: beyond 10%"),
    Case("RiskAssessment?probability=0.5,100", ("r050", "r100"), "comma: OR"),
    Case("RiskAssessment?probability=gt0.01&probability=lt0.52", ("r005", "r050"),
         "a range: AND"),
    Case("RiskAssessment?probability:missing=true", ("none",), ":missing"),
    Case("RiskAssessment?probability=abc", 400, "not a number: 400"),
    Case("RiskAssessment?probability=gtNaN", 400, "NaN: 400"),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_number(searchable: TestClient, case: Case) -> None:
    check(searchable, case)
