"""Data-quality faults: how each organisation's copy of a person differs from the truth.

Every organisation holds its own identity record for the person (or two, when it registered them
twice). Faults are drawn per organisation record from the person's ``STREAM_QUALITY`` stream at
the rates in ``DataQuality``, so they are deterministic and independent of chunking.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from sharedcare.synthetic.people import Address, Person

NICKNAMES: dict[str, str] = {
    "William": "Bill", "Robert": "Bob", "Richard": "Dick", "James": "Jim", "Michael": "Mike",
    "Thomas": "Tom", "Christopher": "Chris", "Anthony": "Tony", "Daniel": "Dan",
    "Matthew": "Matt", "Andrew": "Andy", "Joseph": "Joe", "David": "Dave", "Stephen": "Steve",
    "Steven": "Steve", "Peter": "Pete", "Edward": "Ted", "Nicholas": "Nick", "Benjamin": "Ben",
    "Samuel": "Sam", "Alexander": "Alex", "Jonathan": "Jon", "Timothy": "Tim", "Kenneth": "Ken",
    "Ronald": "Ron", "Gerald": "Gerry", "Patrick": "Pat", "Frederick": "Fred", "Charles": "Charlie",
    "Elizabeth": "Liz", "Margaret": "Maggie", "Katherine": "Kate", "Catherine": "Cathy",
    "Jennifer": "Jenny", "Rebecca": "Becky", "Susan": "Sue", "Patricia": "Pat", "Deborah": "Debbie",
    "Victoria": "Vicky", "Samantha": "Sam", "Alexandra": "Alex", "Christine": "Chris",
    "Jacqueline": "Jackie", "Kimberley": "Kim", "Abigail": "Abbie", "Jessica": "Jess",
    "Eleanor": "Ellie", "Natalie": "Nat", "Josephine": "Jo", "Joanne": "Jo", "Barbara": "Babs",
    "Dorothy": "Dot", "Pamela": "Pam", "Sandra": "Sandy", "Beverley": "Bev", "Gillian": "Gill",
}  # fmt: skip
"""Common English nicknames, used for the nickname fault."""


@dataclass(frozen=True, slots=True)
class DataQuality:
    """Fault rates (fractions of organisation records, messages or rows)."""

    missing_nhs_number: float = 0.03
    mistyped_nhs_number: float = 0.01
    name_typo: float = 0.02
    nickname: float = 0.03
    dob_transposed: float = 0.01
    old_address: float = 0.3
    """Share of records of people who moved that still hold an earlier address."""
    duplicate_registration: float = 0.01
    message_without_nhs_number: float = 0.05
    """Share of acute HL7 messages sent without the NHS number in PID-3."""
    council_row_without_nhs_number: float = 0.15
    vcs_row_without_nhs_number: float = 0.5

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"data-quality rate {name} must be between 0 and 1")


CLEAN = DataQuality(*(0.0,) * 10)
"""No faults at all (useful for calibration tests)."""


@dataclass(frozen=True, slots=True)
class OrgRecord:
    """One organisation's identity record for a person, as that organisation holds it."""

    local_id: str
    nhs_number: str | None
    given: str
    family: str
    birth_date: date
    address: Address
    duplicate: bool
    faults: tuple[str, ...]


def _typo(rng: random.Random, text: str) -> str:
    if len(text) < 3:
        return text + text[-1]
    i = rng.randrange(1, len(text) - 1)
    kind = rng.randrange(3)
    if kind == 0 and text[i] != text[i + 1]:
        return text[:i] + text[i + 1] + text[i] + text[i + 2 :]
    if kind <= 1:
        return text[:i] + text[i + 1 :]
    return text[:i] + text[i] + text[i:]


def _mistype_nhs(rng: random.Random, number: str) -> str:
    """Swap two neighbouring digits or change one, keeping the ``999`` test-range prefix."""
    i = rng.randrange(3, 9)
    if number[i] != number[i + 1]:
        return number[:i] + number[i + 1] + number[i] + number[i + 2 :]
    digit = str((int(number[i]) + rng.randint(1, 9)) % 10)
    return number[:i] + digit + number[i + 1 :]


def _transpose_dob(birth: date) -> date:
    """Swap digits the way dates get mistyped: day/month, then the year's last two digits,
    then the day's digits, then the month's. Falls back to a neighbouring day."""
    y, m, d = birth.year, birth.month, birth.day
    ys, ds, ms = f"{y:04d}", f"{d:02d}", f"{m:02d}"
    candidates = (
        (y, d, m),
        (int(ys[:2] + ys[3] + ys[2]), m, d),
        (y, m, int(ds[::-1])),
        (y, int(ms[::-1]), d),
    )
    for cy, cm, cd in candidates:
        try:
            candidate = date(cy, cm, cd)
        except ValueError:
            continue
        if candidate != birth:
            return candidate
    return date(y, m, d - 1 if d > 1 else d + 1)


def local_id(prefix: str, salt: int, index: int, duplicate: bool, width: int = 8) -> str:
    """A unique, non-sequential local number for person ``index`` at one organisation.

    Multiplying by an odd number not divisible by 5 is a bijection modulo ``10**width``, so ids
    never collide (for fewer than ``10**width / 2`` people) and do not reveal the person index.
    """
    modulus = 10**width
    n = (index * 2 + int(duplicate)) * 7_368_787 + salt
    return f"{prefix}{n % modulus:0{width}d}"


def org_records(
    person: Person,
    rng: random.Random,
    dq: DataQuality,
    make_id: Callable[[bool], str],
) -> list[OrgRecord]:
    """The organisation's identity record(s) for ``person``: one, or two for a duplicate."""
    records = [_record(person, rng, dq, make_id(False), False)]
    if rng.random() < dq.duplicate_registration:
        records.append(_record(person, rng, dq, make_id(True), True))
    return records


def _record(
    person: Person, rng: random.Random, dq: DataQuality, local_id: str, duplicate: bool
) -> OrgRecord:
    faults: list[str] = []
    nhs: str | None = person.nhs_number
    r = rng.random()
    if r < dq.missing_nhs_number:
        nhs = None
        faults.append("missing-nhs-number")
    elif r < dq.missing_nhs_number + dq.mistyped_nhs_number:
        nhs = _mistype_nhs(rng, person.nhs_number)
        faults.append("mistyped-nhs-number")
    given, family = person.given, person.family
    if rng.random() < dq.nickname and given in NICKNAMES:
        given = NICKNAMES[given]
        faults.append("nickname")
    if rng.random() < dq.name_typo:
        if rng.random() < 0.5:
            given = _typo(rng, given)
        else:
            family = _typo(rng, family)
        faults.append("name-typo")
    birth = person.birth_date
    if rng.random() < dq.dob_transposed:
        birth = _transpose_dob(birth)
        faults.append("dob-transposed")
    address = person.address
    if len(person.addresses) > 1 and rng.random() < dq.old_address:
        address = person.addresses[rng.randrange(len(person.addresses) - 1)]
        faults.append("old-address")
    if duplicate:
        faults.append("duplicate-registration")
    return OrgRecord(local_id, nhs, given, family, birth, address, duplicate, tuple(faults))
