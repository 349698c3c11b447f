"""The hand-built record the indicator spec tests share (see test_indicators_spec.py)."""

from __future__ import annotations

from datetime import date
from typing import Any

from sharedcare.analytics.indicators import Params

PARAMS = Params(census=date(2025, 12, 31))
SNOMED = "http://snomed.info/sct"
ADMISSION_METHOD = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-AdmissionMethod"
LSOA_EXT = "https://sharedcare.example.org/fhir/StructureDefinition/Extension-AddressLSOA2011"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
SSNAP = "urn:sharedcare:codesystem:ssnap"


def make_patient(pid: str, birth: str, lsoa: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "gender": "female",
        "birthDate": birth,
        "address": [{"use": "home", "extension": [{"url": LSOA_EXT, "valueCode": lsoa}]}],
        "generalPractitioner": [{"reference": "Organization/J81006"}],
    }


def _condition(pid: str, n: int, code: str) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": f"{pid}-c{n}",
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": "active",
                }
            ]
        },
        "code": {"coding": [{"system": SNOMED, "code": code}]},
        "subject": {"reference": f"Patient/{pid}"},
        "onsetDateTime": "2015-01-01",
    }


def make_admission(pid: str, method: str) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "id": f"{pid}-adm",
        "status": "finished",
        "class": {"code": "IMP"},
        "subject": {"reference": f"Patient/{pid}"},
        "period": {"start": "2025-06-01T10:00:00+00:00", "end": "2025-06-03T10:00:00+00:00"},
        "hospitalization": {
            "extension": [
                {"url": ADMISSION_METHOD, "valueCodeableConcept": {"coding": [{"code": method}]}}
            ]
        },
    }


def _record() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(20):
        pid = f"old{i}"
        out.append(make_patient(pid, "1955-03-01", "E01015273"))
        if i < 10:
            out += [_condition(pid, 0, "38341003"), make_admission(pid, "21")]
        else:
            codes = ["44054006", "49436004", "84114007", "709044004", "13645005"]
            out += [_condition(pid, n, c) for n, c in enumerate(codes)]
        young = f"young{i}"
        out.append(make_patient(young, "1985-06-30", "E01015272"))
        if i < 10:
            out.append(make_admission(young, "11"))
    trust = {"identifier": {"system": ODS, "value": "RBD"}}
    for i in range(25):
        start, stop = ("2025-11-01", None) if i < 10 else ("2024-06-01", None)
        if i >= 20:
            start, stop = "2024-01-01", "2024-09-01"
        episode: dict[str, Any] = {
            "resourceType": "EpisodeOfCare",
            "id": f"rtt{i}",
            "status": "finished" if stop else "active",
            "type": [
                {
                    "coding": [
                        {"system": "urn:sharedcare:codesystem:episode-type", "code": "rtt-pathway"}
                    ]
                },
                {
                    "coding": [
                        {
                            "system": "https://fhir.nhs.uk/CodeSystem/NHSDataModelAndDictionary-treatment-function",
                            "code": "130",
                            "display": "Ophthalmology",
                        }
                    ]
                },
            ],
            "patient": {"reference": f"Patient/old{i % 20}"},
            "managingOrganization": trust,
            "period": {"start": start, **({"end": stop} if stop else {})},
        }
        out.append(episode)
    for i in range(20):
        fast = i < 10
        enc = {
            "resourceType": "Encounter",
            "id": f"stroke{i}",
            "status": "finished",
            "class": {"code": "IMP"},
            "type": [{"coding": [{"system": SSNAP, "code": "stroke-admission"}]}],
            "subject": {"reference": f"Patient/old{i}"},
            "identifier": [{"system": "urn:x", "value": f"S{i}", "assigner": {"display": "RBH"}}],
            "period": {"start": "2025-05-01T10:00:00+00:00"},
            "serviceProvider": trust,
        }
        if fast:
            enc["location"] = [
                {
                    "location": {"display": "Stroke unit"},
                    "period": {"start": "2025-05-01T13:00:00+00:00"},
                }
            ]
        out.append(enc)
        scan = "2025-05-01T10:30:00+00:00" if fast else "2025-05-01T12:00:00+00:00"
        out.append(_procedure(f"scan{i}", f"stroke{i}", "first-brain-imaging", scan))
        if not fast:
            out.append(_procedure(f"lysis{i}", f"stroke{i}", "thrombolysis", scan))
    for i in range(20):
        issued = "2025-05-01T20:00:00+00:00" if i < 10 else "2025-05-03T08:00:00+00:00"
        out.append(
            {
                "resourceType": "Specimen",
                "id": f"spec{i}",
                "collection": {"collectedDateTime": "2025-05-01T08:00:00+00:00"},
            }
        )
        out.append(
            {
                "resourceType": "DiagnosticReport",
                "id": f"rep{i}",
                "status": "final",
                "category": [
                    {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/v2-0074",
                                "code": "HM",
                            }
                        ]
                    }
                ],
                "code": {"coding": [{"code": "FBC"}]},
                "subject": {"reference": f"Patient/old{i}"},
                "identifier": [
                    {
                        "type": {"coding": [{"code": "FILL"}]},
                        "system": "urn:sharedcare:hl7v2:order:DCH",
                        "value": f"F{i}",
                    }
                ],
                "effectiveDateTime": "2025-05-01T08:00:00+00:00",
                "issued": issued,
                "specimen": [{"reference": f"Specimen/spec{i}"}],
            }
        )
    return out


def _procedure(pid: str, enc: str, event: str, when: str) -> dict[str, Any]:
    return {
        "resourceType": "Procedure",
        "id": pid,
        "status": "completed",
        "code": {"coding": [{"system": SSNAP, "code": event}]},
        "subject": {"reference": "Patient/x"},
        "encounter": {"reference": f"Encounter/{enc}"},
        "performedDateTime": when,
    }


RECORD = _record()
