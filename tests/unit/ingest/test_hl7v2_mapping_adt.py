"""ADT to Patient and Encounter (with location history), and A40 merges."""

from __future__ import annotations

from typing import Any

import pytest

from sharedcare.fhir.validation import validate
from sharedcare.identity.nhs_number import NHS_NUMBER_SYSTEM
from sharedcare.ingest.hl7v2.errors import MappingError, Severity
from sharedcare.ingest.hl7v2.mapping import MappedMessage, map_message, to_transaction_bundle
from sharedcare.ingest.hl7v2.parse import parse_message

VALID_NHS = "9434765919"
INVALID_NHS = "9434765918"


def adt(event: str, *segments: str, version: str = "2.4", cid: str = "C1") -> MappedMessage:
    msh = f"MSH|^~\\&|PAS|RBCH|SC|ICS|20240315101500||ADT^{event}|{cid}|P|{version}"
    return map_message(parse_message("\r".join([msh, *segments])))


PID = (
    f"PID|1||H100^^^RBCH^MR~{VALID_NHS}^^^NHS^NH||OCTAVIA^PRIMROSE^JANE^^MRS^^L||19650412|F|||"
    "1 QUAY RD^FLAT 2^POOLE^DORSET^BH15 1AA^GBR^H||01202 111222^PRN^PH~^NET^Internet^a@b.uk|"
    "07700 900000^WPN^CP"
)
EVN = "EVN|{event}|20240315101500"


def seg(seg_id: str, fields: dict[int, str]) -> str:
    """Build a segment from {field number: value}."""
    values = [""] * max(fields)
    for number, value in fields.items():
        values[number - 1] = value
    return "|".join([seg_id, *values])


def one(mapped: MappedMessage, resource_type: str) -> dict[str, Any]:
    for resource in mapped.resources:
        errors = [i for i in validate(resource) if i.severity in ("error", "fatal")]
        assert errors == [], (resource["resourceType"], errors)
    found = mapped.of_type(resource_type)
    assert len(found) == 1, [r["resourceType"] for r in mapped.resources]
    return found[0]


def test_patient_demographics() -> None:
    mapped = adt("A28", EVN.format(event="A28"), PID, "PV1|1|N")
    patient = one(mapped, "Patient")
    assert {"system": NHS_NUMBER_SYSTEM, "value": VALID_NHS} in patient["identifier"]
    local = patient["identifier"][0]
    assert local["value"] == "H100"
    assert local["system"] == "urn:sharedcare:hl7v2:id:RBCH:RBCH"
    assert local["type"]["coding"][0]["code"] == "MR"
    assert local["assigner"] == {"display": "RBCH"}
    assert patient["name"] == [
        {"family": "OCTAVIA", "given": ["PRIMROSE", "JANE"], "prefix": ["MRS"], "use": "official"}
    ]
    assert patient["birthDate"] == "1965-04-12"
    assert patient["gender"] == "female"
    assert patient["address"][0] == {
        "line": ["1 QUAY RD", "FLAT 2"],
        "city": "POOLE",
        "state": "DORSET",
        "postalCode": "BH15 1AA",
        "country": "GBR",
        "use": "home",
    }
    assert {"system": "phone", "value": "01202 111222", "use": "home"} in patient["telecom"]
    assert {"system": "email", "value": "a@b.uk", "use": "home"} in patient["telecom"]
    assert {"system": "phone", "value": "07700 900000", "use": "mobile"} in patient["telecom"]
    assert not mapped.of_type("Encounter")


@pytest.mark.parametrize(
    ("code", "gender"),
    [
        ("M", "male"),
        ("F", "female"),
        ("O", "other"),
        ("U", "unknown"),
        ("A", "other"),
        ("N", "other"),
    ],
)
def test_gender_table_0001(code: str, gender: str) -> None:
    mapped = adt("A31", f"PID|1||X1^^^RBCH||A^B||20000101|{code}", "PV1|1|N")
    assert one(mapped, "Patient")["gender"] == gender


