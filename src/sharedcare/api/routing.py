"""Route matching that skips what cannot match, for the FHIR API's hot paths.

FastAPI matches a request by asking every route in turn, in the order they were added;
an included router is asked by asking each of its routes. Before a FHIR search reached
``/fhir/{rtype}`` it was checked against 27 routes that cannot serve it (the API docs,
static files, the portal, identity reviews, Bulk Data, the audit trail): about 42 µs a
request on this machine, most of it in the two ``/fhir`` routers of Bulk Data and the
audit trail (``docs/decisions/0026-search-request-path.md``). Two changes, neither of which
changes which route serves a request:

- :class:`GuardedRouter`: a router whose every path contains a fixed piece of text
  (``AuditEvent``, ``$export``) answers "no match" at once for a path without it.
- :func:`fhir_routes_first`: the routers under ``/fhir`` are asked before the others
  when no other route can match a path under ``/fhir`` (checked when the app is built), so
  this changes only the time taken to find the route, and the order of the paths in the
  OpenAPI document.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, FastAPI
from starlette._utils import get_route_path
from starlette.convertors import StringConvertor
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Mount
from starlette.types import Receive, Scope, Send

__all__ = ["FHIR_PREFIX", "DirectGets", "GuardedRouter", "direct", "fhir_routes_first"]

FHIR_PREFIX = "/fhir"


class GuardedRouter(APIRouter):
    """An :class:`~fastapi.APIRouter` whose routes' paths all contain ``marker``.

    A request whose path lacks it cannot match any of them, so the router says so without
    asking each route. Adding a route whose path lacks the marker is refused (it would be
    unreachable).

    Args:
        marker: Text every route's path template contains outside its ``{parameters}``.
        **kwargs: As for :class:`~fastapi.APIRouter`.
    """

    def __init__(self, *, marker: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.marker = marker

    def add_api_route(self, path: str, *args: Any, **kwargs: Any) -> None:
        full = self.prefix + path
        if self.marker not in _literal_text(full):
            raise ValueError(f"route {full} does not contain {self.marker!r}")
        super().add_api_route(path, *args, **kwargs)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if self.marker not in scope.get("path", ""):
            return Match.NONE, {}
        return super().matches(scope)


def _literal_text(path: str) -> str:
    """The fixed text of a path template, parameters replaced by ``/``."""
    out = []
    depth = 0
    for char in path:
        if char == "{":
            depth += 1
            out.append("/")
        elif char == "}":
            depth -= 1
        elif depth == 0:
            out.append(char)
    return "".join(out)


def _paths(route: BaseRoute) -> list[str] | None:
    """The full path templates ``route`` serves (an included router: each of its routes'),
    or ``None`` when that cannot be told."""
    contexts = getattr(route, "effective_route_contexts", None)
    if contexts is None:
        path = getattr(route, "path", None)
        return None if path is None else [path]
    paths = []
    for context in contexts():
        path = getattr(context, "path_format", None) or getattr(
            context.starlette_route, "path", None
        )
        if path is None:
            return None
        paths.append(path)
    return paths


def _under_fhir(path: str) -> bool:
    return path == FHIR_PREFIX or path.startswith(FHIR_PREFIX + "/")


def _may_serve_fhir(path: str) -> bool:
    """Whether a route (or a mount) with this template could match a path under ``/fhir``:
    only if its first segment is ``fhir`` or a parameter (``/`` matches ``/`` alone)."""
    if path in {"", "/"}:
        return path == ""  # a mount at the root takes every path
    first = path.split("/", 2)[1] if path.startswith("/") else "{"
    return first == "fhir" or "{" in first


def fhir_routes_first(app: FastAPI) -> None:
    """Move the routers whose every route is under ``/fhir`` to the front of the
    application's routes, keeping their own order (the audit trail's and Bulk Data's stay
    before the generic ``/fhir/{type}`` ones).

    Nothing moves when another route could match a path under ``/fhir`` (a plugin's
    catch-all, say): the move would then change which route serves it.
    """
    routes = app.router.routes
    fhir: list[BaseRoute] = []
    others: list[BaseRoute] = []
    for route in routes:
        paths = _paths(route)
        if paths and all(_under_fhir(p) for p in paths):
            fhir.append(route)
        elif paths is None or any(_may_serve_fhir(p) for p in paths):
            return
        else:
            others.append(route)
    routes[:] = fhir + others


#: Marks an endpoint that :class:`DirectGets` may call without FastAPI's request handling.
_DIRECT = "__sharedcare_direct__"
_CACHE_LIMIT = 4096


def direct(endpoint: Callable[..., Awaitable[Response]]) -> Callable[..., Awaitable[Response]]:
    """Mark a ``GET`` endpoint as callable directly (see :class:`DirectGets`).

    It must be ``async``, take its path parameters as plain strings and ``request`` (no
    dependencies, no query or header parameters) and return a :class:`Response`.
    """
    setattr(endpoint, _DIRECT, True)
    return endpoint


class DirectGets(BaseRoute):
    """Serve ``GET`` requests for the endpoints marked :func:`direct` without FastAPI's
    per-request work, found with one look-up instead of a walk through every route.

    For a FHIR search or read, FastAPI asked each route in turn (about 40 µs at 27 routes),
    then ran its request handler: the dependency solver, the path parameters' validation
    and a worker-thread hop for a ``def`` endpoint, a sixth of the API server's CPU per
    request (``docs/decisions/0026-search-request-path.md``). This route comes first and
    answers "no match" for anything that is not one of those endpoints, so every other
    request is routed as before, and the endpoints stay documented in OpenAPI by their own
    (unchanged) routes.

    Which route serves a path is decided by the application's own routes, asked in their
    order, the first time a path of that *shape* is seen: the path's segments, with every
    segment that is not a fixed segment of some route replaced by a wildcard. When every
    route's parameters are whole segments of plain text (checked here), two paths of one
    shape match the same routes, so the answer is kept (up to 4,096 shapes). Otherwise,
    or if a route cannot be reasoned about, this route never matches.

    Args:
        routes: The application's routes (``app.router.routes``), read at the first request.
    """

    def __init__(self, routes: list[BaseRoute]) -> None:
        self._routes = routes
        self._ready = False
        self._usable = False
        self._literals: frozenset[str] = frozenset()
        self._candidates: list[Any] = []
        self._shapes: dict[tuple[str | None, ...], tuple[Any, list[tuple[int, str]]] | None] = {}

    # -- set-up -------------------------------------------------------------------------

    def _prepare(self) -> None:
        candidates: list[Any] = []
        literals: set[str] = set()
        usable = True
        for route in self._routes:
            if route is self:
                continue
            contexts = getattr(route, "effective_route_contexts", None)
            flat = list(contexts()) if contexts is not None else [route]
            for candidate in flat:
                segments = _template_segments(candidate)
                if segments is None:
                    usable = False
                    break
                literals.update(s for s in segments if not s.startswith("{"))
                candidates.append(candidate)
            if not usable:
                break
        self._candidates = candidates
        self._literals = frozenset(literals)
        self._usable = usable
        self._ready = True

    def _resolve(self, scope: Scope, segments: list[str]) -> Any:
        """The route serving this shape of path, if it is a direct endpoint's route: the
        route and where its path parameters are; else ``None``."""
        for candidate in self._candidates:
            match, _ = candidate.matches(scope)
            if match == Match.FULL:
                route = getattr(candidate, "original_route", candidate)
                endpoint = getattr(route, "endpoint", None)
                if endpoint is None or not getattr(endpoint, _DIRECT, False):
                    return None
                if getattr(route, "dependencies", None) or getattr(candidate, "dependencies", None):
                    return None
                template = _template_segments(candidate) or []
                names = [(i, s.strip("{}")) for i, s in enumerate(template) if s.startswith("{")]
                wanted = {"request", *(name for _, name in names)}
                if set(inspect.signature(endpoint).parameters) != wanted:
                    return None
                return route, names
            # A partial match (the path, another method) serves the request only if no
            # later route matches fully: go on.
        return None

    # -- routing ------------------------------------------------------------------------

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or scope["method"] != "GET":
            return Match.NONE, {}
        if not self._ready:
            self._prepare()
        if not self._usable:
            return Match.NONE, {}
        path = get_route_path(scope)
        segments = path.split("/")
        literals = self._literals
        shape = tuple(s if (s in literals or not s) else None for s in segments)
        try:
            found = self._shapes[shape]
        except KeyError:
            found = self._resolve(scope, segments)
            if len(self._shapes) < _CACHE_LIMIT:
                self._shapes[shape] = found
        if found is None:
            return Match.NONE, {}
        route, names = found
        params = {name: segments[i] for i, name in names}
        return Match.FULL, {"endpoint": route.endpoint, "path_params": params, "route": route}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        response = await scope["endpoint"](request=request, **scope["path_params"])
        await response(scope, receive, send)


def _template_segments(route: Any) -> list[str] | None:
    """A route's path template split into segments, when its match depends only on its
    fixed segments (``{name}`` parameters of plain text taking whole segments, or a mount's
    fixed prefix); ``None`` otherwise."""
    convertors = getattr(route, "param_convertors", None)
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    starlette_route = getattr(route, "starlette_route", None)
    if starlette_route is not None:  # an included non-FastAPI route
        return _template_segments(starlette_route)
    if path is None or convertors is None:
        return None
    if isinstance(route, Mount):
        # Matches ``prefix/…`` at any depth: decided by its fixed prefix alone, which
        # the shape keeps (every segment of it is a fixed segment).
        prefix: str = route.path
        return None if "{" in prefix or not prefix else prefix.split("/")
    if not all(isinstance(c, StringConvertor) for c in convertors.values()):
        return None
    segments: list[str] = path.split("/")
    for segment in segments:
        if ("{" in segment or "}" in segment) and not (
            segment.startswith("{") and segment.endswith("}") and segment.count("{") == 1
        ):
            return None
    return segments
