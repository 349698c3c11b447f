"""Session 8's fast paths agree with the reference paths on generated near-miss inputs.

* date and date-time checks by table look-ups (``primitives._plain_day``,
  ``_plain_date_time``) against :func:`check_primitive` (the schema patterns);
* date-time ranges by table look-ups (``primitives._time_range``) against
  ``datetime.fromisoformat`` (``_reference_time_range``);
* the inline string shortcuts of the generated checks (``string_shortcut``) imply the
  schema pattern;
* small shapes checked with every property inline (``fastcheck._compile_small_node``):
  ``validate`` gives the issues of the full walk when any key of a Coding, Identifier,
  Reference, Quantity, HumanName, Address, Period or backbone element is changed.
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sharedcare.fhir.internals.fastcheck import certainly_valid
from sharedcare.fhir.internals.primitives import (
    _patterns,
    check_primitive,
    checker,
    date_range,
    string_matcher,
    string_shortcut,
)
from sharedcare.fhir.validation import validate
from sharedcare.ingest.hl7v2.mapping import map_message
from tests.support.hl7_traffic import message
from tests.unit.fhir.test_fhir_fastcheck import full_walk
from tests.unit.fhir.test_fhir_primitives import _reference_time_range

_YEARS = ["0000", "0001", "1899", "1970", "2020", "2024", "9999", "202a", "२०२४", "+202", " 202"]
_MONTHS = ["00", "01", "02", "09", "12", "13", "1", "1a", "٠١"]
_DAYS = ["00", "01", "28", "29", "30", "31", "32", "3", "٣١"]
_HOURS = ["00", "09", "13", "23", "24", "9", "٠٩"]
_MINUTES = ["00", "30", "59", "60", "5"]
_SECONDS = ["00", "08", "59", "60", "61", "5", "٠٠"]
_FRACTIONS = ["", ".", ".0", ".1", ".123", ".123456", ".1234567", ".12a", ".١", "..1", ",5"]
_ZONES = ["Z", "z", "", "+00:00", "-00:00", "+05:30", "-05:30", "+13:59", "+14:00", "-14:00"]
_ZONES += ["+14:01", "+15:00", "+23:59", "+24:00", "+0100", "+01:0", "Z+01:00", "+01:00Z"]
_ZONES += ["+٠١:00", "*01:00", "+01-00"]


_VALID_PARTS = [
    ["0001", "1970", "2020", "2024", "9999"],
    ["-"],
    ["01", "02", "12"],
    ["-"],
    ["01", "28", "29", "31"],
    ["T"],
    ["00", "09", "23"],
    [":"],
    ["00", "59"],
    [":"],
    ["00", "08", "59", "60"],
    ["", ".0", ".123", ".123456", ".1234567"],
    ["Z", "+00:00", "-05:30", "+13:59", "+14:00", "-14:00"],
]
_NEAR_MISS_PARTS = [
    _YEARS,
    ["/", "", "--"],
    _MONTHS,
    ["/", ""],
    _DAYS,
    ["t", " ", "TT", ""],
    _HOURS,
    [".", "", "::"],
    _MINUTES,
    [".", ""],
    _SECONDS,
    _FRACTIONS,
    _ZONES,
]


@st.composite
def _date_times(draw: st.DrawFn) -> str:
    """A valid date-time with at most two of its parts replaced by near misses."""
    parts = [draw(st.sampled_from(valid)) for valid in _VALID_PARTS]
    for _ in range(draw(st.integers(0, 2))):
        i = draw(st.integers(0, len(parts) - 1))
        parts[i] = draw(st.sampled_from(_NEAR_MISS_PARTS[i]))
    text = "".join(parts)
    if draw(st.integers(0, 4)) == 0:  # and sometimes one more change anywhere
        i = draw(st.integers(0, len(text)))
        text = (
            text[:i]
            + draw(st.sampled_from(["", "0", "9", "-", ":", "T", "Z", " "]))
            + text[i + 1 :]
        )
    return text


@st.composite
def _dates(draw: st.DrawFn) -> str:
    text = (
        f"{draw(st.sampled_from(_YEARS))}-{draw(st.sampled_from(_MONTHS))}"
        f"{draw(st.sampled_from(['-', '/', '']))}{draw(st.sampled_from(_DAYS))}"
    )
    return text[: draw(st.sampled_from([len(text), 4, 7, 9, 10, 11]))]


@settings(max_examples=3000)
@given(_date_times() | st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()))
def test_date_time_checks_and_ranges_agree_with_the_reference(text: str) -> None:
    for type_code in ("date", "dateTime", "instant"):
        assert checker(type_code)(text) == check_primitive(type_code, text), (type_code, text)
    if len(text) >= 20 and text[10] == "T":
        assert date_range(text) == _reference_time_range(text), text


@settings(max_examples=1000)
@given(_dates())
def test_date_checks_agree_with_the_reference(text: str) -> None:
    for type_code in ("date", "dateTime", "instant"):
        assert checker(type_code)(text) == check_primitive(type_code, text), (type_code, text)


@settings(max_examples=2000)
@given(st.text(alphabet="0123456789-:T.Z+ z٠", min_size=18, max_size=34))
def test_random_date_time_text_agrees_with_the_reference(text: str) -> None:
    for type_code in ("dateTime", "instant"):
        assert checker(type_code)(text) == check_primitive(type_code, text), (type_code, text)
    if len(text) >= 20 and text[10] == "T":
        assert date_range(text) == _reference_time_range(text), text


_SHORTCUT_TYPES = [t for t in ("string", "markdown", "code", "uri", "url", "canonical")]


def test_the_shortcut_types_have_shortcuts() -> None:
    for type_code in _SHORTCUT_TYPES:
        assert string_shortcut(type_code) is not None, type_code
    for type_code in ("id", "oid", "dateTime", "boolean", "xhtml"):
        assert string_shortcut(type_code) is None, type_code


@settings(max_examples=3000)
@given(
    st.sampled_from(_SHORTCUT_TYPES),
    st.text(
        alphabet=st.sampled_from(["a", "Z", "0", " ", "\t", "\n", "\r", "\x0b", "\x85", "\xa0"])
        | st.sampled_from(["\u2028", "\u3000", "\u200b", "é", "\x00", "😀", "\ud800"])
        | st.characters(),
        max_size=8,
    ),
)
def test_string_shortcuts_imply_the_pattern(type_code: str, text: str) -> None:
    shortcut = string_shortcut(type_code)
    assert shortcut is not None
    fast = eval(shortcut.format(x="t"), {}, {"t": text})  # our own expression, over a local
    matches = _patterns()[type_code].fullmatch(text) is not None
    if fast:
        assert matches, (type_code, text)
    matcher = string_matcher(type_code)
    assert matcher is not None
    assert (fast or matcher(text)) == matches


def _traffic() -> list[dict[str, Any]]:
    return [r for i in range(12) for r in map_message(message(i).encode()).resources]


_TRAFFIC = _traffic()
_VALUE_CHOICES: list[Any] = [None, "", " ", "x", "a b", " a", "a ", "\t", "x\x00", 0, 1, -1, 1.5]
_VALUE_CHOICES += [True, False, [], [None], ["x"], [{}], {}, {"x": 1}, {"value": "1"}]
_VALUE_CHOICES += [[{"value": "1"}], "2024-03-01", "2024-02-30", "2024-03-01T10:15:00Z"]
_VALUE_CHOICES += ["2024-03-01T10:15:00+14:01", "http://loinc.org", "urn:x y", "final"]
_VALUE_CHOICES += ["Patient/1", "mmol/L"]
_VALUES = st.sampled_from(_VALUE_CHOICES)
_KEYS = ["id", "extension", "system", "version", "code", "display", "userSelected", "text"]
_KEYS += ["coding", "value", "unit", "comparator", "reference", "type", "identifier", "use"]
_KEYS += ["start", "end", "family", "given", "line", "city", "postalCode", "low", "high"]
_KEYS += ["period", "assigner", "_code", "bogus", "resourceType", "valueString", "location"]
_KEYS += ["status", "div"]


def _objects(node: Any, out: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        out.append(node)
        for value in node.values():
            _objects(value, out)
    elif isinstance(node, list):
        for value in node:
            _objects(value, out)
    return out


@settings(max_examples=2500, deadline=None)
@given(
    st.integers(0, len(_TRAFFIC) - 1),
    st.integers(0, 10_000),
    st.lists(st.tuples(st.sampled_from(_KEYS), _VALUES | st.just("<delete>")), max_size=3),
)
def test_changed_small_shapes_get_the_issues_of_the_full_walk(
    which: int, where: int, changes: list[tuple[str, Any]]
) -> None:
    resource = copy.deepcopy(_TRAFFIC[which])
    objects = _objects(resource, [])[1:]  # nested objects only: the shapes checked inline
    if not objects:
        return
    target = objects[where % len(objects)]
    for key, value in changes:
        if value == "<delete>":
            target.pop(key, None)
        else:
            target[key] = copy.deepcopy(value)
    expected = full_walk(copy.deepcopy(resource))
    if certainly_valid(resource):
        assert expected == [], expected
    assert validate(resource) == expected


def test_the_traffic_is_certainly_valid() -> None:
    """The inline shapes still find the usual resources valid (the fast path is taken)."""
    assert _TRAFFIC and all(certainly_valid(r) for r in _TRAFFIC)


def test_two_types_of_one_choice_in_a_small_shape_get_the_issues_of_the_full_walk() -> None:
    from sharedcare.fhir.definitions import node_for_type
    from sharedcare.fhir.internals.fastcheck import _INLINE_MAX_KEYS

    annotation = node_for_type("Annotation")
    assert annotation is not None
    assert len(annotation.props) <= _INLINE_MAX_KEYS  # checked inline
    base = copy.deepcopy(next(r for r in _TRAFFIC if r["resourceType"] == "Observation"))
    one = {"authorString": "Dr A", "text": "checked"}
    base["note"] = [one]
    assert certainly_valid(base) and validate(base) == full_walk(copy.deepcopy(base)) == []
    two = {**one, "authorReference": {"reference": "Practitioner/1"}}
    base["note"] = [two]
    expected = full_walk(copy.deepcopy(base))
    assert expected and not certainly_valid(base)
    assert validate(base) == expected


def _reference_day_range(text: str) -> tuple[int, int] | None:
    """date_range of a 10-character text as it was computed before the day look-up."""
    from datetime import date

    try:
        low = (date(int(text[0:4]), int(text[5:7]), int(text[8:10])).toordinal() - 719163) * (
            86_400_000_000
        )
    except ValueError:
        return None
    return low, low + 86_400_000_000


@settings(max_examples=2000)
@given(
    _dates()
    | st.dates().map(lambda d: d.isoformat())
    | st.text(alphabet="0123456789-/+_ T٠", min_size=10, max_size=10)
    | st.text(min_size=10, max_size=10)
)
def test_day_ranges_agree_with_the_reference(text: str) -> None:
    if len(text) == 10:
        assert date_range(text) == _reference_day_range(text), text
