"""FHIR search over the typed index tables (https://hl7.org/fhir/R4/search.html).

A query string is parsed (:func:`parse_search`) into a :class:`SearchRequest` - one
:class:`Clause` per parameter occurrence: repeated parameters AND, comma-separated values
OR - and compiled (:func:`compile_search`) into SQL: each clause becomes
``resource.pk IN (SELECT res FROM idx_<type> WHERE param = … AND …)`` on the index table of
its parameter type, whose primary key leads with the parameter and value.

Modules: :mod:`.parse` (query → request), :mod:`.clauses` (clauses → SQL, chains,
``_has``), :mod:`.composite`, :mod:`.paging` (sort and keyset cursors), :mod:`.execute`
(running a search: page, total, links), :mod:`.include` (``_include`` / ``_revinclude``)
and :mod:`.shape` (``_summary`` / ``_elements``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, and_, distinct, func, select
from sqlalchemy.sql.elements import ColumnElement

from sharedcare.record.search.clauses import RESOURCE, Compiler, ParamId
from sharedcare.record.search.model import (
    DEFAULT_COUNT,
    MAX_COUNT,
    Clause,
    Include,
    SearchRequest,
)
from sharedcare.record.search.paging import SortKey, after, order_by, sort_keys
from sharedcare.record.search.parse import RESULT_PARAMETERS, parse_search

__all__ = [
    "DEFAULT_COUNT",
    "MAX_COUNT",
    "RESULT_PARAMETERS",
    "Clause",
    "CompiledSearch",
    "Include",
    "SearchRequest",
    "compile_search",
    "parse_search",
]


@dataclass(slots=True)
class CompiledSearch:
    """A search as SQL: its filter, its order and, where possible, its index scans.

    Attributes:
        where: The condition on ``resource``.
        keys: The order, ending with ``pk``.
        index_scans: When every condition is an index semi-join, their ``SELECT res``
            queries: counting intersects them without reading ``resource``.
        whole_type: The resource type, when the search has no condition beyond it.
    """

    where: ColumnElement[bool]
    keys: list[SortKey]
    index_scans: list[Select[Any]] | None
    whole_type: str | None = None

    def page(
        self,
        limit: int,
        *,
        offset: int = 0,
        anchor: list[Any] | None = None,
        before: bool = False,
        columns: Sequence[Any] = (),
    ) -> Select[Any]:
        """One page: ``pk``, the sort values (``k0`` …) and ``columns``, for the rows after
        ``anchor`` (or before it)."""
        where = self.where
        if anchor is not None:
            where = and_(where, after(self.keys, anchor, before=before))
        keys = [k.expr.label(f"k{i}") for i, k in enumerate(self.keys[:-1])]
        query = select(RESOURCE.c.pk, *keys, *columns).where(where)
        return query.order_by(*order_by(self.keys, reverse=before)).limit(limit).offset(offset)

    def count(self) -> Select[Any]:
        """``SELECT count`` of the matches.

        When every condition is an index scan, the first scan's distinct keys are counted
        among the others' (semi-joins, so the planner starts from the most selective scan
        and never reads ``resource``). ``count(DISTINCT res)`` rather than ``count(*)`` of a
        ``DISTINCT`` subquery or an ``INTERSECT``: PostgreSQL counted the 600,000
        Observations of one category in 190 ms that way against 480-840 ms by hashing, and
        a selective scan AND a broad one in under a millisecond against 45 ms
        (``benchmarks/bench_search.py`` at 1M resources).
        """
        scans = self.index_scans
        if scans:
            first = scans[0].subquery()
            key = first.c[0]
            query = select(func.count(distinct(key)))
            return query.where(*(key.in_(scan) for scan in scans[1:]))
        if self.whole_type is not None:
            # Every row of the type less its deleted rows: two index-only counts (the
            # second on the partial index of deleted rows) instead of reading the table.
            rows = RESOURCE.c.resource_type == self.whole_type
            every = select(func.count()).select_from(RESOURCE).where(rows)
            deleted = select(func.count()).select_from(RESOURCE).where(rows, RESOURCE.c.deleted)
            return select(every.scalar_subquery() - deleted.scalar_subquery())
        return select(func.count()).select_from(RESOURCE).where(self.where)

    def matches(self) -> Select[Any]:
        """``SELECT pk`` of every match (for estimates)."""
        return select(RESOURCE.c.pk).where(self.where)


def compile_search(
    request: SearchRequest,
    param_id: ParamId,
    *,
    dialect: str = "sqlite",
    bytewise: bool = False,
    extra: ColumnElement[bool] | Select[Any] | None = None,
) -> CompiledSearch:
    """Compile a parsed search.

    Args:
        request: The parsed search.
        param_id: ``(resource_type, code) -> int | None`` for index parameter ids.
        dialect: ``sqlite`` or ``postgresql``.
        bytewise: Text compares in byte (code point) order (SQLite; PostgreSQL with a C
            collation), so string prefixes can be searched as index ranges.
        extra: A further restriction (e.g. a compartment): a condition on ``resource``, or
            a ``SELECT res`` of index rows the matches must be among.
    """
    compiler = Compiler(param_id, request.resource_type, RESOURCE, dialect, bytewise=bytewise)
    conditions: list[ColumnElement[bool]] = [
        RESOURCE.c.resource_type == request.resource_type,
        RESOURCE.c.deleted.is_(False),
    ]
    scans: list[Select[Any]] | None = []
    for clause in request.clauses:
        # One semi-join per clause. (Nesting them into one, the scans matched with each
        # other before any resource is read, was tried at 1M resources: twice as fast for
        # two string prefixes, but PostgreSQL then misjudged a chain's selectivity and
        # walked all 600,000 Observations in date order: 1.1 s instead of 0.1 ms.)
        part = compiler.clause(clause)
        conditions.append(part.condition)
        if part.index is None:
            scans = None
        elif scans is not None:
            scans.append(part.index)
    if isinstance(extra, Select):
        conditions.append(RESOURCE.c.pk.in_(extra))
        if scans is not None:
            scans.append(extra)
    elif extra is not None:
        conditions.append(extra)
        scans = None
    keys = sort_keys(RESOURCE, request.resource_type, request.sort, param_id)
    whole = request.resource_type if not request.clauses and extra is None else None
    return CompiledSearch(and_(*conditions), keys, scans or None, whole)
