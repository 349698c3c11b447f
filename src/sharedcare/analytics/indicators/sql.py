"""The few things the indicator SQL cannot say the same way on every engine.

Indicator SQL is written once, in the subset of SQL that DuckDB, PostgreSQL 15 and Spark SQL 4
share (``CASE``, ``SUBSTR``, ``CAST(... AS INTEGER)``, ``COALESCE``, ``REPLACE``, joins, grouping),
plus a handful of macros written ``@name(arg, ...)`` that :func:`expand` spells per engine:

=====================  ===========================================================
macro                  meaning
=====================  ===========================================================
``@float(x)``          ``x`` as a double-precision number (avoids integer division)
``@days(a, b)``        whole days from the date part of ``a`` to that of ``b``
``@minutes(a, b)``     minutes from timestamp ``a`` to timestamp ``b`` (ISO 8601 text)
``@median(x)``         the median of ``x`` in a group (exact)
=====================  ===========================================================

Parameters are ``$name`` placeholders (``string.Template``) filled from validated values only.
"""

from __future__ import annotations

import re
from collections.abc import Callable

__all__ = ["ENGINES", "MacroError", "expand"]

ENGINES = ("duckdb", "postgres", "spark")

_MACRO = re.compile(r"@([a-z_]+)\(")


class MacroError(ValueError):
    """An indicator's SQL uses a macro wrongly (a programming error in an indicator)."""


def _date(x: str) -> str:
    return f"CAST(SUBSTR({x}, 1, 10) AS DATE)"


_SPELLINGS: dict[str, dict[str, Callable[..., str]]] = {
    "duckdb": {
        "float": lambda x: f"CAST({x} AS DOUBLE)",
        "days": lambda a, b: f"date_diff('day', {_date(a)}, {_date(b)})",
        "minutes": lambda a, b: (
            f"((epoch(CAST({b} AS TIMESTAMPTZ)) - epoch(CAST({a} AS TIMESTAMPTZ))) / 60.0)"
        ),
        "median": lambda x: f"quantile_cont({x}, 0.5)",
    },
    "postgres": {
        "float": lambda x: f"CAST({x} AS DOUBLE PRECISION)",
        "days": lambda a, b: f"({_date(b)} - {_date(a)})",
        "minutes": lambda a, b: (
            f"(EXTRACT(EPOCH FROM (CAST({b} AS TIMESTAMPTZ) - CAST({a} AS TIMESTAMPTZ))) / 60.0)"
        ),
        "median": lambda x: f"percentile_cont(0.5) WITHIN GROUP (ORDER BY {x})",
    },
    "spark": {
        "float": lambda x: f"CAST({x} AS DOUBLE)",
        "days": lambda a, b: f"datediff({_date(b)}, {_date(a)})",
        "minutes": lambda a, b: (
            f"((unix_timestamp(CAST({b} AS TIMESTAMP)) - unix_timestamp(CAST({a} AS TIMESTAMP)))"
            " / 60.0)"
        ),
        "median": lambda x: f"percentile({x}, 0.5)",
    },
}


def _arguments(sql: str, start: int) -> tuple[list[str], int]:
    """Split the comma-separated arguments that start at ``start`` (just after ``(``)."""
    depth, quoted = 0, False
    args: list[str] = []
    current: list[str] = []
    i = start
    while i < len(sql):
        ch = sql[i]
        if ch == "'":
            quoted = not quoted
        elif not quoted:
            if ch == "(":
                depth += 1
            elif ch == ")":
                if depth == 0:
                    args.append("".join(current).strip())
                    return args, i + 1
                depth -= 1
            elif ch == "," and depth == 0:
                args.append("".join(current).strip())
                current = []
                i += 1
                continue
        current.append(ch)
        i += 1
    raise MacroError("a macro's argument list is not closed with ')'")


def expand(sql: str, engine: str) -> str:
    """Replace every ``@macro(...)`` in ``sql`` with the engine's spelling.

    Raises:
        MacroError: unknown engine or macro, or a wrong number of arguments.
    """
    try:
        spellings = _SPELLINGS[engine]
    except KeyError:
        raise MacroError(
            f"unknown engine '{engine}'; choose one of: {', '.join(ENGINES)}"
        ) from None
    out: list[str] = []
    pos = 0
    while True:
        match = _MACRO.search(sql, pos)
        if match is None:
            out.append(sql[pos:])
            return "".join(out)
        name = match.group(1)
        if name not in spellings:
            raise MacroError(f"unknown SQL macro '@{name}'; known: {', '.join(spellings)}")
        args, end = _arguments(sql, match.end())
        try:
            spelt = spellings[name](*(expand(a, engine) for a in args))
        except TypeError:
            raise MacroError(f"SQL macro '@{name}' was given {len(args)} argument(s)") from None
        out.append(sql[pos : match.start()])
        out.append(spelt)
        pos = end
