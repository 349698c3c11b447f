"""Comparison levels: how closely two records agree on each field.

Each comparison maps a pair of records to a *level* per field, most agreeing first. Level
0 is always ``null`` (a value missing on either side), which carries no evidence. The
model (:mod:`sharedcare.identity.model`) gives each level an m and a u probability.

Fields and levels (see docs/explanation/identity-matching.md):

* ``nhs_number``: exact, one edit (a typo or adjacent transposition), different.
* ``given_name``: exact, alias (nickname from :mod:`~sharedcare.identity.nicknames`, also
  through one typo in a long name, or the first name of one is another given name of the
  other), Jaro-Winkler >= 0.92,
  phonetic (Metaphone), Jaro-Winkler >= 0.80 or one typo apart, initial only, different.
* ``family_name``: exact, Jaro-Winkler >= 0.92, phonetic, a shared part of a
  double-barrelled name, Jaro-Winkler >= 0.84 or one typo apart, different.
* ``birth_date``: exact, day and month swapped, one edit to ``YYYYMMDD`` (typo or
  transposed digits), two edits, different.
* ``sex``: agree, disagree (``unknown`` counts as missing).
* ``address`` (postcode and address lines together, so that one home is not counted
  twice): same postcode and lines, same postcode, same lines with another postcode,
  same postcode sector, same district, different.

Given and family names written the wrong way round are recognised and scored as an alias
and an exact family name.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

import jellyfish
from rapidfuzz import fuzz
from rapidfuzz.distance import DamerauLevenshtein, JaroWinkler

from sharedcare.identity.nicknames import near_nickname_groups, nickname_groups
from sharedcare.identity.person import PersonRecord

__all__ = [
    "COMPARISONS",
    "LEVELS",
    "Features",
    "compare",
    "features",
    "normalise_name",
]

COMPARISONS: tuple[str, ...] = (
    "nhs_number",
    "given_name",
    "family_name",
    "birth_date",
    "sex",
    "address",
)
"""Compared fields, in the order of a comparison vector."""

LEVELS: dict[str, tuple[str, ...]] = {
    "nhs_number": ("null", "exact", "one_edit", "different"),
    "given_name": (
        "null",
        "exact",
        "alias",
        "jaro_winkler_0.92",
        "phonetic",
        "jaro_winkler_0.80",
        "initial",
        "different",
    ),
    "family_name": (
        "null",
        "exact",
        "jaro_winkler_0.92",
        "phonetic",
        "shared_part",
        "jaro_winkler_0.84",
        "different",
    ),
    "birth_date": ("null", "exact", "day_month_swap", "one_edit", "two_edits", "different"),
    "sex": ("null", "agree", "disagree"),
    "address": (
        "null",
        "postcode_and_lines",
        "postcode",
        "lines",
        "postcode_sector",
        "postcode_district",
        "different",
    ),
}
"""Level labels per field; index 0 is ``null`` and index 1 the exact agreement."""

_NOT_LETTERS = re.compile(r"[^A-Z]+")
_APOSTROPHES = str.maketrans("", "", "'\u2019")
_NOT_ALNUM = re.compile(r"[^A-Z0-9]+")
_HOUSE = re.compile(r"\b(\d+[A-Z]?)\b")
_ADDRESS_WORDS = {
    "ROAD": "RD",
    "STREET": "ST",
    "AVENUE": "AVE",
    "CLOSE": "CL",
    "DRIVE": "DR",
    "LANE": "LN",
    "CRESCENT": "CRES",
    "GARDENS": "GDNS",
    "PLACE": "PL",
    "COURT": "CT",
    "TERRACE": "TER",
    "FLAT": "",
    "APARTMENT": "",
}
_PART_WORDS = {"", "THE"}


@lru_cache(maxsize=131_072)
def normalise_name(value: str | None) -> tuple[str, ...]:
    """Upper-case a name, strip accents and split it into letter-only parts.

    ``"O'Brien-Smith"`` becomes ``("OBRIEN", "SMITH")``: apostrophes join, hyphens and
    spaces split. Results are cached: names repeat a great deal.
    """
    if not value:
        return ()
    if not value.isascii():
        decomposed = unicodedata.normalize("NFKD", value)
        value = "".join(c for c in decomposed if not unicodedata.combining(c))
    text = value.upper().translate(_APOSTROPHES)
    return tuple(part for part in _NOT_LETTERS.split(text) if part)


@lru_cache(maxsize=131_072)
def _phonetic(name: str) -> str:
    return jellyfish.metaphone(name) if name else ""


def _normalise_address(value: str | None) -> str:
    if not value:
        return ""
    words = _NOT_ALNUM.split(value.upper())
    return " ".join(w for w in (_ADDRESS_WORDS.get(w, w) for w in words) if w)


@dataclass(slots=True, frozen=True)
class Features:
    """A record's values prepared for fast comparison (computed once per record)."""

    nhs: str
    given: str
    given_all: tuple[str, ...]
    given_phonetic: str
    given_groups: frozenset[int]
    given_near_groups: frozenset[int]
    family: str
    family_parts: tuple[str, ...]
    family_phonetic: str
    dob: str
    sex: str
    postcode: str
    postcode_sector: str
    postcode_district: str
    address: str
    house: str


