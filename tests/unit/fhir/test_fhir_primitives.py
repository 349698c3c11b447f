"""Primitive checks and date precision ranges."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sharedcare.fhir.internals.primitives import (
    DATE_MAX,
    check_primitive,
    checker,
    date_range,
)

TYPES = [
    "string",
    "code",
    "id",
    "uri",
    "oid",
    "uuid",
    "markdown",
    "canonical",
    "url",
    "time",
    "date",
    "dateTime",
    "instant",
    "boolean",
    "integer",
    "decimal",
    "positiveInt",
]


@given(
    st.sampled_from(TYPES),
    st.one_of(
        st.text(max_size=12), st.integers(), st.booleans(), st.floats(allow_nan=False), st.none()
    ),
)
def test_fast_checker_agrees_with_reference_check(type_code: str, value: object) -> None:
    assert checker(type_code)(value) == check_primitive(type_code, value)


def test_formats() -> None:
    assert check_primitive("code", "a b") is None
    assert check_primitive("code", " a") is not None
    assert check_primitive("id", "a" * 65) is not None
    assert check_primitive("unsignedInt", 0) is None
    assert check_primitive("integer", 2**31) is not None
    assert check_primitive("integer", True) is not None
    assert check_primitive("decimal", 1.5) is None
    assert check_primitive("dateTime", "2020-01-01T10:00:00") is not None  # zone needed
    assert check_primitive("dateTime", "2020-01-01T10:00:00+01:00") is None
    assert check_primitive("date", "2021-02-29") is not None
    assert check_primitive("xhtml", "<div>x</div>") is None
    assert check_primitive("xhtml", "<p>x</p>") is not None


def test_date_ranges() -> None:
    day = 86_400_000_000
    assert date_range("1970-01-02") == (day, 2 * day)
    assert date_range("1970-01-01T00:00:00.5Z") == (500_000, 600_000)
    assert date_range("1970-01-01T01:00:00+01:00") == (0, 1_000_000)
    assert date_range("1970-01-01T00:00:60Z") == (59_000_000, 60_000_000)
    assert date_range("9999-12") == (date_range("9999-12-01")[0], DATE_MAX)  # type: ignore[index]
    assert date_range("2020-13") is None
    assert date_range("nonsense!!") is None


def test_narrative_active_content_is_refused() -> None:
    ok = (
        '<div xmlns="http://www.w3.org/1999/xhtml"><p>Dose one = 5 mg; see javascript: no</p></div>'
    )
    assert check_primitive("xhtml", ok) is None
    for bad in (
        '<div xmlns="http://www.w3.org/1999/xhtml"><script>x()</script></div>',
        '<div xmlns="http://www.w3.org/1999/xhtml"><p onclick="x()">a</p></div>',
        '<div xmlns="http://www.w3.org/1999/xhtml"><a href="javascript:x()">a</a></div>',
        '<div xmlns="http://www.w3.org/1999/xhtml"><IFRAME src="x"/></div>',
    ):
        problem = check_primitive("xhtml", bad)
        assert problem is not None and problem[0] == "invariant"


def test_the_fast_checkers_agree_with_check_primitive() -> None:
    from sharedcare.fhir.internals.primitives import check_primitive, checker

    values: list[object] = [
        True, False, None, 0, 1, -1, 2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 1.0, 1.5,
        0.0, float("inf"), "1", "x", "", [], {}, "2020", "2020-02", "2020-02-30",
        "2020-02-29", "2021-02-29", "2020-13-01", "0000-01-01", "2020-1-01",
        "2020-01-01T10:00:00Z", "2020-01-01T10:00:00", "2020-02-30T10:00:00Z",
        "2020-01-01T10:00:00.123+01:00", "2020-01-01T25:00:00Z",
    ]  # fmt: skip
    types = ["boolean", "decimal", "integer", "positiveInt", "unsignedInt", "integer64"]
    types += ["date", "dateTime", "instant", "time", "string", "code", "id", "uri"]
    for type_code in types:
        for value in values:
            assert checker(type_code)(value) == check_primitive(type_code, value), (
                type_code,
                value,
            )


def test_string_matchers_agree_with_the_schema_patterns() -> None:
    import random

    from sharedcare.fhir.internals.primitives import _patterns, string_matcher

    rng = random.Random(7)
    alphabet = ["a", "Z", "0", " ", "\t", "\n", "\r", "\x0b", "\x0c", "\x1c", "\x85", "\xa0"]
    alphabet += ["\u2028", "\u3000", "\u200b", "é", "-", ".", ":", "\x00", "😀"]
    for type_code in ("string", "markdown", "code", "uri", "url", "canonical", "id", "oid"):
        match = string_matcher(type_code)
        assert match is not None
        pattern = _patterns()[type_code]
        for _ in range(5000):
            text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6)))
            assert match(text) == (pattern.fullmatch(text) is not None), (type_code, text)


def _reference_time_range(text: str) -> tuple[int, int] | None:
    """date_range of a date-time as it was computed before its arithmetic fast path."""
    from datetime import UTC, datetime, timedelta

    if len(text) < 20:
        return None
    fixed = text[:17] + "59" + text[19:] if text[17:19] == "60" else text
    try:
        dt = datetime.fromisoformat(fixed)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    low = (dt - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    dot = text.find(".", 19)
    if dot == -1:
        return low, low + 1_000_000
    end = dot + 1
    while end < len(text) and text[end].isdigit():
        end += 1
    digits = end - dot - 1
    return low, low + (10 ** max(0, 6 - digits) if digits else 1_000_000)


def test_date_time_ranges_match_fromisoformat() -> None:
    import itertools

    from sharedcare.fhir.internals.primitives import date_range

    days = ["2020-02-29", "2021-02-29", "1970-01-01", "0001-01-01", "9999-12-31", "1899-12-31"]
    times = ["00:00:00", "23:59:59", "10:30:60", "24:00:00", "12:60:00"]
    fractions = ["", ".1", ".123", ".123456", ".1234567"]
    zones = ["Z", "+00:00", "-00:00", "+01:00", "-05:30", "+14:00", "+24:00", "+0100", "", "z"]
    for day, time, fraction, zone in itertools.product(days, times, fractions, zones):
        text = f"{day}T{time}{fraction}{zone}"
        assert date_range(text) == _reference_time_range(text), text
