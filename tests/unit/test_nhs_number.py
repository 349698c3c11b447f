"""NHS number checks (NHS Data Dictionary: modulus 11)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sharedcare.identity import nhs_number as nhs


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("9434765919", True),  # the NHS's published example
        ("943 476 5919", True),
        ("943-476-5919", True),
        ("9434765918", False),  # wrong check digit
        ("943476591", False),  # nine digits
        ("94347659190", False),  # eleven digits
        ("943476591X", False),
        ("", False),
        (None, False),
    ],
)
def test_is_valid(value: str | None, expected: bool) -> None:
    assert nhs.is_valid(value) is expected


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("", nhs.NhsNumberProblem.EMPTY),
        ("12345", nhs.NhsNumberProblem.NOT_TEN_DIGITS),
        ("9434765918", nhs.NhsNumberProblem.CHECK_DIGIT),
        ("9434765919", None),
    ],
)
def test_problem_says_what_is_wrong(value: str, problem: nhs.NhsNumberProblem | None) -> None:
    assert nhs.problem(value) is problem


def test_problem_messages_never_echo_the_number() -> None:
    for value in ("9434765918", "12345", "1000000010"):
        problem = nhs.problem(value)
        assert problem is not None
        assert value not in problem.value


def test_check_value_of_ten_is_never_issued() -> None:
    # 1000000010: weighted sum of the first nine digits is 10*1 + 2*1 = 12 → 11 - 1 = 10.
    assert nhs.check_digit("100000001") is None
    assert nhs.problem("1000000010") is nhs.NhsNumberProblem.NEVER_ISSUED


def test_check_digit_needs_nine_digits() -> None:
    with pytest.raises(ValueError, match="nine digits"):
        nhs.check_digit("12345678")


def test_normalise() -> None:
    assert nhs.normalise(" 943 476 5919 ") == "9434765919"
    assert nhs.normalise("943-476-5919") == "9434765919"
    assert nhs.normalise("٩٤٣٤٧٦٥٩١٩") is None  # non-ASCII digits are not accepted


def test_test_range() -> None:
    first_nine = "999000001"
    digit = nhs.check_digit(first_nine)
    assert digit is not None
    assert nhs.is_test_number(first_nine + str(digit))
    assert not nhs.is_test_number("9434765919")


@given(st.text(alphabet="0123456789", min_size=9, max_size=9))
def test_appending_the_check_digit_gives_a_valid_number(first_nine: str) -> None:
    digit = nhs.check_digit(first_nine)
    if digit is None:
        assert all(not nhs.is_valid(first_nine + str(d)) for d in range(10))
    else:
        assert nhs.is_valid(first_nine + str(digit))
        # Any single-digit change of the check digit is caught.
        assert all(not nhs.is_valid(first_nine + str(d)) for d in range(10) if d != digit)
