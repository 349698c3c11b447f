"""The FHIR R4 REST API at ``/fhir`` (https://hl7.org/fhir/R4/http.html).

Delivery only: each handler parses the HTTP request, calls the per-request
:class:`~sharedcare.record.repository.Repository`, and renders the result. Resources go out
as the JSON bytes the store holds, spliced into bundles without being re-encoded.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any, TypeVar
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import Response
from sqlalchemy.util import greenlet_spawn
from starlette.concurrency import run_in_threadpool

from sharedcare.api.direct_writes import direct_write
from sharedcare.api.errors import answer_refusal
from sharedcare.api.refusal_audit import audit_cancelled
from sharedcare.api.responses import FhirJsonResponse
from sharedcare.api.routing import direct
from sharedcare.fhir.validation import operation_outcome
from sharedcare.plugins import hookimpl
from sharedcare.record.bundles import process_bundle
from sharedcare.record.capability import capability_statement
from sharedcare.record.context import RequestContext
from sharedcare.record.errors import InvalidRequest, RecordError, UnsupportedMediaType
from sharedcare.record.instants import to_http_date, to_instant
from sharedcare.record.repository import Repository, SearchPage
from sharedcare.record.sqlstore import StoredResource

FHIR_JSON = "application/fhir+json"
T = TypeVar("T")
router = APIRouter(prefix="/fhir", tags=["FHIR"])


def request_context(request: Request) -> RequestContext:
    """Build the caller's context from the request.

    Until the access issue adds authentication, callers say who they are in headers:
    ``X-Sharedcare-User``, ``-Organisation``, ``-Role``, ``-Purpose`` and ``-Feed``.
    """
    headers = request.headers
    client = request.client.host if request.client else "unknown"
    return RequestContext(
        user=headers.get("x-sharedcare-user", "anonymous")[:200],
        organisation=headers.get("x-sharedcare-organisation"),
        role=headers.get("x-sharedcare-role", "clinician"),
        purpose=headers.get("x-sharedcare-purpose", "TREAT"),
        source=client,
        request_id=headers.get("x-request-id", ""),
        feed=headers.get("x-sharedcare-feed"),
    )


def repository(request: Request) -> Repository:
    """One repository per request, built from the caller's identity."""
    state = request.app.state
    return Repository(state.store, request_context(request), state.audit_writer)


async def _repository_dependency(request: Request) -> Repository:
    # ``async`` so that FastAPI builds the repository on the event loop: a plain ``def``
    # dependency costs every request a trip through the worker-thread pool.
    return repository(request)


RepositoryDep = Annotated[Repository, Depends(_repository_dependency)]


