"""Patient compartment membership from the official CompartmentDefinition."""

from __future__ import annotations

from typing import Any

from sharedcare.fhir.compartment import compartment_params, patient_ids
from sharedcare.fhir.definitions import patient_compartment, search_parameters
from sharedcare.fhir.search_index import extract_index


def test_every_compartment_param_is_a_reference_search_param() -> None:
    for rtype, params in patient_compartment().items():
        for p in params:
            sp = search_parameters(rtype).get(p)
            assert sp is not None and sp.type == "reference", (rtype, p)


def test_observation_subject_and_performer(observation: dict[str, Any]) -> None:
    assert compartment_params("Observation") == ("subject", "performer")
    assert patient_ids(observation) == {"p1"}
    observation["performer"].append({"reference": "Patient/p2"})
    assert patient_ids(observation, extract_index(observation)) == {"p1", "p2"}
    observation["subject"] = {"reference": "Group/g"}
    assert patient_ids(observation) == {"p2"}


def test_patient_is_in_its_own_compartment(patient: dict[str, Any]) -> None:
    patient["link"] = [{"other": {"reference": "Patient/old"}, "type": "replaces"}]
    assert patient_ids(patient) == {"p1", "old"}


def test_types_outside_the_compartment() -> None:
    org = {"resourceType": "Organization", "id": "o", "partOf": {"reference": "Patient/x"}}
    assert compartment_params("Organization") == ()
    assert patient_ids(org) == frozenset()
    assert patient_ids({}) == frozenset()
