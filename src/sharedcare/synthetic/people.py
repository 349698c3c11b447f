"""One synthetic person: demographics, address history and health state.

Each person ``i`` is generated from their own ``random.Random`` stream, seeded from the run seed
and ``i`` only, so any chunk of people can be generated in any process, in any order, with the
same result.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cache

from faker.providers.address import en_GB as faker_address
from faker.providers.person import en_GB as faker_person

from sharedcare import reference
from sharedcare.identity import nhs_number
from sharedcare.synthetic import codes
from sharedcare.synthetic.geography import area_geography
from sharedcare.synthetic.model import (
    CONDITION_SHAPES,
    MALE_SHARE,
    PopulationModel,
    age_band,
    condition_probability,
)

STREAM_PERSON = 0
STREAM_EVENTS = 1
STREAM_QUALITY = 2


def person_rng(seed: int, index: int, stream: int) -> random.Random:
    """The random stream for one person and purpose (independent of chunking)."""
    # Not cryptographic: reproducible simulation streams are the point.
    return random.Random((seed << 42) ^ (index << 3) ^ stream)  # noqa: S311


_BRITISH_SUFFIXES = {
    "Avenue", "Close", "Court", "Crescent", "Drive", "Gardens", "Green", "Grove", "Hill", "Lane",
    "Mews", "Park", "Place", "Road", "Row", "Square", "Street", "Terrace", "View", "Walk", "Way",
}  # fmt: skip
_INWARD_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"


@dataclass(frozen=True, slots=True)
class NameTables:
    """Faker en_GB name lists, turned into plain tuples for fast sampling."""

    male: tuple[str, ...]
    female: tuple[str, ...]
    family: tuple[str, ...]
    family_cumulative: tuple[float, ...]
    street_suffixes: tuple[str, ...]


@cache
def name_tables() -> NameTables:
    """Load Faker's en_GB first names, weighted surnames and British street suffixes."""
    person = faker_person.Provider
    last = person.last_names
    family = tuple(last)
    cumulative: list[float] = []
    acc = 0.0
    for name in family:
        acc += float(last[name])
        cumulative.append(acc)
    suffixes = tuple(s for s in faker_address.Provider.street_suffixes if s in _BRITISH_SUFFIXES)
    return NameTables(
        male=tuple(person.first_names_male),
        female=tuple(person.first_names_female),
        family=family,
        family_cumulative=tuple(c / acc for c in cumulative),
        street_suffixes=suffixes,
    )


@dataclass(slots=True)
class Address:
    """A residential address and the LSOA it lies in."""

    line: str
    town: str
    postcode: str
    lsoa: str
    since: date


@dataclass(slots=True)
class Person:
    """The true state of one synthetic person (the ground truth every feed is derived from)."""

    index: int
    person_id: str
    nhs_number: str
    male: bool
    birth_date: date
    given: str
    family: str
    ethnic: str
    addresses: list[Address]
    practice: str
    registered: date
    lad_code: str
    imd_decile: int
    imd_quintile: int
    death_date: date | None = None
    conditions: dict[str, date] = field(default_factory=dict)
    stroke: bool = False
    smoking: codes.Code = codes.NEVER_SMOKED
    frailty: str = ""
    bmi: float = 0.0
    systolic: int = 0
    diastolic: int = 0
    hba1c: int = 0
    allergies: tuple[codes.Code, ...] = ()

    @property
    def address(self) -> Address:
        """The current (latest) address."""
        return self.addresses[-1]

    def age_on(self, day: date) -> int:
        """Age in whole years on ``day``."""
        b = self.birth_date
        return day.year - b.year - ((day.month, day.day) < (b.month, b.day))

    def alive_on(self, day: date) -> bool:
        """Whether the person was born and not yet dead on ``day``."""
        return self.birth_date <= day and (self.death_date is None or day < self.death_date)