async def _read_on_loop(repo: Repository, work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a read of one resource on the event loop, then await its AuditEvent.

    A read by id is one indexed ``SELECT`` that never waits on a lock (PostgreSQL readers
    and SQLite WAL readers do not block), so running it here rather than in the
    worker-thread pool saves the thread switches. Writes stay in the pool: they may wait
    for a lock (another transaction, SQLite's busy timeout) and must not stall the loop.
    The AuditEvent is awaited before the response (or error) goes out, whatever happens.
    """
    repo.defer_audit = True
    try:
        return work(*args, **kwargs)
    finally:
        pending, repo.pending_audits = repo.pending_audits, []
        for future in pending:
            await asyncio.wrap_future(future)


async def _in_write_thread(
    request: Request, work: Callable[..., T], *args: Any, **kwargs: Any
) -> T:
    """Run a write in one of the API server's write threads and await its result.

    A write may wait for a lock (a row's ``FOR UPDATE``, SQLite's write gate, the identity
    transaction), so it must not run on the event loop. A plain
    :class:`~concurrent.futures.ThreadPoolExecutor` (``app.state.write_pool``, made at the
    first write: as many threads as the engine's pool holds connections, ``pool_size`` and
    as many more) costs less per hop than anyio's worker threads, which
    ``run_in_threadpool`` uses (capacity limiter, cancel scope, a future of its own:
    ``docs/decisions/0030-crud-request-path.md``). The caller's context variables go with
    the work, as with ``run_in_threadpool``.
    """
    state = request.app.state
    pool: ThreadPoolExecutor | None = getattr(state, "write_pool", None)
    if pool is None:
        settings = getattr(state, "settings", None)
        size = 2 * settings.db_pool_size if settings is not None else 20
        pool = state.write_pool = ThreadPoolExecutor(size, thread_name_prefix="sharedcare-write")
    call = functools.partial(contextvars.copy_context().run, work, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(pool, call)


async def _run_search(
    request: Request, rtype: str, params: list[tuple[str, str]], **kwargs: Any
) -> Response:
    """Run a search and render its Bundle, then await its AuditEvent.

    On PostgreSQL the search runs on the event loop, in a greenlet, over the API server's
    asyncio engine (:mod:`sharedcare.api.search_engine`): its statements are awaited, so
    the loop serves other requests while PostgreSQL works, and no thread is woken. On
    SQLite (no asyncio driver) it runs in one of the API server's search threads
    (``app.state.search_pool``, a plain :class:`~concurrent.futures.ThreadPoolExecutor`:
    anyio's, which FastAPI uses for a ``def`` endpoint, costs more per hop). The AuditEvent
    is queued by the search and awaited here: it is committed before the response (or
    error) goes out, whatever happens (``docs/decisions/0026-search-request-path.md``).
    """
    repo = repository(request)
    repo.defer_audit = True
    state = request.app.state
    pool = getattr(state, "search_pool", None)
    searches = getattr(state, "search_engine", None)
    try:
        if searches is not None:
            repo.reader = searches.sync_engine
            try:
                return await greenlet_spawn(_search, request, repo, rtype, params, **kwargs)
            except asyncio.CancelledError:  # while awaiting PostgreSQL: not an error to the gate
                if not repo.pending_audits:
                    await audit_cancelled(request)
                raise
        if pool is None:  # an application without its lifespan (some tests)
            return await run_in_threadpool(_search, request, repo, rtype, params, **kwargs)
        work = functools.partial(_search, request, repo, rtype, params, **kwargs)
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(pool, context.run, work)
    finally:
        pending, repo.pending_audits = repo.pending_audits, []
        for future in pending:
            await asyncio.wrap_future(future)


_bases: dict[tuple[Any, ...], str] = {}


def base_url(request: Request) -> str:
    """The FHIR base URL the client used (``http://host:port/fhir``).

    Starlette builds ``request.base_url`` by parsing a URL on every call (6% of a create's
    time on the event loop); the result depends only on the scheme, the ``Host`` header,
    the root path and the server address, so it is kept per combination (a few hundred at
    most, so that arbitrary ``Host`` headers cannot grow it without bound).
    """
    scope = request.scope
    key = (
        scope.get("scheme"),
        request.headers.get("host"),
        scope.get("root_path", ""),
        tuple(scope.get("server") or ()),
    )
    base = _bases.get(key)
    if base is None:
        base = str(request.base_url).rstrip("/") + "/fhir"
        if len(_bases) < 256:
            _bases[key] = base
    return base


def _page_url(request: Request, base: str) -> str:
    """``request.url`` without its query string, built on :func:`base_url` (Starlette's
    ``request.url`` parses the whole URL again on every request)."""
    scope = request.scope
    root = str(scope.get("app_root_path", scope.get("root_path", ""))).rstrip("/")
    origin = base[: len(base) - len(root) - len("/fhir")]
    path = str(scope["path"]).replace("?", "%3F").replace("#", "%23").replace("\\", "%5C")
    return origin + path


def _resource_response(
    stored: StoredResource, status: int = 200, *, location: str | None = None
) -> Response:
    headers = {
        "ETag": f'W/"{stored.version_id}"',
        "Last-Modified": to_http_date(stored.last_updated),
    }
    if location:
        headers["Location"] = location
    return Response(stored.content, status_code=status, media_type=FHIR_JSON, headers=headers)


async def _body(request: Request) -> Any:
    content_type = request.headers.get("content-type", FHIR_JSON).split(";")[0].strip()
    if content_type not in {FHIR_JSON, "application/json", "application/json+fhir", ""}:
        raise UnsupportedMediaType(
            f"content type {content_type} is not supported; send application/fhir+json"
        )
    raw = await request.body()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise InvalidRequest(
            f"the body is not valid JSON (at character {error.pos}); send a FHIR JSON resource"
        ) from None


def _bundle(
    kind: str,
    entries: list[dict[str, Any]],
    *,
    total: int | None,
    links: list[tuple[str, str]],
) -> Response:
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": kind}
    if total is not None:
        bundle["total"] = total
    bundle["link"] = [{"relation": r, "url": u} for r, u in links]
    bundle["entry"] = entries
    return Response(orjson.dumps(bundle), media_type=FHIR_JSON)


def _entry(base: str, stored: StoredResource, mode: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"fullUrl": f"{base}/{stored.resource_type}/{stored.id}"}
    if stored.content is not None:
        entry["resource"] = orjson.Fragment(stored.content)
    if mode:
        entry["search"] = {"mode": mode}
    return entry


def _history_entry(base: str, stored: StoredResource) -> dict[str, Any]:
    entry = _entry(base, stored)
    if stored.deleted:
        method, status = "DELETE", "204 No Content"
    elif stored.version_id == 1:
        method, status = "POST", "201 Created"
    else:
        method, status = "PUT", "200 OK"
    url = f"{stored.resource_type}" + (f"/{stored.id}" if method != "POST" else "")
    entry["request"] = {"method": method, "url": url}
    entry["response"] = {
        "status": status,
        "etag": f'W/"{stored.version_id}"',
        "lastModified": to_instant(stored.last_updated),
    }
    return entry


_PAGING_PARAMS = frozenset({"_count", "_cursor", "_offset"})


def _keyset_links(
    url: str,
    query: list[tuple[str, str]],
    count: int,
    cursor: str | None,
    offset: int,
    next_cursor: str | None,
    previous_cursor: str | None,
) -> list[tuple[str, str]]:
    """A page's links (history, ``$everything``): ``self``, ``first``, and keyset
    ``previous`` / ``next``.

    ``query`` is the request's parameters without ``_count``, ``_cursor`` and ``_offset``.
    """

    def link(extra: list[tuple[str, str]]) -> str:
        return f"{url}?{urlencode([*query, ('_count', str(count)), *extra])}"

    current = [("_cursor", cursor)] if cursor else [("_offset", str(offset))] if offset else []
    links = [("self", link(current))]
    if current:
        links.append(("first", link([])))
    if previous_cursor:
        links.append(("previous", link([("_cursor", previous_cursor)])))
    if next_cursor:
        links.append(("next", link([("_cursor", next_cursor)])))
    return links


def _int_param(request: Request, name: str, default: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidRequest(f"{name} must be a whole number", expression=name) from None
    if not 0 <= value <= high:
        raise InvalidRequest(f"{name} must be between 0 and {high}", expression=name)
    return value


# -- whole system -----------------------------------------------------------------------


@router.get("/metadata")
def metadata(request: Request) -> Response:
    """The CapabilityStatement (https://hl7.org/fhir/R4/http.html#capabilities)."""
    return FhirJsonResponse(capability_statement(base_url(request)))


@router.post("")
async def bundle(request: Request, repo: RepositoryDep) -> Response:
    """Batch or transaction (https://hl7.org/fhir/R4/http.html#transaction)."""
    body = await _body(request)
    result = await run_in_threadpool(process_bundle, repo, body)
    return FhirJsonResponse(result)


@router.get("/_history")
def system_history(request: Request, repo: RepositoryDep) -> Response:
    """System history (https://hl7.org/fhir/R4/http.html#history)."""
    return _history(request, repo, None, None)


def _history(request: Request, repo: Repository, rtype: str | None, id: str | None) -> Response:
    """A history Bundle (https://hl7.org/fhir/R4/http.html#history), newest first.

    ``_since`` and ``_count`` as R4 defines them; ``_summary=count`` (or ``_count=0``)
    gives the total alone. ``next`` and ``previous`` links carry a keyset ``_cursor``, so
    versions written while a client follows them never shift its pages (``_offset`` is
    still accepted, as for search; links never use it). ``_at`` and ``_list`` are refused.
    """
    query = request.query_params
    for name in ("_at", "_list"):
        if name in query:
            raise InvalidRequest(
                f"{name} is not supported for history; use _since and _count", expression=name
            )
    count = _int_param(request, "_count", 50, 1000)
    summary = query.get("_summary")
    if summary is not None:
        if summary != "count":
            raise InvalidRequest("history takes only _summary=count", expression="_summary")
        count = 0
    offset = _int_param(request, "_offset", 0, 10_000_000)
    cursor = query.get("_cursor")
    page = repo.history(
        rtype, id, since=query.get("_since"), count=count, cursor=cursor, offset=offset
    )
    base = base_url(request)
    url = _page_url(request, base)
    kept = [(k, v) for k, v in query.multi_items() if k not in _PAGING_PARAMS]
    links = _keyset_links(url, kept, count, cursor, offset, page.next_cursor, page.previous_cursor)
    entries = [_history_entry(base, v) for v in page.versions]
    return _bundle("history", entries, total=page.total, links=links)


# -- type level -------------------------------------------------------------------------


@router.get("/{rtype}/_history")
def type_history(rtype: str, request: Request, repo: RepositoryDep) -> Response:
    """Type history."""
    return _history(request, repo, rtype, None)


@router.post("/{rtype}/$validate")
async def validate_type(rtype: str, request: Request, repo: RepositoryDep) -> Response:
    """``$validate`` (https://hl7.org/fhir/R4/resource-operation-validate.html)."""
    body = await _body(request)
    if isinstance(body, dict) and body.get("resourceType") == "Parameters":
        body = next(
            (p.get("resource") for p in body.get("parameter", []) if p.get("name") == "resource"),
            None,
        )
    if not isinstance(body, dict):
        raise InvalidRequest("$validate takes a resource, or Parameters with a resource")
    instance = request.path_params.get("id")
    issues = await _read_on_loop(repo, repo.validate_only, rtype, body, instance)
    outcome = operation_outcome(issues)
    if not outcome.get("issue"):
        outcome["issue"] = [
            {"severity": "information", "code": "informational", "diagnostics": "No issues"}
        ]
    return FhirJsonResponse(outcome)


@router.post("/{rtype}/_search")
async def search_post(rtype: str, request: Request) -> Response:
    """Search via POST with form-encoded parameters."""
    form = await request.form()
    params = [(k, str(v)) for k, v in form.multi_items()]
    params += list(request.query_params.multi_items())
    return await _run_search(request, rtype, params)


def strict_handling(request: Request) -> bool:
    """``Prefer: handling=strict`` (https://hl7.org/fhir/R4/search.html#errors)."""
    prefer = request.headers.get("prefer", "")
    return "handling=strict" in prefer.replace(" ", "")


def _search(
    request: Request,
    repo: Repository,
    rtype: str,
    params: list[tuple[str, str]],
    compartment: tuple[str, str] | None = None,
) -> Response:
    """Run a search and render the searchset (https://hl7.org/fhir/R4/search.html).

    Links carry only the parameters that were applied (the rest were ignored under lenient
    handling); ``next`` and ``previous`` carry a keyset ``_cursor``.
    """
    page: SearchPage = repo.search(
        rtype, params, strict=strict_handling(request), compartment=compartment
    )
    base = base_url(request)
    url = _page_url(request, base).removesuffix("/_search")
    used = page.request.used_query()

    def link(extra: list[tuple[str, str]]) -> str:
        return f"{url}?{urlencode(used + extra)}"

    current: list[tuple[str, str]] = []
    if page.request.cursor:
        current = [("_cursor", page.request.cursor)]
    elif page.request.offset:
        current = [("_offset", str(page.request.offset))]
    links = [("self", link(current))]
    if current:
        links.append(("first", link([])))
    if page.previous_cursor:
        links.append(("previous", link([("_cursor", page.previous_cursor)])))
    if page.next_cursor:
        links.append(("next", link([("_cursor", page.next_cursor)])))
    entries = [_entry(base, s, "match") for s in page.matches]
    entries += [_entry(base, s, "include") for s in page.included]
    return _bundle("searchset", entries, total=page.total, links=links)


@router.get("/{rtype}")
@direct
async def search(rtype: str, request: Request) -> Response:
    """Search (https://hl7.org/fhir/R4/http.html#search)."""
    return await _run_search(request, rtype, list(request.query_params.multi_items()))


async def _create(
    request: Request, repo: Repository, rtype: str, if_none_exist: str | None
) -> Response:
    body = await _body(request)
    if not isinstance(body, dict) or body.get("resourceType") != rtype:
        raise InvalidRequest(f"the body must be a {rtype} resource", expression="resourceType")
    outcome = await _in_write_thread(request, repo.create, body, if_none_exist=if_none_exist)
    stored = outcome.stored
    location = f"{base_url(request)}/{rtype}/{stored.id}/_history/{stored.version_id}"
    return _resource_response(stored, 201 if outcome.created else 200, location=location)


async def _create_direct(rtype: str, request: Request) -> Response:
    return await _create(request, repository(request), rtype, request.headers.get("if-none-exist"))


@router.post("/{rtype}")
@direct_write(_create_direct)
async def create(
    rtype: str,
    request: Request,
    repo: RepositoryDep,
    if_none_exist: Annotated[str | None, Header()] = None,
) -> Response:
    """Create, or conditional create with ``If-None-Exist``."""
    return await _create(request, repo, rtype, if_none_exist)


@router.put("/{rtype}")
async def conditional_update(rtype: str, request: Request, repo: RepositoryDep) -> Response:
    """Conditional update (https://hl7.org/fhir/R4/http.html#cond-update)."""
    body = await _body(request)
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a FHIR resource")
    criteria = request.url.query
    outcome = await run_in_threadpool(repo.conditional_update, rtype, criteria, body)
    stored = outcome.stored
    location = f"{base_url(request)}/{rtype}/{stored.id}/_history/{stored.version_id}"
    return _resource_response(stored, 201 if outcome.created else 200, location=location)


@router.delete("/{rtype}")
def conditional_delete(rtype: str, request: Request, repo: RepositoryDep) -> Response:
    """Conditional delete (https://hl7.org/fhir/R4/http.html#cdelete)."""
    repo.conditional_delete(rtype, request.url.query)
    return Response(status_code=204)


# -- instance level ---------------------------------------------------------------------


@router.get("/Patient/{id}/$everything")
def everything(id: str, request: Request, repo: RepositoryDep) -> Response:
    """``Patient/{id}/$everything`` with ``_since``, ``_type``, ``_count`` and paging."""
    query = request.query_params
    count = _int_param(request, "_count", 100, 1000)
    offset = _int_param(request, "_offset", 0, 10_000_000)
    types_param = query.get("_type")
    types = [t for t in types_param.split(",") if t] if types_param else None
    cursor = query.get("_cursor")
    page = repo.everything(
        id, since=query.get("_since"), types=types, count=count, offset=offset, cursor=cursor
    )
    base = base_url(request)
    url = _page_url(request, base)
    kept = [(k, v) for k, v in query.multi_items() if k not in _PAGING_PARAMS]
    links = _keyset_links(url, kept, count, cursor, offset, page.next_cursor, page.previous_cursor)
    entries = [_entry(base, s, "match") for s in page.resources]
    return _bundle("searchset", entries, total=page.total, links=links)


@router.get("/{rtype}/{id}/_history/{vid}")
@direct
async def vread(rtype: str, id: str, vid: str, request: Request) -> Response:
    """vread (https://hl7.org/fhir/R4/http.html#vread)."""
    return await vread_response(repository(request), rtype, id, vid)


async def vread_response(repo: Repository, rtype: str, id: str, vid: str) -> Response:
    """A vread's response (also for AuditEvents kept in the record, ``api.audit``)."""
    return _resource_response(await _read_on_loop(repo, repo.vread, rtype, id, vid))


@router.get("/{rtype}/{id}/_history")
def instance_history(rtype: str, id: str, request: Request, repo: RepositoryDep) -> Response:
    """Instance history."""
    return _history(request, repo, rtype, id)


@router.post("/{rtype}/{id}/$validate")
async def validate_instance(rtype: str, id: str, request: Request, repo: RepositoryDep) -> Response:
    """``$validate`` against an instance."""
    return await validate_type(rtype, request, repo)


@router.get("/Patient/{id}/{rtype}")
@direct
async def compartment_search(id: str, rtype: str, request: Request) -> Response:
    """Patient compartment search (https://hl7.org/fhir/R4/compartmentdefinition-patient.html)."""
    params = list(request.query_params.multi_items())
    return await _run_search(request, rtype, params, compartment=("Patient", id))


@router.get("/{rtype}/{id}")
@direct
async def read(rtype: str, id: str, request: Request) -> Response:
    """read (https://hl7.org/fhir/R4/http.html#read)."""
    return await read_response(repository(request), rtype, id)


async def read_response(repo: Repository, rtype: str, id: str) -> Response:
    """A read's response (also for AuditEvents kept in the record, ``api.audit``)."""
    return _resource_response(await _read_on_loop(repo, repo.read, rtype, id))


async def _update(
    request: Request, repo: Repository, rtype: str, id: str, if_match: str | None
) -> Response:
    body = await _body(request)
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a FHIR resource")
    outcome = await _in_write_thread(request, repo.update, rtype, id, body, if_match=if_match)
    stored = outcome.stored
    location = f"{base_url(request)}/{rtype}/{stored.id}/_history/{stored.version_id}"
    return _resource_response(stored, 201 if outcome.created else 200, location=location)


async def _update_direct(rtype: str, id: str, request: Request) -> Response:
    return await _update(request, repository(request), rtype, id, request.headers.get("if-match"))


@router.put("/{rtype}/{id}")
@direct_write(_update_direct)
async def update(
    rtype: str,
    id: str,
    request: Request,
    repo: RepositoryDep,
    if_match: Annotated[str | None, Header()] = None,
) -> Response:
    """update, including update-as-create, with ``If-Match`` locking."""
    return await _update(request, repo, rtype, id, if_match)


async def _delete(
    request: Request, repo: Repository, rtype: str, id: str, if_match: str | None
) -> Response:
    handled, stored = False, None
    if if_match is None:
        handled, stored = await _read_on_loop(repo, repo.delete_if_absent, rtype, id)
    if not handled:
        repo.defer_audit = False
        stored = await _in_write_thread(request, repo.delete, rtype, id, if_match=if_match)
    headers = {"ETag": f'W/"{stored.version_id}"'} if stored else {}
    return Response(status_code=204, headers=headers)


async def _delete_direct(rtype: str, id: str, request: Request) -> Response:
    return await _delete(request, repository(request), rtype, id, request.headers.get("if-match"))


@router.delete("/{rtype}/{id}")
@direct_write(_delete_direct)
async def delete(
    rtype: str,
    id: str,
    request: Request,
    repo: RepositoryDep,
    if_match: Annotated[str | None, Header()] = None,
) -> Response:
    """delete (https://hl7.org/fhir/R4/http.html#delete), with ``If-Match`` locking.

    Deleting what does not exist (or is already deleted) writes nothing but its AuditEvent:
    that check is a read, made on the event loop like a read by id; a deletion to write goes
    to a worker thread like every write (and so does any delete with ``If-Match``).
    """
    return await _delete(request, repo, rtype, id, if_match)


async def _record_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RecordError)
    headers = getattr(exc, "headers", None)  # a 405's Allow
    response = FhirJsonResponse(exc.outcome(), status_code=exc.status, headers=headers)
    # Refused before the gate (a body that is not JSON, a type that is not R4...): audited here.
    return await answer_refusal(request, exc, exc.status, type(exc).__name__, response)


@hookimpl
def register_routes(app: Any) -> None:
    """Mount the FHIR API and its error handler; give the app its SQL store."""
    app.include_router(router)
    app.add_exception_handler(RecordError, _record_error)
