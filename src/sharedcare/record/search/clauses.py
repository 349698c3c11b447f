"""Compiling search clauses into SQL over the typed index tables.

Each clause becomes a semi-join ``resource.pk IN (SELECT res FROM idx_<type> WHERE param = …
AND …)``: the index tables' primary keys lead with the parameter and value, so each is a
range scan of one index. Clauses that are pure semi-joins are also kept as their ``SELECT
res`` so that counting can intersect index scans without touching ``resource``.

Chains (https://hl7.org/fhir/R4/search.html#chaining) compile the chained parameter against
the target type and match reference rows whose target is in that result; ``_has``
(https://hl7.org/fhir/R4/search.html#has) does the reverse.

The :class:`Compiler` builds from a clause's shape (:mod:`.signature`), with placeholders for
its values, so the SQL is built once per shape and reused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import (
    Select,
    and_,
    bindparam,
    cast,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB, JSONPATH
from sqlalchemy.sql.elements import ColumnElement

from sharedcare.db.tables import (
    IdxComposite,
    IdxDate,
    IdxNumber,
    IdxQuantity,
    IdxReference,
    IdxString,
    IdxToken,
    IdxUri,
    Resource,
    meta_source,
)
from sharedcare.fhir.definitions import search_parameters
from sharedcare.fhir.internals.primitives import date_range
from sharedcare.record.errors import InvalidRequest
from sharedcare.record.keys import system_key
from sharedcare.record.search.model import Clause
from sharedcare.record.search.parse import split_escaped, unescape
from sharedcare.record.search.signature import (
    PREFIXES,
    ParamId,
    Shape,
    date_bounds,
    like_escape,
    prefix_of,
    thaw,
)

__all__ = ["PREFIXES", "ParamId", "like_escape", "prefix_of"]

RESOURCE: Any = Resource.__table__

TABLES: dict[str, Any] = {
    "string": IdxString.__table__,
    "token": IdxToken.__table__,
    "reference": IdxReference.__table__,
    "date": IdxDate.__table__,
    "number": IdxNumber.__table__,
    "quantity": IdxQuantity.__table__,
    "uri": IdxUri.__table__,
    "composite": IdxComposite.__table__,
}
_T_TOKEN: Any = IdxToken.__table__
_T_STRING: Any = IdxString.__table__
_T_REF: Any = IdxReference.__table__
_T_DATE: Any = IdxDate.__table__
_T_NUMBER: Any = IdxNumber.__table__
_T_QUANTITY: Any = IdxQuantity.__table__
_T_URI: Any = IdxUri.__table__
_T_COMPOSITE: Any = IdxComposite.__table__


@dataclass(slots=True)
class Part:
    """A compiled clause: its condition on the resource table and, when it is a pure
    semi-join on one index, that index's ``SELECT res``."""

    condition: ColumnElement[bool]
    index: Select[Any] | None = None


def search_date_range(value: str, name: str) -> tuple[int, int]:
    """The ``[low, high)`` range a date search value covers, or a 400 naming the parameter."""
    rng = date_range(value)
    if rng is None:
        raise InvalidRequest(
            f"{name} takes FHIR dates such as 2024, 2024-05, 2024-05-01 or "
            "2024-05-01T10:00:00Z, optionally after a prefix such as ge or lt",
            expression=name,
        )
    return rng


def date_condition(prefix: str, lo: int, hi: int, low: Any, high: Any) -> ColumnElement[bool]:
    """R4 comparison of a target range ``[low, high)`` with a search range ``[lo, hi)``
    (see :func:`date_compare`)."""
    return date_compare(prefix, *date_bounds(prefix, lo, hi), low, high)


