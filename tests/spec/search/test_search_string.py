"""Spec: string search parameters (https://hl7.org/fhir/R4/search.html#string)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.spec.search.cases import Case, check

TITLE = "String parameters"
INTRO = (
    "By default a string matches when a value **starts with** the search text, ignoring case "
    "and accents (`olaf` finds Ólafsdóttir). `:exact` compares the whole value, case and "
    "accents included; `:contains` matches anywhere in the value. A HumanName is searched "
    "through each of its parts (family, given, prefix, suffix, text) and an Address through "
    "each line, city, district, state, postal code and country."
)


def _patient(pid: str, family: str | None, given: list[str], city: str | None) -> dict[str, Any]:
    patient: dict[str, Any] = {"resourceType": "Patient", "id": pid}
    if family is not None:
        patient["name"] = [{"family": family, "given": given}]
    if city is not None:
        patient["address"] = [{"line": ["1 High Street"], "city": city, "postalCode": "DT1 1AA"}]
    return patient


DATA = [
    _patient("smith", "Smith", ["John"], "Dorchester"),
    _patient("smythe", "Smythe", ["Jane"], "Poole"),
    _patient("olafsdottir", "Ólafsdóttir", ["Anna"], "Bournemouth"),
    _patient("obrien", "O'Brien", ["Sean", "Patrick"], None),
    _patient("delacruz", "de la Cruz", ["María"], "Weymouth"),
    _patient("nameless", None, [], "Poole"),
]

CASES = [
    Case("Patient?family=smith", ("smith",), "starts with, ignoring case"),
    Case("Patient?family=SM", ("smith", "smythe"), "a prefix matches several"),
    Case("Patient?family=olaf", ("olafsdottir",), "accents are folded"),
    Case("Patient?family=ólafs", ("olafsdottir",), "accented search text is folded too"),
    Case("Patient?family=ith", (), "the default is starts-with, not contains"),
    Case("Patient?family:contains=ith", ("smith",), ":contains matches anywhere"),
    Case("Patient?family:contains=LA C", ("delacruz",), ":contains ignores case"),
    Case("Patient?family:exact=Smith", ("smith",), ":exact matches the whole value"),
    Case("Patient?family:exact=smith", (), ":exact is case-sensitive"),
    Case("Patient?family:exact=Smit", (), ":exact does not match a prefix"),
    Case("Patient?given=pat", ("obrien",), "any repetition (second given name)"),
    Case("Patient?name=jane", ("smythe",), "name covers every part of the name"),
    Case("Patient?name=o'b", ("obrien",), "punctuation is kept"),
    Case("Patient?name=de la", ("delacruz",), "spaces are kept"),
    Case("Patient?family=smith,smythe", ("smith", "smythe"), "comma: OR"),
    Case("Patient?name=sm&name=jane", ("smythe",), "repeated parameter: AND"),
    Case("Patient?family=sm&given=jane", ("smythe",), "two string parameters: AND"),
    Case("Patient?family=sm&given=j&name=john", ("smith",), "three string parameters: AND"),
    Case("Patient?family=smith,smythe&given=jane", ("smythe",), "OR inside an AND"),
    Case("Patient?family:exact=Smith&given:contains=oh", ("smith",), "modifiers in an AND"),
    Case("Patient?given=patrick&given=sean", ("obrien",), "AND across repetitions"),
    Case("Patient?family=sm&given=anna", (), "AND of names of different people"),
    Case("Patient?family=sm&address-city=poole", ("smythe",), "AND of name and address"),
    Case("Patient?address-city=poole", ("smythe", "nameless"), "Address parts"),
    Case("Patient?address=dt1", ("smith", "smythe", "olafsdottir", "delacruz", "nameless"),
         "address covers every part, postal code included"),
    Case("Patient?address=dorch", ("smith",), "address matches the city"),
    Case("Patient?family:missing=true", ("nameless",), ":missing=true: no value at all"),
    Case("Patient?family:missing=false",
         ("smith", "smythe", "olafsdottir", "obrien", "delacruz"), ":missing=false"),
    Case("Patient?family=a\\,b", (), "an escaped comma is part of the value"),
    Case("Patient?family:text=smith", 400, "unsupported modifier: 400 OperationOutcome"),
    Case("Patient?family:missing=maybe", 400, ":missing takes true or false"),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_string(searchable: TestClient, case: Case) -> None:
    check(searchable, case)
