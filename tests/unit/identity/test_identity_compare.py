from typing import Any

import pytest

from sharedcare.identity.compare import (
    COMPARISONS,
    LEVELS,
    Features,
    compare,
    features,
    normalise_name,
)
from sharedcare.identity.nicknames import NICKNAME_GROUPS, nickname_groups
from sharedcare.identity.person import PersonRecord


def rec(**kw: Any) -> Features:
    return features(PersonRecord.create("s", "1", **kw))


def level(field: str, a: Features, b: Features) -> str:
    return LEVELS[field][compare(a, b)[COMPARISONS.index(field)]]


def test_normalise_name() -> None:
    assert normalise_name("O'Brien-Smith") == ("OBRIEN", "SMITH")
    assert normalise_name("Zoë") == ("ZOE",)
    assert normalise_name(None) == ()


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("1985-03-14", "1985-03-14", "exact"),
        ("1985-03-04", "1985-04-03", "day_month_swap"),
        ("1985-03-14", "1958-03-14", "one_edit"),  # transposed year digits
        ("1985-03-14", "1985-03-41".replace("41", "14"), "exact"),
        ("1985-12-13", "1985-12-31", "one_edit"),  # transposed day digits
        ("1985-03-14", "1985-03-15", "one_edit"),
        ("1985-03-14", "1987-03-16", "two_edits"),
        ("1985-03-14", "1962-11-30", "different"),
    ],
)
def test_birth_date_levels(a: str, b: str, expected: str) -> None:
    assert level("birth_date", rec(birth_date=a), rec(birth_date=b)) == expected


def test_birth_date_missing_is_null() -> None:
    assert level("birth_date", rec(birth_date="1985-03-14"), rec()) == "null"


def test_same_day_and_month_is_exact_not_swap() -> None:
    assert level("birth_date", rec(birth_date="1985-05-05"), rec(birth_date="1985-05-05")) == (
        "exact"
    )


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("William", "William", "exact"),
        ("William", "Bill", "alias"),
        ("Bill", "Billy", "alias"),
        ("Peggy", "Margaret", "alias"),
        ("Kate", "Katherine", "alias"),
        ("Jonathan", "Jonathon", "jaro_winkler_0.92"),
        ("Catherine", "Kathryn", "alias"),
        ("Stephen", "Steven", "alias"),
        ("Sean", "Shaun", "jaro_winkler_0.80"),
        ("Carl", "Karl", "phonetic"),
        ("Geoffrey", "Jeffery", "phonetic"),
        ("J", "John", "initial"),
        ("J", "Mary", "different"),
        ("Mary", "Susan", "different"),
    ],
)
def test_given_name_levels(a: str, b: str, expected: str) -> None:
    assert level("given_name", rec(given_name=a), rec(given_name=b)) == expected


def test_middle_name_used_as_first_is_alias() -> None:
    a = rec(given_name="John Paul")
    b = rec(given_name="Paul")
    assert level("given_name", a, b) == "alias"


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("Smith", "SMITH", "exact"),
        ("Jennings", "Jenings", "jaro_winkler_0.92"),
        ("Smith", "Smyth", "phonetic"),
        ("Smith-Jones", "Jones", "shared_part"),
        ("Smith", "Jones", "different"),
    ],
)
def test_family_name_levels(a: str, b: str, expected: str) -> None:
    assert level("family_name", rec(family_name=a), rec(family_name=b)) == expected


def test_swapped_given_and_family_names() -> None:
    a = rec(given_name="Li", family_name="Wei")
    b = rec(given_name="Wei", family_name="Li")
    assert level("given_name", a, b) == "alias"
    assert level("family_name", a, b) == "exact"


def test_address_levels() -> None:
    home = rec(postcode="BH1 1AA", address="1 High Street, Poole")
    assert level("address", home, rec(postcode="BH11AA", address="1 High St")) == (
        "postcode_and_lines"
    )
    assert level("address", home, rec(postcode="BH1 1AA", address="9 Other Road")) == "postcode"
    assert level("address", home, rec(postcode="BH1 1AA")) == "postcode"
    assert level("address", home, rec(postcode="BH1 1AB", address="1 High Street")) == "lines"
    assert level("address", home, rec(postcode="BH1 1ZZ")) == "postcode_sector"
    assert level("address", home, rec(postcode="BH1 9ZZ")) == "postcode_district"
    assert level("address", home, rec(postcode="DT4 9ZZ")) == "different"
    assert level("address", home, rec()) == "null"
    # A different house number on the same street is not the same address.
    assert level("address", home, rec(postcode="BH2 2AA", address="11 High Street")) == (
        "different"
    )


def test_nhs_and_sex_levels() -> None:
    a = rec(nhs_number="9434765919", sex="male")
    assert level("nhs_number", a, rec(nhs_number="9434765919")) == "exact"
    assert level("nhs_number", a, rec(nhs_number="9434769519")) == "one_edit"
    assert level("nhs_number", a, rec(nhs_number="4010232137")) == "different"
    assert level("nhs_number", a, rec()) == "null"
    assert level("sex", a, rec(sex="M")) == "agree"
    assert level("sex", a, rec(sex="female")) == "disagree"
    assert level("sex", a, rec(sex="unknown")) == "null"


def test_nickname_table_is_upper_case_and_small() -> None:
    names = [n for g in NICKNAME_GROUPS for n in g]
    assert all(n == n.upper() and n.isalpha() for n in names)
    assert len(NICKNAME_GROUPS) < 200
    assert nickname_groups("ALEX") and len(nickname_groups("ALEX")) == 2
    assert nickname_groups("ZZZ") == frozenset()


def test_shortcuts_agree_with_the_full_edit_distance() -> None:
    """The NHS number and one-typo shortcuts never change a level (checked against the
    full Damerau-Levenshtein distance on random near and far pairs)."""
    import random

    from rapidfuzz.distance import DamerauLevenshtein

    from sharedcare.identity import compare as c

    rng = random.Random(11)

    def nearby(text: str, alphabet: str) -> str:
        chars = list(text)
        for _ in range(rng.randrange(0, 3)):
            k = rng.randrange(len(chars))
            op = rng.randrange(4)
            if op == 0:
                chars[k] = rng.choice(alphabet)
            elif op == 1 and k + 1 < len(chars):
                chars[k], chars[k + 1] = chars[k + 1], chars[k]
            elif op == 2 and len(chars) > 1:
                del chars[k]
            else:
                chars.insert(k, rng.choice(alphabet))
        return "".join(chars)

    for _ in range(20000):
        x = "".join(rng.choice("0123456789") for _ in range(10))
        y = nearby(x, "0123456789") if rng.random() < 0.7 else "".join(rng.sample(x, 10))
        a = features(PersonRecord.create("s", "1", nhs_number=None))
        level = c._nhs(
            c.Features(**{**{n: getattr(a, n) for n in c.Features.__slots__}, "nhs": x}),
            c.Features(**{**{n: getattr(a, n) for n in c.Features.__slots__}, "nhs": y}),
        )
        distance = DamerauLevenshtein.distance(x, y)
        assert level == (1 if x == y else 2 if distance <= 1 else 3)
        word = "".join(rng.choice("ABCDE") for _ in range(rng.randrange(1, 8)))
        other = nearby(word, "ABCDE")
        expected = min(len(word), len(other)) >= 3 and DamerauLevenshtein.distance(word, other) <= 1
        assert c._one_edit(word, other) is expected