ETHNICITY: dict[str, tuple[tuple[str, float], ...]] = {
    reference.LAD_DORSET: (
        ("A", 0.925), ("B", 0.005), ("C", 0.033), ("D", 0.003), ("E", 0.001), ("F", 0.004),
        ("G", 0.003), ("H", 0.002), ("J", 0.001), ("K", 0.001), ("L", 0.004), ("M", 0.001),
        ("N", 0.002), ("P", 0.001), ("R", 0.002), ("S", 0.003), ("Z", 0.009),
    ),
    reference.LAD_BCP: (
        ("A", 0.835), ("B", 0.007), ("C", 0.072), ("D", 0.005), ("E", 0.002), ("F", 0.007),
        ("G", 0.006), ("H", 0.006), ("J", 0.002), ("K", 0.003), ("L", 0.011), ("M", 0.002),
        ("N", 0.007), ("P", 0.002), ("R", 0.006), ("S", 0.010), ("Z", 0.017),
    ),
}  # fmt: skip
"""Assumed ethnic category shares by local authority (Dorset is about 95% White)."""

ANNUAL_MORTALITY = ((1, 0.004), (15, 0.0001), (45, 0.0008), (65, 0.004), (75, 0.015), (85, 0.045))
"""(age below which, annual death probability); 85+ uses ``MORTALITY_85``."""
MORTALITY_85 = 0.14
ANNUAL_MOVE = 0.08
"""Share of people who move house in a year."""


@dataclass(frozen=True, slots=True)
class Census:
    """The run's time window."""

    start: date
    end: date


@cache
def _lsoa_tables() -> tuple[tuple[reference.Lsoa, ...], tuple[float, ...]]:
    areas = reference.lsoas()
    total = float(sum(a.population_mid2019 for a in areas))
    cumulative: list[float] = []
    acc = 0.0
    for a in areas:
        acc += a.population_mid2019
        cumulative.append(acc / total)
    return areas, tuple(cumulative)


def lsoa_for_index(index: int, people: int) -> reference.Lsoa:
    """The home LSOA (at the census date) of person ``index`` out of ``people``.

    People are spread over LSOAs by population with a low-discrepancy sequence (a golden-ratio
    rotation of the index), so any run size matches the LSOA populations closely and each chunk
    of consecutive people is spread over the whole county.
    """
    areas, cumulative = _lsoa_tables()
    u = ((index + 0.5) * 0.6180339887498949) % 1.0
    return areas[min(bisect.bisect_left(cumulative, u), len(areas) - 1)]


def _pick(rng: random.Random, cumulative: tuple[float, ...]) -> int:
    return min(bisect.bisect_left(cumulative, rng.random()), len(cumulative) - 1)


@cache
def nhs_test_range_suffixes() -> tuple[int, ...]:
    """The six-digit suffixes that make a valid ``999`` NHS number (check value not 10).

    Modulus 11 weights 10..2 over the nine body digits; ``999`` contributes 243, and the
    check value is 10 (never issued) exactly when the weighted sum is 1 modulo 11.
    """
    out: list[int] = []
    append = out.append
    for d4 in range(10):
        s4 = 243 + 7 * d4
        for d5 in range(10):
            s5 = s4 + 6 * d5
            for d6 in range(10):
                s6 = s5 + 5 * d6
                for d7 in range(10):
                    s7 = s6 + 4 * d7
                    base = ((d4 * 10 + d5) * 10 + d6) * 1000 + d7 * 100
                    for d8 in range(10):
                        s8 = s7 + 3 * d8
                        for d9 in range(10):
                            if (s8 + 2 * d9) % 11 != 1:
                                append(base + d8 * 10 + d9)
    return tuple(out)


NHS_TEST_RANGE_SIZE = 909_091
"""How many valid NHS numbers the 999 test range holds (checked in the unit tests)."""
_NHS_MULTIPLIER = 7_368_787


def nhs_number_for(index: int) -> str:
    """The unique NHS number of person ``index``, from the 999 test range only.

    A multiplicative scramble modulo the size of the test range maps indexes one-to-one onto
    its valid numbers, so numbers never repeat within a run and do not reveal the index.

    Raises:
        ValueError: If ``index`` is beyond the size of the test range.
    """
    suffixes = nhs_test_range_suffixes()
    if not 0 <= index < len(suffixes):
        raise ValueError(
            f"the 999 NHS number test range holds {len(suffixes)} numbers; generate fewer people"
        )
    body = f"999{suffixes[(index * _NHS_MULTIPLIER + 12_345) % len(suffixes)]:06d}"
    check = nhs_number.check_digit(body)
    return body + str(check)


