"""The audit trail at ``/fhir/AuditEvent``: read, vread and search; never a change.

https://hl7.org/fhir/R4/auditevent.html. AuditEvents are served from the audit trail
(:mod:`sharedcare.record.audit_search`, decision 0024), not from the record's resource
store, so these routes are mounted before the generic ``/fhir/{type}…`` routes of
:mod:`sharedcare.api.fhir`. Writes of AuditEvents fall through to those generic routes,
where the repository's gate refuses updates and deletes (405) and audits the attempt.
AuditEvents other systems send (``create``) are kept in the record's resource store; their
ids are never all digits, so a read or vread of one is answered from the store.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import orjson
from fastapi import Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from sharedcare.api import fhir as fhir_routes
from sharedcare.api.fhir import FHIR_JSON, RepositoryDep, base_url, strict_handling
from sharedcare.api.routing import GuardedRouter
from sharedcare.plugins import hookimpl
from sharedcare.record.audit import AuditEntry
from sharedcare.record.audit_search import (
    AUDIT_EVENT,
    AuditTrailReadOnly,
    TrailPage,
    is_trail_id,
    read_trail,
    search_trail,
)
from sharedcare.record.instants import to_http_date
from sharedcare.record.repository import Repository
from sharedcare.record.sqlstore import StoredResource

router = GuardedRouter(marker="AuditEvent", prefix="/fhir", tags=["FHIR audit trail"])


def _searchset(request: Request, page: TrailPage, url: str) -> Response:
    """The searchset Bundle of one page, with ``self``, ``first`` and ``next`` links that
    carry only the parameters applied."""
    used = page.query.used_query()

    def link(extra: list[tuple[str, str]]) -> str:
        return f"{url}?{urlencode(used + extra)}"

    cursor = request.query_params.get("_cursor")
    links = [{"relation": "self", "url": link([("_cursor", cursor)] if cursor else [])}]
    if cursor:
        links.append({"relation": "first", "url": link([])})
    if page.next_cursor:
        links.append({"relation": "next", "url": link([("_cursor", page.next_cursor)])})
    base = base_url(request)
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    if page.total is not None:
        bundle["total"] = page.total
    bundle["link"] = links
    bundle["entry"] = [
        {
            "fullUrl": f"{base}/{AUDIT_EVENT}/{event.id}",
            "resource": orjson.Fragment(event.content or b"{}"),
            "search": {"mode": "match"},
        }
        for event in page.events
    ]
    return Response(orjson.dumps(bundle), media_type=FHIR_JSON)


def _event_response(event: StoredResource) -> Response:
    headers = {"ETag": 'W/"1"', "Last-Modified": to_http_date(event.last_updated)}
    return Response(event.content, media_type=FHIR_JSON, headers=headers)


def _refused(repo: Repository, interaction: str, id: str | None = None) -> AuditTrailReadOnly:
    """The refusal of an interaction the trail does not offer, its attempt audited."""
    error = AuditTrailReadOnly(
        f"AuditEvent {interaction} is not offered: each event has one version, never "
        "changed; read it with GET /fhir/AuditEvent/{id} or search GET /fhir/AuditEvent"
    )
    error.headers = {"Allow": ""}
    repo.audit_failure(AuditEntry(interaction, "0", AUDIT_EVENT, id), error)
    return error


@router.get("/AuditEvent")
def search(request: Request, repo: RepositoryDep) -> Response:
    """Search the audit trail (https://hl7.org/fhir/R4/auditevent.html#search)."""
    params = list(request.query_params.multi_items())
    page = search_trail(repo, params, strict=strict_handling(request))
    return _searchset(request, page, str(request.url).split("?")[0])


@router.post("/AuditEvent/_search")
async def search_post(request: Request, repo: RepositoryDep) -> Response:
    """Search the audit trail via POST with form-encoded parameters."""
    form = await request.form()
    params = [(k, str(v)) for k, v in form.multi_items()]
    params += list(request.query_params.multi_items())
    page = await run_in_threadpool(search_trail, repo, params, strict=strict_handling(request))
    url = str(request.url).split("?")[0].removesuffix("/_search")
    return _searchset(request, page, url)


@router.get("/Patient/{id}/AuditEvent")
def compartment_search(id: str, request: Request, repo: RepositoryDep) -> Response:
    """The AuditEvents of one patient: the Patient compartment
    (https://hl7.org/fhir/R4/compartmentdefinition-patient.html), ``AuditEvent.patient``."""
    params = list(request.query_params.multi_items())
    page = search_trail(repo, params, strict=strict_handling(request), patient=id)
    return _searchset(request, page, str(request.url).split("?")[0])


@router.get("/AuditEvent/_history")
def type_history(repo: RepositoryDep) -> Response:
    """Not offered: the trail is searched by date instead."""
    raise _refused(repo, "history-type")


@router.get("/AuditEvent/{id}/_history")
def instance_history(id: str, request: Request, repo: RepositoryDep) -> Response:
    """Not offered for the trail: an event has one version (vread ``/_history/1``)."""
    if not is_trail_id(id):  # an AuditEvent another system sent: kept in the record
        return fhir_routes.instance_history(AUDIT_EVENT, id, request, repo)
    raise _refused(repo, "history-instance", id)


@router.get("/AuditEvent/{id}/_history/{vid}")
async def vread(id: str, vid: str, repo: RepositoryDep) -> Response:
    """vread: an event's one version, ``1``."""
    if not is_trail_id(id):
        return await fhir_routes.vread_response(repo, AUDIT_EVENT, id, vid)
    return _event_response(await run_in_threadpool(read_trail, repo, id, vid))


@router.get("/AuditEvent/{id}")
async def read(id: str, repo: RepositoryDep) -> Response:
    """read (https://hl7.org/fhir/R4/http.html#read) of one event of the trail, or of an
    AuditEvent another system sent (kept in the record)."""
    if not is_trail_id(id):
        return await fhir_routes.read_response(repo, AUDIT_EVENT, id)
    return _event_response(await run_in_threadpool(read_trail, repo, id))


@hookimpl
def register_routes(app: Any) -> None:
    """Mount the audit trail's routes (before the generic FHIR routes: see BUILTIN_PLUGINS)."""
    app.include_router(router)
