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