def test_invalid_labelled_nhs_number_is_kept_local_with_a_warning() -> None:
    mapped = adt("A31", f"PID|1||{INVALID_NHS}^^^NHS^NH||A^B", "PV1|1|N")
    patient = one(mapped, "Patient")
    assert patient["identifier"][0]["system"] != NHS_NUMBER_SYSTEM
    warnings = [i for i in mapped.issues if i.severity is Severity.WARNING]
    assert any("NHS number" in w.reason and w.field == 3 for w in warnings)
    assert all(INVALID_NHS not in w.reason for w in warnings)


def test_bad_date_of_birth_and_sex_give_warnings_not_errors() -> None:
    mapped = adt("A31", "PID|1||X1^^^RBCH||A^B||19991340|Q", "PV1|1|N")
    patient = one(mapped, "Patient")
    assert "birthDate" not in patient and "gender" not in patient
    assert {(i.segment, i.field) for i in mapped.issues} >= {("PID", 7), ("PID", 8)}


def test_admission_encounter() -> None:
    pv1 = seg(
        "PV1",
        {
            1: "1",
            2: "I",
            3: "W12^B^3^RBCH",
            7: "D01^HOUSE^GREG^^^DR",
            10: "GEN",
            14: "1",
            17: "D02^WILSON^JAMES",
            19: "V555^^^RBCH^VN",
            44: "20240315094500",
        },
    )
    mapped = adt("A01", EVN.format(event="A01"), PID, pv1)
    encounter = one(mapped, "Encounter")
    patient = one(mapped, "Patient")
    assert encounter["status"] == "in-progress"
    assert encounter["class"]["code"] == "IMP"
    assert encounter["subject"] == {"reference": f"Patient/{patient['id']}"}
    assert encounter["identifier"][0]["value"] == "V555"
    assert encounter["period"] == {"start": "2024-03-15T09:45:00+00:00"}
    assert encounter["serviceType"]["coding"][0] == {
        "system": "http://terminology.hl7.org/CodeSystem/v2-0069",
        "code": "GEN",
    }
    assert encounter["hospitalization"]["admitSource"]["coding"][0]["code"] == "1"
    roles = [p["type"][0]["coding"][0]["code"] for p in encounter["participant"]]
    assert roles == ["ATND", "ADM"]
    assert len(mapped.of_type("Practitioner")) == 2
    [entry] = encounter["location"]
    assert entry["status"] == "active"
    assert entry["period"] == {"start": "2024-03-15T10:15:00+00:00"}
    location = one(mapped, "Location")
    assert entry["location"]["reference"] == f"Location/{location['id']}"
    assert location["physicalType"]["coding"][0]["code"] == "bd"


V2_0007 = "http://terminology.hl7.org/CodeSystem/v2-0007"


def test_admission_type_pv1_4_goes_to_encounter_type() -> None:
    pv1 = seg("PV1", {1: "1", 2: "I", 3: "W1^^^RBCH", 4: "E", 19: "V9^^^RBCH^VN"})
    encounter = one(adt("A01", EVN.format(event="A01"), PID, pv1), "Encounter")
    assert encounter["type"] == [{"coding": [{"system": V2_0007, "code": "E"}]}]


def test_admission_type_keeps_a_sent_code_system_and_is_absent_when_empty() -> None:
    pv1 = seg("PV1", {1: "1", 2: "I", 4: "C^Elective^HL70007", 19: "V9^^^RBCH^VN"})
    encounter = one(adt("A01", PID, pv1), "Encounter")
    assert encounter["type"][0]["coding"] == [
        {"system": V2_0007, "code": "C", "display": "Elective"}
    ]
    bare = one(adt("A01", PID, seg("PV1", {1: "1", 2: "I", 19: "V9^^^RBCH^VN"})), "Encounter")
    assert "type" not in bare


