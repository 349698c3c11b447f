"""FHIR writes (create, update, delete) dispatched without FastAPI's per-request work.

:class:`~sharedcare.api.routing.DirectGets` serves the hot ``GET`` endpoints (read,
vread, search) without FastAPI's route walk and dependency solver
(``docs/decisions/0026-search-request-path.md``). Writes went through both: on the CRUD
mix of ``benchmarks/bench_record.py`` (PostgreSQL) FastAPI's request handling of a write
(the walk through every route, the dependency solver for the ``Repository`` and the
``If-Match`` / ``If-None-Exist`` headers, the route's own wrappers) was about a tenth of
an API worker's time (``docs/decisions/0030-crud-request-path.md``).

:class:`DirectRoutes` is :class:`~sharedcare.api.routing.DirectGets` for writes as well:
for ``POST``, ``PUT`` and ``DELETE`` it finds the route that serves a path the same way
(the application's own routes, asked in their order the first time a path of that
*shape* and method is seen; the answer kept), and when that route's endpoint was marked
with :func:`direct_write` it calls the marked fast variant, which takes only the path
parameters and ``request`` and reads its headers itself. Otherwise it answers "no
match" and FastAPI routes the request as before. The FastAPI endpoints stay, unchanged in
what they accept, so OpenAPI documents the same operations and parameters, and an
application where :class:`DirectRoutes` cannot reason about the routes still works.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from starlette._utils import get_route_path
from starlette.responses import Response
from starlette.routing import BaseRoute, Match
from starlette.types import Scope

from sharedcare.api.routing import DirectGets, _template_segments

__all__ = ["DirectRoutes", "direct_write"]

#: The attribute of a FastAPI write endpoint naming its fast variant.
_FAST = "__sharedcare_direct_write__"
_WRITE_METHODS = frozenset({"POST", "PUT", "DELETE"})
_CACHE_LIMIT = 4096

Fast = Callable[..., Awaitable[Response]]


def direct_write(fast: Fast) -> Callable[[Fast], Fast]:
    """Mark a FastAPI write endpoint as served by ``fast`` under :class:`DirectRoutes`.

    ``fast`` must be ``async``, take exactly the route's path parameters (plain strings)
    and ``request``, and answer exactly as the endpoint does: it reads from the request
    what FastAPI would have given the endpoint (headers, the repository).
    """

    def mark(endpoint: Fast) -> Fast:
        setattr(endpoint, _FAST, fast)
        return endpoint

    return mark


class DirectRoutes(DirectGets):
    """:class:`~sharedcare.api.routing.DirectGets`, and writes to endpoints marked with
    :func:`direct_write` (see the module docstring).

    Args:
        routes: The application's routes (``app.router.routes``), read at the first request.
    """

    def __init__(self, routes: list[BaseRoute]) -> None:
        super().__init__(routes)
        self._writes: dict[tuple[str | None, ...], tuple[Any, Fast, list[tuple[int, str]]] | None]
        self._writes = {}

    def _resolve_write(self, scope: Scope) -> tuple[Any, Fast, list[tuple[int, str]]] | None:
        """The route serving this method and shape of path, if its endpoint has a fast
        variant: the route, the variant and where its path parameters are; else ``None``."""
        for candidate in self._candidates:
            match, _ = candidate.matches(scope)
            if match != Match.FULL:
                continue  # a partial match (another method) serves only if nothing matches
            route = getattr(candidate, "original_route", candidate)
            fast = getattr(getattr(route, "endpoint", None), _FAST, None)
            if fast is None:
                return None
            if getattr(route, "dependencies", None) or getattr(candidate, "dependencies", None):
                return None
            template = _template_segments(candidate) or []
            names = [(i, s.strip("{}")) for i, s in enumerate(template) if s.startswith("{")]
            if set(inspect.signature(fast).parameters) != {"request", *(n for _, n in names)}:
                return None
            return route, fast, names
        return None

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or scope["method"] not in _WRITE_METHODS:
            return super().matches(scope)
        if not self._ready:
            self._prepare()
        if not self._usable:
            return Match.NONE, {}
        segments = get_route_path(scope).split("/")
        literals = self._literals
        shape = (scope["method"], *(s if (s in literals or not s) else None for s in segments))
        try:
            found = self._writes[shape]
        except KeyError:
            found = self._resolve_write(scope)
            if len(self._writes) < _CACHE_LIMIT:
                self._writes[shape] = found
        if found is None:
            return Match.NONE, {}
        route, fast, names = found
        params = {name: segments[i] for i, name in names}
        return Match.FULL, {"endpoint": fast, "path_params": params, "route": route}