def random_address(rng: random.Random, area: reference.Lsoa, since: date) -> Address:
    """A plausible English address in ``area``: Faker en_GB street pattern, local district."""
    tables = name_tables()
    geo = area_geography()[area.code]
    street_base = (
        tables.family[_pick(rng, tables.family_cumulative)]
        if rng.random() < 0.6
        else rng.choice(tables.male if rng.random() < 0.5 else tables.female)
    )
    line = f"{rng.randint(1, 199)} {street_base} {rng.choice(tables.street_suffixes)}"
    inward = f"{rng.randint(1, 9)}{rng.choice(_INWARD_LETTERS)}{rng.choice(_INWARD_LETTERS)}"
    return Address(line, geo.post_town, f"{geo.postcode_district} {inward}", area.code, since)


def _birth_date(rng: random.Random, age: int, day: date) -> date:
    latest = date(day.year - age, day.month, min(day.day, 28))
    return latest - timedelta(days=rng.randrange(365))


def generate_person(
    model: PopulationModel, seed: int, index: int, people: int, census: Census
) -> Person:
    """Generate the true record of person ``index`` (demographics, moves, health).

    Indexes below ``people`` are alive on the census date (``census.end``) and their ages follow
    the practices' list sizes. Indexes from ``people`` up to ``people + decedent_count(...)`` die
    inside the window; their age at death follows the census age mix weighted by mortality.
    """
    rng = person_rng(seed, index, STREAM_PERSON)
    area = lsoa_for_index(index, people)
    geo = area_geography()[area.code]
    practice_index = _pick(rng, geo.practice_cumulative)
    practice = model.practices[practice_index]
    if index < people:
        death = None
        reference_day = census.end
        age = _pick(rng, practice.age_cumulative)
    else:
        death = census.start + timedelta(days=rng.randrange((census.end - census.start).days))
        reference_day = death
        age = _pick(rng, _death_age_cumulative(model.age_cumulative))
    male = rng.random() < MALE_SHARE[age_band(age)]
    birth = _birth_date(rng, age, reference_day)
    tables = name_tables()
    given = rng.choice(tables.male if male else tables.female)
    family = tables.family[_pick(rng, tables.family_cumulative)]
    ethnic_cut = rng.random()
    ethnic = "Z"
    acc = 0.0
    for code, share in ETHNICITY[area.lad_code]:
        acc += share
        if ethnic_cut < acc:
            ethnic = code
            break

    # Address history: the census address is the latest; earlier ones were left by moving.
    moves: list[date] = []
    day = census.start
    while day < reference_day:
        if rng.random() < ANNUAL_MOVE:
            move = day + timedelta(days=rng.randrange(365))
            if birth < move < reference_day:
                moves.append(move)
        day = date(day.year + 1, day.month, day.day)
    areas, cumulative = _lsoa_tables()
    history: list[Address] = []
    first_since = max(birth, census.start - timedelta(days=rng.randrange(365 * 15)))
    previous_since = first_since
    for move in moves:
        old_area = areas[_pick(rng, cumulative)] if rng.random() < 0.6 else area
        history.append(random_address(rng, old_area, previous_since))
        previous_since = move
    history.append(random_address(rng, area, previous_since))

    registered = birth + timedelta(days=42) if birth > census.start else first_since
    person = Person(
        index=index,
        person_id=f"P{index:08d}",
        nhs_number=nhs_number_for(index),
        male=male,
        birth_date=birth,
        given=given,
        family=family,
        ethnic=ethnic,
        addresses=history,
        practice=practice.code,
        registered=min(registered, census.end),
        lad_code=area.lad_code,
        imd_decile=area.imd2019_decile,
        imd_quintile=area.imd2019_quintile,
        death_date=death,
    )
    _health(model, rng, person, age, area.lad_code, reference_day)
    return person


