from datetime import date

import pytest

from sharedcare.identity.person import (
    PersonDataError,
    PersonRecord,
    normalise_postcode,
    parse_birth_date,
    parse_sex,
)


def test_create_tidies_values() -> None:
    r = PersonRecord.create(
        "gp",
        " 42 ",
        given_name="  Mary   Anne ",
        family_name="O'Brien",
        birth_date="1980-02-03",
        sex="F",
        postcode="bh1 1aa",
        address="1  High Street",
        nhs_number="943-476-5919",
    )
    assert r.key == ("gp", "42")
    assert r.given_names == ("Mary", "Anne")
    assert r.given_name == "Mary"
    assert r.birth_date == date(1980, 2, 3)
    assert r.sex == "female"
    assert r.postcode == "BH1 1AA"
    assert r.address == "1 High Street"
    assert r.nhs_number == "9434765919"
    assert r.nhs_number_valid


def test_nhs_number_with_bad_check_digit_is_kept_but_invalid() -> None:
    r = PersonRecord.create("gp", "1", nhs_number="9434765918")
    assert r.nhs_number == "9434765918"
    assert not r.nhs_number_valid


def test_nhs_number_not_ten_digits_is_dropped() -> None:
    assert PersonRecord.create("gp", "1", nhs_number="12345").nhs_number is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1980-02-03", date(1980, 2, 3)),
        ("19800203", date(1980, 2, 3)),
        ("03/02/1980", date(1980, 2, 3)),
        ("1980-02-03T00:00:00", date(1980, 2, 3)),
        ("", None),
        (None, None),
    ],
)
def test_parse_birth_date(text: str, expected: date | None) -> None:
    assert parse_birth_date(text) == expected


@pytest.mark.parametrize("text", ["1980-02-30", "yesterday", "3/2/80", "1980/02/03"])
def test_bad_birth_date_names_field_not_value(text: str) -> None:
    with pytest.raises(PersonDataError) as err:
        parse_birth_date(text)
    assert "birth_date" in str(err.value)
    assert text not in str(err.value)


def test_parse_sex_codes() -> None:
    assert parse_sex("1") == "male"
    assert parse_sex("Female") == "female"
    assert parse_sex("U") == "unknown"
    with pytest.raises(PersonDataError, match="sex"):
        parse_sex("banana")


def test_normalise_postcode() -> None:
    assert normalise_postcode("dt11aa") == "DT1 1AA"
    assert normalise_postcode("SW1A 2AA") == "SW1A 2AA"
    assert normalise_postcode("not a pc") == "NOTAPC"
    assert normalise_postcode("  ") is None


def test_from_row_uses_field_map_and_names_column_on_error() -> None:
    row = {"id": "7", "fn": "Ann", "dob": "1990-13-01"}
    with pytest.raises(PersonDataError) as err:
        PersonRecord.from_row(
            row, source="s", id_column="id", field_map={"given_name": "fn", "birth_date": "dob"}
        )
    assert "'dob'" in str(err.value)
    assert "1990-13-01" not in str(err.value)
    ok = PersonRecord.from_row(
        {"id": "7", "fn": "Ann"}, source="s", id_column="id", field_map={"given_name": "fn"}
    )
    assert ok.given_names == ("Ann",)
    with pytest.raises(PersonDataError, match="unknown field"):
        PersonRecord.from_row(row, source="s", id_column="id", field_map={"colour": "fn"})


def test_from_row_requires_id() -> None:
    with pytest.raises(PersonDataError, match="id column"):
        PersonRecord.from_row({"id": ""}, source="s", id_column="id", field_map={})


def test_from_fhir_patient() -> None:
    patient = {
        "resourceType": "Patient",
        "id": "p1",
        "meta": {"lastUpdated": "2024-05-01T10:00:00Z"},
        "identifier": [
            {"system": "urn:local", "value": "X1"},
            {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765919"},
        ],
        "name": [
            {"use": "usual", "given": ["Jim"], "family": "Smith"},
            {"use": "official", "given": ["James", "Robert"], "family": "Smith"},
        ],
        "gender": "male",
        "birthDate": "1970-06-05",
        "address": [
            {"use": "old", "postalCode": "DT1 1AA"},
            {"use": "home", "line": ["2 Mill Lane"], "city": "Poole", "postalCode": "BH15 1AB"},
        ],
    }
    r = PersonRecord.from_fhir(patient, source="acute")
    assert r.key == ("acute", "p1")
    assert r.given_names == ("James", "Robert")
    assert r.family_name == "Smith"
    assert r.postcode == "BH15 1AB"
    assert r.address == "2 Mill Lane, Poole"
    assert r.nhs_number == "9434765919"
    assert r.updated is not None and r.updated.year == 2024


def test_from_fhir_errors() -> None:
    with pytest.raises(PersonDataError, match="resourceType"):
        PersonRecord.from_fhir({"resourceType": "Observation"}, source="s")
    with pytest.raises(PersonDataError, match=r"Patient\.id"):
        PersonRecord.from_fhir({"resourceType": "Patient"}, source="s")
    with pytest.raises(PersonDataError, match=r"Patient\.birthDate"):
        PersonRecord.from_fhir(
            {"resourceType": "Patient", "id": "x", "birthDate": "1970-02-31"}, source="s"
        )
