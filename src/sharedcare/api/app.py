"""The FastAPI application factory.

``create_app()`` builds the application from :class:`~sharedcare.config.Settings`. Routes
come from plugins (:mod:`sharedcare.plugins`), so the web portal, the FHIR API and
health probes are each mounted by their own module.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response

from sharedcare import __version__
from sharedcare.api.errors import install_error_handlers
from sharedcare.config import Settings, get_settings
from sharedcare.db.engine import create_engine
from sharedcare.db.migrate import upgrade
from sharedcare.plugins import plugin_manager
from sharedcare.record.sqlstore import SqlStore

access_log = logging.getLogger("sharedcare.access")


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
        try:
            yield
        finally:
            engine.dispose()

    app = FastAPI(
        title="sharedcare",
        version=__version__,
        summary="One shared care record for an Integrated Care System.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    install_error_handlers(app)

    @app.middleware("http")
    async def log_access(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        # The route template (/fhir/{type}/{id}), never the concrete path or query string.
        path = getattr(route, "path", None) or "unrouted"
        access_log.info(
            "%s %s %d %.1fms",
            request.method,
            path,
            response.status_code,
            (time.perf_counter() - started) * 1000,
        )
        return response

    plugin_manager().hook.register_routes(app=app)
    return app
