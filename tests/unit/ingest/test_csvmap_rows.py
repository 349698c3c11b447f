"""CSV column mappings: the shipped mappings per feed, typed cells, reasons, mapping checks."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from sharedcare.fhir.validation import has_errors, validate
from sharedcare.ingest.csvmap import (
    CsvRowError,
    MappingSpecError,
    available_mappings,
    get_mapping,
    load_mapping,
    map_row,
    mapping_for_file,
)
from sharedcare.ingest.hl7v2.mapping import map_message

RTT_HEADER = [
    "pathway_id",
    "hospital_number",
    "nhs_number",
    "site",
    "treatment_function_code",
    "treatment_function",
    "referrer_ods",
    "clock_start",
    "first_attendance",
    "clock_stop",
]
RTT_ROW = [
    "RBD-RTT-D1-0",
    "D1000001",
    "9434765919",
    "DCH",
    "130",
    "Ophthalmology",
    "J81081",
    "2023-07-20",
    "2023-11-17T15:00",
    "2024-02-06",
]
SSNAP_HEADER = [
    "hospital_number",
    "nhs_number",
    "site",
    "arrival",
    "first_brain_imaging",
    "thrombolysis",
    "stroke_unit_arrival",
    "discharge",
]
SSNAP_ROW = [
    "U5000001",
    "9434765919",
    "RBH",
    "2025-08-11T13:07",
    "2025-08-11T13:20",
    "2025-08-11T14:20",
    "2025-08-12T00:52",
    "2025-08-17T13:15",
]
ASSESS_HEADER = [
    "assessment_id",
    "council_person_id",
    "nhs_number",
    "given_name",
    "family_name",
    "date_of_birth",
    "address_line",
    "town",
    "postcode",
    "assessment_date",
    "assessment_type",
    "outcome",
]
ASSESS_ROW = [
    "BCP1-A0",
    "BCP1",
    "",
    "Alex",
    "Tester",
    "1944-02-18",
    "1 Test Street",
    "Poole",
    "BH12 9ZZ",
    "2021-11-26",
    "Discharge to assess (pathway 2)",
    "Eligible needs",
]
PACKAGE_HEADER = [
    "package_id",
    "council_person_id",
    "nhs_number",
    "given_name",
    "family_name",
    "date_of_birth",
    "postcode",
    "service",
    "start_date",
    "end_date",
    "hours_per_week",
]
PACKAGE_ROW = [
    "BCP1-P0",
    "BCP1",
    "",
    "Alex",
    "Tester",
    "1944-02-18",
    "BH12 9ZZ",
    "Home care",
    "2021-12-29",
    "",
    "18.3",
]
VCS_HEADER = [
    "referral_id",
    "received_date",
    "service",
    "referrer_ods",
    "given_name",
    "family_name",
    "date_of_birth",
    "postcode",
    "nhs_number",
]
VCS_ROW = [
    "VCS1-0",
    "2024-07-03",
    "Carers support",
    "J81076",
    "Alex",
    "Tester",
    "1974-04-24",
    "DT8 8ZZ",
    "",
]


def _by_type(resources: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for resource in resources:
        out.setdefault(resource["resourceType"], []).append(resource)
    return out


def _valid(resources: list[dict[str, Any]]) -> None:
    for resource in resources:
        issues = validate(resource)
        assert not has_errors(issues), (resource["resourceType"], issues)


def test_every_shipped_mapping_loads_and_claims_its_files() -> None:
    names = set(available_mappings())
    assert names == {
        "rtt",
        "ssnap",
        "social-care-assessments",
        "social-care-packages",
        "vcs-referrals",
    }
    assert mapping_for_file("rtt-00001.csv").name == "rtt"  # type: ignore[union-attr]
    assert mapping_for_file("packages-00000.csv.gz").name == "social-care-packages"  # type: ignore[union-attr]
    assert mapping_for_file("truth.csv") is None


def test_rtt_row_makes_referral_episode_and_attendance_for_the_pas_patient() -> None:
    resources = map_row(get_mapping("rtt"), RTT_HEADER, RTT_ROW, "RBD").resources
    kinds = _by_type(resources)
    assert sorted(kinds) == ["Encounter", "EpisodeOfCare", "ServiceRequest"]
    _valid(resources)
    episode = kinds["EpisodeOfCare"][0]
    assert episode["status"] == "finished"
    assert episode["period"] == {"start": "2023-07-20", "end": "2024-02-06"}
    assert episode["type"][0]["coding"][0]["code"] == "rtt-pathway"
    assert episode["type"][1]["coding"][0]["code"] == "130"
    assert episode["managingOrganization"]["identifier"]["value"] == "RBD"
    referral = kinds["ServiceRequest"][0]
    assert referral["requester"]["identifier"]["value"] == "J81081"
    assert episode["referralRequest"] == [{"reference": f"ServiceRequest/{referral['id']}"}]
    # Local times get their UTC offset (R4 requires one on a dateTime with a time).
    assert kinds["Encounter"][0]["period"]["start"] == "2023-11-17T15:00:00+00:00"  # GMT
    # The patient is the one the trust's PAS feed made from the same hospital number.
    pas = (
        b"MSH|^~\\&|PAS|DCH|SHAREDCARE|QVV|20210104112100||ADT^A04|X1|P|2.4\r"
        b"EVN|A04|202101041121\r"
        b"PID|1||D1000001^^^RBD^MR~9434765919^^^NHS^NH||Tester^Alex||19470515|M\r"
        b"PV1|1|E|ED^^^DCH|E|||||||||||||||V1"
    )
    patient = map_message(pas).of_type("Patient")[0]
    assert episode["patient"]["reference"] == f"Patient/{patient['id']}"


def test_open_rtt_pathway_is_active_and_leaves_out_empty_columns() -> None:
    row = list(RTT_ROW)
    row[8] = ""  # no first attendance yet
    row[9] = ""  # clock still running
    row[2] = ""  # no NHS number
    kinds = _by_type(map_row(get_mapping("rtt"), RTT_HEADER, row, "RBD").resources)
    assert "Encounter" not in kinds
    episode = kinds["EpisodeOfCare"][0]
    assert episode["status"] == "active"
    assert episode["period"] == {"start": "2023-07-20"}
    assert "identifier" not in episode["patient"]


def test_ssnap_row_makes_admission_and_timed_procedures() -> None:
    resources = map_row(get_mapping("ssnap"), SSNAP_HEADER, SSNAP_ROW, "R0D").resources
    _valid(resources)
    kinds = _by_type(resources)
    admission = kinds["Encounter"][0]
    assert admission["period"]["start"] == "2025-08-11T13:07:00+01:00"
    assert admission["location"][0]["period"]["start"] == "2025-08-12T00:52:00+01:00"
    codes = {p["code"]["coding"][0]["code"]: p["performedDateTime"] for p in kinds["Procedure"]}
    assert codes == {
        "first-brain-imaging": "2025-08-11T13:20:00+01:00",
        "thrombolysis": "2025-08-11T14:20:00+01:00",
    }
    no_lysis = list(SSNAP_ROW)
    no_lysis[5] = ""
    again = _by_type(map_row(get_mapping("ssnap"), SSNAP_HEADER, no_lysis, "R0D").resources)
    assert len(again["Procedure"]) == 1


def test_council_assessment_and_package_share_the_person() -> None:
    assessed = _by_type(
        map_row(
            get_mapping("social-care-assessments"), ASSESS_HEADER, ASSESS_ROW, "E06000058"
        ).resources
    )
    package = _by_type(
        map_row(
            get_mapping("social-care-packages"), PACKAGE_HEADER, PACKAGE_ROW, "E06000058"
        ).resources
    )
    _valid([*assessed["Patient"], *assessed["Observation"], *package["CarePlan"]])
    person = assessed["Patient"][0]
    assert person["identifier"] == [
        {"system": "urn:sharedcare:id:E06000058:person", "value": "BCP1"}
    ]
    assert (
        assessed["Observation"][0]["valueCodeableConcept"]["coding"][0]["code"] == "eligible-needs"
    )
    assert "Patient" not in package  # the packages extract points at the person, not rewrites
    plan = package["CarePlan"][0]
    assert plan["subject"]["reference"] == f"Patient/{person['id']}"
    assert plan["status"] == "active"
    assert plan["title"] == "Home care"
    repeat = plan["activity"][0]["detail"]["scheduledTiming"]["repeat"]
    assert repeat == {"duration": 18.3, "durationUnit": "h", "period": 1, "periodUnit": "wk"}


def test_vcs_referral_names_the_person_and_the_voluntary_organisation() -> None:
    kinds = _by_type(map_row(get_mapping("vcs-referrals"), VCS_HEADER, VCS_ROW, "VCS").resources)
    _valid([*kinds["Patient"], *kinds["ServiceRequest"]])
    referral = kinds["ServiceRequest"][0]
    assert referral["code"]["coding"][0]["code"] == "carers-support"
    assert referral["performer"][0]["identifier"]["value"] == "VCS"
    assert "identifier" not in kinds["Patient"][0]  # no NHS number on this row


def test_mistyped_nhs_number_is_kept_under_a_local_system() -> None:
    row = list(VCS_ROW)
    row[8] = "9434765918"  # fails modulus 11
    patient = _by_type(map_row(get_mapping("vcs-referrals"), VCS_HEADER, row, "VCS").resources)[
        "Patient"
    ][0]
    assert patient["identifier"] == [
        {"system": "urn:sharedcare:csv:VCS:unverified-nhs-number", "value": "9434765918"}
    ]


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        ("clock_start", "20/07/2023", "column clock_start: expected a date like 2024-01-31"),
        ("clock_start", "", "column clock_start: required, but empty"),
        ("first_attendance", "2023-11-17 15:00", "column first_attendance: expected a datetime"),
        ("treatment_function_code", "13X", "column treatment_function_code: does not match"),
        ("referrer_ods", "not an ods code", "column referrer_ods: expected an ODS code"),
        ("nhs_number", "94347659", "column nhs_number: expected a 10-digit NHS number"),
    ],
)
def test_bad_cells_fail_the_row_naming_the_column_never_the_value(
    column: str, value: str, expected: str
) -> None:
    row = list(RTT_ROW)
    row[RTT_HEADER.index(column)] = value
    with pytest.raises(CsvRowError) as caught:
        map_row(get_mapping("rtt"), RTT_HEADER, row, "RBD")
    assert caught.value.reason.startswith(expected)
    if value:
        assert value not in caught.value.reason


def test_unknown_code_and_missing_column_and_short_row() -> None:
    row = list(PACKAGE_ROW)
    row[7] = "Space travel"
    with pytest.raises(CsvRowError, match="column service: not one of the 7 values"):
        map_row(get_mapping("social-care-packages"), PACKAGE_HEADER, row, "E06000058")
    with pytest.raises(CsvRowError, match="column package_id missing from the header"):
        map_row(get_mapping("social-care-packages"), PACKAGE_HEADER[1:], PACKAGE_ROW[1:], "X")
    with pytest.raises(CsvRowError, match="the row has 10 cells but the header has 11"):
        map_row(get_mapping("social-care-packages"), PACKAGE_HEADER, PACKAGE_ROW[:-1], "X")


def _rtt_document() -> dict[str, Any]:
    source = available_mappings()["rtt"]
    assert source  # the shipped file, re-read as a document to break on purpose below
    from importlib import resources

    data = (resources.files("sharedcare.ingest.csvmap") / "mappings" / "rtt.json").read_bytes()
    return dict(orjson.loads(data))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["columns"]["clock_start"].update(type="when"), "`type` must be one of"),
        (lambda d: d.update(key=["treatment_function"]), "key column treatment_function must"),
        (
            lambda d: d["resources"][1]["template"].update(note="{nope}"),
            "{nope} is not a declared column",
        ),
        (
            lambda d: d["resources"][1]["template"].update(x="Patient/{@ghost}"),
            "{@ghost} names no resource alias",
        ),
        (lambda d: d["resources"][1].pop("key"), "give exactly one of `key` and `hl7v2Key`"),
        (lambda d: d["columns"]["clock_start"].update(timezone="Mars/Base"), "IANA time zone"),
        (lambda d: d.update(name="RTT Feed"), "`name` must be lower-case"),
    ],
)
def test_broken_mappings_are_refused_when_loaded_naming_the_place(
    change: Any, message: str
) -> None:
    document = copy.deepcopy(_rtt_document())
    change(document)
    with pytest.raises(MappingSpecError) as caught:
        load_mapping(document, source="rtt.json")
    assert message in str(caught.value)


def test_unknown_mapping_name_says_which_exist() -> None:
    with pytest.raises(MappingSpecError, match="use one of rtt, social-care-assessments"):
        get_mapping("nope")
