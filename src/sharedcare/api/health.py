"""Liveness and readiness probes.

* ``GET /healthz``: the process is up and serving (no database work).
* ``GET /readyz``: the database answers and its schema is at the shipped migration head.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from sharedcare import __version__
from sharedcare.api.deps import EngineDep
from sharedcare.api.responses import OrjsonResponse
from sharedcare.db.engine import dialect_name
from sharedcare.db.migrate import current_revision, head_revision
from sharedcare.plugins import hookimpl

log = logging.getLogger(__name__)
router = APIRouter(tags=["health"])


@router.get("/healthz", response_class=OrjsonResponse)
def healthz() -> dict[str, Any]:
    """Liveness: the process is serving requests."""
    return {"status": "ok", "version": __version__}


@router.get("/readyz", response_class=OrjsonResponse)
def readyz(engine: EngineDep) -> OrjsonResponse:
    """Readiness: the database is reachable and fully migrated."""
    checks: dict[str, Any] = {"database": dialect_name(engine)}
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        current, head = current_revision(engine), head_revision()
    except SQLAlchemyError as exc:
        log.warning("readiness check failed: database unreachable (%s)", type(exc).__name__)
        checks.update(status="unavailable", reason="database unreachable")
        return OrjsonResponse(checks, status_code=503)
    checks.update(schema=current, expected_schema=head)
    if current != head:
        checks.update(
            status="unavailable",
            reason="database schema is not at the latest migration; run `sharedcare db upgrade`",
        )
        return OrjsonResponse(checks, status_code=503)
    checks["status"] = "ready"
    return OrjsonResponse(checks)


@hookimpl
def register_routes(app: Any) -> None:
    """Mount the probes."""
    app.include_router(router)
