"""The FastAPI application factory.

``create_app()`` builds the application from :class:`~sharedcare.config.Settings`. Routes
come from plugins (:mod:`sharedcare.plugins`), so the web portal, the FHIR API and
health probes are each mounted by their own module.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sharedcare import __version__
from sharedcare.api.direct_writes import DirectRoutes
from sharedcare.api.errors import install_error_handlers
from sharedcare.api.routing import fhir_routes_first
from sharedcare.api.search_engine import search_engine
from sharedcare.config import Settings, get_settings
from sharedcare.db.engine import create_engine
from sharedcare.db.migrate import upgrade
from sharedcare.identity.catchup import IdentityWarmup
from sharedcare.plugins import plugin_manager
from sharedcare.record.audit_writer import AuditWriter
from sharedcare.record.sqlstore import SqlStore

access_log = logging.getLogger("sharedcare.access")


class AccessLog:
    """Log each HTTP request's method, route template, status and duration.

    A plain ASGI middleware: Starlette's ``BaseHTTPMiddleware`` runs every request through
    an extra task and memory streams, which profiling showed as a measurable share of a
    FHIR read. When the access log is off (the level is above INFO) it adds one check.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not access_log.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route: Any = scope.get("route")
            # The route template (/fhir/{type}/{id}), never the concrete path or query string.
            path = getattr(route, "path", None) or "unrouted"
            access_log.info(
                "%s %s %d %.1fms",
                scope["method"],
                path,
                status,
                (time.perf_counter() - started) * 1000,
            )


class HeadAsGet:
    """Answer ``HEAD`` as ``GET`` without the body (RFC 9110 §9.3.2), for every route.

    FastAPI routes declare ``GET`` only, so a ``HEAD`` (a client checking a resource's
    ``ETag`` or ``Last-Modified``, a monitor probing a page) was refused with 405. The
    request runs as a ``GET`` on a copy of its scope, so it is gated and audited as the
    read or search it is, and its status and headers (``Content-Length`` included) are the
    ``GET``'s; the body is not sent.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def send_without_body(message: Message) -> None:
            if message["type"] == "http.response.body" and message.get("body"):
                message = {**message, "body": b""}
            await send(message)

        # A copy: the server's own scope stays HEAD (uvicorn sends no body for it either).
        await self.app({**scope, "method": "GET"}, receive, send_without_body)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the sharedcare web application.

    Args:
        settings: Settings to use; read from the environment when omitted.

    Returns:
        The application, ready for uvicorn.
    """
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(
            settings.resolved_database_url, pool_size=settings.db_pool_size, echo=settings.sql_echo
        )
        if settings.auto_migrate:
            upgrade(engine)
        app.state.engine = engine
        app.state.store = SqlStore(engine)
        if settings.auto_migrate:
            app.state.store.ensure_params()
        app.state.audit_writer = AuditWriter(engine)
        # Searches run on the event loop over an asyncio engine of their own on
        # PostgreSQL, in these threads on SQLite (``api.fhir._run_search``): as many
        # threads as the engine's pool holds connections (``pool_size`` and as many more).
        app.state.search_engine = search_engine(engine, settings.db_pool_size)
        app.state.search_pool = None
        if app.state.search_engine is None:
            app.state.search_pool = ThreadPoolExecutor(
                max_workers=2 * settings.db_pool_size, thread_name_prefix="sharedcare-search"
            )
        # Load the identity index and link Patients a crash left unlinked, in the background.
        warmup = IdentityWarmup.start_if_matching(engine, app.state.store)
        app.state.identity_warmup = warmup
        try:
            yield
        finally:
            if warmup is not None:
                warmup.stop()
            if app.state.search_pool is not None:
                app.state.search_pool.shutdown(wait=True)
            if app.state.search_engine is not None:
                await app.state.search_engine.dispose()
            # Commit every queued AuditEvent before the connections go.
            await app.state.audit_writer.aclose()
            engine.dispose()

    app = FastAPI(
        title="sharedcare",
        version=__version__,
        summary="One shared care record for an Integrated Care System.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    install_error_handlers(app)

    app.add_middleware(HeadAsGet)
    app.add_middleware(AccessLog)
    plugin_manager().hook.register_routes(app=app)
    fhir_routes_first(app)
    app.router.routes.insert(0, DirectRoutes(app.router.routes))
    return app
