"""Search-index rows: one tuple per extracted value, in its index table's column order.

The store writes these tuples straight through the driver (array statements on
PostgreSQL, ``executemany`` on SQLite; the search benchmark's loader ``COPY``s them).
Token and quantity systems and composite combinations become 64-bit keys
(``docs/decisions/0011-record-footprint.md``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import Table

from sharedcare.db.tables import (
    IdxComposite,
    IdxDate,
    IdxNumber,
    IdxQuantity,
    IdxReference,
    IdxString,
    IdxToken,
    IdxUri,
)
from sharedcare.fhir.search_index import (
    CompositeValue,
    DateValue,
    IndexValue,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    StringValue,
    TokenValue,
    UriValue,
)
from sharedcare.record.keys import combination_key, system_key
from sharedcare.record.search.composite import composite_columns

__all__ = ["INDEX_TABLES", "ROW_BUILDERS", "index_row"]

INDEX_TABLES: dict[type, Table] = {
    StringValue: IdxString.__table__,  # type: ignore[dict-item]
    TokenValue: IdxToken.__table__,  # type: ignore[dict-item]
    ReferenceValue: IdxReference.__table__,  # type: ignore[dict-item]
    DateValue: IdxDate.__table__,  # type: ignore[dict-item]
    NumberValue: IdxNumber.__table__,  # type: ignore[dict-item]
    QuantityValue: IdxQuantity.__table__,  # type: ignore[dict-item]
    UriValue: IdxUri.__table__,  # type: ignore[dict-item]
    CompositeValue: IdxComposite.__table__,  # type: ignore[dict-item]
}


def _blank(value: str | None) -> str:
    return "" if value is None else value


def _composite_row(param: int, components: Sequence[Any], res: int) -> tuple[Any, ...]:
    """The ``idx_composite`` row for one combination, in the table's column order."""
    code1, *rest = composite_columns(tuple(components))
    canonical = orjson.dumps([list(c) for c in components], default=str).decode()
    return (param, _blank(code1), combination_key(canonical), res, *rest)


def _token_row(value: TokenValue, param: int, res: int) -> tuple[Any, ...]:
    return (
        param,
        _blank(value.code)[:512],
        _system_key(value.system),
        res,
        _blank(value.text)[:512],
    )


def _string_row(value: StringValue, param: int, res: int) -> tuple[Any, ...]:
    return (param, value.normalized[:512], value.exact[:512], res)


def _reference_row(value: ReferenceValue, param: int, res: int) -> tuple[Any, ...]:
    return (
        param,
        _blank(value.target_id),
        _blank(value.target_type),
        res,
        _blank(value.version),
        _blank(value.url),
    )


def _date_row(value: DateValue, param: int, res: int) -> tuple[Any, ...]:
    return (param, value.low, value.high, res)


def _number_row(value: NumberValue, param: int, res: int) -> tuple[Any, ...]:
    return (param, value.value, res)


def _quantity_row(value: QuantityValue, param: int, res: int) -> tuple[Any, ...]:
    code, unit = _blank(value.code), _blank(value.unit)
    return (param, value.value, code, _system_key(value.system), unit, res)


def _uri_row(value: UriValue, param: int, res: int) -> tuple[Any, ...]:
    return (param, value.uri, res)


def _composite_value_row(value: CompositeValue, param: int, res: int) -> tuple[Any, ...]:
    return _composite_row(param, value.components, res)


# The index-table row for one value, in the table's column order, by the value's type.
ROW_BUILDERS: dict[type, Callable[[Any, int, int], tuple[Any, ...]]] = {
    TokenValue: _token_row,
    StringValue: _string_row,
    ReferenceValue: _reference_row,
    DateValue: _date_row,
    NumberValue: _number_row,
    QuantityValue: _quantity_row,
    UriValue: _uri_row,
    CompositeValue: _composite_value_row,
}
# A record holds few distinct systems; their digests were a tenth of building index rows.
_system_key = lru_cache(maxsize=4096)(system_key)


def index_row(value: IndexValue, param: int, res: int) -> tuple[Any, ...] | None:
    """The index-table row for one value, in the table's column order."""
    build = ROW_BUILDERS.get(type(value))
    return None if build is None else build(value, param, res)
