"""``_include`` and ``_revinclude`` (https://hl7.org/fhir/R4/search.html#include).

Each step is one query over ``idx_reference``: ``_include`` follows the reference rows of
the current set to their targets; ``_revinclude`` finds the rows that point at the current
set. ``:iterate`` steps repeat on what the previous round added until nothing new appears
(or :data:`~sharedcare.record.search.model.MAX_INCLUDES` is reached).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, and_, or_, select

from sharedcare.db.tables import IdxReference
from sharedcare.fhir.definitions import search_parameters
from sharedcare.record.search.clauses import RESOURCE, ParamId
from sharedcare.record.search.model import MAX_INCLUDES, Include

REF: Any = IdxReference.__table__
_ROUNDS = 4
_Row = tuple[int, str, str]  # pk, type, id


def resolve_includes(
    connection: Connection,
    param_id: ParamId,
    includes: Sequence[Include],
    matches: Sequence[int],
) -> list[int]:
    """Keys of the resources ``includes`` add to a page whose matches are ``matches``.

    Returns:
        Keys not among the matches, in the order found, at most ``MAX_INCLUDES``.
    """
    if not includes or not matches:
        return []
    seen = set(matches)
    found: list[int] = []
    frontier = _rows(connection, list(matches))
    first = True
    for _ in range(_ROUNDS):
        steps = [i for i in includes if i.iterate or first]
        new: list[int] = []
        for include in steps:
            for pk in _step(connection, param_id, include, frontier):
                if pk not in seen:
                    seen.add(pk)
                    new.append(pk)
        found += new
        if len(found) >= MAX_INCLUDES:
            return found[:MAX_INCLUDES]
        first = False
        if not new or not any(i.iterate for i in includes):
            break
        frontier = _rows(connection, new)
    return found


def _rows(connection: Connection, pks: list[int]) -> list[_Row]:
    rows: list[_Row] = []
    for start in range(0, len(pks), 500):
        chunk = pks[start : start + 500]
        query = select(RESOURCE.c.pk, RESOURCE.c.resource_type, RESOURCE.c.id)
        rows += [
            (r[0], r[1], r[2]) for r in connection.execute(query.where(RESOURCE.c.pk.in_(chunk)))
        ]
    return rows


def _params(include: Include, param_id: ParamId) -> list[int]:
    if include.param is not None:
        codes = [include.param]
    else:
        codes = [c for c, p in search_parameters(include.source).items() if p.type == "reference"]
    return [p for p in (param_id(include.source, c) for c in codes) if p is not None]


def _step(
    connection: Connection, param_id: ParamId, include: Include, frontier: list[_Row]
) -> list[int]:
    params = _params(include, param_id)
    if not params:
        return []
    if not include.reverse:
        sources = [pk for pk, rtype, _ in frontier if rtype == include.source]
        if not sources:
            return []
        condition = and_(REF.c.param.in_(params), REF.c.res.in_(sources))
        if include.target:
            condition = and_(condition, REF.c.target_type == include.target)
        query = (
            select(RESOURCE.c.pk)
            .join(
                REF,
                and_(
                    RESOURCE.c.resource_type == REF.c.target_type,
                    RESOURCE.c.id == REF.c.target_id,
                ),
            )
            .where(condition, RESOURCE.c.deleted.is_(False))
            .distinct()
            .limit(MAX_INCLUDES)
        )
        return list(connection.scalars(query))
    by_type: dict[str, list[str]] = {}
    for _, rtype, rid in frontier:
        if include.target is None or include.target == rtype:
            by_type.setdefault(rtype, []).append(rid)
    if not by_type:
        return []
    targets = or_(
        *(and_(REF.c.target_type == t, REF.c.target_id.in_(ids)) for t, ids in by_type.items())
    )
    query = select(REF.c.res).where(REF.c.param.in_(params), targets).distinct().limit(MAX_INCLUDES)
    return list(connection.scalars(query))
