"""Typical resources shared by the fhir unit tests and benchmarks/bench_fhir_index.py."""

from __future__ import annotations

import copy
from typing import Any

import pytest

OBSERVATION: dict[str, Any] = {
    "resourceType": "Observation",
    "id": "bp1",
    "meta": {
        "lastUpdated": "2024-01-02T10:00:00Z",
        "profile": ["https://fhir.hl7.org.uk/StructureDefinition/UKCore-Observation"],
    },
    "status": "final",
    "category": [
        {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                    "code": "vital-signs",
                }
            ]
        }
    ],
    "code": {
        "coding": [
            {"system": "http://snomed.info/sct", "code": "75367002", "display": "Blood pressure"}
        ],
        "text": "BP",
    },
    "subject": {"reference": "Patient/p1"},
    "encounter": {"reference": "Encounter/e1"},
    "effectiveDateTime": "2024-01-02T09:30:00+00:00",
    "issued": "2024-01-02T10:00:00Z",
    "performer": [{"reference": "Practitioner/pr1"}],
    "component": [
        {
            "code": {
                "coding": [{"system": "http://loinc.org", "code": "8480-6", "display": "Systolic"}]
            },
            "valueQuantity": {
                "value": 120,
                "unit": "mmHg",
                "system": "http://unitsofmeasure.org",
                "code": "mm[Hg]",
            },
        },
        {
            "code": {
                "coding": [{"system": "http://loinc.org", "code": "8462-4", "display": "Diastolic"}]
            },
            "valueQuantity": {
                "value": 80,
                "unit": "mmHg",
                "system": "http://unitsofmeasure.org",
                "code": "mm[Hg]",
            },
        },
    ],
}

PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "p1",
    "meta": {"lastUpdated": "2024-01-02T10:00:00Z"},
    "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9000000009"}],
    "name": [
        {"use": "official", "family": "Smith", "given": ["Richard", "John"], "prefix": ["Mr"]}
    ],
    "telecom": [
        {"system": "phone", "value": "01632 960587", "use": "home"},
        {"system": "email", "value": "r@example.org"},
    ],
    "gender": "male",
    "birthDate": "1970-05-17",
    "address": [
        {
            "use": "home",
            "line": ["1 Trevelyan Square", "Boar Lane"],
            "city": "Leeds",
            "postalCode": "LS1 6AE",
            "country": "GB",
        }
    ],
    "generalPractitioner": [{"reference": "Organization/o1"}],
    "managingOrganization": {"reference": "Organization/o1"},
}

ENCOUNTER: dict[str, Any] = {
    "resourceType": "Encounter",
    "id": "e1",
    "status": "finished",
    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
    "type": [{"coding": [{"system": "http://snomed.info/sct", "code": "11429006"}]}],
    "subject": {"reference": "Patient/p1"},
    "participant": [{"individual": {"reference": "Practitioner/pr1"}}],
    "period": {"start": "2024-01-02T09:00:00Z", "end": "2024-01-02T09:45:00Z"},
    "serviceProvider": {"reference": "Organization/o1"},
}


def sample(resource: dict[str, Any]) -> dict[str, Any]:
    """Return a deep copy so a test can change it freely."""
    return copy.deepcopy(resource)


@pytest.fixture
def observation() -> dict[str, Any]:
    return sample(OBSERVATION)


@pytest.fixture
def patient() -> dict[str, Any]:
    return sample(PATIENT)


@pytest.fixture
def encounter() -> dict[str, Any]:
    return sample(ENCOUNTER)


@pytest.fixture(scope="session")
def typical_resources() -> list[dict[str, Any]]:
    """The three typical resources (do not mutate: copy first)."""
    return [OBSERVATION, PATIENT, ENCOUNTER]
