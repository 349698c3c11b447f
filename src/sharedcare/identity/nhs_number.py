"""NHS number checks: format, modulus 11 check digit, and the 999 test range.

An NHS number is ten digits. The tenth is a check digit computed by modulus 11
over the first nine, weighted 10 down to 2 (NHS Data Dictionary, "NHS Number").
A remainder giving a check value of 10 means the number is never issued.

Numbers beginning ``999`` are reserved for testing and are never issued to a
real person, which is why the synthetic population draws only from that range.
"""

from __future__ import annotations

import re
from enum import StrEnum
from functools import lru_cache

__all__ = [
    "NHS_NUMBER_SYSTEM",
    "NhsNumberProblem",
    "check_digit",
    "is_test_number",
    "is_valid",
    "normalise",
    "problem",
]

NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
"""The FHIR identifier system for NHS numbers (UK Core)."""

_SEPARATORS = re.compile(r"[\s\-]+")
_WEIGHTS = (10, 9, 8, 7, 6, 5, 4, 3, 2)


class NhsNumberProblem(StrEnum):
    """Why a string is not a valid NHS number. Messages never echo the value."""

    EMPTY = "NHS number is empty"
    NOT_TEN_DIGITS = "NHS number must be 10 digits (spaces and hyphens are allowed between groups)"
    CHECK_DIGIT = "NHS number fails the modulus 11 check digit; check for a mistyped digit"
    NEVER_ISSUED = "NHS number has a check value of 10, so it is never issued"


def normalise(value: str | None) -> str | None:
    """Return the bare ten-digit form of ``value``, or ``None`` if it is not ten digits.

    Spaced (``943 476 5919``) and hyphenated (``943-476-5919``) forms are accepted.

    Args:
        value: The number as typed or sent by a feed.

    Returns:
        Ten digits, or ``None`` when the value cannot be an NHS number.
    """
    if value is None:
        return None
    bare = _SEPARATORS.sub("", value.strip())
    if len(bare) != 10 or not bare.isascii() or not bare.isdigit():
        return None
    return bare


def check_digit(first_nine: str) -> int | None:
    """Compute the modulus 11 check digit for the first nine digits.

    Args:
        first_nine: Exactly nine ASCII digits.

    Returns:
        The check digit 0–9, or ``None`` when the check value is 10 (never issued).

    Raises:
        ValueError: If ``first_nine`` is not nine digits.
    """
    if len(first_nine) != 9 or not first_nine.isascii() or not first_nine.isdigit():
        raise ValueError("check_digit needs exactly nine digits")
    total = sum(int(d) * w for d, w in zip(first_nine, _WEIGHTS, strict=True))
    value = 11 - (total % 11)
    if value == 11:
        return 0
    if value == 10:
        return None
    return value


@lru_cache(maxsize=1 << 16)  # a pure function, asked again for every golden-record rebuild
def problem(value: str | None) -> NhsNumberProblem | None:
    """Say what is wrong with ``value`` as an NHS number, or ``None`` if it is valid."""
    if value is None or not value.strip():
        return NhsNumberProblem.EMPTY
    bare = normalise(value)
    if bare is None:
        return NhsNumberProblem.NOT_TEN_DIGITS
    expected = check_digit(bare[:9])
    if expected is None:
        return NhsNumberProblem.NEVER_ISSUED
    if expected != int(bare[9]):
        return NhsNumberProblem.CHECK_DIGIT
    return None


def is_valid(value: str | None) -> bool:
    """Whether ``value`` is a well-formed NHS number with a correct check digit."""
    return problem(value) is None


def is_test_number(value: str | None) -> bool:
    """Whether ``value`` is a valid NHS number from the 999 test range."""
    bare = normalise(value)
    return bare is not None and bare.startswith("999") and is_valid(bare)
