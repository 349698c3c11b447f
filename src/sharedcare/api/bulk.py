"""FHIR Bulk Data export over HTTP (https://hl7.org/fhir/uv/bulkdata/export.html).

Delivery only; the logic is in :mod:`sharedcare.record.bulk`.

* Kick-off: ``GET /fhir/$export``, ``/fhir/Patient/$export``, ``/fhir/Group/{id}/$export``
  with ``Prefer: respond-async`` → ``202 Accepted`` and ``Content-Location``. The same URLs
  accept ``POST`` with the parameters in a FHIR ``Parameters`` body (Bulk Data 2.0).
* Status: ``GET /fhir/$export-status/{job}`` → ``202`` with ``X-Progress`` and
  ``Retry-After`` while running; ``200`` with the JSON manifest when done.
* Cancel: ``DELETE /fhir/$export-status/{job}`` → ``202``; the files are removed.
* Files: ``GET /fhir/$export-file/{job}/{name}`` → NDJSON, streamed from disk.

The plugin also starts the export worker thread with the application and stops it with it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Request
from fastapi.responses import FileResponse, Response
from starlette.concurrency import run_in_threadpool

from sharedcare.api.fhir import repository
from sharedcare.api.responses import FhirJsonResponse, OrjsonResponse
from sharedcare.api.routing import GuardedRouter
from sharedcare.config import Settings
from sharedcare.plugins import hookimpl
from sharedcare.record.bulk import (
    NDJSON,
    BulkExports,
    BulkWorker,
    JobStore,
    Level,
    kickoff_parameters,
    parse_kickoff,
)
from sharedcare.record.bulk.service import TooManyExports
from sharedcare.record.errors import InvalidRequest
from sharedcare.record.instants import to_http_date, to_instant

router = GuardedRouter(marker="$export", prefix="/fhir", tags=["FHIR Bulk Data"])
RETRY_AFTER_S = 2
_ACCEPTED = ("application/fhir+json", "application/json", "*/*", "application/*")


def _exports(request: Request) -> BulkExports:
    worker: BulkWorker = request.app.state.bulk_worker
    return BulkExports(repository(request), request.app.state.bulk_jobs, worker.wake)


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/fhir"


def _kick_off(
    request: Request,
    level: Level,
    group_id: str | None = None,
    params: list[tuple[str, str]] | None = None,
) -> Response:
    """https://hl7.org/fhir/uv/bulkdata/export.html#bulk-data-kick-off-request

    ``params`` are the kick-off parameters of a POST body; a GET's come from its query.
    """
    prefer = request.headers.get("prefer", "").replace(" ", "").lower()
    if "respond-async" not in prefer.split(","):
        raise InvalidRequest(
            "$export runs asynchronously: send the header Prefer: respond-async",
            expression="Prefer",
        )
    accept = request.headers.get("accept")
    if accept and not any(kind in accept for kind in _ACCEPTED):
        raise InvalidRequest(
            "the kick-off answers in application/fhir+json; send Accept: application/fhir+json",
            expression="Accept",
        )
    spec = parse_kickoff(
        level,
        list(request.query_params.multi_items()) if params is None else params,
        group_id=group_id,
        lenient="handling=lenient" in prefer.split(","),
    )
    try:
        job_id = _exports(request).kick_off(spec, str(request.url))
    except TooManyExports as error:
        return FhirJsonResponse(
            error.outcome(), status_code=429, headers={"Retry-After": str(RETRY_AFTER_S * 30)}
        )
    outcome: dict[str, Any] = {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "information",
                "code": "informational",
                "diagnostics": "export queued; poll the Content-Location URL for its status",
            },
            *spec.issues,
        ],
    }
    return FhirJsonResponse(
        outcome,
        status_code=202,
        headers={"Content-Location": f"{_base(request)}/$export-status/{job_id}"},
    )


@router.get("/$export")
def export_system(request: Request) -> Response:
    """System-level export: every resource (https://hl7.org/fhir/uv/bulkdata/export.html)."""
    return _kick_off(request, "system")


@router.get("/Patient/$export")
def export_patients(request: Request) -> Response:
    """Patient-level export: every resource in any Patient compartment."""
    return _kick_off(request, "patient")


@router.get("/Group/{group_id}/$export")
def export_group(group_id: str, request: Request) -> Response:
    """Group-level export: the compartments of the Group's Patient members."""
    return _kick_off(request, "group", group_id)


async def _posted(request: Request, level: Level, group_id: str | None = None) -> Response:
    """A POST kick-off: parameters come in a ``Parameters`` body, never the query string."""
    if request.query_params:
        raise InvalidRequest(
            "a POST $export takes its parameters in a Parameters body, not the query string; "
            "move them into the body, or use GET",
            expression="Parameters",
        )
    params = kickoff_parameters(await request.body())
    return await run_in_threadpool(_kick_off, request, level, group_id, params)


@router.post("/$export")
async def export_system_post(request: Request) -> Response:
    """System-level export, parameters in a ``Parameters`` body."""
    return await _posted(request, "system")


@router.post("/Patient/$export")
async def export_patients_post(request: Request) -> Response:
    """Patient-level export, parameters in a ``Parameters`` body."""
    return await _posted(request, "patient")


@router.post("/Group/{group_id}/$export")
async def export_group_post(group_id: str, request: Request) -> Response:
    """Group-level export, parameters in a ``Parameters`` body."""
    return await _posted(request, "group", group_id)


@router.get("/$export-status/{job_id}")
def export_status(job_id: str, request: Request) -> Response:
    """https://hl7.org/fhir/uv/bulkdata/export.html#bulk-data-status-request"""
    job = _exports(request).status(job_id)
    if job.status in {"queued", "running"}:
        return Response(
            status_code=202,
            headers={"X-Progress": job.progress[:100], "Retry-After": str(RETRY_AFTER_S)},
        )
    if job.status == "failed":
        return FhirJsonResponse(
            {
                "resourceType": "OperationOutcome",
                "issue": [
                    {"severity": "error", "code": "exception", "diagnostics": job.error or ""}
                ],
            },
            status_code=500,
        )
    files = f"{_base(request)}/$export-file/{job.id}"
    manifest = job.manifest or {}

    def items(key: str) -> list[dict[str, Any]]:
        return [
            {"type": item["type"], "url": f"{files}/{item['name']}", "count": item["count"]}
            for item in manifest.get(key, [])
        ]

    body: dict[str, Any] = {
        "transactionTime": to_instant(job.transaction_time or job.created_at),
        "request": job.request_url,
        "requiresAccessToken": True,
        "output": items("output"),
        "error": items("error"),
    }
    if manifest.get("deleted"):
        body["deleted"] = items("deleted")
    headers = {"Expires": to_http_date(job.expires_at)} if job.expires_at else {}
    return OrjsonResponse(body, headers=headers)


@router.delete("/$export-status/{job_id}")
def export_cancel(job_id: str, request: Request) -> Response:
    """https://hl7.org/fhir/uv/bulkdata/export.html#bulk-data-delete-request"""
    _exports(request).cancel(job_id)
    return FhirJsonResponse(
        {
            "resourceType": "OperationOutcome",
            "issue": [
                {
                    "severity": "information",
                    "code": "informational",
                    "diagnostics": "export cancelled and its files removed",
                }
            ],
        },
        status_code=202,
    )


@router.get("/$export-file/{job_id}/{name}")
def export_file(job_id: str, name: str, request: Request) -> Response:
    """One output file, streamed from disk in chunks (never read into memory whole)."""
    path = _exports(request).file(job_id, name)
    return FileResponse(path, media_type=NDJSON)


@hookimpl
def register_routes(app: Any) -> None:
    """Mount the Bulk Data routes and run the export worker for the application's lifetime.

    pluggy calls later-registered plugins first, so these routes are matched before the
    generic ``/fhir/{type}/{id}`` ones.
    """
    app.include_router(router)
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(application: Any) -> AsyncIterator[Any]:
        async with inner(application) as state:
            settings: Settings = application.state.settings
            jobs = JobStore(
                application.state.engine,
                settings.resolved_bulk_export_dir,
                int(settings.bulk_export_expiry_hours * 3600 * 1_000_000),
            )
            worker = BulkWorker(
                application.state.store, jobs, file_limit=settings.bulk_export_file_limit
            )
            application.state.bulk_jobs = jobs
            application.state.bulk_worker = worker
            worker.start()
            try:
                yield state
            finally:
                await run_in_threadpool(worker.stop)

    app.router.lifespan_context = lifespan
