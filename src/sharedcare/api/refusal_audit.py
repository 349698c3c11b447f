"""The AuditEvent of a FHIR request refused before the record's gate audited it.

Every interaction that reaches the repository's gate is audited there, on success and on
failure (:mod:`sharedcare.record.gate`, decision 0015). Some requests are refused before
that: by routing (no route for the path, 404; a method no route takes, 405), by FastAPI's
validation of a declared parameter (400), by the FHIR API's own checks (a body that is not
JSON or not the resource the URL names, an unsupported content type 415, a bad ``_count``),
by the repository's checks that run before its gate (a type that is not an R4 resource,
404), by a client that disconnects while sending its request, or by an unexpected error
(500). The error handlers (:mod:`sharedcare.api.errors`, and the FHIR API's handler of
record errors) call :func:`audit_refusal` for each, so that these are audited too:

- only requests under ``/fhir``, and only errors the gate did not audit
  (:func:`~sharedcare.record.gate.was_audited`): nothing is audited twice;
- the interaction inferred from the method and the path (:func:`refused_entry`), outcome
  ``4`` (minor failure) for a 4xx, ``8`` (serious failure) for a 5xx, as the gate's own
  failure events (https://profiles.ihe.net/ITI/BALP/);
- the agent from the request's context, built as for the repository
  (:func:`sharedcare.api.fhir.request_context`);
- committed (through the API server's audit writer) before the error response goes out.

The event names the resource type, id and version from the path when they are a real R4
type and valid ids, as the event of any read does, but never a value from the query string,
the body or the headers: its ``outcomeDesc`` is fixed text, the error's class and the
names the application declares (``docs/decisions/0005-no-patient-data-in-logs.md``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from starlette._utils import get_route_path
from starlette.requests import Request

from sharedcare.api.routing import FHIR_PREFIX
from sharedcare.fhir.definitions import is_resource_type
from sharedcare.fhir.references import is_id
from sharedcare.record.audit import AuditEntry
from sharedcare.record.audit_writer import AuditUnavailable
from sharedcare.record.gate import was_audited

__all__ = ["audit_cancelled", "audit_refusal", "refused_entry", "under_fhir"]

log = logging.getLogger(__name__)

#: The interaction a method asks for when the path does not say more.
_BY_METHOD = {
    "GET": "read",
    "HEAD": "read",
    "POST": "create",
    "PUT": "update",
    "DELETE": "delete",
    "PATCH": "patch",
}


def under_fhir(request: Request) -> bool:
    """Whether the request is for the FHIR API (``/fhir`` or a path under it)."""
    path = get_route_path(request.scope)
    return path == FHIR_PREFIX or path.startswith(FHIR_PREFIX + "/")


def _interaction(method: str, segments: list[str]) -> str:
    """The FHIR restful interaction (https://hl7.org/fhir/R4/valueset-type-restful-interaction.html)
    a request for ``segments`` (the path below ``/fhir``) asks for."""
    by_method = _BY_METHOD.get(method, "operation")
    count = len(segments)
    if any(s.startswith("$") for s in segments):
        return "operation"
    if count == 0:
        return {"GET": "search-system", "POST": "batch"}.get(method, by_method)
    if segments == ["metadata"]:
        return "capabilities"
    if segments[0] in {"_history", "_search"}:
        return "history-system" if segments[0] == "_history" else "search-system"
    if count == 1:
        return "search-type" if method == "GET" else by_method
    if count == 2 and segments[1] in {"_history", "_search"}:
        return "history-type" if segments[1] == "_history" else "search-type"
    if count == 3 and segments[2] == "_history":
        return "history-instance"
    if count == 3 and segments[0] == "Patient" and method == "GET":
        return "search-compartment"
    if count == 4 and segments[2] == "_history":
        return "vread"
    return by_method


def refused_entry(method: str, path: str) -> AuditEntry:
    """The AuditEvent entry of a refused request for ``path`` (under ``/fhir``).

    The resource type is named only if it is an R4 resource type, the id and version only
    if they are valid ids: nothing else of the path is kept.
    """
    segments = [s for s in path[len(FHIR_PREFIX) :].split("/") if s]
    interaction = _interaction(method.upper(), segments)
    entry = AuditEntry(interaction, "4")
    if not segments or not is_resource_type(segments[0]):
        return entry
    rtype = segments[0]
    rid = segments[1] if len(segments) > 1 and is_id(segments[1]) else None
    if interaction == "search-compartment":
        if rid is not None:
            entry.patient = f"Patient/{rid}"
        if is_resource_type(segments[2]):
            entry.resource_type = segments[2]
        return entry
    entry.resource_type = rtype
    if interaction in {"search-type", "history-type"}:
        return entry
    entry.resource_id = rid
    if interaction == "vread" and segments[3].isdigit() and len(segments[3]) < 10:
        entry.version_id = int(segments[3])
    if rtype == "Patient" and rid is not None:
        entry.patient = f"Patient/{rid}"
    return entry


def validation_reason(errors: Sequence[Any]) -> str:
    """What a :class:`~fastapi.exceptions.RequestValidationError` refused, without values:
    where (a declared parameter's name, or ``body``) and pydantic's error type."""
    parts = []
    for error in errors:
        loc = [str(part) for part in error.get("loc", ())]
        where = ".".join(loc[:2]) if loc and loc[0] in {"query", "header", "path", "cookie"} else ""
        parts.append(f"{where or (loc[0] if loc else 'request')} ({error.get('type', 'invalid')})")
    return "invalid request: " + ", ".join(parts)


async def audit_refusal(request: Request, error: BaseException, status: int, reason: str) -> bool:
    """Store the failure AuditEvent of a request under ``/fhir`` that the gate did not audit.

    Args:
        request: The refused request.
        error: What refused it (an error the gate audited is not audited again).
        status: The HTTP status of the refusal.
        reason: Why, in fixed text: never a value from the request.

    Returns:
        ``False`` if the event could not be stored (the request must then not be answered
        but with a 500); ``True`` otherwise, including when there was nothing to audit.
    """
    if was_audited(error) or not under_fhir(request):
        return True
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return await _store(request, "4" if status < 500 else "8", f"{status} {phrase}: {reason}")


async def audit_cancelled(request: Request) -> None:
    """Store the failure AuditEvent of a request under ``/fhir`` whose task was cancelled
    (a server stopping cancels the requests it still has) while it awaited the database,
    before the gate audited it: the gate audits exceptions, and a cancellation is not one.
    Outcome ``8``; the request is not answered."""
    if under_fhir(request):
        await _store(request, "8", "cancelled before it completed; not answered")


async def _store(request: Request, outcome: str, description: str) -> bool:
    """Commit the AuditEvent of ``request``, inferred from its method and path."""
    writer = getattr(request.app.state, "audit_writer", None)
    if writer is None:  # an application without its lifespan serves no record
        return True
    from sharedcare.api.fhir import request_context  # the repository's own context

    entry = refused_entry(request.method, get_route_path(request.scope))
    entry.outcome = outcome
    entry.description = description
    try:
        await asyncio.wrap_future(writer.submit(request_context(request), [entry]))
    except AuditUnavailable:
        log.error("the AuditEvent of a refused %s was not stored", entry.interaction)
        return False
    return True
