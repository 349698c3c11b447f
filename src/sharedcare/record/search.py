"""FHIR search over the typed index tables (https://hl7.org/fhir/R4/search.html).

A query string is parsed into :class:`SearchRequest` (one :class:`Clause` per parameter
occurrence: repeated parameters AND, comma-separated values OR) and compiled into one SQL
statement: each clause becomes ``resource.pk IN (SELECT res FROM idx_<type> WHERE …)`` on the
index table of its parameter type, whose primary key leads with the parameter and value.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import Select, and_, func, not_, or_, select, true
from sqlalchemy.sql.elements import ColumnElement

from sharedcare.db.tables import (
    IdxDate,
    IdxNumber,
    IdxQuantity,
    IdxReference,
    IdxString,
    IdxToken,
    IdxUri,
    Resource,
)
from sharedcare.fhir.definitions import SearchParam, is_resource_type, search_parameters
from sharedcare.fhir.internals.primitives import date_range
from sharedcare.fhir.search_index import normalize_string
from sharedcare.record.errors import InvalidRequest

__all__ = ["RESULT_PARAMETERS", "Clause", "SearchRequest", "compile_search", "parse_search"]

R = Resource.__table__
RESULT_PARAMETERS = frozenset(
    {
        "_count",
        "_offset",
        "_sort",
        "_total",
        "_summary",
        "_elements",
        "_include",
        "_revinclude",
        "_contained",
        "_containedType",
        "_format",
        "_pretty",
        "_at",
        "_since",
    }
)
PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
DEFAULT_COUNT = 20
MAX_COUNT = 1000


@dataclass(slots=True)
class Clause:
    """One search parameter occurrence: values are ORed; clauses are ANDed."""

    code: str
    type: str
    modifier: str | None
    values: list[str]


@dataclass(slots=True)
class SearchRequest:
    """A parsed search."""

    resource_type: str
    clauses: list[Clause] = field(default_factory=list)
    count: int = DEFAULT_COUNT
    offset: int = 0
    sort: list[tuple[str, bool]] = field(default_factory=list)
    total: str = "accurate"
    ignored: list[str] = field(default_factory=list)

    def used_query(self) -> list[tuple[str, str]]:
        """The parameters actually applied, for the bundle's self link."""
        used = []
        for clause in self.clauses:
            name = clause.code + (f":{clause.modifier}" if clause.modifier else "")
            used.append((name, ",".join(clause.values)))
        if self.sort:
            used.append(("_sort", ",".join(("-" if d else "") + c for c, d in self.sort)))
        used.append(("_count", str(self.count)))
        return used


def _split_values(raw: str) -> list[str]:
    """Split on unescaped commas; ``\\,`` is a literal comma (search.html#escaping)."""
    values, current, escaped = [], [], False
    for ch in raw:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ",":
            values.append("".join(current))
            current = []
        else:
            current.append(ch)
    values.append("".join(current))
    return values


