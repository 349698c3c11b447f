"""Structural validation against the R4 base definitions."""

from __future__ import annotations

from typing import Any

from sharedcare.fhir.validation import Issue, has_errors, operation_outcome, validate


def _locs(issues: list[Issue]) -> dict[str, str]:
    return {i.location: i.code for i in issues}


def test_typical_resources_are_valid(
    observation: dict[str, Any], patient: dict[str, Any], encounter: dict[str, Any]
) -> None:
    for r in (observation, patient, encounter):
        assert validate(r) == []


def test_unknown_element_and_wrong_json_types(patient: dict[str, Any]) -> None:
    patient["nickname"] = "Rich"
    patient["name"] = {"family": "Smith"}
    patient["active"] = "yes"
    patient["multipleBirthInteger"] = 1.5
    locs = _locs(validate(patient))
    assert locs == {
        "Patient.nickname": "structure",
        "Patient.name": "structure",
        "Patient.active": "structure",
        "Patient.multipleBirthInteger": "value",
    }


def test_primitive_formats(patient: dict[str, Any]) -> None:
    patient["birthDate"] = "1970-02-30"
    patient["id"] = "has spaces"
    patient["meta"]["lastUpdated"] = "2024-01-02T10:00:00"  # instant needs a zone
    patient["telecom"][0]["rank"] = 0
    locs = _locs(validate(patient))
    assert locs == {
        "Patient.birthDate": "value",
        "Patient.id": "value",
        "Patient.meta.lastUpdated": "value",
        "Patient.telecom[0].rank": "value",
    }


def test_required_binding_and_cardinality(observation: dict[str, Any]) -> None:
    observation["status"] = "done"
    del observation["code"]
    observation["component"][1]["code"] = {}
    issues = validate(observation)
    assert _locs(issues) == {
        "Observation.status": "code-invalid",
        "Observation.code": "required",
        "Observation.component[1].code": "structure",
    }
    assert has_errors(issues)


def test_choice_types(observation: dict[str, Any]) -> None:
    observation["valueString"] = "high"
    observation["valueBoolean"] = True
    observation["valueFoo"] = 1
    locs = _locs(validate(observation))
    assert "Observation.valueFoo" in locs
    assert any(k in locs for k in ("Observation.valueString", "Observation.valueBoolean"))


def test_contained_resources_are_validated(patient: dict[str, Any]) -> None:
    patient["contained"] = [
        {"resourceType": "Organization", "id": "o", "active": "true"},
        {"resourceType": "Nope"},
        {"resourceType": "Practitioner", "contained": [{"resourceType": "Patient"}]},
    ]
    locs = _locs(validate(patient))
    assert locs["Patient.contained[0].active"] == "structure"
    assert locs["Patient.contained[1]"] == "not-supported"
    assert locs["Patient.contained[2].contained"] == "structure"


def test_primitive_extensions(patient: dict[str, Any]) -> None:
    ext = {"extension": [{"url": "http://example.org/x", "valueString": "a"}]}
    patient["_birthDate"] = ext
    patient["name"][0]["_given"] = [None, ext]
    assert validate(patient) == []
    patient["_gender"] = {"foo": 1}
    patient["_name"] = {"id": "x"}
    locs = _locs(validate(patient))
    assert locs == {"Patient._gender.foo": "structure", "Patient._name": "structure"}


def test_extension_needs_url_and_single_value(patient: dict[str, Any]) -> None:
    patient["extension"] = [{"valueString": "x"}]
    assert _locs(validate(patient)) == {"Patient.extension[0].url": "required"}


def test_bundle_entries_are_validated() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": {"resourceType": "Patient", "gender": "mail"}}],
    }
    assert _locs(validate(bundle)) == {"Bundle.entry[0].resource.gender": "code-invalid"}


def test_root_problems() -> None:
    assert validate([])[0].severity == "fatal"
    assert validate({"id": "x"})[0].code == "structure"
    assert validate({"resourceType": "Patient "})[0].code == "not-supported"


def test_messages_never_echo_values(patient: dict[str, Any]) -> None:
    secret = "Zebedee-9434765919"
    patient["birthDate"] = secret
    patient["gender"] = secret
    patient["id"] = secret + " x"
    patient["name"][0]["given"] = secret
    issues = validate(patient)
    assert len(issues) == 4
    for issue in issues:
        assert "Zebedee" not in issue.diagnostics and "9434765919" not in issue.diagnostics


def test_operation_outcome_names_paths(patient: dict[str, Any]) -> None:
    patient["gender"] = "x"
    oo = operation_outcome(validate(patient))
    assert oo["resourceType"] == "OperationOutcome"
    assert oo["issue"][0]["expression"] == ["Patient.gender"]
    assert oo["issue"][0]["severity"] == "error" and oo["issue"][0]["code"] == "code-invalid"
    assert validate(oo) == []
    assert operation_outcome([])["issue"][0]["severity"] == "information"


def test_absurd_nesting_is_reported_not_raised() -> None:
    ext: dict[str, Any] = {"url": "http://example.org/x", "valueString": "x"}
    for _ in range(3000):
        ext = {"url": "http://example.org/x", "extension": [ext]}
    issues = validate({"resourceType": "Patient", "extension": [ext]})
    assert [i.code for i in issues] == ["too-costly"]


def test_local_references_must_resolve(observation: dict[str, Any]) -> None:
    observation["contained"] = [{"resourceType": "Practitioner", "id": "pr"}]
    observation["performer"] = [{"reference": "#pr"}, {"reference": "#missing"}]
    assert _locs(validate(observation)) == {"Observation.performer[1].reference": "invariant"}