def date_compare(prefix: str, lo: Any, hi: Any, low: Any, high: Any) -> ColumnElement[bool]:
    """R4 comparison of a target range ``[low, high)`` with the bounds
    :func:`~sharedcare.record.search.signature.date_bounds` gives for a search range.

    https://hl7.org/fhir/R4/search.html#date: ``eq`` when the search range contains the
    target's; ``gt``/``lt`` when the target's range reaches beyond it; ``ge``/``le`` either;
    ``sa``/``eb`` when the target starts after / ends before it; ``ap`` when the ranges
    overlap once widened by 10% of the distance from now (at least a day): then ``lo`` and
    ``hi`` are the widened range's upper and lower ends.
    """
    if prefix == "ap":
        return and_(low < lo, high > hi)
    contained = and_(low >= lo, high <= hi)
    if prefix == "eq":
        return contained
    if prefix == "ne":
        return not_(contained)
    if prefix == "gt":
        return high > hi  # type: ignore[no-any-return]
    if prefix == "lt":
        return low < lo  # type: ignore[no-any-return]
    if prefix == "ge":
        return or_(high > hi, contained)
    if prefix == "le":
        return or_(low < lo, contained)
    if prefix == "sa":
        return low >= hi  # type: ignore[no-any-return]
    return high <= lo  # type: ignore[no-any-return]


def decimal_of(raw: str, name: str) -> Decimal:
    """A search number, or a 400 naming the parameter."""
    try:
        value = Decimal(raw)
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite():
        raise InvalidRequest(
            f"{name} takes a decimal number such as 5.4, optionally after a prefix such as gt",
            expression=name,
        )
    return value


def number_condition(prefix: str, raw: str, column: Any, name: str) -> ColumnElement[bool]:
    """https://hl7.org/fhir/R4/search.html#number: ``eq`` honours the value's precision
    (``100`` matches [99.5, 100.5)); ``ap`` allows 10%."""
    value = decimal_of(raw, name)
    exponent = value.as_tuple().exponent
    half = Decimal(5) * Decimal(10) ** (int(exponent) - 1)
    if prefix in {"eq", "ap"}:
        spread = half if prefix == "eq" else max(abs(value) / 10, half)
        return and_(column >= value - spread, column < value + spread)
    if prefix == "ne":
        return or_(column < value - half, column >= value + half)
    comparisons: dict[str, ColumnElement[bool]] = {
        "gt": column > value,
        "lt": column < value,
        "ge": column >= value,
        "le": column <= value,
        "sa": column > value,
        "eb": column < value,
    }
    return comparisons[prefix]


def token_condition(
    raw: str, code: Any, system: Any, *, keyed: bool = False
) -> ColumnElement[bool]:
    """``code``, ``system|code``, ``|code`` or ``system|`` (https://hl7.org/fhir/R4/search.html#token).

    ``keyed``: the system column holds :func:`~sharedcare.record.keys.system_key` values.
    """
    parts = split_escaped(raw, "|")
    if len(parts) == 1:
        return code == parts[0]  # type: ignore[no-any-return]
    sys: Any = parts[0]
    value = "|".join(parts[1:])
    if keyed:
        sys = system_key(sys)
    if not value:
        return system == sys  # type: ignore[no-any-return]
    return and_(code == value, system == sys)


class Slots:
    """Placeholders for a statement's values, numbered in the order they are taken (the
    order :class:`~sharedcare.record.search.signature.Shaper` appended the values)."""

    def __init__(self, prefix: str = "v") -> None:
        self.prefix = prefix
        self.taken = 0

    def take(self) -> Any:
        """The next placeholder."""
        slot: Any = bindparam(f"{self.prefix}{self.taken}")
        self.taken += 1
        return slot