# Features are held for every indexed record (a million or more in one process), and most
# of their values repeat across records: names, dates of birth, postcodes. These caches
# make records that share a value share one object too, and derive each value once.
@lru_cache(maxsize=131_072)
def _given_features(
    given_names: tuple[str, ...],
) -> tuple[tuple[str, ...], str, str, frozenset[int], frozenset[int]]:
    given_all = tuple(p for g in given_names for p in normalise_name(g))
    given = given_all[0] if given_all else ""
    return (
        given_all,
        given,
        _phonetic(given),
        nickname_groups(given),
        near_nickname_groups(given),
    )


@lru_cache(maxsize=131_072)
def _family_features(family_name: str | None) -> tuple[str, tuple[str, ...], str]:
    family_parts = normalise_name(family_name)
    family = "".join(family_parts)
    return (
        family,
        tuple(p for p in family_parts if p not in _PART_WORDS),
        _phonetic(family),
    )


@lru_cache(maxsize=131_072)
def _postcode_features(postcode: str | None) -> tuple[str, str, str]:
    """The postcode without spaces, its sector and its district."""
    bare = (postcode or "").replace(" ", "")
    if postcode and " " in postcode:
        outward, inward = postcode.split(" ", 1)
        return bare, outward + inward[:1], outward
    return bare, "", ""


@lru_cache(maxsize=65_536)
def _dob_text(dob: date | None) -> str:
    return f"{dob.year:04d}{dob.month:02d}{dob.day:02d}" if dob else ""


def features(record: PersonRecord) -> Features:
    """Derive the comparison :class:`Features` of ``record``."""
    given_all, given, given_phonetic, given_groups, given_near = _given_features(record.given_names)
    family, family_parts, family_phonetic = _family_features(record.family_name)
    postcode, sector, district = _postcode_features(record.postcode)
    address = _normalise_address(record.address)
    house = _HOUSE.search(address)
    sex = record.sex if record.sex in ("male", "female", "other") else ""
    return Features(
        nhs=record.nhs_number or "",
        given=given,
        given_all=given_all,
        given_phonetic=given_phonetic,
        given_groups=given_groups,
        given_near_groups=given_near,
        family=family,
        family_parts=family_parts,
        family_phonetic=family_phonetic,
        dob=_dob_text(record.birth_date),
        sex=sex,
        postcode=postcode,
        postcode_sector=sector,
        postcode_district=district,
        address=address,
        house=house.group(1) if house else "",
    )


def _nhs(a: Features, b: Features) -> int:
    x, y = a.nhs, b.nhs
    if not x or not y:
        return 0
    if x == y:
        return 1
    if len(x) == len(y) == 10 and x[:4] != y[:4] and x[6:] != y[6:]:
        # One edit between two 10-digit numbers changes one digit or swaps two neighbours,
        # so it leaves the first four or the last four digits alone: these differ more.
        return 3
    if DamerauLevenshtein.distance(x, y, score_cutoff=1) <= 1:
        return 2
    return 3


