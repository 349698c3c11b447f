"""Synthetic Dorset against the reference data it is calibrated on.

Acceptance (issue "Synthetic Dorset"): age share by band within 2 percentage points, share by
IMD quintile within 1 point, main condition prevalences within 20% (relative) of QOF 2019/20.
The population is generated person by person (no feeds), which takes a few seconds.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import date

import pytest

from sharedcare import reference
from sharedcare.synthetic.model import (
    AGE_BANDS,
    CONDITION_SHAPES,
    MALE_SHARE,
    age_band,
    population_model,
)
from sharedcare.synthetic.people import Census, Person, generate_person

PEOPLE = 40_000
SEED = 2026
CENSUS = Census(date(2020, 12, 31), date(2025, 12, 31))


@pytest.fixture(scope="module")
def census_population() -> list[Person]:
    model = population_model()
    return [generate_person(model, SEED, i, PEOPLE, CENSUS) for i in range(PEOPLE)]


def _reference_bands() -> dict[str, float]:
    """Shares of the 68 practices' combined lists in the bands the list groups determine."""
    ps = reference.gp_practices()
    total = sum(p.list_total for p in ps)
    return {
        "0-15": sum(p.list_total - p.list_16ov for p in ps) / total,
        "16-17": sum(p.list_16ov - p.list_18ov for p in ps) / total,
        "18-49": sum(p.list_18ov - p.list_50ov for p in ps) / total,
        "50-64": sum(p.list_50ov - p.list_65ov for p in ps) / total,
        "65+": sum(p.list_65ov for p in ps) / total,
    }


def _band(age: int) -> str:
    return (
        "0-15"
        if age < 16
        else "16-17"
        if age < 18
        else "18-49"
        if age < 50
        else "50-64"
        if age < 65
        else "65+"
    )


def test_age_share_by_band_within_two_points(census_population: list[Person]) -> None:
    counts = Counter(_band(p.age_on(CENSUS.end)) for p in census_population)
    for band, expected in _reference_bands().items():
        assert abs(counts[band] / PEOPLE - expected) < 0.02, band
    # About one in four people in Dorset is over 65.
    assert 0.22 < counts["65+"] / PEOPLE < 0.27


def test_sex_share_by_age_band_within_two_points(census_population: list[Person]) -> None:
    """The reference lists have no sex split; the model's stated assumption is the target."""
    male: Counter[int] = Counter()
    everyone: Counter[int] = Counter()
    for p in census_population:
        band = age_band(p.age_on(CENSUS.end))
        everyone[band] += 1
        male[band] += p.male
    for band, (lo, hi) in enumerate(AGE_BANDS):
        if everyone[band] > 1500:
            assert abs(male[band] / everyone[band] - MALE_SHARE[band]) < 0.02, (lo, hi)


def test_share_by_imd_quintile_within_one_point(census_population: list[Person]) -> None:
    areas = reference.lsoas()
    population = sum(a.population_mid2019 for a in areas)
    expected: dict[int, float] = defaultdict(float)
    for a in areas:
        expected[a.imd2019_quintile] += a.population_mid2019 / population
    got = Counter(p.imd_quintile for p in census_population)
    for quintile in range(1, 6):
        assert abs(got[quintile] / PEOPLE - expected[quintile]) < 0.01, quintile


def test_people_carry_their_lsoa_deprivation_and_council(census_population: list[Person]) -> None:
    for p in census_population[:2000]:
        area = reference.lsoa(p.address.lsoa)
        assert (p.imd_decile, p.imd_quintile, p.lad_code) == (
            area.imd2019_decile,
            area.imd2019_quintile,
            area.lad_code,
        )


@pytest.mark.parametrize("group", sorted(CONDITION_SHAPES))
@pytest.mark.parametrize("lad", [reference.LAD_DORSET, reference.LAD_BCP])
def test_prevalence_within_twenty_percent_of_qof(
    census_population: list[Person], group: str, lad: str
) -> None:
    min_age = CONDITION_SHAPES[group][2]
    denominator = [
        p for p in census_population if p.lad_code == lad and p.age_on(CENSUS.end) >= min_age
    ]
    cases = sum(group in p.conditions for p in denominator)
    target = population_model().qof_target[(group, lad)]
    assert abs(cases / len(denominator) / target - 1) < 0.20, (cases, len(denominator), target)


def test_conditions_rise_with_age_and_deprivation(census_population: list[Person]) -> None:
    old = [p for p in census_population if p.age_on(CENSUS.end) >= 75]
    young = [p for p in census_population if 18 <= p.age_on(CENSUS.end) < 40]
    assert sum(len(p.conditions) for p in old) / len(old) > 5 * (
        sum(len(p.conditions) for p in young) / len(young)
    )
    frail = Counter(p.frailty for p in old)
    assert frail["severe"] + frail["moderate"] > 0.25 * len(old)
    deprived = [p for p in census_population if p.imd_quintile == 1 and p.age_on(CENSUS.end) >= 16]
    affluent = [p for p in census_population if p.imd_quintile == 5 and p.age_on(CENSUS.end) >= 16]

    def smoke(people: list[Person]) -> float:
        return sum(p.smoking.code == "77176002" for p in people) / len(people)

    assert smoke(deprived) > 1.5 * smoke(affluent)
