"""Composite search parameters (https://hl7.org/fhir/R4/search.html#composite).

R4 composites have a token (or, once, a reference) first and then one or two components of
another type: ``token$token``, ``token$quantity``, ``token$date``, ``token$string`` and
``token$number$number``. Each combination of component values is one ``idx_composite`` row
with typed columns, so a search such as
``code-value-quantity=http://loinc.org|8480-6$gt140`` is one index range scan on
``(param, code1)`` with the value compared in the same row:

=========  ======================================================================
column     holds
=========  ======================================================================
code1      first component: token code, or reference target id
system1    first component: token system, or reference target type
code2      second component: token code, quantity code, normalised string, uri
system2    second component: token system, quantity system, exact string
unit2      second component: quantity unit
number2    second component: quantity or number value
low2/high2 second component: date range (epoch µs, high exclusive)
number3    third component: number value
=========  ======================================================================

A composite that is a *pair* of other parameters (``sharedcare.record.derived.
composite_pair``: ``Observation.code-value-quantity`` is ``code`` with ``value-quantity``,
both on the Observation itself) has no rows: :func:`composite_index` matches a resource
with a ``code`` row satisfying the first component and a ``value-quantity`` row satisfying
the second, under the same conditions the component parameters use (token ``system|code``,
quantity prefixes, system and code-or-unit), which is what its rows held: every pair of
those two parameters' values on the resource. ``:missing`` likewise: a row existed exactly
when both parameters have a value (:func:`composite_present`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Select, and_, or_, select, union_all
from sqlalchemy.sql.elements import ColumnElement

from sharedcare.db.tables import IdxComposite, IdxQuantity, IdxToken
from sharedcare.fhir.definitions import SearchParam, search_parameters
from sharedcare.fhir.search_index import (
    DateValue,
    IndexValue,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    StringValue,
    TokenValue,
    UriValue,
)
from sharedcare.record.derived import composite_sources
from sharedcare.record.errors import InvalidRequest
from sharedcare.record.search.clauses import (
    date_condition,
    like_escape,
    number_condition,
    prefix_of,
    quantity_condition,
    search_date_range,
    token_condition,
)
from sharedcare.record.search.parse import split_escaped, unescape

__all__ = [
    "COMPOSITE_COLUMNS",
    "composite_columns",
    "composite_condition",
    "composite_index",
    "composite_present",
]

T: Any = IdxComposite.__table__
#: The index table of each component type a pair can have.
_PAIR_TABLES: dict[str, Any] = {"token": IdxToken.__table__, "quantity": IdxQuantity.__table__}
#: The typed columns, in the order :func:`composite_columns` returns them.
COMPOSITE_COLUMNS = (
    "code1",
    "system1",
    "code2",
    "system2",
    "unit2",
    "number2",
    "low2",
    "high2",
    "number3",
)


def _blank(value: str | None) -> str:
    return "" if value is None else value


def composite_columns(components: tuple[IndexValue, ...]) -> tuple[Any, ...]:
    """The typed column values (see the module docstring) for one combination."""
    cols: dict[str, Any] = dict.fromkeys(COMPOSITE_COLUMNS)
    for position, value in enumerate(components[:3], start=1):
        if position == 1:
            if isinstance(value, TokenValue):
                cols["code1"], cols["system1"] = _blank(value.code), _blank(value.system)
            elif isinstance(value, ReferenceValue):
                cols["code1"], cols["system1"] = _blank(value.target_id), _blank(value.target_type)
        elif position == 2:
            if isinstance(value, TokenValue):
                cols["code2"], cols["system2"] = _blank(value.code), _blank(value.system)
            elif isinstance(value, ReferenceValue):
                cols["code2"], cols["system2"] = _blank(value.target_id), _blank(value.target_type)
            elif isinstance(value, QuantityValue):
                cols["number2"], cols["code2"] = value.value, _blank(value.code)
                cols["system2"], cols["unit2"] = _blank(value.system), _blank(value.unit)
            elif isinstance(value, NumberValue):
                cols["number2"] = value.value
            elif isinstance(value, DateValue):
                cols["low2"], cols["high2"] = value.low, value.high
            elif isinstance(value, StringValue):
                cols["code2"], cols["system2"] = value.normalized[:512], value.exact[:512]
            elif isinstance(value, UriValue):
                cols["code2"] = value.uri
        elif isinstance(value, NumberValue):
            cols["number3"] = value.value
    return tuple(cols[c] for c in COMPOSITE_COLUMNS)


Take = Callable[[], Any]


def composite_index(
    resource_type: str, code: str, values: Sequence[str], name: str, take: Take
) -> Select[Any]:
    """``SELECT res`` of the resources matching any of ``values`` (each ``a$b[$c]``) of the
    composite ``code``: its ``idx_composite`` rows, and the pairs of rows of any
    :func:`~sharedcare.record.derived.composite_pair` it is made of.

    Args:
        resource_type: The type searched.
        code: The composite parameter.
        values: The values, ORed.
        name: The parameter as written (for errors).
        take: The placeholder of the next parameter id, in
            :func:`~sharedcare.record.derived.stored_codes`' order.
    """
    definition = search_parameters(resource_type)[code]
    for raw in values:
        _parts(definition, raw, name)  # every value is checked, whatever reads it
    scans: list[Select[Any]] = []
    rows: list[Any] = []
    for source in composite_sources(resource_type, code):
        if len(source) == 1:
            rows.append(take())
            continue
        param1, param2 = take(), take()
        for raw in values:  # one semi-join per value: an OR of them defeats the planner
            first, second = (_PAIR_TABLES[c.type].alias() for c in definition.components)
            a, b = _parts(definition, raw, name)
            # The code's rows are the inner list and the value's rows are checked against it
            # by ``res``: a code selects few rows and a value range often many, and SQLite
            # builds the inner list whole (``8480-6$gt100`` with a patient: 12.8 -> 4.5 ms,
            # without: 10.5 -> 1.9 ms, on 36,600 resources).
            firsts = select(first.c.res).where(
                first.c.param == param1, _pair_condition(definition, 0, a, first, name)
            )
            scans.append(
                select(second.c.res).where(
                    second.c.param == param2,
                    _pair_condition(definition, 1, b, second, name),
                    second.c.res.in_(firsts),
                )
            )
    if rows:
        param = T.c.param == rows[0] if len(rows) == 1 else T.c.param.in_(rows)
        conditions = [composite_condition(definition, raw, name) for raw in values]
        scans.insert(0, select(T.c.res).where(param, or_(*conditions)))
    return _one(scans)


def composite_present(resource_type: str, code: str, take: Take) -> Select[Any]:
    """``SELECT res`` of the resources with a value of the composite ``code`` (for
    ``:missing``): a pair has one exactly when both of its parameters have a value."""
    definition = search_parameters(resource_type)[code]
    scans: list[Select[Any]] = []
    rows: list[Any] = []
    for source in composite_sources(resource_type, code):
        if len(source) == 1:
            rows.append(take())
            continue
        first, second = (_PAIR_TABLES[c.type].alias() for c in definition.components)
        param1, param2 = take(), take()
        seconds = select(second.c.res).where(second.c.param == param2)
        scans.append(select(first.c.res).where(first.c.param == param1, first.c.res.in_(seconds)))
    if rows:
        param = T.c.param == rows[0] if len(rows) == 1 else T.c.param.in_(rows)
        scans.insert(0, select(T.c.res).where(param))
    return _one(scans)


def _one(scans: list[Select[Any]]) -> Select[Any]:
    """One ``SELECT res`` of every scan's rows (a compound select is wrapped: SQLite takes no
    parentheses around one inside another, as in a count's ``INTERSECT``)."""
    if len(scans) == 1:
        return scans[0]
    either = union_all(*scans).subquery()
    return select(either.c.res)


