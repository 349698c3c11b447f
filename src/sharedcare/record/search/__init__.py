"""FHIR search over the typed index tables (https://hl7.org/fhir/R4/search.html).

A query string is parsed (:func:`parse_search`) into a :class:`SearchRequest` - one
:class:`Clause` per parameter occurrence: repeated parameters AND, comma-separated values
OR - and compiled (:func:`compile_search`) into SQL: each clause becomes
``resource.pk IN (SELECT res FROM idx_<type> WHERE param = … AND …)`` on the index table of
its parameter type, whose primary key leads with the parameter and value. Compiling splits a
search into its *shape* and its values (:mod:`.signature`); the SQL is built once per shape,
with placeholders, and run with each request's values
(``docs/decisions/0017-search-statements-per-shape.md``).

Modules: :mod:`.parse` (query → request), :mod:`.signature` (request → shape and values),
:mod:`.clauses` (shapes → SQL, chains, ``_has``), :mod:`.composite`, :mod:`.paging` (sort
and keyset cursors), :mod:`.execute` (running a search: page, total, links),
:mod:`.include` (``_include`` / ``_revinclude``) and :mod:`.shape` (``_summary`` /
``_elements``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, and_, bindparam, distinct, func, select
from sqlalchemy.sql.elements import ColumnElement

from sharedcare.record.derived import stored_codes
from sharedcare.record.search.clauses import RESOURCE, Compiler, ParamId, Slots
from sharedcare.record.search.model import (
    DEFAULT_COUNT,
    MAX_COUNT,
    Clause,
    Include,
    SearchRequest,
)
from sharedcare.record.search.paging import SortKey, after, order_by, sort_keys
from sharedcare.record.search.parse import RESULT_PARAMETERS, parse_search
from sharedcare.record.search.signature import Shape, Shaper

__all__ = [
    "DEFAULT_COUNT",
    "MAX_COUNT",
    "RESULT_PARAMETERS",
    "Clause",
    "CompiledSearch",
    "Include",
    "SearchPlan",
    "SearchRequest",
    "compile_search",
    "parse_search",
]


@dataclass(slots=True)
class SearchPlan:
    """A search's SQL for one shape, with placeholders for its values (shared by every
    request of that shape).

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
    pages: dict[tuple[Any, ...], Select[Any]] = field(default_factory=dict)
    counted: Select[Any] | None = None
    #: Kept for later searches of its shape (not a search built for itself).
    kept: bool = False

    def page(self, anchor: list[Any] | None, before: bool, columns: Sequence[Any]) -> Select[Any]:
        """One page (built once per anchor shape): ``pk``, the sort values (``k0`` …) and
        ``columns``, for the rows after ``anchor`` (or before it); the anchor's values are
        the placeholders ``a0`` …, the limit and offset ``page_limit`` and ``page_offset``."""
        pattern = None if anchor is None else tuple(v is None for v in anchor)
        # The columns are part of the statement: a page built for other columns (a test
        # looking at the SQL) must not be handed to a search. They are the same objects
        # on every search (``execute.page_columns``), so their identities are the key.
        key = (pattern, before, tuple(id(c) for c in columns))
        query = self.pages.get(key)
        if query is None:
            where = self.where
            if pattern is not None:
                slots: list[Any] = [
                    None if empty else bindparam(f"a{i}") for i, empty in enumerate(pattern)
                ]
                where = and_(where, after(self.keys, slots, before=before))
            keys = [k.expr.label(f"k{i}") for i, k in enumerate(self.keys[:-1])]
            query = select(RESOURCE.c.pk, *keys, *columns).where(where)
            query = query.order_by(*order_by(self.keys, reverse=before))
            query = query.limit(bindparam("page_limit")).offset(bindparam("page_offset"))
            self.pages[key] = query
        return query

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
        if self.counted is not None:
            return self.counted
        scans = self.index_scans
        if scans:
            first = scans[0].subquery()
            key = first.c[0]
            query = select(func.count(distinct(key)))
            query = query.where(*(key.in_(scan) for scan in scans[1:]))
        elif self.whole_type is not None:
            # Every row of the type less its deleted rows: two index-only counts (the
            # second on the partial index of deleted rows) instead of reading the table.
            rows = RESOURCE.c.resource_type == self.whole_type
            every = select(func.count()).select_from(RESOURCE).where(rows)
            deleted = select(func.count()).select_from(RESOURCE).where(rows, RESOURCE.c.deleted)
            query = select(every.scalar_subquery() - deleted.scalar_subquery())
        else:
            query = select(func.count()).select_from(RESOURCE).where(self.where)
        self.counted = query
        return query

    def matches(self) -> Select[Any]:
        """``SELECT pk`` of every match (for estimates)."""
        return select(RESOURCE.c.pk).where(self.where)