def test_encounters_view_reads_the_admission_type() -> None:
    import duckdb

    from sharedcare.analytics.library import load_view
    from sharedcare.analytics.views import load_duckdb_table, run_duckdb

    pv1 = seg("PV1", {1: "1", 2: "E", 3: "ED^^^RBCH", 4: "E", 19: "V7^^^RBCH^VN"})
    mapped = adt("A04", PID, pv1)
    con = duckdb.connect()
    source = load_duckdb_table(con, "resources", mapped.resources)
    rows = run_duckdb(con, load_view("encounters"), source).as_dicts()
    assert [r["admission_type_v2"] for r in rows] == ["E"]


@pytest.mark.parametrize(("pv1_class", "code"), [("E", "EMER"), ("O", "AMB"), ("P", "PRENC")])
def test_patient_class(pv1_class: str, code: str) -> None:
    mapped = adt("A04", PID, f"PV1|1|{pv1_class}|ED^^^RBCH||||||||||||||||V1^^^RBCH^VN")
    assert one(mapped, "Encounter")["class"]["code"] == code


def test_transfer_records_prior_and_new_location() -> None:
    pv1 = "PV1|1|I|W14^A^1^RBCH|||W12^B^3^RBCH|||||||||||||V555^^^RBCH^VN"
    mapped = adt("A02", "EVN|A02|20240316120000", PID, pv1)
    encounter = one(mapped, "Encounter")
    prior, current = encounter["location"]
    assert prior["status"] == "completed"
    assert prior["period"] == {"end": "2024-03-16T12:00:00+00:00"}
    assert current["status"] == "active"
    assert current["period"] == {"start": "2024-03-16T12:00:00+00:00"}
    assert prior["location"]["reference"] != current["location"]["reference"]
    assert len(mapped.of_type("Location")) == 2


def test_transfer_updates_the_same_encounter_as_the_admission() -> None:
    pv1 = "PV1|1|I|W12^B^3^RBCH||||||||||||||||V555^^^RBCH^VN"
    admitted = adt("A01", PID, pv1, cid="C1")
    moved = adt("A02", PID, pv1.replace("W12^B^3", "W14^A^1"), cid="C2")
    assert one(admitted, "Encounter")["id"] == one(moved, "Encounter")["id"]
    assert one(admitted, "Patient")["id"] == one(moved, "Patient")["id"]


def test_discharge_finishes_the_encounter() -> None:
    pv1 = seg(
        "PV1",
        {
            2: "I",
            3: "W12^B^3^RBCH",
            19: "V555^^^RBCH^VN",
            36: "01",
            44: "20240310080000",
            45: "20240315170000",
        },
    )
    encounter = one(adt("A03", PID, pv1), "Encounter")
    assert encounter["status"] == "finished"
    assert encounter["period"]["end"] == "2024-03-15T17:00:00+00:00"
    assert encounter["location"][0]["status"] == "completed"
    assert encounter["hospitalization"]["dischargeDisposition"]["coding"][0]["code"] == "01"


def test_cancel_admit_and_cancel_discharge() -> None:
    pv1 = "PV1|1|I|W12||||||||||||||||V9^^^RBCH^VN"
    assert one(adt("A11", PID, pv1), "Encounter")["status"] == "cancelled"
    pv1_done = seg(
        "PV1", {2: "I", 3: "W12", 19: "V9^^^RBCH^VN", 44: "20240310080000", 45: "20240315170000"}
    )
    cancelled_discharge = one(adt("A13", PID, pv1_done), "Encounter")
    assert cancelled_discharge["status"] == "in-progress"
    assert "end" not in cancelled_discharge["period"]


def test_a08_without_pv1_updates_patient_with_a_warning() -> None:
    mapped = adt("A08", PID)
    assert one(mapped, "Patient")
    assert any("PV1" in i.reason for i in mapped.issues)


def test_a01_without_pv1_is_a_mapping_error() -> None:
    with pytest.raises(MappingError, match="no PV1 segment"):
        adt("A01", PID)


