"""The pure phase of compiling a search: each clause's *shape* and its bound values.

A search's SQL depends on the kinds of its parameters, their modifiers and prefixes, how
many values each ORs and how those values split (``code`` or ``system|code``; a type-
qualified reference or a bare id ...), but not on the values themselves. This module walks
a parsed clause, checks and converts its values (raising the same 400s as before) and
returns a hashable shape, appending the values the SQL binds, in the order the build phase
(:class:`~sharedcare.record.search.clauses.Compiler`) takes them. The SQL is then built
once per shape (:mod:`sharedcare.record.search.statements`) and run with each request's
values: building SQLAlchemy expressions and their cache keys cost about as much Python as
the rest of a search (``docs/decisions/0017-search-statements-per-shape.md``).

The build phase sees only the shape and placeholders, so it cannot depend on a value the
shape does not record. A few rare kinds (numbers, quantities, URIs, composites,
``:of-type``) keep their values in the shape instead: built once per distinct query.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sharedcare.fhir.definitions import is_resource_type
from sharedcare.fhir.search_index import normalize_string
from sharedcare.record.derived import stored_codes, target_filter
from sharedcare.record.keys import system_key
from sharedcare.record.search.model import Clause
from sharedcare.record.search.parse import split_escaped, unescape

ParamId = Callable[[str, str], "int | None"]
Shape = tuple[Any, ...]

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
_DAY_US = 86_400_000_000
#: Parameter types whose values are kept in the shape (built once per distinct query).
_LITERAL_TYPES = frozenset({"number", "quantity", "uri", "composite"})


def prefix_of(value: str) -> tuple[str, str]:
    """Split a comparison prefix (https://hl7.org/fhir/R4/search.html#prefix) off a value."""
    if len(value) > 2 and value[:2] in PREFIXES and not value[2].isalpha():
        return value[:2], value[2:]
    return "eq", value


def like_escape(text: str) -> str:
    """Escape ``LIKE`` wildcards (the escape character is ``\\``)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def date_bounds(prefix: str, lo: int, hi: int) -> tuple[int, int]:
    """The two values a date comparison binds: the search range ``[lo, hi)``, or for ``ap``
    that range widened by 10% of its distance from now (at least a day) on each side,
    as ``(upper, lower)``."""
    if prefix != "ap":
        return lo, hi
    now = time.time_ns() // 1000
    slack = max(abs(now - lo) // 10, _DAY_US)
    return hi + slack, lo - slack


def freeze(clause: Clause) -> Shape:
    """A clause as a hashable value (for the kinds whose values stay in the shape)."""
    return (clause.code, clause.type, clause.modifier, tuple(clause.values), clause.name)


def thaw(frozen: Shape) -> Clause:
    """The clause :func:`freeze` made ``frozen`` from."""
    code, type_, modifier, values, name = frozen
    return Clause(code, type_, modifier, list(values), name)


class Shaper:
    """Collects the shape and values of a search's clauses.

    Args:
        param_id: ``(resource_type, code) -> int | None`` for index parameter ids.
        bytewise: Text compares in byte order, so string prefixes become key ranges.
    """

    def __init__(self, param_id: ParamId, *, bytewise: bool) -> None:
        self.param_id = param_id
        self.bytewise = bytewise
        self.values: list[Any] = []

    def param(self, resource_type: str, code: str) -> int:
        """A parameter's id, or -1 (never indexed: matches nothing)."""
        param = self.param_id(resource_type, code)
        return -1 if param is None else param

    def params(self, resource_type: str, code: str) -> int | tuple[int, str]:
        """Bind the ids a parameter is stored under (more than one for a parameter derived
        from others, ``sharedcare.record.derived``); return how many, with the target type
        the rows must have for a reference parameter narrowed from another."""
        codes = stored_codes(resource_type, code)
        self.values += [self.param(resource_type, c) for c in codes]
        target = target_filter(resource_type, code)
        return (len(codes), target) if target else len(codes)

    def clause(self, resource_type: str, clause: Clause) -> Shape:
        """The shape of one clause on ``resource_type``; its values are appended."""
        from sharedcare.record.search.clauses import search_date_range

        if clause.code == "_id":
            if clause.modifier == "missing":
                return ("const", clause.values[0] != "true")
            self.values += [unescape(v) for v in clause.values]
            return ("_id", len(clause.values), clause.modifier == "not")
        if clause.code == "_lastUpdated":
            if clause.modifier == "missing":
                return ("const", clause.values[0] != "true")
            prefixes = []
            for raw in clause.values:
                prefix, value = prefix_of(raw)
                lo, hi = search_date_range(value, clause.name)
                self.values += date_bounds(prefix, lo, hi)
                prefixes.append(prefix)
            return ("_lastUpdated", tuple(prefixes))
        if clause.code == "_source":  # meta.source in the resource row (no index rows)
            if clause.modifier == "missing":
                return ("_source", "missing", clause.values[0] == "true", clause.name)
            return ("_source", clause.modifier, tuple(clause.values), clause.name)
        if clause.has is not None:
            source, ref_code, inner = clause.has
            inner_shape = self.clause(source, inner)
            n = self.params(source, ref_code)
            return ("has", source, inner_shape, n)
        if clause.chain:
            n = self.params(resource_type, clause.code)
            options = tuple((t, self.clause(t, inner)) for t, inner in clause.chain)
            return ("chain", n, options)
        if clause.modifier == "missing":
            n = self.params(resource_type, clause.code)
            reference = clause.type == "reference"
            if reference:
                self.values.append(self.param(resource_type, f"{clause.code}:identifier"))
            missing = clause.values[0] == "true"
            return ("missing", clause.type, n, reference, missing, clause.code)
        if clause.type == "reference" and clause.modifier == "identifier":
            self.values.append(self.param(resource_type, f"{clause.code}:identifier"))
            return ("identifier", tuple(self.token(v) for v in clause.values))
        if clause.type == "token" and clause.modifier == "of-type":
            return ("of-type", freeze(clause), self.param(resource_type, clause.code))
        n = self.params(resource_type, clause.code)
        if clause.type in _LITERAL_TYPES:
            values: tuple[Any, ...] = tuple(("literal", v) for v in clause.values)
        else:
            handler = getattr(self, f"_{clause.type}")
            values = tuple(handler(v, clause) for v in clause.values)
        negate = clause.type == "token" and clause.modifier == "not"
        return ("index", clause.type, n, values, negate, clause.modifier, clause.name, clause.code)

    # -- per type: a value's shape, its values appended -------------------------------------

    def token(self, raw: str) -> Shape:
        """``code``, ``system|code``, ``|code`` or ``system|``
        (https://hl7.org/fhir/R4/search.html#token); systems bound as their
        :func:`~sharedcare.record.keys.system_key`."""
        parts = split_escaped(raw, "|")
        if len(parts) == 1:
            self.values.append(parts[0])
            return ("code",)
        value = "|".join(parts[1:])
        if not value:
            self.values.append(system_key(parts[0]))
            return ("system",)
        self.values += [value, system_key(parts[0])]
        return ("code|system",)

    def _token(self, raw: str, clause: Clause) -> Shape:
        if clause.modifier == "text":
            self.values.append("%" + like_escape(normalize_string(unescape(raw))) + "%")
            return ("like",)
        return self.token(raw)

    def _string(self, raw: str, clause: Clause) -> Shape:
        value = unescape(raw)
        if clause.modifier == "exact":
            self.values.append(value)
            return ("exact",)
        text = normalize_string(value)
        if clause.modifier == "contains":
            self.values.append(f"%{like_escape(text)}%")
            return ("like",)
        last = ord(text[-1]) + 1 if text else 0
        if self.bytewise and text and last <= 0x10FFFF and not 0xD800 <= last <= 0xDFFF:
            # Under byte-order collation the strings starting with ``text`` are exactly the
            # key range [text, text with its last character incremented): the index finds
            # them, and no LIKE is added (PostgreSQL would multiply the two conditions'
            # selectivities and under-estimate the matches, which misleads its plans).
            self.values += [text, text[:-1] + chr(last)]
            return ("range",)
        self.values.append(f"{like_escape(text)}%")
        return ("like",)

    def _reference(self, raw: str, clause: Clause) -> Shape:
        raw = unescape(raw)
        if raw.startswith(("http://", "https://", "urn:")):
            tail = raw.rstrip("/").split("/")
            if len(tail) >= 2 and is_resource_type(tail[-2]):
                self.values += [raw, tail[-2], tail[-1]]
                return ("url|target",)
            self.values.append(raw)
            return ("url",)
        parts = raw.split("/")
        if len(parts) >= 4 and parts[-2] == "_history" and is_resource_type(parts[-4]):
            parts = parts[-4:-2]
        if len(parts) >= 2 and is_resource_type(parts[-2]):
            target_type: str | None = parts[-2]
            target_id = parts[-1]
            if clause.modifier and clause.modifier != target_type:
                return ("false",)
        else:
            target_type, target_id = clause.modifier, raw
        self.values.append(target_id)
        if target_type:
            self.values.append(target_type)
            return ("id|type",)
        return ("id",)

    def _date(self, raw: str, clause: Clause) -> Shape:
        from sharedcare.record.search.clauses import search_date_range

        prefix, value = prefix_of(raw)
        lo, hi = search_date_range(value, clause.name)
        self.values += date_bounds(prefix, lo, hi)
        return (prefix,)
