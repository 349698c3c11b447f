"""Data-quality faults and local identifiers."""

from __future__ import annotations

import random
from datetime import date

import pytest

from sharedcare.identity import nhs_number
from sharedcare.synthetic.model import population_model
from sharedcare.synthetic.people import Census, generate_person
from sharedcare.synthetic.quality import CLEAN, DataQuality, local_id, org_records

CENSUS = Census(date(2020, 12, 31), date(2025, 12, 31))


def test_local_ids_are_unique_per_organisation() -> None:
    ids = {local_id("D", 101, i, dup) for i in range(20_000) for dup in (False, True)}
    assert len(ids) == 40_000
    assert all(len(i) == 9 for i in ids)


def test_rates_must_be_fractions() -> None:
    with pytest.raises(ValueError, match="name_typo"):
        DataQuality(name_typo=1.5)


def test_clean_records_match_the_truth() -> None:
    person = generate_person(population_model(), 1, 7, 100, CENSUS)
    for seed in range(50):
        (rec,) = org_records(person, random.Random(seed), CLEAN, lambda d: f"X{int(d)}")
        assert (rec.nhs_number, rec.given, rec.family, rec.birth_date) == (
            person.nhs_number, person.given, person.family, person.birth_date,
        )  # fmt: skip
        assert rec.faults == ()


def test_every_fault_changes_what_it_says() -> None:
    all_faults = DataQuality(
        missing_nhs_number=0.0, mistyped_nhs_number=1.0, name_typo=1.0, nickname=0.0,
        dob_transposed=1.0, old_address=1.0, duplicate_registration=1.0,
    )  # fmt: skip
    model = population_model()
    seen = 0
    for i in range(200):
        person = generate_person(model, 2, i, 200, CENSUS)
        recs = org_records(person, random.Random(i), all_faults, lambda d: f"X{int(d)}")
        assert len(recs) == 2 and recs[1].duplicate and "duplicate-registration" in recs[1].faults
        rec = recs[0]
        assert rec.nhs_number != person.nhs_number
        assert rec.nhs_number is not None and len(rec.nhs_number) == 10
        assert (rec.given, rec.family) != (person.given, person.family)
        assert rec.birth_date != person.birth_date
        if len(person.addresses) > 1:
            assert rec.address is not person.address and "old-address" in rec.faults
            seen += 1
    assert seen > 0


def test_mistyped_numbers_mostly_fail_the_check_digit() -> None:
    dq = DataQuality(missing_nhs_number=0.0, mistyped_nhs_number=1.0)
    person = generate_person(population_model(), 4, 1, 10, CENSUS)
    failures = 0
    for seed in range(200):
        (rec, *_) = org_records(person, random.Random(seed), dq, lambda d: "X")
        failures += not nhs_number.is_valid(rec.nhs_number)
    assert failures > 150