class Compiler:
    """Builds the SQL of clause shapes (:mod:`.signature`) on one resource type against one
    resource alias. Values are placeholders taken from ``slots``, in the order the shapes'
    values were collected; the few kinds whose values stay in the shape are built with them.

    Args:
        resource_type: The type searched.
        table: The resource table (or an alias of it, for chains and ``_has``).
        dialect: ``sqlite`` or ``postgresql``.
        slots: Where placeholders come from.
    """

    def __init__(self, resource_type: str, table: Any, dialect: str, slots: Slots) -> None:
        self.resource_type = resource_type
        self.table = table
        self.dialect = dialect
        self.slots = slots

    def _inner(self, resource_type: str, table: Any) -> Compiler:
        return Compiler(resource_type, table, self.dialect, self.slots)

    def _param_is(self, table: Any, n: int | tuple[int, str]) -> Any:
        """``param = id``, or ``param IN (…)`` for a parameter derived from others
        (``sharedcare.record.derived``); ``(n, T)``: and ``target_type = T``, for a reference
        parameter narrowed from another (``Observation.patient`` reads ``subject`` rows)."""
        target = None
        if isinstance(n, tuple):
            n, target = n
        if n == 1:
            condition = table.c.param == self.slots.take()
        else:
            condition = table.c.param.in_([self.slots.take() for _ in range(n)])
        if target is not None:
            return and_(condition, table.c.target_type == literal(target))
        return condition

    def clause(self, shape: Shape) -> Part:
        """Build one clause from its shape."""
        r = self.table
        take = self.slots.take
        kind = shape[0]
        if kind == "const":
            return Part(true() if shape[1] else false())
        if kind == "_id":
            _, n, negate = shape
            condition = r.c.id.in_([take() for _ in range(n)])
            return Part(not_(condition) if negate else condition)
        if kind == "_lastUpdated":
            low, high = r.c.last_updated, r.c.last_updated + 1
            return Part(or_(*(date_compare(p, take(), take(), low, high) for p in shape[1])))
        if kind == "_source":
            return Part(self._source(shape))
        if kind == "has":
            return Part(self._has(shape))
        if kind == "chain":
            return self._semi(self._chain(shape))
        if kind == "missing":
            _, type_, n, reference, missing, code = shape
            table = TABLES[type_]
            if type_ == "composite":
                present: Any = self._composite_present(code)
            else:
                present = select(table.c.res).where(self._param_is(table, n))
            if reference:  # a logical reference (identifier only) is a value
                either = present.union_all(
                    select(_T_TOKEN.c.res).where(_T_TOKEN.c.param == take())
                ).subquery()
                present = select(either.c.res)
            if missing:
                return Part(not_(r.c.pk.in_(present)))
            return self._semi(present)
        if kind == "identifier":
            t = _T_TOKEN
            param = t.c.param == take()
            conds = [self._token_value(v, t.c.code, t.c.system_id) for v in shape[1]]
            return self._semi(select(t.c.res).where(param, or_(*conds)))
        if kind == "of-type":
            return self._of_type(thaw(shape[1]), shape[2])
        _, type_, n, values, negate, modifier, name, code = shape
        if type_ == "composite":
            return self._semi(self._composite(code, [v[1] for v in values], name))
        table = TABLES[type_]
        param_is = self._param_is(table, n)
        clause = Clause(code, type_, modifier, [], name)
        conditions = [self._value(type_, v, clause) for v in values]
        index = select(table.c.res).where(param_is, or_(*conditions))
        if negate:
            return Part(not_(r.c.pk.in_(index)))
        return self._semi(index)

    def _semi(self, index: Select[Any]) -> Part:
        return Part(self.table.c.pk.in_(index), index)

    # -- per type: a condition on the index table ------------------------------------------

    def _token_value(self, shape: Shape, code: Any, system: Any) -> ColumnElement[bool]:
        take = self.slots.take
        if shape[0] == "code":
            return code == take()  # type: ignore[no-any-return]
        if shape[0] == "system":
            return system == take()  # type: ignore[no-any-return]
        value = take()
        return and_(code == value, system == take())

    def _value(self, type_: str, shape: Shape, clause: Clause) -> ColumnElement[bool]:
        take = self.slots.take
        kind = shape[0]
        if kind == "literal":
            handler = getattr(self, f"_{type_}")
            return handler(shape[1], clause)  # type: ignore[no-any-return]
        if type_ == "token":
            if kind == "like":
                return _T_TOKEN.c.text.like(take(), escape="\\")  # type: ignore[no-any-return]
            return self._token_value(shape, _T_TOKEN.c.code, _T_TOKEN.c.system_id)
        if type_ == "string":
            t = _T_STRING
            if kind == "exact":
                return t.c.exact == take()  # type: ignore[no-any-return]
            if kind == "like":
                return t.c.value.like(take(), escape="\\")  # type: ignore[no-any-return]
            low = take()
            return and_(t.c.value >= low, t.c.value < take())
        if type_ == "reference":
            t = _T_REF
            if kind == "false":
                return false()
            if kind == "url|target":
                url = take()
                target_type = take()
                same = and_(t.c.target_type == target_type, t.c.target_id == take())
                return or_(t.c.url == url, same)
            if kind == "url":
                return t.c.url == take()  # type: ignore[no-any-return]
            condition = t.c.target_id == take()
            if kind == "id|type":
                condition = and_(condition, t.c.target_type == take())
            return condition  # type: ignore[no-any-return]
        return date_compare(kind, take(), take(), _T_DATE.c.low, _T_DATE.c.high)

    def _number(self, raw: str, clause: Clause) -> ColumnElement[bool]:
        prefix, value = prefix_of(raw)
        return number_condition(prefix, value, _T_NUMBER.c.value, clause.name)

    def _quantity(self, raw: str, clause: Clause) -> ColumnElement[bool]:
        t = _T_QUANTITY
        return quantity_condition(
            raw, t.c.value, t.c.system_id, t.c.code, t.c.unit, clause.name, keyed=True
        )

    def _uri(self, raw: str, clause: Clause) -> ColumnElement[bool]:
        return uri_condition(raw, clause.modifier, _T_URI.c.uri)

    def _source(self, shape: Shape) -> ColumnElement[bool]:
        """``_source`` (https://hl7.org/fhir/R4/search.html#_source) compares ``meta.source``
        in the resource row itself, which ``ix_resource_source`` indexes: the same values
        the ``idx_uri`` rows held before (``docs/decisions/0011-record-footprint.md``)."""
        source = meta_source(self.table.c.content)
        if shape[1] == "missing":
            return source.is_(None) if shape[2] else source.is_not(None)
        _, modifier, values, _name = shape
        return or_(*(uri_condition(v, modifier, source) for v in values))

    def _composite(self, code: str, values: list[str], name: str) -> Select[Any]:
        """A composite's matches: its rows, or pairs of its parameters' rows
        (:mod:`.composite`)."""
        from sharedcare.record.search.composite import composite_index

        return composite_index(self.resource_type, code, values, name, self.slots.take)

    def _composite_present(self, code: str) -> Select[Any]:
        from sharedcare.record.search.composite import composite_present

        return composite_present(self.resource_type, code, self.slots.take)

    # -- chains, _has and :of-type ----------------------------------------------------------

    def _chain(self, shape: Shape) -> Select[Any]:
        _, n, chain = shape
        t = _T_REF
        param_is = self._param_is(t, n)
        options = []
        for target_type, inner in chain:
            alias = RESOURCE.alias()
            part = self._inner(target_type, alias).clause(inner)
            if part.index is not None:
                targets = select(alias.c.id).where(
                    alias.c.resource_type == target_type, alias.c.pk.in_(part.index)
                )
            else:
                targets = select(alias.c.id).where(
                    alias.c.resource_type == target_type,
                    alias.c.deleted.is_(False),
                    part.condition,
                )
            options.append(and_(t.c.target_type == target_type, t.c.target_id.in_(targets)))
        return select(t.c.res).where(param_is, or_(*options))

    def _has(self, shape: Shape) -> ColumnElement[bool]:
        _, source, inner, n = shape
        alias = RESOURCE.alias()
        part = self._inner(source, alias).clause(inner)
        if part.index is not None:
            referrers: Any = part.index
        else:
            referrers = select(alias.c.pk).where(
                alias.c.resource_type == source, alias.c.deleted.is_(False), part.condition
            )
        t = _T_REF
        targets = select(t.c.target_id).where(
            self._param_is(t, n),
            t.c.target_type == self.resource_type,
            t.c.res.in_(referrers),
        )
        return self.table.c.id.in_(targets)  # type: ignore[no-any-return]

    def _of_type(self, clause: Clause, param: int) -> Part:
        """``identifier:of-type=type-system|type-code|value``
        (https://hl7.org/fhir/R4/search.html#token): the index narrows by value, then the
        identifier's ``type`` is checked in the stored JSON."""
        definition = search_parameters(self.resource_type)[clause.code]
        elements = _identifier_elements(self.resource_type, definition.expression or "")
        if not elements:
            raise InvalidRequest(
                f"{clause.code}:of-type applies only to Identifier parameters",
                expression=clause.name,
            )
        t = _T_TOKEN
        options = []
        for raw in clause.values:
            parts = split_escaped(raw, "|")
            if len(parts) != 3 or not all(parts):
                raise InvalidRequest(
                    f"{clause.name} takes type-system|type-code|value, e.g. "
                    "http://terminology.hl7.org/CodeSystem/v2-0203|MR|12345",
                    expression=clause.name,
                )
            system, code, value = parts
            indexed = self.table.c.pk.in_(
                select(t.c.res).where(t.c.param == param, t.c.code == value)
            )
            typed = or_(*(self._identifier_typed(e, system, code, value) for e in elements))
            options.append(and_(indexed, typed))
        return Part(or_(*options))

    def _identifier_typed(
        self, element: str, system: str, code: str, value: str
    ) -> ColumnElement[bool]:
        content = self.table.c.content
        if self.dialect == "postgresql":
            path = (
                f"$.{element}[*] ? (@.value == $v && "
                "exists(@.type.coding[*] ? (@.system == $s && @.code == $c)))"
            )
            variables = literal({"v": value, "s": system, "c": code}, JSONB)
            # The stored text as jsonb: only the few rows the index narrowed to are parsed.
            return func.jsonb_path_exists(cast(content, JSONB), cast(path, JSONPATH), variables)
        items = func.json_each(
            func.iif(
                func.json_type(content, f"$.{element}") == "array",
                func.json_extract(content, f"$.{element}"),
                func.json_array(func.json(func.json_extract(content, f"$.{element}"))),
            )
        ).table_valued("value", name="ident")
        codings = func.json_each(items.c.value, "$.type.coding").table_valued(
            "value", name="coding"
        )
        return (
            select(literal(1))
            .select_from(items)
            .join(codings, true())
            .where(
                func.json_extract(items.c.value, "$.value") == value,
                func.json_extract(codings.c.value, "$.system") == system,
                func.json_extract(codings.c.value, "$.code") == code,
            )
            .exists()
        )