def _health(
    model: PopulationModel,
    rng: random.Random,
    person: Person,
    age: int,
    lad: str,
    reference_day: date,
) -> None:
    """Long-term conditions with onset dates, smoking, frailty, baseline measurements."""
    male, decile = person.male, person.imd_decile
    for group, (_, _, min_age) in CONDITION_SHAPES.items():
        p = condition_probability(model, group, age, male, decile, lad)
        if p and rng.random() < p:
            low = max(min_age, age - 20, 0)
            onset_age = low + rng.random() * (age - low + 0.999)
            onset = person.birth_date + timedelta(days=int(onset_age * 365.25))
            person.conditions[group] = min(onset, reference_day)
    if "STIA" in person.conditions:
        person.stroke = rng.random() < 0.65

    if age >= 16:
        current = (0.22, 0.18, 0.14, 0.11, 0.08)[person.imd_quintile - 1]
        if age >= 65:
            current *= 0.6
        ex = min(0.15 + 0.004 * (age - 16), 0.45)
        if "COPD" in person.conditions:
            current, ex = 0.45, 0.5
        cut = rng.random()
        person.smoking = (
            codes.SMOKER
            if cut < current
            else codes.EX_SMOKER
            if cut < current + ex
            else codes.NEVER_SMOKED
        )

    n = len(person.conditions)
    if age >= 65:
        index = 0.012 * (age - 65) + 0.07 * n + rng.gauss(0, 0.06)
        person.frailty = (
            "severe"
            if index > 0.5
            else "moderate"
            if index > 0.36
            else "mild"
            if index > 0.2
            else "fit"
        )

    bmi = rng.gauss(26.5 if age >= 18 else 19.0, 4.5 if age >= 18 else 3.0)
    if "DM" in person.conditions:
        bmi += 4.0
    if "HYP" in person.conditions:
        bmi += 1.5
    person.bmi = round(max(bmi, 14.0), 1)
    sbp = rng.gauss(118 + 0.45 * max(age - 30, 0), 11)
    if "HYP" in person.conditions:
        sbp += 14
    person.systolic = round(sbp)
    person.diastolic = round(
        rng.gauss(72 + 0.1 * max(age - 30, 0), 8) + (6 if "HYP" in person.conditions else 0)
    )
    if "DM" in person.conditions:
        person.hba1c = max(round(rng.gauss(60, 12)), 42)
    else:
        person.hba1c = min(round(rng.gauss(37, 3.5)), 47)
    allergies = [code for code, _, share in codes.ALLERGIES if rng.random() < share]
    person.allergies = tuple(allergies)


def _annual_mortality(age: int) -> float:
    for limit, rate in ANNUAL_MORTALITY:
        if age < limit:
            return rate
    return MORTALITY_85


@cache
def _death_age_cumulative(age_cumulative: tuple[float, ...]) -> tuple[float, ...]:
    """Cumulative distribution of age at death: the census age mix weighted by mortality."""
    weights = []
    previous = 0.0
    for age, c in enumerate(age_cumulative):
        weights.append((c - previous) * _annual_mortality(age))
        previous = c
    total = sum(weights)
    out: list[float] = []
    acc = 0.0
    for w in weights:
        acc += w
        out.append(acc / total)
    return tuple(out)


def decedent_count(model: PopulationModel, people: int, census: Census) -> int:
    """How many people who die inside the window accompany ``people`` census survivors."""
    rate = 0.0
    previous = 0.0
    for age, c in enumerate(model.age_cumulative):
        rate += (c - previous) * _annual_mortality(age)
        previous = c
    years = (census.end - census.start).days / 365.25
    return round(people * rate * years)


__all__ = [
    "NHS_TEST_RANGE_SIZE",
    "Address",
    "Census",
    "Person",
    "decedent_count",
    "generate_person",
    "lsoa_for_index",
    "nhs_number_for",
    "nhs_test_range_suffixes",
    "person_rng",
]
