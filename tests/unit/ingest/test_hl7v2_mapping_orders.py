"""ORM^O01 and OML^O21 to ServiceRequest."""

from __future__ import annotations

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


def order(kind: str, *segments: str) -> MappedMessage:
    msh = f"MSH|^~\\&|ICE|GPPRACTICE|WINPATH|DCH|20240405090000||{kind}|O1|P|2.5.1"
    return map_message(parse_message("\r".join([msh, *segments])))


PID = "PID|1||G300^^^GPPRACTICE^MR||FENWICK^OSWALD||19420707|M"
DG1 = "DG1|1||E11.9^Type 2 diabetes^I10"
ORC_NEW = seg(
    "ORC",
    {1: "NW", 2: "PL500^ICE", 4: "GRP1^ICE", 5: "", 9: "20240405085500", 12: "G1^GREEN^GRACE^^^DR"},
)
OBR = seg(
    "OBR", {1: "1", 2: "PL500^ICE", 4: "HBA1C^HbA1c^WINPATH", 7: "20240406090000", 27: "^^^^^R"}
)


def one(mapped: MappedMessage, resource_type: str) -> dict[str, Any]:
    for resource in mapped.resources:
        errors = [i for i in validate(resource) if i.severity in ("error", "fatal")]
        assert errors == [], (resource["resourceType"], errors)
    found = mapped.of_type(resource_type)
    assert len(found) == 1, [r["resourceType"] for r in mapped.resources]
    return found[0]


def test_new_order() -> None:
    mapped = order("ORM^O01", PID, DG1, ORC_NEW, OBR, "NTE|1||Fasting sample please")
    request = one(mapped, "ServiceRequest")
    patient = one(mapped, "Patient")
    assert request["status"] == "active"
    assert request["intent"] == "order"
    assert request["subject"] == {"reference": f"Patient/{patient['id']}"}
    assert request["identifier"][0]["value"] == "PL500"
    assert request["identifier"][0]["type"]["coding"][0]["code"] == "PLAC"
    assert request["requisition"]["value"] == "GRP1"
    assert request["code"]["coding"][0]["code"] == "HBA1C"
    assert request["authoredOn"] == "2024-04-05T08:55:00+01:00"
    assert request["occurrenceDateTime"] == "2024-04-06T09:00:00+01:00"
    assert request["priority"] == "routine"
    assert request["requester"]["display"] == "GRACE GREEN"
    assert request["reasonCode"][0]["coding"][0]["system"] == "http://hl7.org/fhir/sid/icd-10"
    assert request["note"] == [{"text": "Fasting sample please"}]


@pytest.mark.parametrize(
    ("control", "status", "expected"),
    [
        ("CA", "", "revoked"),
        ("HD", "", "on-hold"),
        ("SC", "CM", "completed"),
        ("XO", "", "active"),
        ("ZZ", "", "unknown"),
    ],
)
def test_order_status(control: str, status: str, expected: str) -> None:
    orc = seg("ORC", {1: control, 2: "PL500^ICE", 5: status})
    assert one(order("ORM^O01", PID, orc, OBR), "ServiceRequest")["status"] == expected


def test_cancel_targets_the_same_request() -> None:
    placed = one(order("ORM^O01", PID, ORC_NEW, OBR), "ServiceRequest")
    cancel = seg("ORC", {1: "CA", 2: "PL500^ICE"})
    cancelled = one(order("ORM^O01", PID, cancel, OBR), "ServiceRequest")
    assert placed["id"] == cancelled["id"]


def test_oml_with_specimen_and_ask_at_order_entry() -> None:
    spm = seg("SPM", {1: "1", 2: "S77", 4: "119297000^Blood specimen^SCT", 17: "20240405085000"})
    aoe = seg(
        "OBX", {1: "1", 2: "NM", 3: "8339-4^Birthweight^LN", 5: "3200", 6: "g^g^UCUM", 11: "F"}
    )
    mapped = order("OML^O21^OML_O21", PID, ORC_NEW, OBR, aoe, spm)
    request = one(mapped, "ServiceRequest")
    specimen = one(mapped, "Specimen")
    observation = one(mapped, "Observation")
    assert request["specimen"] == [{"reference": f"Specimen/{specimen['id']}"}]
    assert request["supportingInfo"] == [{"reference": f"Observation/{observation['id']}"}]
    assert observation["valueQuantity"]["value"] == 3200


def test_several_orders_in_one_message() -> None:
    second_orc = seg("ORC", {1: "NW", 2: "PL501^ICE"})
    second_obr = seg("OBR", {1: "2", 2: "PL501^ICE", 4: "LFT^Liver function^WINPATH"})
    mapped = order("ORM^O01", PID, ORC_NEW, OBR, second_orc, second_obr)
    requests = mapped.of_type("ServiceRequest")
    assert [r["identifier"][0]["value"] for r in requests] == ["PL500", "PL501"]
    assert requests[0]["id"] != requests[1]["id"]


def test_order_without_orc_or_obr_is_a_mapping_error() -> None:
    with pytest.raises(MappingError, match="no ORC or OBR"):
        order("ORM^O01", PID)


def test_order_without_numbers_warns() -> None:
    mapped = order("ORM^O01", PID, seg("ORC", {1: "NW"}), seg("OBR", {1: "1", 4: "X^Y^L"}))
    assert one(mapped, "ServiceRequest")
    assert any(i.segment == "ORC" and i.field == 2 for i in mapped.issues)
