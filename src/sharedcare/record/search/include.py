"""``_include`` and ``_revinclude`` (https://hl7.org/fhir/R4/search.html#include).

Each step is one query that returns the included resources themselves: ``_include`` reads
the resources whose ``(type, id)`` the reference rows of the current set point at;
``_revinclude`` reads the resources whose reference rows point at the current set. The
first set is the page of matches (its keys, types and ids are already in hand), so a page
with one ``_include`` costs one query beyond the page. ``:iterate`` steps repeat on what the
previous round added until nothing new appears (or
:data:`~sharedcare.record.search.model.MAX_INCLUDES` is reached).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Select, and_, bindparam, or_, select, tuple_

from sharedcare.db.tables import IdxReference
from sharedcare.fhir.definitions import search_parameters
from sharedcare.record.derived import stored_codes, target_filter
from sharedcare.record.search.clauses import RESOURCE, ParamId
from sharedcare.record.search.execute import fetch_rows, page_columns, stored_of
from sharedcare.record.search.model import MAX_INCLUDES, Include
from sharedcare.record.sqlstore import StoredResource

REF: Any = IdxReference.__table__
_ROUNDS = 4


def resolve_includes(
    connection: Connection,
    param_id: ParamId,
    includes: Sequence[Include],
    matches: Sequence[StoredResource],
    keys: Sequence[int],
) -> list[StoredResource]:
    """The resources ``includes`` add to a page whose matches are ``matches``.

    Args:
        connection: Where to read.
        param_id: ``(resource_type, code) -> int | None`` for index parameter ids.
        includes: The page's ``_include`` and ``_revinclude`` parameters.
        matches: The page's matches.
        keys: Their resource keys (``pk``), in the same order.

    Returns:
        Resources not among the matches, in key order, at most ``MAX_INCLUDES``.
    """
    if not includes or not matches:
        return []
    seen = set(keys)
    found: dict[int, StoredResource] = {}
    frontier = list(zip(keys, matches, strict=True))
    first = True
    for _ in range(_ROUNDS):
        steps = [i for i in includes if i.iterate or first]
        new: list[tuple[int, StoredResource]] = []
        for include in steps:
            for pk, stored in _step(connection, param_id, include, frontier):
                if pk not in seen:
                    seen.add(pk)
                    new.append((pk, stored))
                    found[pk] = stored
        if len(found) >= MAX_INCLUDES:
            break
        first = False
        if not new or not any(i.iterate for i in includes):
            break
        frontier = new
    return [found[pk] for pk in sorted(found)[:MAX_INCLUDES]]


def _params(include: Include, param_id: ParamId) -> list[int]:
    """Ids of the rows the include reads: a parameter narrowed from another
    (``sharedcare.record.derived``) reads the other's, of :func:`_target`'s type only."""
    if include.param is not None:
        codes = [include.param]
    else:
        codes = [c for c, p in search_parameters(include.source).items() if p.type == "reference"]
    stored = dict.fromkeys(s for c in codes for s in stored_codes(include.source, c))
    return [p for p in (param_id(include.source, c) for c in stored) if p is not None]


def _target(include: Include) -> str | None:
    """The target type the include's rows must have (``""``: none can match)."""
    narrowed = target_filter(include.source, include.param) if include.param else None
    if narrowed and include.target and include.target != narrowed:
        return ""
    return narrowed or include.target


def _step(
    connection: Connection,
    param_id: ParamId,
    include: Include,
    frontier: list[tuple[int, StoredResource]],
) -> list[tuple[int, StoredResource]]:
    params = tuple(_params(include, param_id))
    target = _target(include)
    if not params or target == "":
        return []
    values: list[Any]
    if not include.reverse:
        values = [pk for pk, stored in frontier if stored.resource_type == include.source]
        if not values:
            return []
        key: tuple[Any, ...] = (target, len(values))
    else:
        by_type: dict[str, list[str]] = {}
        for _, stored in frontier:
            if target is None or target == stored.resource_type:
                by_type.setdefault(stored.resource_type, []).append(stored.id)
        if not by_type:
            return []
        key = (include.source, tuple((t, len(ids)) for t, ids in by_type.items()))
        values = [x for t, ids in by_type.items() for x in (t, *ids)]
    key = (connection.dialect.name, include.reverse, params, *key)
    query = _STEPS.get(key)
    if query is None:
        query = _step_query(connection, include, key)
        if len(_STEPS) >= MAX_STEPS:
            _STEPS.pop(next(iter(_STEPS)), None)
        _STEPS[key] = query
    bound = {f"s{i}": value for i, value in enumerate(values)}
    bound.update((f"p{i}", param) for i, param in enumerate(params))
    return [(row[0], stored_of(row)) for row in fetch_rows(connection, query, bound)]


#: Include steps' statements by shape (the values are bound: ``p0`` … the parameter ids,
#: ``s0`` … the keys, or the types and ids, of the current set). Bounded like the plans.
_STEPS: dict[tuple[Any, ...], Select[Any]] = {}
MAX_STEPS = 2000


def _step_query(connection: Connection, include: Include, key: tuple[Any, ...]) -> Select[Any]:
    """The statement of an include step of the shape ``key`` (see :func:`_step`)."""
    _, reverse, params, *rest = key
    ids: list[Any] = [bindparam(f"p{i}") for i in range(len(params))]
    param = REF.c.param == ids[0] if len(ids) == 1 else REF.c.param.in_(ids)
    if not reverse:
        target, n = rest
        sources: list[Any] = [bindparam(f"s{i}") for i in range(n)]
        targets = select(REF.c.target_type, REF.c.target_id).where(param, REF.c.res.in_(sources))
        if target:
            targets = targets.where(REF.c.target_type == target)
        wanted: Any = tuple_(RESOURCE.c.resource_type, RESOURCE.c.id).in_(targets)
    else:
        source, counts = rest
        options = []
        taken = 0
        for _, count in counts:
            target_type: Any = bindparam(f"s{taken}")
            ids_of: list[Any] = [bindparam(f"s{taken + 1 + i}") for i in range(count)]
            taken += 1 + count
            options.append(and_(REF.c.target_type == target_type, REF.c.target_id.in_(ids_of)))
        wanted = RESOURCE.c.pk.in_(select(REF.c.res).where(param, or_(*options)))
        if source:
            wanted = and_(RESOURCE.c.resource_type == source, wanted)
    return (
        select(RESOURCE.c.pk, *page_columns(connection))
        .where(wanted, RESOURCE.c.deleted.is_(False))
        .order_by(RESOURCE.c.pk)
        .limit(MAX_INCLUDES)
    )
