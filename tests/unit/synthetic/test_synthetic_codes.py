"""Every code the generator emits has a well-formed code for its system."""

from __future__ import annotations

import re

import pytest

from sharedcare.synthetic import codes

# Verhoeff tables (SNOMED CT identifiers end in a Verhoeff check digit).
_D = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
    [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
    [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
    [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
    [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
    [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
    [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
    [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
    [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
]
_P = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
    [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
    [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
    [9, 4, 5, 3, 1, 2, 6, 8, 7, 0],
    [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
    [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
    [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
]


def verhoeff_ok(number: str) -> bool:
    c = 0
    for i, digit in enumerate(reversed(number)):
        c = _D[c][_P[i % 8][int(digit)]]
    return c == 0


def loinc_ok(code: str) -> bool:
    """LOINC mod-10 check digit (Luhn on the part before the hyphen)."""
    body, check = code.split("-")
    total = 0
    for i, digit in enumerate(reversed(body)):
        d = int(digit)
        if i % 2 == 0:
            d *= 2
            d = d - 9 if d > 9 else d
        total += d
    return (10 - total % 10) % 10 == int(check)


def test_checksum_helpers_reject_a_changed_digit() -> None:
    assert verhoeff_ok("38341003") and not verhoeff_ok("38341004")
    assert loinc_ok("8480-6") and not loinc_ok("8480-5")


@pytest.mark.parametrize(
    "code", codes.ALL_CODES, ids=lambda c: f"{c.system.rsplit('/', 1)[-1]}:{c.code}"
)
def test_code_format(code: codes.Code) -> None:
    assert code.display.strip() == code.display and code.display
    if code.system == codes.SNOMED:
        assert re.fullmatch(r"[1-9]\d{5,17}", code.code)
        assert verhoeff_ok(code.code)
        # partition identifier: 0x concept ids (00 core, 10 extension)
        assert code.code[-3:-1] in {"00", "10"}
    elif code.system == codes.LOINC:
        assert re.fullmatch(r"\d{1,7}-\d", code.code)
        assert loinc_ok(code.code)
    elif code.system == codes.ICD10:
        assert re.fullmatch(r"[A-Z]\d\d(\.\d)?", code.code)
    elif code.system == codes.OPCS4:
        assert re.fullmatch(r"[A-Z]\d\d\.\d", code.code)
    else:
        pytest.fail(f"unexpected code system {code.system}")


def test_every_condition_has_both_codes() -> None:
    assert set(codes.CONDITIONS) == set(
        [
            "HYP",
            "DM",
            "AST",
            "COPD",
            "CHD",
            "STIA",
            "AF",
            "HF",
            "CKD",
            "DEM",
            "DEP",
            "MH",
            "CAN",
            "LD",
        ]
    )


def test_lab_reference_ranges_are_ordered() -> None:
    for _, tests in codes.LAB_PANELS.values():
        assert tests
        for test in tests:
            assert test.low < test.high and test.unit


def test_ethnic_categories_are_single_letters() -> None:
    assert all(re.fullmatch(r"[A-Z]", c) for c in codes.ETHNIC_CATEGORIES)
    assert re.fullmatch(r"\d{3}", min(codes.TREATMENT_FUNCTIONS))