def uri_condition(raw: str, modifier: str | None, column: Any) -> ColumnElement[bool]:
    """https://hl7.org/fhir/R4/search.html#uri: exact (case-sensitive) by default; ``:below``
    the URI and everything under it; ``:above`` the URI and each of its parents."""
    raw = unescape(raw)
    if modifier == "below":
        # ``LIKE`` lets PostgreSQL read a range of the index; SQLite's ``LIKE`` ignores ASCII
        # case, so the prefix is also compared exactly (a uri is case-sensitive).
        prefix = raw.rstrip("/")
        return and_(
            column.like(like_escape(prefix) + "%", escape="\\"),
            func.substr(column, 1, len(prefix)) == prefix,
        )
    if modifier == "above":
        parts = raw.rstrip("/").split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        return column.in_(prefixes)  # type: ignore[no-any-return]
    return column == raw  # type: ignore[no-any-return]


def quantity_condition(
    raw: str, value: Any, system: Any, code: Any, unit: Any, name: str, *, keyed: bool = False
) -> ColumnElement[bool]:
    """``[prefix]number|system|code`` (https://hl7.org/fhir/R4/search.html#quantity):
    ``number||code`` matches the code or the unit text; no system or code matches any.
    ``keyed``: the system column holds :func:`~sharedcare.record.keys.system_key` values."""
    prefix, rest = prefix_of(raw)
    parts = split_escaped(rest, "|")
    if len(parts) not in {1, 3}:
        raise InvalidRequest(
            f"{name} takes [prefix]number[|system|code], e.g. gt5.4|http://unitsofmeasure.org|mg",
            expression=name,
        )
    condition = number_condition(prefix, parts[0], value, name)
    if len(parts) == 3:
        if parts[1]:
            wanted = system_key(parts[1]) if keyed else parts[1]
            condition = and_(condition, system == wanted)
        if parts[2]:
            condition = and_(condition, or_(code == parts[2], unit == parts[2]))
    return condition


_BRANCH = re.compile(r"^\(?([A-Za-z]+)\.([A-Za-z]+)\)?$")


def _identifier_elements(resource_type: str, expression: str) -> list[str]:
    from sharedcare.fhir.definitions import node_for_type

    node = node_for_type(resource_type)
    out = []
    for branch in expression.split("|"):
        match = _BRANCH.match(branch.strip())
        if match is None or match.group(1) != resource_type or node is None:
            continue
        prop = node.props.get(match.group(2))
        if prop is not None and prop.type_code == "Identifier":
            out.append(match.group(2))
    return out