def test_missing_patient_identifier_is_a_mapping_error() -> None:
    with pytest.raises(MappingError) as info:
        adt("A04", "PID|1||^^^RBCH||SECRETNAME^X", "PV1|1|O")
    assert info.value.issue.segment == "PID"
    assert info.value.issue.field == 3
    assert "SECRETNAME" not in str(info.value)


def test_merge_a40() -> None:
    mapped = adt("A40", "EVN|A40", PID, "MRG|H099^^^RBCH^MR")
    [merge] = mapped.merges
    patient = one(mapped, "Patient")
    assert merge.surviving == {"reference": f"Patient/{patient['id']}"}
    assert merge.prior_identifiers[0]["value"] == "H099"
    prior_alone = adt("A28", "PID|1||H099^^^RBCH^MR||A^B", "PV1|1|N")
    assert merge.prior_patient_id == one(prior_alone, "Patient")["id"]
    assert not mapped.of_type("Encounter")


def test_merge_without_mrg_is_a_mapping_error() -> None:
    with pytest.raises(MappingError, match="MRG"):
        adt("A40", "EVN|A40", PID)


def test_z_segments_get_a_note() -> None:
    mapped = adt("A31", PID, "PV1|1|N", "ZPI|1|private")
    notes = [i for i in mapped.issues if i.severity is Severity.INFORMATION]
    assert any("ZPI" in n.reason for n in notes)


def test_ids_are_stable_across_resends_and_separators() -> None:
    pv1 = "PV1|1|I|W12||||||||||||||||V555^^^RBCH^VN"
    msh = "MSH|^~\\&|PAS|RBCH|SC|ICS|20240315101500||ADT^A01|C1|P|2.4"
    cr = map_message("\r".join([msh, PID, pv1]).encode())
    crlf = map_message("\r\n".join([msh, PID, pv1]).encode())
    assert [r["id"] for r in cr.resources] == [r["id"] for r in crlf.resources]
    assert cr.resources == crlf.resources


def test_transaction_bundle_puts_each_resource() -> None:
    mapped = adt("A01", PID, "PV1|1|I|W12||||||||||||||||V555^^^RBCH^VN")
    bundle = to_transaction_bundle(mapped)
    assert bundle["type"] == "transaction"
    urls = [e["request"]["url"] for e in bundle["entry"]]
    assert all(e["request"]["method"] == "PUT" for e in bundle["entry"])
    assert f"Patient/{one(mapped, 'Patient')['id']}" in urls


def test_transfer_without_prior_location_warns() -> None:
    mapped = adt("A02", PID, "PV1|1|I|W14^A^1^RBCH||||||||||||||||V555^^^RBCH^VN")
    assert len(one(mapped, "Encounter")["location"]) == 1
    assert any(i.segment == "PV1" and i.field == 6 for i in mapped.issues)


def test_next_of_kin_and_registered_gp() -> None:
    nk1 = "NK1|1|OCTAVIA^JAMES|SPO^Spouse^HL70063|1 QUAY RD^^POOLE|01202 333444"
    pd1 = "PD1|||POOLE GP PRACTICE^^^^^ODS^^^^J81001|G1234567^WELBY^MARCUS^^^DR^^^GMP"
    mapped = adt("A28", PID, pd1, nk1, "PV1|1|N")
    patient = one(mapped, "Patient")
    [contact] = patient["contact"]
    assert contact["relationship"][0]["coding"][0]["code"] == "SPO"
    assert contact["name"] == {"family": "OCTAVIA", "given": ["JAMES"]}
    assert contact["telecom"] == [{"system": "phone", "value": "01202 333444", "use": "home"}]
    assert contact["address"]["city"] == "POOLE"
    practice = one(mapped, "Organization")
    gp = one(mapped, "Practitioner")
    assert practice["identifier"] == [
        {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "J81001"}
    ]
    assert gp["identifier"] == [
        {"system": "https://fhir.hl7.org.uk/Id/gmp-number", "value": "G1234567"}
    ]
    assert [g["reference"] for g in patient["generalPractitioner"]] == [
        f"Organization/{practice['id']}",
        f"Practitioner/{gp['id']}",
    ]
