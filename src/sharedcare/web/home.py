"""The home page: platform status in NHS.UK components."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from sharedcare.api.deps import EngineDep
from sharedcare.plugins import hookimpl
from sharedcare.status import platform_status
from sharedcare.web.templating import static_files, templates

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
async def home(request: Request, engine: EngineDep) -> HTMLResponse:
    """Organisations connected, people, resources by type, and feed health."""
    status = await run_in_threadpool(platform_status, engine)
    return templates.TemplateResponse(request, "home.html", {"status": status})


@hookimpl
def register_routes(app: Any) -> None:
    """Mount the home page and the static files."""
    app.mount("/static", static_files(), name="static")
    app.include_router(router)
