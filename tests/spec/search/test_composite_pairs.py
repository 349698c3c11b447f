"""Spec: ``Observation.code-value-quantity`` and ``code-value-concept``, the composites on the
Observation itself (https://hl7.org/fhir/R4/observation.html#search).

Each is exactly a pair of other parameters of the same resource (``code`` with
``value-quantity`` / ``value-concept``), so the store keeps no rows of its own for them
(``sharedcare.record.derived``). Every expected answer here is computed in the test from the
resources themselves (:func:`_matches`), not from the store: matches with prefixes, units,
``system|code`` and several values, ``:missing``, ``combo-*`` (which unions them with the
component composites), chains, ``_has`` and counts, on both databases.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.spec.search.cases import Case, search

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
SNOMED = "http://snomed.info/sct"
LOCAL = "http://example.org/codes"


def _coding(system: str | None, code: str, display: str | None = None) -> dict[str, Any]:
    coding: dict[str, Any] = {"code": code}
    if system:
        coding["system"] = system
    if display:
        coding["display"] = display
    return coding


def _q(value: float | int | None, code: str | None = "mm[Hg]", system: str | None = UCUM,
       unit: str | None = "mmHg") -> dict[str, Any]:  # fmt: skip
    q: dict[str, Any] = {}
    for key, item in (("value", value), ("code", code), ("system", system), ("unit", unit)):
        if item is not None:
            q[key] = item
    return q


def _obs(oid: str, patient: str, codings: list[dict[str, Any]], **rest: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": codings} if codings else {"text": "free text"},
        "subject": {"reference": f"Patient/{patient}"},
        **rest,
    }


SYS = _coding(LOINC, "8480-6", "Systolic blood pressure")
DIA = _coding(LOINC, "8462-4")
HR = _coding(LOINC, "8867-4")
SMOKING = _coding(LOINC, "72166-2")

DATA: list[dict[str, Any]] = [
    {"resourceType": "Patient", "id": "p1"},
    {"resourceType": "Patient", "id": "p2"},
    {"resourceType": "Patient", "id": "p3"},
    _obs("sys-150", "p1", [SYS], valueQuantity=_q(150)),
    _obs("sys-120", "p2", [SYS, _coding(LOCAL, "sbp")], valueQuantity=_q(120)),
    _obs("sys-140-5", "p2", [SYS], valueQuantity=_q(140.5)),
    _obs("sys-kpa", "p3", [SYS], valueQuantity=_q(18.7, "kPa", UCUM, "kPa")),
    _obs("sys-nosys", "p3", [_coding(None, "8480-6")], valueQuantity=_q(135, None, None, "mmHg")),
    _obs("sys-unit-only", "p1", [SYS], valueQuantity=_q(100, None, None, "mm[Hg]")),
    _obs("sys-novalue", "p1", [SYS], valueQuantity=_q(None)),
    _obs("hr-72", "p2", [HR], valueQuantity=_q(72, "/min", UCUM, "beats/minute")),
    _obs("hr-local", "p3", [HR, _coding(LOCAL, "pulse")],
         valueQuantity=_q(88, "/min", UCUM, "bpm")),
    _obs("text-only", "p1", [], valueQuantity=_q(150)),  # a code given as text alone
    _obs("sampled", "p2", [SYS], valueSampledData={
        "origin": {"value": 150, "system": UCUM, "code": "mm[Hg]"}, "period": 10,
        "dimensions": 1, "data": "150 151"}),
    _obs("bp-panel", "p1", [_coding(LOINC, "85354-9")], component=[
        {"code": {"coding": [SYS]}, "valueQuantity": _q(160)},
        {"code": {"coding": [DIA]}, "valueQuantity": _q(100)}]),
    _obs("bp-panel-own", "p2", [SYS], valueQuantity=_q(110), component=[
        {"code": {"coding": [DIA]}, "valueQuantity": _q(70)}]),
    _obs("smoker", "p1", [SMOKING], valueCodeableConcept={
        "coding": [_coding(SNOMED, "77176002"), _coding(LOCAL, "smoker")], "text": "Smoker"}),
    _obs("never", "p2", [SMOKING], valueCodeableConcept={
        "coding": [_coding(SNOMED, "266919005")]}),
    _obs("concept-nosys", "p3", [_coding(None, "72166-2")], valueCodeableConcept={
        "coding": [_coding(None, "77176002")]}),
    _obs("concept-text", "p3", [SMOKING], valueCodeableConcept={"text": "ex-smoker"}),
    _obs("no-value", "p3", [SMOKING]),
    {"resourceType": "DiagnosticReport", "id": "r1", "status": "final",
     "code": {"text": "bp"}, "result": [{"reference": "Observation/sys-150"},
                                        {"reference": "Observation/smoker"}]},
    {"resourceType": "DiagnosticReport", "id": "r2", "status": "final",
     "code": {"text": "bp"}, "result": [{"reference": "Observation/sys-120"},
                                        {"reference": "Observation/bp-panel"}]},
    {"resourceType": "DiagnosticReport", "id": "r3", "status": "final",
     "code": {"text": "bp"}, "result": [{"reference": "Observation/hr-72"}]},
]  # fmt: skip


# -- the semantics, computed from the resources ---------------------------------------------


def _token(spec: str, codings: list[dict[str, Any]]) -> bool:
    """https://hl7.org/fhir/R4/search.html#token over ``codings``."""
    if "|" not in spec:
        return any(c.get("code") == spec for c in codings)
    system, code = spec.split("|", 1)
    for c in codings:
        if system and c.get("system") != system:
            continue
        if not system and "system" in c:
            continue
        if code and c.get("code") != code:
            continue
        return True
    return False


