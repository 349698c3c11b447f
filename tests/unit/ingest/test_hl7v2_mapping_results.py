"""ORU^R01 to DiagnosticReport + Observations + Specimen; radiology adds an ImagingStudy."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from sharedcare.fhir.validation import validate
from sharedcare.ingest.hl7v2.errors import MappingError
from sharedcare.ingest.hl7v2.mapping import MappedMessage, map_message
from sharedcare.ingest.hl7v2.parse import parse_message


def seg(seg_id: str, fields: dict[int, str]) -> str:
    """Build a segment from {field number: value}."""
    values = [""] * max(fields)
    for number, value in fields.items():
        values[number - 1] = value
    return "|".join([seg_id, *values])


def oru(*segments: str, version: str = "2.5.1") -> MappedMessage:
    msh = f"MSH|^~\\&|WINPATH|DCH|SC|ICS|20240401120000||ORU^R01^ORU_R01|R1|P|{version}"
    return map_message(parse_message("\r".join([msh, *segments])))


def one(mapped: MappedMessage, resource_type: str) -> dict[str, Any]:
    for resource in mapped.resources:
        errors = [i for i in validate(resource) if i.severity in ("error", "fatal")]
        assert errors == [], (resource["resourceType"], errors)
    found = mapped.of_type(resource_type)
    assert len(found) == 1, [r["resourceType"] for r in mapped.resources]
    return found[0]


PID = "PID|1||D200^^^DCH^MR||LINDQVIST^ASTRID||19500202|F"
OBR = seg(
    "OBR",
    {
        1: "1",
        2: "P77^ICE",
        3: "F88^WINPATH",
        4: "UE^Urea and electrolytes^WINPATH",
        7: "20240401083000",
        22: "20240401113000",
        24: "CH",
        25: "F",
    },
)
SODIUM = seg(
    "OBX",
    {
        1: "1",
        2: "NM",
        3: "2951-2^Sodium^LN",
        5: "131",
        6: "mmol/L^mmol/L^UCUM",
        7: "133-146",
        8: "L",
        11: "F",
        14: "20240401090000",
        16: "T1^TECH^TINA",
        23: "DCH Pathology^^^^^DCH^XX^^^LAB1",
    },
)
POTASSIUM = seg(
    "OBX",
    {
        1: "2",
        2: "SN",
        3: "2823-3^Potassium^LN",
        5: "<^2.5",
        6: "mmol/L^^UCUM",
        7: "3.5-5.3",
        8: "LL",
        11: "C",
    },
)
ORGANISM = seg(
    "OBX", {1: "3", 2: "CWE", 3: "600-7^Culture^LN", 5: "112283007^Escherichia coli^SCT", 11: "P"}
)
COMMENT = seg("OBX", {1: "4", 2: "TX", 3: "COMM^Comment^WINPATH", 5: "Line one~Line two", 11: "F"})
SPM = seg(
    "SPM",
    {
        1: "1",
        2: "S1&DCH^SPEC9&WINPATH",
        4: "119297000^Blood specimen^SCT",
        17: "20240401080000",
        18: "20240401084500",
    },
)


def test_report_and_observations() -> None:
    mapped = oru(
        PID,
        "ORC|RE|P77^ICE|F88^WINPATH",
        OBR,
        SODIUM,
        "NTE|1||Haemolysed",
        POTASSIUM,
        ORGANISM,
        COMMENT,
        SPM,
    )
    report = one(mapped, "DiagnosticReport")
    patient = one(mapped, "Patient")
    assert report["status"] == "final"
    assert report["code"]["coding"][0]["code"] == "UE"
    assert report["subject"] == {"reference": f"Patient/{patient['id']}"}
    assert report["effectiveDateTime"] == "2024-04-01T08:30:00+01:00"
    assert report["issued"] == "2024-04-01T11:30:00+01:00"
    assert [i["type"]["coding"][0]["code"] for i in report["identifier"]] == ["FILL", "PLAC"]
    assert report["basedOn"][0]["identifier"]["value"] == "P77"
    observations = mapped.of_type("Observation")
    assert [r["reference"] for r in report["result"]] == [
        f"Observation/{o['id']}" for o in observations
    ]
    sodium, potassium, organism, comment = observations
    assert sodium["valueQuantity"] == {
        "value": 131,
        "unit": "mmol/L",
        "code": "mmol/L",
        "system": "http://unitsofmeasure.org",
    }
    assert sodium["referenceRange"][0]["low"]["value"] == 133
    assert sodium["referenceRange"][0]["high"]["value"] == 146
    assert sodium["interpretation"][0]["coding"][0]["code"] == "L"
    assert sodium["status"] == "final"
    assert sodium["effectiveDateTime"] == "2024-04-01T09:00:00+01:00"
    assert sodium["note"] == [{"text": "Haemolysed"}]
    assert sodium["code"]["coding"][0]["system"] == "http://loinc.org"
    organisation = one(mapped, "Organization")
    assert {
        "reference": f"Organization/{organisation['id']}",
        "display": "DCH Pathology",
    } in sodium["performer"]
    assert any(p["reference"].startswith("Practitioner/") for p in sodium["performer"])
    assert report["performer"] == [
        {"reference": f"Organization/{organisation['id']}", "display": "DCH Pathology"}
    ]
    assert potassium["valueQuantity"]["comparator"] == "<"
    assert potassium["valueQuantity"]["value"] == 2.5
    assert potassium["status"] == "corrected"
    assert organism["valueCodeableConcept"]["coding"][0] == {
        "system": "http://snomed.info/sct",
        "code": "112283007",
        "display": "Escherichia coli",
    }
    assert organism["status"] == "preliminary"
    assert comment["valueString"] == "Line one\nLine two"
    specimen = one(mapped, "Specimen")
    assert report["specimen"] == [{"reference": f"Specimen/{specimen['id']}"}]
    assert sodium["specimen"] == {"reference": f"Specimen/{specimen['id']}"}
    assert specimen["type"]["coding"][0]["system"] == "http://snomed.info/sct"
    assert specimen["collection"]["collectedDateTime"] == "2024-04-01T08:00:00+01:00"
    assert specimen["receivedTime"] == "2024-04-01T08:45:00+01:00"
    assert specimen["identifier"][0]["value"] == "SPEC9"


def test_specimen_from_obr15_in_v23() -> None:
    obr = seg(
        "OBR",
        {
            1: "1",
            3: "F1",
            4: "FBC^Full blood count",
            7: "200301020304",
            15: "BLD&Blood&HL70070",
            25: "F",
        },
    )
    mapped = oru(PID, obr, SODIUM, version="2.3")
    specimen = one(mapped, "Specimen")
    assert specimen["type"]["coding"][0] == {
        "system": "http://terminology.hl7.org/CodeSystem/v2-0070",
        "code": "BLD",
    }
    assert specimen["collection"]["collectedDateTime"] == "2003-01-02T03:04:00+00:00"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("^10^:^20", {"valueRatio": {"numerator": {"value": 10}, "denominator": {"value": 20}}}),
        (">=^7", None),
        ("^1^-^5", None),
    ],
)
def test_structured_numeric_forms(value: str, expected: dict[str, Any] | None) -> None:
    obx = seg("OBX", {1: "1", 2: "SN", 3: "X^Thing^L", 5: value, 11: "F"})
    observation = one(oru(PID, OBR, obx), "Observation")
    if expected is not None:
        assert {k: observation[k] for k in expected} == expected
    elif value.startswith(">="):
        assert observation["valueQuantity"]["comparator"] == ">="
    else:
        assert observation["valueRange"]["low"]["value"] == 1
        assert observation["valueRange"]["high"]["value"] == 5


def test_non_numeric_nm_is_kept_as_text_with_a_warning() -> None:
    obx = seg("OBX", {1: "1", 2: "NM", 3: "X^Thing^L", 5: "see comment", 11: "F"})
    mapped = oru(PID, OBR, obx)
    assert one(mapped, "Observation")["valueString"] == "see comment"
    assert any(i.segment == "OBX" and i.field == 5 for i in mapped.issues)


def test_result_ids_are_stable_and_distinct() -> None:
    first = oru(PID, OBR, SODIUM, POTASSIUM)
    again = oru(PID, OBR, SODIUM, POTASSIUM)
    ids = [r["id"] for r in first.of_type("Observation")]
    assert ids == [r["id"] for r in again.of_type("Observation")]
    assert len(set(ids)) == 2
    corrected_obr = seg(
        "OBR",
        {
            1: "1",
            2: "P77^ICE",
            3: "F88^WINPATH",
            4: "UE^U and E^WINPATH",
            7: "20240401083000",
            25: "C",
        },
    )
    corrected = oru(PID, corrected_obr, SODIUM)
    assert one(corrected, "DiagnosticReport")["status"] == "corrected"
    assert one(corrected, "DiagnosticReport")["id"] == one(first, "DiagnosticReport")["id"]


def test_oru_without_obr_is_a_mapping_error() -> None:
    with pytest.raises(MappingError, match="no OBR"):
        oru(PID)


def test_obx_without_code_is_a_mapping_error() -> None:
    with pytest.raises(MappingError, match="OBX-3"):
        oru(PID, OBR, seg("OBX", {1: "1", 2: "ST", 5: "x", 11: "F"}))


def test_radiology_report_text_and_imaging_study() -> None:
    obr = seg(
        "OBR",
        {
            1: "1",
            2: "PL1^RIS",
            3: "ACC123^RIS",
            4: "XCHES^CT chest^LOCAL",
            7: "20240402100000",
            16: "D9^REFERRER^RITA",
            24: "CT",
            25: "F",
            32: "R7&READER&ROB",
        },
    )
    body = seg(
        "OBX", {1: "1", 2: "TX", 3: "&GDT^Report body", 5: "Lungs clear.~No effusion.", 11: "F"}
    )
    impression = seg("OBX", {1: "2", 2: "TX", 3: "&IMP^Impression", 5: "Normal study.", 11: "F"})
    uid = seg(
        "OBX", {1: "3", 2: "UI", 3: "113014^Study^DCM", 5: "1.2.826.0.1.3680043.2.1", 11: "F"}
    )
    mapped = oru(PID, obr, body, impression, uid)
    report = one(mapped, "DiagnosticReport")
    study = one(mapped, "ImagingStudy")
    text = base64.b64decode(report["presentedForm"][0]["data"]).decode()
    assert "Lungs clear.\nNo effusion." in text
    assert "Normal study." in text
    assert report["conclusion"] == "Normal study."
    assert report["imagingStudy"] == [{"reference": f"ImagingStudy/{study['id']}"}]
    assert report["resultsInterpreter"][0]["display"] == "ROB READER"
    assert study["status"] == "available"
    assert study["modality"] == [
        {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "CT"}
    ]
    assert {"system": "urn:dicom:uid", "value": "urn:oid:1.2.826.0.1.3680043.2.1"} in study[
        "identifier"
    ]
    accession = [i for i in study["identifier"] if i.get("type")]
    assert accession[0]["value"] == "ACC123"
    assert study["started"] == "2024-04-02T10:00:00+01:00"
    assert study["referrer"]["display"] == "RITA REFERRER"
    assert study["procedureCode"] == [report["code"]]
    assert all(
        o["category"][0]["coding"][0]["code"] == "imaging" for o in mapped.of_type("Observation")
    )
