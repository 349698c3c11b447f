"""``lowBoundary()`` / ``highBoundary()`` for decimal, date, dateTime and time.

Implements https://build.fhir.org/fhirpath.html#functions (boundary functions, STU) as SQL string
arithmetic shared by all dialects: partial dates and times are widened to the earliest/latest
instant they can denote, a missing timezone widens to +14:00 (low) / -12:00 (high), and a decimal
widens by half a unit of its last significant digit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sharedcare.analytics.views.errors import ViewDefinitionError

if TYPE_CHECKING:
    from sharedcare.analytics.views.expressions import ExpressionCompiler, Val

_TIME_LOW = "00:00:00.000"
_TIME_HIGH = "23:59:59.999"


def _fill_time(core: str, high: bool) -> str:
    template = _TIME_HIGH if high else _TIME_LOW
    # The input always has at least "hh"; the template supplies the missing tail.
    return f"substr({core} || substr('{template}', length({core}) + 1), 1, 12)"


def _fill_date(x: ExpressionCompiler, text: str, high: bool) -> str:
    if not high:
        return f"({text} || substr('0000-01-01', length({text}) + 1))"
    last_day = x.d.last_day_of_month(f"({text} || '-01')")
    return (
        f"(CASE WHEN length({text}) = 4 THEN {text} || '-12-31' "
        f"WHEN length({text}) = 7 THEN {last_day} ELSE {text} END)"
    )


def boundary(x: ExpressionCompiler, target: Val, name: str) -> Val:
    """Compile ``target.lowBoundary()`` / ``target.highBoundary()``."""
    from sharedcare.analytics.views.expressions import Val

    high = name == "highBoundary"
    system = target.sys
    if system not in ("decimal", "date", "dateTime", "time", "integer"):
        raise ViewDefinitionError(
            f"{name}() applies to decimal, date, dateTime or time values, not "
            f"{target.ftype or system or 'unknown types'}"
        )
    d = x.d
    one = x.to_one(target, f"input of {name}()")
    if target.kind == "scalar":
        text = f"CAST({target.sql} AS {d.sql_type('string')})"
    else:
        text = d.json_to_scalar(one, "string")
    if system in ("decimal", "integer") and not d.keeps_decimal_scale:
        # The engine's JSON type drops trailing zeros: read the number as written instead.
        text = d.written_number_text(x, target, f"input of {name}()", name)
    if system in ("decimal", "integer"):
        dot = d.strpos(text, "'.'")
        digits = f"(CASE WHEN {dot} > 0 THEN length({text}) - {dot} ELSE 0 END)"
        sign = "+" if high else "-"
        value = f"(CAST({text} AS {d.sql_type('decimal')}) {sign} 5 / power(10, {digits} + 1))"
        return Val("scalar", d.round_double(value, f"{digits} + 1"), system="decimal")
    if system == "date":
        return Val("scalar", _fill_date(x, text, high), system="date")
    if system == "time":
        return Val("scalar", _fill_time(text, high), system="time")
    rest = f"substr({text}, 12)"
    marks = ", ".join(d.strpos(rest, f"'{m}'") for m in "Z+-")
    tzpos = f"greatest({marks})"
    core = f"(CASE WHEN {tzpos} > 0 THEN substr({rest}, 1, {tzpos} - 1) ELSE {rest} END)"
    default_tz = "'-12:00'" if high else "'+14:00'"
    tz = f"(CASE WHEN {tzpos} > 0 THEN substr({rest}, {tzpos}) ELSE {default_tz} END)"
    date_part = f"substr({text}, 1, 10)"
    day_time = _TIME_HIGH if high else _TIME_LOW
    whole_day = f"{_fill_date(x, text, high)} || 'T' || '{day_time}' || {default_tz}"
    with_time = f"{date_part} || 'T' || {_fill_time(core, high)} || {tz}"
    sql = f"(CASE WHEN length({text}) <= 10 THEN {whole_day} ELSE {with_time} END)"
    return Val("scalar", sql, system="dateTime")