def _number(prefix: str, text: str, value: Decimal) -> bool:
    wanted = Decimal(text)
    half = Decimal(5) * Decimal(10) ** (int(wanted.as_tuple().exponent) - 1)
    low, high = wanted - half, wanted + half
    return {
        "eq": low <= value < high,
        "ne": not low <= value < high,
        "gt": value > wanted,
        "lt": value < wanted,
        "ge": value >= wanted,
        "le": value <= wanted,
    }[prefix]


def _quantity(spec: str, q: dict[str, Any] | None) -> bool:
    """https://hl7.org/fhir/R4/search.html#quantity over one Quantity."""
    if not q or "value" not in q:
        return False
    prefix = spec[:2] if spec[:2].isalpha() else "eq"
    parts = spec[2:].split("|") if spec[:2].isalpha() else spec.split("|")
    if not _number(prefix, parts[0], Decimal(str(q["value"]))):
        return False
    if len(parts) == 3:
        if parts[1] and q.get("system") != parts[1]:
            return False
        if parts[2] and parts[2] not in (q.get("code"), q.get("unit")):
            return False
    return True


def _value_codings(resource: dict[str, Any]) -> list[dict[str, Any]]:
    return list(resource.get("valueCodeableConcept", {}).get("coding", []))


def _pair(resource: dict[str, Any], kind: str, value: str) -> bool:
    """One value ``a$b`` of ``code-value-<kind>`` on the Observation itself."""
    first, second = value.split("$")
    if not _token(first, resource["code"].get("coding", [])):
        return False
    if kind == "quantity":
        return _quantity(second, resource.get("valueQuantity"))
    return _token(second, _value_codings(resource))


def _components(resource: dict[str, Any], kind: str, value: str) -> bool:
    first, second = value.split("$")
    for component in resource.get("component", []):
        if _token(first, component["code"].get("coding", [])):
            if kind == "quantity" and _quantity(second, component.get("valueQuantity")):
                return True
            codings = component.get("valueCodeableConcept", {}).get("coding", [])
            if kind == "concept" and _token(second, codings):
                return True
    return False


def _present(resource: dict[str, Any], kind: str) -> bool:
    """The resource has a value of both components (a code, and a value of the kind)."""
    code = resource["code"]
    has_code = bool(code.get("text")) or any(
        "code" in c or "system" in c for c in code.get("coding", [])
    )
    if kind == "quantity":
        has_value = "value" in resource.get("valueQuantity", {})
    else:
        concept = resource.get("valueCodeableConcept", {})
        has_value = bool(concept.get("text")) or bool(concept.get("coding"))
    return has_code and has_value


def _observations() -> list[dict[str, Any]]:
    return [r for r in DATA if r["resourceType"] == "Observation"]


def _matches(code: str, values: str) -> set[str]:
    """Ids of the Observations ``code=values`` must find (comma: OR)."""
    kind = "quantity" if code.endswith("quantity") else "concept"
    found = set()
    for resource in _observations():
        for value in values.split(","):
            own = _pair(resource, kind, value)
            if own or (code.startswith("combo-") and _components(resource, kind, value)):
                found.add(resource["id"])
    return found


def _missing(code: str, missing: bool) -> set[str]:
    kind = "quantity" if code.endswith("quantity") else "concept"
    return {r["id"] for r in _observations() if _present(r, kind) != missing}


def _subjects(ids: set[str]) -> set[str]:
    by_id = {r["id"]: r for r in _observations()}
    return {by_id[i]["subject"]["reference"].split("/")[1] for i in ids}


def _reports(ids: set[str]) -> set[str]:
    return {
        r["id"]
        for r in DATA
        if r["resourceType"] == "DiagnosticReport"
        and any(ref["reference"].split("/")[1] in ids for ref in r["result"])
    }