def _int(name: str, raw: str, low: int, high: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise InvalidRequest(f"{name} must be a whole number", expression=name) from None
    if not low <= value <= high:
        raise InvalidRequest(f"{name} must be between {low} and {high}", expression=name)
    return value


def parse_search(
    resource_type: str, params: Sequence[tuple[str, str]], *, strict: bool = False
) -> SearchRequest:
    """Parse a search query for ``resource_type``.

    Args:
        resource_type: The type searched.
        params: Query parameters in order (repeats allowed).
        strict: ``Prefer: handling=strict``: unknown parameters are errors, not ignored.

    Raises:
        InvalidRequest: For unknown parameters (strict), bad modifiers or malformed values.
    """
    if not is_resource_type(resource_type):
        raise InvalidRequest(f"{resource_type} is not an R4 resource type")
    definitions = search_parameters(resource_type)
    request = SearchRequest(resource_type)
    for name, raw in params:
        if name in RESULT_PARAMETERS:
            if name == "_count":
                request.count = _int("_count", raw, 0, MAX_COUNT)
            elif name == "_offset":
                request.offset = _int("_offset", raw, 0, 10_000_000)
            elif name == "_sort":
                request.sort = [
                    (key.removeprefix("-"), key.startswith("-")) for key in raw.split(",") if key
                ]
                for key, _ in request.sort:
                    if key not in {"_id", "_lastUpdated"} and key not in definitions:
                        raise InvalidRequest(
                            f"cannot sort by unknown parameter {key!r}", expression="_sort"
                        )
            elif name == "_total":
                if raw not in {"none", "estimate", "accurate"}:
                    raise InvalidRequest("_total must be none, estimate or accurate")
                request.total = raw
            continue
        code, _, modifier = name.partition(":")
        definition = definitions.get(code)
        if code in {"_id", "_lastUpdated"}:
            ptype = "token" if code == "_id" else "date"
        elif definition is None or definition.expression is None:
            if strict:
                raise InvalidRequest(
                    f"unknown search parameter {code!r} for {resource_type}; see "
                    "/fhir/metadata for the supported parameters",
                    expression=code,
                )
            request.ignored.append(name)
            continue
        else:
            ptype = definition.type
        request.clauses.append(Clause(code, ptype, modifier or None, _split_values(raw)))
    for clause in request.clauses:
        _check_clause(clause)
    return request


_MODIFIERS = {
    "string": {"exact", "contains", "missing"},
    "token": {"not", "text", "missing", "below", "above", "in", "not-in", "of-type"},
    "reference": {"missing", "identifier"},
    "date": {"missing"},
    "number": {"missing"},
    "quantity": {"missing"},
    "uri": {"below", "above", "missing"},
    "composite": {"missing"},
}


def _check_clause(clause: Clause) -> None:
    allowed = _MODIFIERS.get(clause.type, {"missing"})
    if clause.modifier and clause.modifier not in allowed:
        if clause.type == "reference" and is_resource_type(clause.modifier):
            return
        raise InvalidRequest(
            f"modifier :{clause.modifier} is not supported on {clause.type} parameter "
            f"{clause.code!r}",
            expression=clause.code,
        )
    if clause.modifier == "missing" and any(v not in {"true", "false"} for v in clause.values):
        raise InvalidRequest(f"{clause.code}:missing takes true or false", expression=clause.code)
    if clause.type in {"token"} and clause.modifier in {"in", "not-in", "below", "above"}:
        raise InvalidRequest(
            f"{clause.code}:{clause.modifier} needs terminology services, which sharedcare "
            "does not provide; list the codes instead",
            expression=clause.code,
        )


# -- compilation ---------------------------------------------------------------------------


def _prefix(value: str) -> tuple[str, str]:
    if len(value) > 2 and value[:2] in PREFIXES and not value[2].isalpha():
        return value[:2], value[2:]
    return "eq", value


def _date_condition(prefix: str, lo: int, hi: int, low: Any, high: Any) -> Any:
    """R4 date comparison of a target range [low, high) with the search range [lo, hi)."""
    contained = and_(low >= lo, high <= hi)
    if prefix == "eq":
        return contained
    if prefix == "ne":
        return not_(contained)
    if prefix == "gt":
        return high > hi
    if prefix == "lt":
        return low < lo
    if prefix == "ge":
        return or_(high > hi, contained)
    if prefix == "le":
        return or_(low < lo, contained)
    if prefix == "sa":
        return low >= hi
    if prefix == "eb":
        return high <= lo
    # ap: within 10% of the distance from now, and at least a day, either side.
    now = time.time_ns() // 1000
    slack = max(abs(now - lo) // 10, 86_400_000_000)
    return and_(low < hi + slack, high > lo - slack)


def _number_condition(prefix: str, raw: str, column: Any) -> Any:
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise InvalidRequest("number and quantity values must be decimal numbers") from None
    exponent = value.as_tuple().exponent
    half = Decimal(5) * Decimal(10) ** (int(exponent) - 1) if isinstance(exponent, int) else 0
    if prefix == "eq" or prefix == "ap":
        spread = half if prefix == "eq" else max(abs(value) / 10, half)
        return and_(column >= value - spread, column < value + spread)
    if prefix == "ne":
        return or_(column < value - half, column >= value + half)
    return {
        "gt": column > value,
        "lt": column < value,
        "ge": column >= value,
        "le": column <= value,
        "sa": column > value,
        "eb": column < value,
    }[prefix]


def _in_index(table: Any, param: int, condition: ColumnElement[bool]) -> ColumnElement[bool]:
    return R.c.pk.in_(select(table.c.res).where(table.c.param == param, condition))


class _Compiler:
    def __init__(self, param_id: Any, resource_type: str) -> None:
        self.param_id = param_id
        self.resource_type = resource_type

    def clause(self, clause: Clause) -> ColumnElement[bool]:
        if clause.code == "_id":
            condition = R.c.id.in_(clause.values)
            return not_(condition) if clause.modifier == "not" else condition
        if clause.code == "_lastUpdated":
            parts = []
            for raw in clause.values:
                prefix, value = _prefix(raw)
                rng = date_range(value)
                if rng is None:
                    raise InvalidRequest("_lastUpdated needs a FHIR date or dateTime")
                parts.append(_date_condition(prefix, *rng, R.c.last_updated, R.c.last_updated + 1))
            return or_(*parts)
        param = self.param_id(self.resource_type, clause.code)
        if param is None:
            raise InvalidRequest(f"search parameter {clause.code!r} is not indexed")
        table = _TABLES.get(clause.type)
        if clause.modifier == "missing":
            if table is None:
                raise InvalidRequest(f"{clause.code}:missing is not supported")
            present = R.c.pk.in_(select(table.c.res).where(table.c.param == param))
            wants_missing = clause.values[0] == "true"
            return not_(present) if wants_missing else present
        handler = getattr(self, f"_{clause.type}", None)
        if handler is None:
            raise InvalidRequest(
                f"searching by {clause.type} parameter {clause.code!r} is not supported yet",
                expression=clause.code,
            )
        if clause.type == "token" and clause.modifier == "not":
            matches = or_(*(handler(param, v, None) for v in clause.values))
            return not_(matches)
        return or_(*(handler(param, v, clause.modifier) for v in clause.values))

    def _token(self, param: int, raw: str, modifier: str | None) -> ColumnElement[bool]:
        t = IdxToken.__table__
        if modifier == "text":
            return _in_index(t, param, t.c.text.like(normalize_string(raw) + "%"))
        if modifier == "of-type":
            raise InvalidRequest("identifier:of-type is not supported yet")
        if "|" in raw:
            system, _, code = raw.partition("|")
            if not code:
                return _in_index(t, param, t.c.system == system)
            return _in_index(t, param, and_(t.c.code == code, t.c.system == system))
        return _in_index(t, param, t.c.code == raw)

    def _string(self, param: int, raw: str, modifier: str | None) -> ColumnElement[bool]:
        t = IdxString.__table__
        if modifier == "exact":
            return _in_index(t, param, t.c.exact == raw)
        value = normalize_string(raw).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{value}%" if modifier == "contains" else f"{value}%"
        return _in_index(t, param, t.c.value.like(pattern, escape="\\"))

    def _reference(self, param: int, raw: str, modifier: str | None) -> ColumnElement[bool]:
        t = IdxReference.__table__
        if modifier == "identifier":
            ident = self.param_id(self.resource_type, f"{self._code(param)}:identifier")
            if ident is None:
                raise InvalidRequest("this reference parameter has no :identifier index")
            return self._token(ident, raw, None)
        if raw.startswith(("http://", "https://", "urn:")):
            tail = raw.rstrip("/").split("/")
            if len(tail) >= 2 and is_resource_type(tail[-2]):
                return _in_index(
                    t,
                    param,
                    or_(
                        t.c.url == raw,
                        and_(t.c.target_type == tail[-2], t.c.target_id == tail[-1]),
                    ),
                )
            return _in_index(t, param, t.c.url == raw)
        parts = raw.split("/")
        if len(parts) >= 2 and is_resource_type(parts[-2]):
            target_type: str | None = parts[-2]
            target_id = parts[-1]
        else:
            target_type, target_id = (modifier if modifier else None), raw
        condition = t.c.target_id == target_id
        if target_type:
            condition = and_(condition, t.c.target_type == target_type)
        return _in_index(t, param, condition)

    def _code(self, param: int) -> str:
        for code in search_parameters(self.resource_type):
            if self.param_id(self.resource_type, code) == param:
                return code
        return ""

    def _date(self, param: int, raw: str, modifier: str | None) -> ColumnElement[bool]:
        t = IdxDate.__table__
        prefix, value = _prefix(raw)
        rng = date_range(value)
        if rng is None:
            raise InvalidRequest(
                "date values must be FHIR dates such as 2024, 2024-05 or 2024-05-01T10:00:00Z, "
                "optionally with a prefix such as ge or lt"
            )
        return _in_index(t, param, _date_condition(prefix, rng[0], rng[1], t.c.low, t.c.high))

    def _number(self, param: int, raw: str, modifier: str | None) -> ColumnElement[bool]:
        t = IdxNumber.__table__
        prefix, value = _prefix(raw)
        return _in_index(t, param, _number_condition(prefix, value, t.c.value))

    def _quantity(self, param: int, raw: str, modifier: str | None) -> ColumnElement[bool]:
        t = IdxQuantity.__table__
        prefix, rest = _prefix(raw)
        number, _, unit_part = rest.partition("|")
        condition = _number_condition(prefix, number, t.c.value)
        if unit_part:
            system, _, code = unit_part.partition("|")
            if system:
                condition = and_(condition, t.c.system == system)
            if code:
                condition = and_(condition, or_(t.c.code == code, t.c.unit == code))
        return _in_index(t, param, condition)

    def _uri(self, param: int, raw: str, modifier: str | None) -> ColumnElement[bool]:
        t = IdxUri.__table__
        if modifier == "below":
            return _in_index(t, param, t.c.uri.like(raw.rstrip("/") + "%"))
        if modifier == "above":
            parts = raw.rstrip("/").split("/")
            prefixes = ["/".join(parts[:i]) for i in range(3, len(parts) + 1)]
            return _in_index(t, param, t.c.uri.in_(prefixes or [raw]))
        return _in_index(t, param, t.c.uri == raw)


_TABLES: dict[str, Any] = {
    "string": IdxString.__table__,
    "token": IdxToken.__table__,
    "reference": IdxReference.__table__,
    "date": IdxDate.__table__,
    "number": IdxNumber.__table__,
    "quantity": IdxQuantity.__table__,
    "uri": IdxUri.__table__,
}


def compile_search(
    request: SearchRequest, param_id: Any, *, extra: ColumnElement[bool] | None = None
) -> tuple[Select[Any], Select[Any]]:
    """The page query (resource keys in order) and the count query for ``request``.

    Args:
        request: The parsed search.
        param_id: ``(resource_type, code) -> int | None`` for index parameter ids.
        extra: A further condition, e.g. a compartment restriction.
    """
    compiler = _Compiler(param_id, request.resource_type)
    conditions = [R.c.resource_type == request.resource_type, R.c.deleted.is_(False)]
    conditions += [compiler.clause(clause) for clause in request.clauses]
    if extra is not None:
        conditions.append(extra)
    where = and_(*conditions) if conditions else true()
    order = []
    for key, descending in request.sort or [("_lastUpdated", True)]:
        if key == "_id":
            column: Any = R.c.id
        elif key == "_lastUpdated":
            column = R.c.last_updated
        else:
            column = _sort_column(request.resource_type, key, param_id, descending)
        order.append(column.desc() if descending else column.asc())
    order.append(R.c.pk.desc())
    page = select(R.c.pk).where(where).order_by(*order).limit(request.count).offset(request.offset)
    count = select(R.c.pk).where(where)
    return page, count


def _sort_column(resource_type: str, code: str, param_id: Any, descending: bool) -> Any:
    definition: SearchParam | None = search_parameters(resource_type).get(code)
    if definition is None:
        raise InvalidRequest(f"cannot sort by {code!r}")
    param = param_id(resource_type, code)
    table = _TABLES.get(definition.type)
    column = {
        "string": "value",
        "token": "code",
        "date": "high" if descending else "low",
        "number": "value",
        "quantity": "value",
        "uri": "uri",
        "reference": "target_id",
    }.get(definition.type)
    if table is None or column is None or param is None:
        raise InvalidRequest(f"cannot sort by {definition.type} parameter {code!r}")
    aggregate = func.max if descending else func.min
    return (
        select(aggregate(table.c[column]))
        .where(table.c.res == R.c.pk, table.c.param == param)
        .scalar_subquery()
    )
