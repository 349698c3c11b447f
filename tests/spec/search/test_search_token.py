"""Spec: token search parameters (https://hl7.org/fhir/R4/search.html#token)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.spec.search.cases import Case, check

TITLE = "Token parameters"
INTRO = (
    "A token is a code with an optional system: `code` matches the code in any system, "
    "`system|code` the code in that system, `|code` a code with no system and `system|` any "
    "code in that system. `:not` returns resources with no matching value (including those "
    "with no value at all); `:text` searches the display text and CodeableConcept.text "
    "(case- and accent-insensitive, anywhere in the text); `identifier:of-type="
    "type-system|type-code|value` matches an identifier by its type. Elements with one "
    "required code system (such as `gender`) are indexed with that system. `:in`, `:not-in`, "
    "`:below` and `:above` need a terminology service and are refused with 400."
)

NHS = "https://fhir.nhs.uk/Id/nhs-number"
LOINC = "http://loinc.org"
V2 = "http://terminology.hl7.org/CodeSystem/v2-0203"


def _obs(oid: str, status: str, codings: list[dict[str, str]], text: str | None = None) -> Any:
    code: dict[str, Any] = {"coding": codings} if codings else {}
    if text:
        code["text"] = text
    return {"resourceType": "Observation", "id": oid, "status": status, "code": code}


DATA = [
    _obs("sys", "final",
         [{"system": LOINC, "code": "8480-6", "display": "Systolic blood pressure"}]),
    _obs("dia", "preliminary",
         [{"system": LOINC, "code": "8462-4", "display": "Diastolic blood pressure"}]),
    _obs("two", "final", [
        {"system": "http://snomed.info/sct", "code": "271649006",
         "display": "Systolic arterial pressure"},
        {"system": LOINC, "code": "8480-6"},
    ]),
    _obs("nosys", "amended", [{"code": "8480-6"}]),
    _obs("pulse", "cancelled", [], text="Pulse rate"),
    {
        "resourceType": "Patient", "id": "pa", "gender": "female", "active": True,
        "identifier": [
            {"system": NHS, "value": "9990000018"},
            {"type": {"coding": [{"system": V2, "code": "MR"}]},
             "system": "https://dch.example/mrn", "value": "MRN1"},
        ],
    },
    {"resourceType": "Patient", "id": "pb", "gender": "male",
     "identifier": [{"system": NHS, "value": "9990000026"}, {"value": "X1"}]},
    {"resourceType": "Patient", "id": "pc", "gender": "unknown"},
]  # fmt: skip

CASES = [
    Case("Observation?code=8480-6", ("sys", "two", "nosys"), "code in any system"),
    Case(f"Observation?code={LOINC}|8480-6", ("sys", "two"), "system|code"),
    Case("Observation?code=|8480-6", ("nosys",), "|code: a code with no system"),
    Case(f"Observation?code={LOINC}|", ("sys", "dia", "two"), "system|: any code in the system"),
    Case("Observation?code=http://snomed.info/sct|271649006", ("two",), "any coding matches"),
    Case(f"Observation?code:not={LOINC}|8480-6", ("dia", "nosys", "pulse"),
         ":not: no matching coding (no codings at all included)"),
    Case("Observation?code:text=blood", ("sys", "dia"), ":text: display text, anywhere"),
    Case("Observation?code:text=ARTERIAL", ("two",), ":text ignores case"),
    Case("Observation?code:text=pulse", ("pulse",), ":text: CodeableConcept.text"),
    Case("Observation?status=final,amended", ("sys", "two", "nosys"), "comma: OR"),
    Case("Observation?status:not=final", ("dia", "nosys", "pulse"), ":not on a code"),
    Case("Observation?code=8480-6&status=final", ("sys", "two"), "two parameters: AND"),
    Case("Observation?code=8480-6&code=271649006", ("two",), "repeated parameter: AND"),
    Case(f"Patient?identifier={NHS}|9990000018", ("pa",), "identifier system|value"),
    Case("Patient?identifier=9990000026", ("pb",), "identifier value in any system"),
    Case("Patient?identifier=|X1", ("pb",), "identifier without a system"),
    Case(f"Patient?identifier:of-type={V2}|MR|MRN1", ("pa",), ":of-type: type and value"),
    Case(f"Patient?identifier:of-type={V2}|MR|9990000018", (),
         ":of-type: the value must be on the typed identifier"),
    Case("Patient?identifier:of-type=MR|MRN1", 400, ":of-type needs system|code|value"),
    Case("Patient?gender=female", ("pa",), "a code"),
    Case("Patient?gender=http://hl7.org/fhir/administrative-gender|male", ("pb",),
         "required bindings imply the system"),
    Case("Patient?active=true", ("pa",), "boolean"),
    Case("Patient?identifier:missing=true", ("pc",), ":missing"),
    Case("Patient?_id=pa,pc", ("pa", "pc"), "_id"),
    Case("Patient?_id:not=pa", ("pb", "pc"), "_id:not"),
    Case("Observation?code:in=http://example.org/ValueSet/bp", 400, ":in needs terminology"),
    Case("Observation?code:below=8480", 400, ":below needs terminology"),
    Case("Observation?code:exact=8480-6", 400, "string modifiers do not apply to tokens"),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_token(searchable: TestClient, case: Case) -> None:
    check(searchable, case)
