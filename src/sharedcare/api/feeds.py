"""``GET /api/feeds``: the health of every feed, as JSON.

For each feed: identity (protocol, sending application and facility, organisation), last
message time, messages received, errors (queued now and in total), rate per minute over the
last five minutes, and lag (seconds the oldest message not yet in the record has waited).
Counts and times only; never message content.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from sharedcare.api.deps import EngineDep
from sharedcare.api.responses import OrjsonResponse
from sharedcare.ingest.health import RATE_WINDOW_SECONDS, feed_statuses, stage_counts
from sharedcare.plugins import hookimpl

router = APIRouter(tags=["ingest"])


@router.get("/api/feeds", response_class=OrjsonResponse)
def feeds(engine: EngineDep) -> dict[str, Any]:
    """Every feed's health, and how many messages are at each pipeline stage."""
    with engine.connect() as connection:
        statuses = feed_statuses(connection)
        stages = stage_counts(connection)
    return {
        "rate_window_seconds": RATE_WINDOW_SECONDS,
        "stages": stages,
        "feeds": [status.as_json() for status in statuses],
    }


@hookimpl
def register_routes(app: Any) -> None:
    """Mount ``/api/feeds``."""
    app.include_router(router)
