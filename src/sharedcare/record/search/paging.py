"""Sorting and stable paging (https://hl7.org/fhir/R4/search.html#sort,
https://hl7.org/fhir/R4/http.html#paging).

Paging is by **keyset**, not offset: every order ends with the resource key ``pk``, so it is
total, and a ``next`` link carries the sort values of the last row shown (``previous``,
those of the first) in an opaque ``_cursor``. The next page is "rows after that position",
so creates, updates and deletes elsewhere in the result never shift rows between pages: no
row is shown twice or skipped because another row came or went. (A row whose own sort
value changes moves to its new position, as it should.) See
``docs/decisions/0010-search-paging.md``.

Sort values from index tables (``_sort=birthdate``) are the lowest value for ascending and
the highest for descending order; resources without a value sort last either way.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
from sqlalchemy import and_, func, or_, select
from sqlalchemy.sql.elements import ColumnElement

from sharedcare.db.tables import meta_source_sorted
from sharedcare.fhir.definitions import search_parameters
from sharedcare.record.derived import stored_codes, target_filter
from sharedcare.record.errors import InvalidRequest
from sharedcare.record.search.clauses import TABLES, ParamId

_SORT_COLUMNS = {
    "string": ("value", "str"),
    "token": ("code", "str"),
    "date": ("low", "int"),
    "number": ("value", "decimal"),
    "quantity": ("value", "decimal"),
    "uri": ("uri", "str"),
    "reference": ("target_id", "str"),
}


@dataclass(slots=True)
class SortKey:
    """One ``ORDER BY`` key: its expression, direction, value kind and nullability."""

    expr: Any
    descending: bool
    kind: str
    nullable: bool


def sort_keys(
    table: Any, resource_type: str, sort: list[tuple[str, bool]], param_id: ParamId
) -> list[SortKey]:
    """The order for ``_sort`` (default: most recently updated first), ending with ``pk``."""
    keys: list[SortKey] = []
    for code, descending in sort or [("_lastUpdated", True)]:
        if code == "_id":
            keys.append(SortKey(table.c.id, descending, "str", False))
        elif code == "_lastUpdated":
            keys.append(SortKey(table.c.last_updated, descending, "int", False))
        elif code == "_source":  # meta.source in the row itself: no index rows
            keys.append(SortKey(meta_source_sorted(table.c.content), descending, "str", True))
        else:
            definition = search_parameters(resource_type)[code]
            column, kind = _SORT_COLUMNS[definition.type]
            if definition.type == "date" and descending:
                column = "high"
            index = TABLES[definition.type]
            params = [param_id(resource_type, c) for c in stored_codes(resource_type, code)]
            ids = [-1 if param is None else param for param in params]
            aggregate = func.max if descending else func.min
            rows = select(aggregate(index.c[column])).where(
                index.c.res == table.c.pk,
                index.c.param == ids[0] if len(ids) == 1 else index.c.param.in_(ids),
            )
            if target := target_filter(resource_type, code):
                rows = rows.where(index.c.target_type == target)
            expr = rows.scalar_subquery()
            keys.append(SortKey(expr, descending, kind, True))
    last_descending = keys[0].descending
    keys.append(SortKey(table.c.pk, last_descending, "int", False))
    return keys


def order_by(keys: list[SortKey], *, reverse: bool = False) -> list[Any]:
    """``ORDER BY`` terms; ``reverse`` flips every key (for a ``previous`` page)."""
    terms = []
    for key in keys:
        descending = key.descending != reverse
        term = key.expr.desc() if descending else key.expr.asc()
        if key.nullable:
            term = term.nulls_first() if reverse else term.nulls_last()
        terms.append(term)
    return terms


def after(keys: list[SortKey], values: list[Any], *, before: bool = False) -> ColumnElement[bool]:
    """Rows strictly after (or ``before``) the position ``values`` in the order ``keys``.

    A non-null first key also gets a plain bound (``k0 <= v0``) so that the database can
    start its index scan at the cursor instead of filtering every row before it.
    """
    condition = _after(keys, values, before)
    key, value = keys[0], values[0]
    if key.nullable or value is None:
        return condition
    bound = key.expr >= value if key.descending == before else key.expr <= value
    return and_(bound, condition)


def _after(keys: list[SortKey], values: list[Any], before: bool) -> ColumnElement[bool]:
    key, value = keys[0], values[0]
    rest = keys[1:]
    greater = (key.descending) == before  # compare upwards?
    if not rest:
        return key.expr > value if greater else key.expr < value  # type: ignore[no-any-return]
    tail = _after(rest, values[1:], before)
    if value is None:  # nulls sort last
        if before:
            return or_(key.expr.is_not(None), and_(key.expr.is_(None), tail))
        return and_(key.expr.is_(None), tail)
    beyond = key.expr > value if greater else key.expr < value
    if key.nullable and not before:
        beyond = or_(beyond, key.expr.is_(None))
    return or_(beyond, and_(key.expr == value, tail))


def encode_cursor(direction: str, values: list[Any]) -> str:
    """An opaque ``_cursor``: the direction and the sort values of the anchor row."""
    raw = orjson.dumps([direction, [str(v) if isinstance(v, Decimal) else v for v in values]])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, keys: list[SortKey]) -> tuple[str, list[Any]]:
    """The direction (``next`` / ``prev``) and anchor values of a ``_cursor``.

    Raises:
        InvalidRequest: If the cursor is malformed or was made for a different order.
    """
    problem = InvalidRequest(
        "_cursor does not belong to this search; follow the links of the latest page, or "
        "start again without _cursor",
        expression="_cursor",
    )
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        direction, values = orjson.loads(raw)
    except (ValueError, binascii.Error, orjson.JSONDecodeError, TypeError):
        raise problem from None
    if direction not in {"next", "prev"} or not isinstance(values, list):
        raise problem
    if len(values) != len(keys):
        raise problem
    out: list[Any] = []
    for key, value in zip(keys, values, strict=True):
        if value is None:
            if not key.nullable:
                raise problem
            out.append(None)
        elif _fits(key.kind, value):
            out.append(value)
        elif key.kind == "decimal" and isinstance(value, str):
            try:
                out.append(Decimal(value))
            except InvalidOperation:
                raise problem from None
        else:
            raise problem
    return direction, out


def _fits(kind: str, value: Any) -> bool:
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    return kind == "str" and isinstance(value, str)
