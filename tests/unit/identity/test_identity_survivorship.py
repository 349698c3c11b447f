from datetime import UTC, date, datetime
from typing import Any

from sharedcare.identity.person import PersonRecord
from sharedcare.identity.survivorship import SurvivorshipPolicy, survive


def rec(
    source: str, local_id: str, when: tuple[int, int, int] | None = None, **kw: Any
) -> PersonRecord:
    updated = datetime(*when).replace(tzinfo=UTC) if when else None
    return PersonRecord.create(source, local_id, updated=updated, **kw)


def test_names_and_sex_come_from_most_trusted_source() -> None:
    policy = SurvivorshipPolicy({"gp": 1, "acute": 2})
    records = [
        rec("acute", "A", (2024, 1, 1), given_name="Jon", family_name="Smyth", sex="male"),
        rec("gp", "1", (2020, 1, 1), given_name="Jonathan", family_name="Smith"),
    ]
    g = survive("G1", records, policy)
    assert g.given_names == ("Jonathan",)
    assert g.family_name == "Smith"
    assert g.provenance["given_names"] == ("gp", "1")
    assert g.sex == "male"  # the GP record has none, so the next source's survives
    assert g.provenance["sex"] == ("acute", "A")


def test_address_comes_from_most_recent_record_as_a_unit() -> None:
    records = [
        rec("gp", "1", (2020, 1, 1), postcode="BH1 1AA", address="1 Old Road"),
        rec("acute", "A", (2024, 6, 1), postcode="DT1 1AA", address=None),
        rec("community", "C"),  # no update time: oldest
    ]
    g = survive("G1", records, SurvivorshipPolicy({"gp": 1}))
    assert g.postcode == "DT1 1AA"
    assert g.address is None  # not mixed with the older record's lines
    assert g.provenance["postcode"] == ("acute", "A")


def test_birth_date_majority_outvotes_one_typo() -> None:
    records = [
        rec("gp", "1", birth_date="1980-03-14"),
        rec("acute", "A", birth_date="1980-03-14"),
        rec("ooh", "X", birth_date="1980-03-41".replace("41", "15")),
    ]
    g = survive("G1", records, SurvivorshipPolicy({"ooh": 1}))
    assert g.birth_date == date(1980, 3, 14)


def test_invalid_nhs_number_never_survives() -> None:
    records = [
        rec("gp", "1", nhs_number="9434765918"),
        rec("gp", "2", nhs_number="9434765918"),
        rec("acute", "A", nhs_number="9434765919"),
    ]
    g = survive("G1", records, SurvivorshipPolicy({"gp": 1}))
    assert g.nhs_number == "9434765919"


def test_empty_cluster_and_dict_form() -> None:
    g = survive("G9", [])
    assert g.members == () and g.nhs_number is None and g.provenance == {}
    d = survive("G1", [rec("gp", "1", birth_date="1980-01-02")]).to_dict()
    assert d["birth_date"] == "1980-01-02" and d["members"] == [["gp", "1"]]


def test_golden_patient_keeps_the_sources_address_lines_and_city() -> None:
    from sharedcare.identity.golden import golden_patient

    patient = {
        "resourceType": "Patient",
        "id": "p1",
        "address": [
            {
                "use": "home",
                "line": ["Flat 2, Mill House", "10 Mill Lane"],
                "city": "Poole",
                "postalCode": "BH15 1AB",
            }
        ],
    }
    record = PersonRecord.from_fhir(patient, source="gp")
    assert record.address == "Flat 2, Mill House, 10 Mill Lane, Poole"  # what matching sees
    golden = survive("G1", [record])
    (address,) = golden_patient(golden, ["p1"])["address"]
    assert address["line"] == ["Flat 2, Mill House", "10 Mill Lane"]
    assert address["city"] == "Poole" and address["postalCode"] == "BH15 1AB"
    # A record with only the joined string (a CSV row) still gives its lines.
    row = PersonRecord.create("council", "c1", address="1 High St, Dorchester")
    (address,) = golden_patient(survive("G2", [row]), ["c1"])["address"]
    assert address["line"] == ["1 High St", "Dorchester"] and "city" not in address
