"""FHIR primitive types: JSON representation checks and date precision ranges.

Rules: https://hl7.org/fhir/R4/datatypes.html#primitive and
https://hl7.org/fhir/R4/json.html#primitive. The regular expressions come from the official
R4 JSON schema (distilled into the package data by ``definitions.build``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from functools import cache, lru_cache

from sharedcare.fhir.definitions.model import raw_model

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1

#: Epoch microseconds used for an open lower bound (0001-01-01T00:00:00Z).
DATE_MIN = -62135596800000000
#: Epoch microseconds used for an open upper bound (10000-01-01T00:00:00Z, exclusive).
DATE_MAX = 253402300800000000

_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_DAY_US = 86_400_000_000
_SECOND_US = 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_NUMBER_TYPES = frozenset({"decimal", "integer", "positiveInt", "unsignedInt", "integer64"})
# Active content that R4 narrative forbids (txt-1: basic HTML only). A deny-list, not a parser.
_ACTIVE_CONTENT = re.compile(
    r"<\s*(script|object|applet|embed|iframe|frame|frameset|form|input|button|textarea|select"
    r"|style|link|meta|base)\b|<[^>]*\son[a-z]+\s*=|<[^>]*=\s*[\"']?\s*javascript\s*:",
    re.IGNORECASE,
)
_NOT_PLAIN_STRINGS = frozenset({"boolean", "date", "dateTime", "instant", "xhtml"})


@cache
def _patterns() -> dict[str, re.Pattern[str]]:
    out: dict[str, re.Pattern[str]] = {}
    for name, pattern in raw_model()["primitives"].items():
        if not pattern:
            continue
        body = pattern.removeprefix("^").removesuffix("$")
        out[name] = re.compile(body)
    return out


Problem = tuple[str, str]
Checker = Callable[[object], "Problem | None"]


# Patterns with a cheaper test that settles the usual case: a printable string (no
# whitespace but the space, https://docs.python.org/3/library/stdtypes.html#str.isprintable)
# matches each of them; anything else is matched with the pattern itself.
_PRINTABLE_MATCHES = {
    "[ \\r\\n\\t\\S]+": "non-empty",  # string, markdown
    "[^\\s]+(\\s[^\\s]+)*": "non-empty, no space",  # code
    "\\S*": "no space",  # uri, url, canonical
}


# The same cheaper tests as source expressions over a variable ``{x}`` (a ``str``), for
# generated code: true only for text the pattern matches (``string_shortcut``).
_SHORTCUT_SOURCE = {
    "non-empty": "({x} != '' and {x}.isprintable())",
    "non-empty, no space": "({x} != '' and ' ' not in {x} and {x}.isprintable())",
    "no space": "(' ' not in {x} and {x}.isprintable())",
}


def string_shortcut(type_code: str) -> str | None:
    """A Python expression over ``{x}`` (a ``str``) that is true only for valid values of a
    type with a :func:`string_matcher`; false means "ask the matcher". ``None`` when the
    type has no such shortcut. Generated checks inline it to save the matcher's call in
    the usual case (``tests/unit/fhir/test_fhir_fast_paths.py`` checks it implies the
    pattern)."""
    pat = _patterns().get(type_code)
    if pat is None or string_matcher(type_code) is None:
        return None
    shortcut = _PRINTABLE_MATCHES.get(pat.pattern)
    return None if shortcut is None else _SHORTCUT_SOURCE[shortcut]


@cache
def string_matcher(type_code: str) -> Callable[[str], bool] | None:
    """Whether a JSON string is a valid value of a primitive that is valid exactly when it is
    a JSON string matching its pattern (``code``, ``id``, ``uri``, ``string`` ...); ``None``
    for the others (numbers, booleans, dates with calendar checks, xhtml, unpatterned types).

    For those types ``checker(type_code)(value) is None`` exactly when
    ``type(value) is str and string_matcher(type_code)(value)``.
    """
    pat = _patterns().get(type_code)
    if pat is None or type_code in _NUMBER_TYPES or type_code in _NOT_PLAIN_STRINGS:
        return None
    fullmatch = pat.fullmatch
    shortcut = _PRINTABLE_MATCHES.get(pat.pattern)
    if shortcut == "non-empty":

        def printable(text: str) -> bool:
            return (text != "" and text.isprintable()) or fullmatch(text) is not None

        return printable
    if shortcut == "non-empty, no space":

        def printable_word(text: str) -> bool:
            return (text != "" and " " not in text and text.isprintable()) or fullmatch(
                text
            ) is not None

        return printable_word
    if shortcut == "no space":

        def printable_no_space(text: str) -> bool:
            return (" " not in text and text.isprintable()) or fullmatch(text) is not None

        return printable_no_space

    def matches(text: str) -> bool:
        return fullmatch(text) is not None

    return matches


@cache
def checker(type_code: str) -> Checker:
    """Return a fast checker for one primitive type (same results as check_primitive)."""
    pat = _patterns().get(type_code)
    special = _special_checker(type_code, pat)
    if special is not None:
        return special
    if pat is None or type_code in _NUMBER_TYPES or type_code in _NOT_PLAIN_STRINGS:
        return lambda value: check_primitive(type_code, value)
    wrong_type: Problem = ("structure", f"must be a JSON string ({type_code})")
    bad_format: Problem = (
        "value",
        f"is not a valid FHIR {type_code}; see https://hl7.org/fhir/R4/datatypes.html#{type_code}",
    )
    match = string_matcher(type_code)
    assert match is not None  # a plain patterned string type, as above

    def check(value: object) -> Problem | None:
        if type(value) is not str:
            return wrong_type
        if not match(value):
            return bad_format
        return None

    return check


_INT_LOWEST = {"integer": INT32_MIN, "positiveInt": 1, "unsignedInt": 0}


@cache
def _real_date(year: int, month: int, day: int) -> bool:
    try:
        date(year, month, day)
    except ValueError:
        return False
    return True


def _special_checker(type_code: str, pat: re.Pattern[str] | None) -> Checker | None:
    """Checkers for booleans, numbers and dates that answer the valid case themselves.

    Anything they do not find plainly valid goes to :func:`check_primitive`, so results
    (the problems and their wording) are exactly its own.
    """

    def slow(value: object) -> Problem | None:
        return check_primitive(type_code, value)

    if type_code == "boolean":

        def check_boolean(value: object) -> Problem | None:
            return None if value is True or value is False else slow(value)

        return check_boolean
    if type_code == "decimal":

        def check_decimal(value: object) -> Problem | None:
            tv = type(value)
            return None if tv is int or tv is float else slow(value)

        return check_decimal
    lowest = _INT_LOWEST.get(type_code)
    if lowest is not None:

        def check_int(value: object) -> Problem | None:
            if type(value) is int and lowest <= value <= INT32_MAX:
                return None
            return slow(value)

        return check_int
    if type_code in ("date", "dateTime", "instant") and pat is not None:
        fullmatch = pat.fullmatch
        with_day = type_code != "instant"  # a bare YYYY-MM-DD is a date or a dateTime
        with_time = type_code != "date"

        def check_date(value: object) -> Problem | None:
            if type(value) is str:
                # the usual shapes by table look-ups (_plain_day, _plain_date_time)
                n = len(value)
                if n == 10:
                    if with_day and _plain_day(value):
                        return None
                elif n >= 20 and with_time and _plain_date_time(value, n):
                    return None
            if type(value) is str and fullmatch(value) is not None:
                if len(value) < 10:
                    return None
                try:
                    if _real_date(int(value[0:4]), int(value[5:7]), int(value[8:10])):
                        return None
                except ValueError:
                    pass
            return slow(value)

        return check_date
    return None


_VALID_SECONDS = frozenset(f"{s:02d}" for s in range(61))  # 60: a leap second
_VALID_ZONES = frozenset(
    [f"{sign}{h:02d}:{m:02d}" for sign in "+-" for h in range(14) for m in range(60)]
    + ["+14:00", "-14:00"]
)


def _plain_day(text: str) -> bool:
    """True only for a valid FHIR date ``YYYY-MM-DD`` (its pattern and a real date)."""
    return _day_start(text) is not None


# Memos of two pure functions of date/time text: the resources of one message or batch
# share timestamps (``meta.lastUpdated`` of a batch, a report's and its results' times).
# Bounded: cleared when full.
_MEMO_LIMIT = 4096
_PLAIN_TIMES: dict[str, bool] = {}
_RANGES: dict[str, tuple[int, int] | None] = {}
_UNSEEN = (0, 0)  # compared by identity: no text's range


def _plain_date_time(text: str, n: int) -> bool:
    """True only for a valid FHIR dateTime/instant with a time (its pattern: hours 00-23,
    minutes 00-59, seconds 00-60, zones from -14:00 to +14:00; and a real date)."""
    found = _PLAIN_TIMES.get(text)
    if found is None:
        found = _plain_date_time_uncached(text, n)
        if len(_PLAIN_TIMES) >= _MEMO_LIMIT:
            _PLAIN_TIMES.clear()
        _PLAIN_TIMES[text] = found
    return found


def _plain_date_time_uncached(text: str, n: int) -> bool:
    if (
        _day_start(text[:10]) is None
        or text[10] != "T"
        or text[11:16] not in _HOUR_MINUTE_US
        or text[16] != ":"
        or text[17:19] not in _VALID_SECONDS
    ):
        return False
    return _fraction_end(text, n, text[n - 6 :] in _VALID_ZONES) >= 0


def check_primitive(type_code: str, value: object) -> tuple[str, str] | None:
    """Check one JSON primitive value against its FHIR type.

    Args:
        type_code: FHIR primitive type name (``date``, ``code``, ``positiveInt`` ...).
        value: The decoded JSON value.

    Returns:
        ``None`` when valid, else ``(issue code, message)``. The message never contains
        the value itself.
    """
    if type_code == "boolean":
        if value is True or value is False:
            return None
        return "structure", "must be a JSON boolean (true or false)"
    if type_code in _NUMBER_TYPES:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return "structure", f"must be a JSON number ({type_code})"
        if type_code == "decimal":
            return None
        if isinstance(value, float) and not value.is_integer():
            return "value", f"must be a whole number ({type_code})"
        n = int(value)
        if type_code == "positiveInt" and n < 1:
            return "value", "must be 1 or more (positiveInt)"
        if type_code == "unsignedInt" and n < 0:
            return "value", "must be 0 or more (unsignedInt)"
        if n < INT32_MIN or n > INT32_MAX:
            return "value", f"is outside the 32-bit range allowed for {type_code}"
        return None
    if not isinstance(value, str):
        return "structure", f"must be a JSON string ({type_code})"
    if type_code == "xhtml":
        if not value.lstrip().startswith("<div"):
            return "value", "narrative must be an XHTML <div> element"
        if _ACTIVE_CONTENT.search(value):
            return (
                "invariant",
                "narrative must not contain scripts, forms, frames, styles, event handler "
                "attributes or javascript: links (txt-1, txt-2; "
                "https://hl7.org/fhir/R4/narrative.html#security)",
            )
        return None
    pat = _patterns().get(type_code)
    if pat is not None and pat.fullmatch(value) is None:
        return (
            "value",
            f"is not a valid FHIR {type_code}; see https://hl7.org/fhir/R4/datatypes.html#{type_code}",
        )
    if type_code in ("date", "dateTime", "instant") and len(value) >= 10:
        try:
            date(int(value[0:4]), int(value[5:7]), int(value[8:10]))
        except ValueError:
            return "value", f"is not a real calendar date ({type_code})"
    return None


def _date_us(y: int, m: int, d: int) -> int:
    return (date(y, m, d).toordinal() - _EPOCH_ORDINAL) * _DAY_US


# The usual date-time shape ``YYYY-MM-DDThh:mm:ss[.f](Z|+hh:mm|-hh:mm)`` is read by table
# look-ups of its fixed-position parts: every key of a table is a valid part, so a miss
# is an out-of-range or non-ASCII part and the text goes to the general path. The day is
# looked up by its text (``_day_start``): the days of a feed repeat.
_TWO_DIGITS = {f"{i:02d}": i for i in range(100)}
_SECONDS_US = {f"{s:02d}": s * _SECOND_US for s in range(60)}
_HOUR_MINUTE_US = {
    f"{h:02d}:{m:02d}": (h * 60 + m) * 60 * _SECOND_US for h in range(24) for m in range(60)
}
_ZONE_US = {
    f"{sign}{h:02d}:{m:02d}": (-1 if sign == "+" else 1) * (h * 60 + m) * 60 * _SECOND_US
    for sign in "+-"
    for h in range(24)
    for m in range(60)
}  # what to add to a local time for UTC
_FRACTION_STEP = (_SECOND_US, 100_000, 10_000, 1_000, 100, 10, 1)  # by number of digits
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@lru_cache(maxsize=4096)
def _day_start(text: str) -> int | None:
    """Epoch microseconds of the start of a valid FHIR date ``YYYY-MM-DD`` (ASCII digits,
    a real calendar date, year 0001 or later); ``None`` for any other text."""
    if _DAY.fullmatch(text) is None:
        return None
    try:
        return _date_us(int(text[0:4]), int(text[5:7]), int(text[8:10]))
    except ValueError:
        return None


def _fraction_end(text: str, n: int, zone_ok: bool) -> int:
    """Where the fraction of a date-time ``...Thh:mm:ss[.f](zone)`` ends (19 without one);
    -1 if the text has no zone (``Z``, or ``zone_ok`` for the last six characters) or a
    fraction that is not ``.`` and ASCII digits."""
    if text[n - 1] == "Z":
        end = n - 1
    elif zone_ok:
        end = n - 6
    else:
        return -1
    if end == 19:
        return 19
    if end < 21 or text[19] != ".":
        return -1
    digits = text[20:end]
    return end if digits.isdigit() and digits.isascii() else -1


def _time_range(text: str, n: int) -> tuple[int, int] | None:
    """``date_range`` of the usual ``YYYY-MM-DDThh:mm:ss[.f](Z|+hh:mm|-hh:mm)`` (at most
    six fraction digits) in plain arithmetic; ``None`` for any other shape (leap seconds,
    odd offsets...), which ``date_range`` then reads with ``datetime.fromisoformat``."""
    day = _day_start(text[:10])
    hour_minute = _HOUR_MINUTE_US.get(text[11:16])
    second = _SECONDS_US.get(text[17:19])
    if day is None or hour_minute is None or second is None or text[16] != ":":
        return None
    zone = 0 if text[n - 1] == "Z" else _ZONE_US.get(text[n - 6 :])
    if zone is None:
        return None
    end = _fraction_end(text, n, True)
    if end == 19:
        low = day + hour_minute + second + zone
        return low, low + _SECOND_US
    if end < 0 or end > 26:
        return None
    step = _FRACTION_STEP[end - 20]
    low = day + hour_minute + second + int(text[20:end]) * step + zone
    return low, low + step


def memo_date_range(text: str) -> tuple[int, int] | None:
    """:func:`date_range`, remembered for the last few thousand texts."""
    found = _RANGES.get(text, _UNSEEN)
    if found is not _UNSEEN:
        return found
    found = date_range(text)
    if len(_RANGES) >= _MEMO_LIMIT:
        _RANGES.clear()
    _RANGES[text] = found
    return found


def date_range(text: str) -> tuple[int, int] | None:
    """Return the ``[low, high)`` epoch-microsecond range a FHIR date/dateTime/instant covers.

    Implements the implicit precision of https://hl7.org/fhir/R4/search.html#date:
    ``2020`` covers ``[2020-01-01T00:00Z, 2021-01-01T00:00Z)``, ``2020-05-03T10:00:00Z``
    covers one second, ``...:00.123Z`` one millisecond. Values without a time zone (dates)
    are taken as UTC.

    Returns:
        The range, or ``None`` if the text is not a valid FHIR date/time.
    """
    n = len(text)
    try:
        if n == 4:
            y = int(text)
            return _date_us(y, 1, 1), (_date_us(y + 1, 1, 1) if y < 9999 else DATE_MAX)
        if n == 7:
            y, m = int(text[0:4]), int(text[5:7])
            high = (
                _date_us(y + 1, 1, 1)
                if m == 12 and y < 9999
                else (DATE_MAX if m == 12 else _date_us(y, m + 1, 1))
            )
            return _date_us(y, m, 1), high
        if n == 10:
            low = _day_start(text)  # the usual YYYY-MM-DD; any other text as before
            if low is None:
                low = _date_us(int(text[0:4]), int(text[5:7]), int(text[8:10]))
            return low, low + _DAY_US
        if n < 20 or text[10] != "T":
            return None
        fast = _time_range(text, n)
        if fast is not None:
            return fast
        fixed = text
        if text[17:19] == "60":  # leap second: count it as the last second of the minute
            fixed = text[:17] + "59" + text[19:]
        dt = datetime.fromisoformat(fixed)
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        low = (dt - _EPOCH) // timedelta(microseconds=1)
        dot = text.find(".", 19)
        if dot == -1:
            return low, low + _SECOND_US
        end = dot + 1
        while end < n and text[end].isdigit():
            end += 1
        digits = end - dot - 1
        step = 10 ** max(0, 6 - digits) if digits else _SECOND_US
        return low, low + step
    except ValueError:
        return None
