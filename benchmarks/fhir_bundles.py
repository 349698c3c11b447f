"""Synthetic transaction bundles for benchmarks: one patient and ~100 related resources."""

from __future__ import annotations

import random
import uuid
from typing import Any

LOINC = [
    ("8867-4", "Heart rate", "/min", 50, 110),
    ("8480-6", "Systolic blood pressure", "mm[Hg]", 95, 180),
    ("8462-4", "Diastolic blood pressure", "mm[Hg]", 55, 110),
    ("29463-7", "Body weight", "kg", 45, 120),
    ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "mmol/mol", 30, 90),
    ("2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "mmol/L", 3, 8),
]
SNOMED_CONDITIONS = [
    ("38341003", "Hypertensive disorder"),
    ("44054006", "Diabetes mellitus type 2"),
    ("195967001", "Asthma"),
    ("13645005", "Chronic obstructive lung disease"),
]


def patient_bundle(rng: random.Random, size: int = 100) -> dict[str, Any]:
    """A transaction Bundle: a Patient plus Encounters, Observations, Conditions and more."""
    patient_url = f"urn:uuid:{uuid.UUID(int=rng.getrandbits(128))}"
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": patient_url,
            "resource": {
                "resourceType": "Patient",
                "identifier": [
                    {
                        "system": "https://fhir.nhs.uk/Id/nhs-number",
                        "value": f"999{rng.randrange(10**7):07d}",
                    }
                ],
                "name": [
                    {
                        "family": rng.choice(["Smith", "Jones", "Taylor", "Brown", "Patel"]),
                        "given": [rng.choice(["Alex", "Sam", "Jo", "Chris", "Pat"])],
                    }
                ],
                "gender": rng.choice(["male", "female"]),
                "birthDate": f"{rng.randrange(1930, 2020)}-{rng.randrange(1, 13):02d}-"
                f"{rng.randrange(1, 29):02d}",
                "address": [{"postalCode": f"DT{rng.randrange(1, 12)} {rng.randrange(1, 9)}AB"}],
            },
            "request": {"method": "POST", "url": "Patient"},
        }
    ]
    subject = {"reference": patient_url}
    encounters = []
    for _ in range(max(1, size // 10)):
        url = f"urn:uuid:{uuid.UUID(int=rng.getrandbits(128))}"
        encounters.append(url)
        year = rng.randrange(2019, 2026)
        entries.append(
            {
                "fullUrl": url,
                "resource": {
                    "resourceType": "Encounter",
                    "status": "finished",
                    "class": {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                        "code": "AMB",
                    },
                    "subject": subject,
                    "period": {
                        "start": f"{year}-03-01T09:00:00Z",
                        "end": f"{year}-03-01T09:20:00Z",
                    },
                },
                "request": {"method": "POST", "url": "Encounter"},
            }
        )
    for code, display in rng.sample(SNOMED_CONDITIONS, 2):
        entries.append(
            {
                "resource": {
                    "resourceType": "Condition",
                    "subject": subject,
                    "clinicalStatus": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                "code": "active",
                            }
                        ]
                    },
                    "code": {
                        "coding": [
                            {"system": "http://snomed.info/sct", "code": code, "display": display}
                        ]
                    },
                    "onsetDateTime": f"{rng.randrange(2000, 2024)}-06-01",
                },
                "request": {"method": "POST", "url": "Condition"},
            }
        )
    while len(entries) < size:
        code, display, unit, low, high = rng.choice(LOINC)
        entries.append(
            {
                "resource": {
                    "resourceType": "Observation",
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
                        "coding": [{"system": "http://loinc.org", "code": code, "display": display}]
                    },
                    "subject": subject,
                    "encounter": {"reference": rng.choice(encounters)},
                    "effectiveDateTime": f"{rng.randrange(2019, 2026)}-0{rng.randrange(1, 10)}-"
                    f"1{rng.randrange(0, 9)}T10:00:00Z",
                    "valueQuantity": {
                        "value": round(rng.uniform(low, high), 1),
                        "unit": unit,
                        "system": "http://unitsofmeasure.org",
                        "code": unit,
                    },
                },
                "request": {"method": "POST", "url": "Observation"},
            }
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}
