"""The distilled R4 definitions: element model, search parameters, compartment."""

from __future__ import annotations

from pathlib import Path

import pytest

from sharedcare.fhir import definitions as d
from sharedcare.fhir.definitions import build
from sharedcare.fhir.definitions.model import raw_model
from sharedcare.fhir.definitions.search import _raw as raw_search

SOURCE = Path("/work/shared/fhir-r4")


def test_resource_types_are_the_concrete_r4_types() -> None:
    types = d.resource_types()
    assert "Patient" in types and "Observation" in types and "Bundle" in types
    assert "Resource" not in types and "DomainResource" not in types
    assert list(types) == sorted(types)
    assert d.is_resource_type("Encounter") and not d.is_resource_type("Patients")


def test_element_model_has_choice_types_cardinality_and_required_bindings() -> None:
    obs = d.node_for_type("Observation")
    assert obs is not None
    value_q = obs.props["valueQuantity"]
    assert value_q.element.is_choice and value_q.type_code == "Quantity"
    assert obs.props["status"].element.min == 1
    assert obs.props["component"].is_array and obs.props["component"].node is not None
    gender = d.node_for_type("Patient").props["gender"]  # type: ignore[union-attr]
    assert gender.element.valueset == "http://hl7.org/fhir/ValueSet/administrative-gender"
    codes = d.required_codes(gender.element.valueset)
    assert codes == {
        "http://hl7.org/fhir/administrative-gender": frozenset(
            {"male", "female", "other", "unknown"}
        )
    }


def test_content_reference_reuses_the_backbone() -> None:
    item = d.node_for_path("Questionnaire.item")
    assert item is not None and item.props["item"].node is item


def test_search_parameters_cover_every_definition_and_base_params() -> None:
    patient = d.search_parameters("Patient")
    assert patient["birthdate"].expression == "Patient.birthDate"
    assert patient["birthdate"].type == "date"
    assert {"_id", "_lastUpdated", "_profile", "_tag", "_security", "_source"} <= set(patient)
    assert "_text" in patient and "_text" not in d.search_parameters("Bundle")
    subject = d.search_parameters("Observation")["subject"]
    assert subject.type == "reference" and "Patient" in subject.targets
    comp = d.search_parameters("Observation")["code-value-quantity"]
    assert [c.type for c in comp.components] == ["token", "quantity"]
    # a shared expression keeps only this type's branch
    assert d.search_parameters("Condition")["code"].expression == "Condition.code"
    assert d.search_parameters("NotAType") == {}


def test_patient_compartment_from_the_official_definition() -> None:
    comp = d.patient_compartment()
    assert comp["Observation"] == ("subject", "performer")
    assert comp["Patient"] == ("link",)
    assert "Organization" not in comp


@pytest.mark.skipif(not SOURCE.is_dir(), reason="R4 source definitions not present")
def test_package_data_matches_a_fresh_build() -> None:
    model = build.build_model(SOURCE)
    assert model == raw_model()
    assert build.build_search(SOURCE, model) == raw_search()


def test_build_refuses_a_missing_directory(capsys: pytest.CaptureFixture[str]) -> None:
    assert build.main(["build", "/nonexistent/dir"]) == 2
    assert "usage" in capsys.readouterr().err


def test_every_resource_type_has_a_model_and_validates_structurally() -> None:
    from sharedcare.fhir.validation import validate

    for rtype in d.resource_types():
        assert d.node_for_type(rtype) is not None
        issues = validate({"resourceType": rtype, "id": "x"})
        assert {i.code for i in issues} <= {"required"}, rtype