def _one_edit(x: str, y: str) -> bool:
    """One typo apart (a letter changed, dropped, added or two swapped), names of 3+ letters.

    Short names one keystroke apart (``RYO``/``ROY``) score low on Jaro-Winkler; they are
    not evidence of a match, but neither are they a *different* name, which would veto.
    """
    lx, ly = len(x), len(y)
    return (
        lx >= 3
        and ly >= 3
        and -1 <= lx - ly <= 1  # one edit changes the length by one at most
        and DamerauLevenshtein.distance(x, y, score_cutoff=1) <= 1
    )


def _given(a: Features, b: Features) -> int:
    x, y = a.given, b.given
    if not x or not y:
        return 0
    if x == y:
        return 1
    if not a.given_groups.isdisjoint(b.given_groups) or x in b.given_all or y in a.given_all:
        return 2
    if len(x) == 1 or len(y) == 1:
        return 6 if x[0] == y[0] else 7
    jw = JaroWinkler.similarity(x, y, score_cutoff=0.80)
    if jw >= 0.92:
        return 3
    if a.given_phonetic == b.given_phonetic:
        return 4
    if (a.given_near_groups or b.given_near_groups) and (
        (a.given_near_groups | a.given_groups) & (b.given_near_groups | b.given_groups)
    ):
        return 2  # a typo of a name that is the other's nickname (Niicholas / Nick)
    if jw >= 0.80 or _one_edit(x, y):
        return 5
    return 7


def _family(a: Features, b: Features) -> int:
    x, y = a.family, b.family
    if not x or not y:
        return 0
    if x == y:
        return 1
    jw = JaroWinkler.similarity(x, y, score_cutoff=0.84)
    if jw >= 0.92:
        return 2
    if a.family_phonetic == b.family_phonetic:
        return 3
    if (len(a.family_parts) > 1 or len(b.family_parts) > 1) and set(a.family_parts) & set(
        b.family_parts
    ):
        return 4
    if jw >= 0.84 or _one_edit(x, y):
        return 5
    return 6


def _dob(a: Features, b: Features) -> int:
    x, y = a.dob, b.dob
    if not x or not y:
        return 0
    if x == y:
        return 1
    if x[:4] == y[:4] and x[4:6] == y[6:8] and x[6:8] == y[4:6]:
        return 2
    distance = DamerauLevenshtein.distance(x, y, score_cutoff=2)
    if distance <= 1:
        return 3
    if distance == 2:
        return 4
    return 5


def _sex(a: Features, b: Features) -> int:
    if not a.sex or not b.sex:
        return 0
    return 1 if a.sex == b.sex else 2


def _lines_agree(a: Features, b: Features) -> bool:
    if not a.address or not b.address:
        return False
    if a.house and b.house and a.house != b.house:
        return False
    return fuzz.token_set_ratio(a.address, b.address, score_cutoff=85) >= 85


def _address(a: Features, b: Features) -> int:
    has_a = bool(a.postcode or a.address)
    has_b = bool(b.postcode or b.address)
    if not has_a or not has_b:
        return 0
    if a.postcode and a.postcode == b.postcode:
        return 1 if _lines_agree(a, b) else 2
    if _lines_agree(a, b):
        return 3
    if not a.postcode or not b.postcode:
        return 0 if not (a.address and b.address) else 6
    if a.postcode_sector and a.postcode_sector == b.postcode_sector:
        return 4
    if a.postcode_district and a.postcode_district == b.postcode_district:
        return 5
    return 6


def compare(a: Features, b: Features) -> tuple[int, ...]:
    """Compare two records' features; return one level index per :data:`COMPARISONS`."""
    given = _given(a, b)
    family = _family(a, b)
    if (
        given > 2
        and family > 1
        and a.given
        and a.family
        and a.given == b.family
        and a.family == b.given
    ):
        given, family = 2, 1
    return (_nhs(a, b), given, family, _dob(a, b), _sex(a, b), _address(a, b))