def _pair_condition(
    definition: SearchParam, position: int, raw: str, table: Any, name: str
) -> ColumnElement[bool]:
    """The condition a component's value puts on a row of the parameter it pairs."""
    if definition.components[position].type == "quantity":
        return quantity_condition(
            raw, table.c.value, table.c.system_id, table.c.code, table.c.unit, name, keyed=True
        )
    return token_condition(raw, table.c.code, table.c.system_id, keyed=True)


def _parts(definition: SearchParam, raw: str, name: str) -> list[str]:
    """One value's components (still escaped), or a 400."""
    parts = split_escaped(raw, "$", keep=True)
    kinds = [c.type for c in definition.components]
    if len(parts) != len(kinds) or not all(parts):
        example = "$".join(f"<{k}>" for k in kinds)
        raise InvalidRequest(
            f"{name} takes {len(kinds)} values joined by $: {example}", expression=name
        )
    return parts


def composite_condition(definition: SearchParam, raw: str, name: str) -> ColumnElement[bool]:
    """The ``idx_composite`` condition for one value ``a$b[$c]`` of a composite parameter."""
    parts = _parts(definition, raw, name)
    kinds = [c.type for c in definition.components]
    conditions = [
        _component(position, kind, value, name)
        for position, (kind, value) in enumerate(zip(kinds, parts, strict=True), start=1)
    ]
    return and_(*conditions)


def _component(position: int, kind: str, value: str, name: str) -> ColumnElement[bool]:
    if position == 1:
        if kind == "reference":
            ref = unescape(value).split("/")
            if len(ref) >= 2:
                return and_(T.c.code1 == ref[-1], T.c.system1 == ref[-2])
            return T.c.code1 == ref[0]  # type: ignore[no-any-return]
        return token_condition(value, T.c.code1, T.c.system1)
    if position == 3:
        prefix, number = prefix_of(value)
        return number_condition(prefix, number, T.c.number3, name)
    if kind == "token":
        return token_condition(value, T.c.code2, T.c.system2)
    if kind == "quantity":
        return quantity_condition(value, T.c.number2, T.c.system2, T.c.code2, T.c.unit2, name)
    if kind == "number":
        prefix, number = prefix_of(value)
        return number_condition(prefix, number, T.c.number2, name)
    if kind == "date":
        prefix, text = prefix_of(value)
        lo, hi = search_date_range(text, name)
        return date_condition(prefix, lo, hi, T.c.low2, T.c.high2)
    if kind == "string":
        from sharedcare.fhir.search_index import normalize_string

        pattern = like_escape(normalize_string(unescape(value))) + "%"
        return T.c.code2.like(pattern, escape="\\")  # type: ignore[no-any-return]
    if kind == "reference":
        return T.c.code2 == unescape(value).split("/")[-1]  # type: ignore[no-any-return]
    return T.c.code2 == unescape(value)  # type: ignore[no-any-return]