@dataclass(slots=True)
class CompiledSearch:
    """A search ready to run: its plan (shared by searches of the same shape) and this
    request's values for the plan's placeholders (``v0`` …)."""

    plan: SearchPlan
    params: dict[str, Any]

    @property
    def keys(self) -> list[SortKey]:
        """The order, ending with ``pk``."""
        return self.plan.keys

    def page(
        self,
        limit: int,
        *,
        offset: int = 0,
        anchor: list[Any] | None = None,
        before: bool = False,
        columns: Sequence[Any] = (),
    ) -> tuple[Select[Any], dict[str, Any]]:
        """One page's query and its values (see :meth:`SearchPlan.page`)."""
        params = {**self.params, "page_limit": limit, "page_offset": offset}
        if anchor is not None:
            params.update((f"a{i}", v) for i, v in enumerate(anchor) if v is not None)
        return self.plan.page(anchor, before, columns), params


#: Plans by shape. Bounded: when full, the oldest shape is dropped (rebuilt if seen again).
_PLANS: dict[tuple[Any, ...], SearchPlan] = {}
MAX_PLANS = 2000


def compile_search(
    request: SearchRequest,
    param_id: ParamId,
    *,
    dialect: str = "sqlite",
    bytewise: bool = False,
    extra: ColumnElement[bool] | Select[Any] | None = None,
) -> CompiledSearch:
    """Compile a parsed search: its values and shape (:mod:`.signature`), then the plan for
    that shape, built on first use and kept (a search's SQL depends on its shape only).

    Args:
        request: The parsed search.
        param_id: ``(resource_type, code) -> int | None`` for index parameter ids.
        dialect: ``sqlite`` or ``postgresql``.
        bytewise: Text compares in byte (code point) order (SQLite; PostgreSQL with a C
            collation), so string prefixes can be searched as index ranges.
        extra: A further restriction (e.g. a compartment): a condition on ``resource``, or
            a ``SELECT res`` of index rows the matches must be among. A search with one
            is built for itself, not kept.
    """
    shaper = Shaper(param_id, bytewise=bytewise)
    rtype = request.resource_type
    shapes = tuple(shaper.clause(rtype, clause) for clause in request.clauses)
    params = {f"v{i}": value for i, value in enumerate(shaper.values)}
    sort = tuple(
        (code, descending, tuple(param_id(rtype, c) for c in stored_codes(rtype, code)))
        for code, descending in request.sort
        if not code.startswith("_")
    )
    key = (dialect, bytewise, rtype, shapes, tuple(request.sort), sort)
    plan = _PLANS.get(key) if extra is None else None
    if plan is None:
        plan = _build(request, shapes, param_id, dialect, extra)
        if extra is None:
            plan.kept = True
            if len(_PLANS) >= MAX_PLANS:
                _PLANS.pop(next(iter(_PLANS)), None)
            _PLANS[key] = plan
    return CompiledSearch(plan, params)


def _build(
    request: SearchRequest,
    shapes: tuple[Shape, ...],
    param_id: ParamId,
    dialect: str,
    extra: ColumnElement[bool] | Select[Any] | None,
) -> SearchPlan:
    compiler = Compiler(request.resource_type, RESOURCE, dialect, Slots())
    conditions: list[ColumnElement[bool]] = [
        RESOURCE.c.resource_type == request.resource_type,
        RESOURCE.c.deleted.is_(False),
    ]
    scans: list[Select[Any]] | None = []
    parts = [compiler.clause(shape) for shape in shapes]
    strings = [
        p.index
        for s, p in zip(shapes, parts, strict=True)
        if p.index is not None and s[:2] == ("index", "string")
    ]
    nested = len(strings) > 1 and len(strings) == len(parts)
    if nested:
        conditions.append(RESOURCE.c.pk.in_(_nest(strings)))
    for part in parts:
        # One semi-join per clause. (Nesting them into one, the scans matched with each
        # other before any resource is read, was tried at 1M resources for every search:
        # twice as fast for two string prefixes, but PostgreSQL then misjudged a chain's
        # selectivity and walked all 600,000 Observations in date order: 1.1 s instead of
        # 0.1 ms. So only searches made of string clauses alone are nested, above.)
        if not nested:
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
    return SearchPlan(and_(*conditions), keys, scans or None, whole)


def _nest(scans: list[Select[Any]]) -> Select[Any]:
    """The first string scan's ``res`` restricted to those the other scans find too, so
    that the second name is checked against the first's candidates before any resource
    row is read: ``family=smith5&given=george`` (312 family candidates, 12 matches) read
    each candidate's resource row first, half of its 2,518 buffers
    (``docs/decisions/0022-search-cpu-per-request.md``)."""
    first = scans[0]
    res = first.selected_columns[0]
    for scan in scans[1:]:
        # ``correlate(None)``: the inner scan reads ``idx_string`` too and must keep it in
        # its own FROM rather than refer to the enclosing scan's row.
        first = first.where(res.in_(scan.correlate(None)))
    return first
