"""Reference parsing, iteration and rewriting."""

from __future__ import annotations

from typing import Any

from sharedcare.fhir.references import (
    ABSOLUTE,
    CONTAINED,
    RELATIVE,
    URN,
    ParsedReference,
    iter_references,
    parse_reference,
    reference_type,
    rewrite_references,
)

UUID = "urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0"


def test_parse_forms() -> None:
    assert parse_reference("Patient/123") == ParsedReference(RELATIVE, "Patient", "123")
    assert parse_reference("Patient/1/_history/4") == ParsedReference(RELATIVE, "Patient", "1", "4")
    assert parse_reference("https://x.org/fhir/Observation/a.b") == ParsedReference(
        ABSOLUTE,
        "Observation",
        "a.b",
        None,
        "https://x.org/fhir/Observation/a.b",
        "https://x.org/fhir",
    )
    assert parse_reference("http://snomed.info/sct") == ParsedReference(
        ABSOLUTE, url="http://snomed.info/sct"
    )
    assert parse_reference(UUID) == ParsedReference(URN, url=UUID)
    assert parse_reference("#med1") == ParsedReference(CONTAINED, id="med1")


def test_parse_rejects_bad_references() -> None:
    for bad in (
        "",
        "Patient",
        "Patients/1",
        "Patient/",
        "Patient/has space",
        "urn:uuid:xyz",
        "a b",
    ):
        assert parse_reference(bad) is None, bad


def test_reference_type_falls_back_to_type_element() -> None:
    assert reference_type({"reference": "Encounter/1"}) == "Encounter"
    assert reference_type({"type": "Patient", "identifier": {"value": "1"}}) == "Patient"
    assert reference_type({"display": "x"}) is None


def test_iter_references_walks_the_model(observation: dict[str, Any]) -> None:
    observation["contained"] = [
        {"resourceType": "Specimen", "id": "s", "subject": {"reference": "Patient/p1"}}
    ]
    observation["extension"] = [
        {"url": "http://example.org/x", "valueReference": {"reference": "Device/d1"}}
    ]
    found = {loc: ref["reference"] for loc, ref in iter_references(observation)}
    assert found == {
        "Observation.contained[0].subject": "Patient/p1",
        "Observation.extension[0].valueReference": "Device/d1",
        "Observation.subject": "Patient/p1",
        "Observation.encounter": "Encounter/e1",
        "Observation.performer[0]": "Practitioner/pr1",
    }


def test_rewrite_for_transactions() -> None:
    bundle_entry: dict[str, Any] = {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"code": "AMB"},
        "subject": {"reference": UUID},
        "participant": [{"individual": {"reference": UUID}}],
    }
    assert rewrite_references(bundle_entry, {UUID: "Patient/42"}) == 2
    assert bundle_entry["subject"] == {"reference": "Patient/42"}
    assert bundle_entry["participant"][0]["individual"]["reference"] == "Patient/42"
    assert rewrite_references(bundle_entry, lambda ref: None) == 0