QUANTITY = [
    f"{LOINC}|8480-6$gt140",
    f"{LOINC}|8480-6$ge140.5",
    f"{LOINC}|8480-6$140",
    "8480-6$140",
    "8480-6$150",
    "8480-6$le120",
    "8480-6$lt100",
    "8480-6$ne150",
    f"8480-6$150|{UCUM}|mm[Hg]",
    "8480-6$150||mmHg",
    "8480-6$100||mm[Hg]",
    f"8480-6$gt0|{UCUM}|kPa",
    "8480-6$gt0|http://other.org|mm[Hg]",
    "|8480-6$gt100",
    f"{LOINC}|$gt100",
    f"{LOCAL}|sbp$120",
    "8867-4$gt70,8480-6$lt125",
    "8867-4$72|http://unitsofmeasure.org|/min,8867-4$88||bpm",
    f"{LOCAL}|pulse$ge88",
    "8462-4$gt50",
    "85354-9$gt0",
]
CONCEPT = [
    f"{LOINC}|72166-2${SNOMED}|77176002",
    "72166-2$77176002",
    f"72166-2${LOCAL}|smoker",
    "72166-2$|77176002",
    f"72166-2${SNOMED}|",
    f"|72166-2${SNOMED}|77176002",
    "72166-2$266919005,72166-2$smoker",
    "72166-2$8517006",
]


def _cases() -> list[tuple[str, set[str]]]:
    cases: list[tuple[str, set[str]]] = []
    for code, values in (("code-value-quantity", QUANTITY), ("code-value-concept", CONCEPT)):
        for value in values:
            cases.append((f"Observation?{code}={value}", _matches(code, value)))
            combo = f"combo-{code}"
            cases.append((f"Observation?{combo}={value}", _matches(combo, value)))
        for missing in (True, False):
            flag = str(missing).lower()
            cases.append((f"Observation?{code}:missing={flag}", _missing(code, missing)))
    both = _matches("code-value-quantity", "8480-6$gt100") & _matches(
        "code-value-quantity", "8480-6$lt150"
    )
    cases.append(("Observation?code-value-quantity=8480-6$gt100&code-value-quantity=8480-6$lt150",
                  both))  # fmt: skip
    p2 = {r["id"] for r in _observations() if r["subject"]["reference"] == "Patient/p2"}
    cases.append(("Observation?code-value-quantity=8480-6$gt100&subject=Patient/p2",
                  _matches("code-value-quantity", "8480-6$gt100") & p2))  # fmt: skip
    for value in ("8480-6$gt145", "72166-2$77176002"):
        code = "code-value-quantity" if value.startswith("8480") else "code-value-concept"
        found = _matches(code, value)
        cases.append((f"Patient?_has:Observation:patient:{code}={value}", _subjects(found)))
        cases.append((f"DiagnosticReport?result.{code}={value}", _reports(found)))
        cases.append((f"DiagnosticReport?result:Observation.{code}={value}", _reports(found)))
    cases.append(("DiagnosticReport?result.code-value-quantity:missing=true",
                  _reports(_missing("code-value-quantity", True))))  # fmt: skip
    return cases


CASES = _cases()


def test_the_cases_are_not_trivial() -> None:
    """Most cases find something and most leave something out."""
    sizes = [len(expected) for _, expected in CASES]
    assert sum(1 for s in sizes if s) > len(sizes) * 2 // 3
    assert sum(1 for q, e in CASES if q.startswith("Observation") and len(e) < 10) > 40


@pytest.mark.parametrize(("query", "expected"), CASES, ids=[q for q, _ in CASES])
def test_composite_pair_search(searchable: TestClient, query: str, expected: set[str]) -> None:
    response = search(searchable, Case(query, ()))
    assert response.status_code == 200, response.text
    got = {e["resource"]["id"] for e in response.json().get("entry", [])}
    assert got == expected


@pytest.mark.parametrize(("query", "expected"), CASES[::3], ids=[q for q, _ in CASES[::3]])
def test_composite_pair_counts(searchable: TestClient, query: str, expected: set[str]) -> None:
    """``_total=accurate`` and ``_summary=count`` count the same matches."""
    for extra in ("&_total=accurate", "&_summary=count"):
        response = search(searchable, Case(query + extra, ()))
        assert response.status_code == 200, response.text
        assert response.json()["total"] == len(expected), extra


@pytest.mark.parametrize(
    "query",
    [
        "Observation?code-value-quantity=8480-6",
        "Observation?code-value-quantity=8480-6$high",
        "Observation?code-value-quantity=8480-6$gt1|a",
        "Observation?code-value-concept=$x",
        "Observation?_sort=code-value-quantity",
    ],
)
def test_composite_pair_errors(searchable: TestClient, query: str) -> None:
    response = search(searchable, Case(query, ()))
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"
