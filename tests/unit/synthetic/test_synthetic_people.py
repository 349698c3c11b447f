"""Per-person generation: determinism, identifiers, internal consistency."""

from __future__ import annotations

from datetime import date

import pytest

from sharedcare.identity import nhs_number
from sharedcare.synthetic.events import generate_care
from sharedcare.synthetic.model import population_model
from sharedcare.synthetic.people import (
    NHS_TEST_RANGE_SIZE,
    Census,
    decedent_count,
    generate_person,
    nhs_number_for,
    nhs_test_range_suffixes,
)

CENSUS = Census(date(2020, 12, 31), date(2025, 12, 31))


def test_same_seed_same_person_different_seed_different_person() -> None:
    model = population_model()
    a = generate_person(model, 11, 123, 5000, CENSUS)
    b = generate_person(model, 11, 123, 5000, CENSUS)
    c = generate_person(model, 12, 123, 5000, CENSUS)
    assert a == b
    assert (a.given, a.family, a.birth_date) != (c.given, c.family, c.birth_date)


def test_nhs_numbers_are_unique_valid_test_numbers() -> None:
    assert len(nhs_test_range_suffixes()) == NHS_TEST_RANGE_SIZE
    numbers = [nhs_number_for(i) for i in range(0, 50_000)]
    assert len(set(numbers)) == len(numbers)
    assert all(nhs_number.is_test_number(n) for n in numbers)
    with pytest.raises(ValueError, match="test range"):
        nhs_number_for(NHS_TEST_RANGE_SIZE)


def test_survivors_are_alive_and_decedents_die_in_the_window() -> None:
    model = population_model()
    people = 2000
    dead = decedent_count(model, people, CENSUS)
    assert 0.03 * people < dead < 0.09 * people
    for i in range(0, people, 50):
        p = generate_person(model, 3, i, people, CENSUS)
        assert p.death_date is None and p.birth_date <= CENSUS.end
    for i in range(people, people + dead):
        p = generate_person(model, 3, i, people, CENSUS)
        assert p.death_date is not None and CENSUS.start <= p.death_date < CENSUS.end
        assert p.birth_date <= p.death_date


def test_address_history_and_conditions_are_consistent() -> None:
    model = population_model()
    for i in range(300):
        p = generate_person(model, 5, i, 300, CENSUS)
        sinces = [a.since for a in p.addresses]
        assert sinces == sorted(sinces)
        assert p.addresses[-1].postcode.split()[0][:2] in {"BH", "DT", "SP"}
        for onset in p.conditions.values():
            assert p.birth_date <= onset <= CENSUS.end
        if "DM" in p.conditions:
            assert p.hba1c > 40
        if p.age_on(CENSUS.end) < 65:
            assert p.frailty == ""


def test_care_respects_life_and_window() -> None:
    model = population_model()
    for i in range(400):
        p = generate_person(model, 9, i, 300, CENSUS)
        care = generate_care(p, CENSUS, 9)
        last = p.death_date or CENSUS.end
        for g in care.gp:
            assert p.birth_date <= g.when.date() < last
        for adm in care.admissions:
            assert adm.admitted <= adm.discharged
            assert 0 <= adm.pathway <= 3
            assert adm.wards == sorted(adm.wards, key=lambda w: w[1])
            if adm.stroke is not None:
                st = adm.stroke
                assert st.arrival <= st.scan and st.arrival <= st.stroke_unit
                if st.thrombolysis is not None:
                    assert st.scan < st.thrombolysis
        for path in care.rtt:
            assert path.clock_stop is None or path.clock_start <= path.clock_stop
        assert care == generate_care(p, CENSUS, 9)
