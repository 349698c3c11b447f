"""Error responses: every error is specific, and none is a traceback.

Requests under ``/fhir`` get a FHIR OperationOutcome
(https://hl7.org/fhir/R4/operationoutcome.html); other API paths get the same shape,
so clients handle one format. Unexpected exceptions are logged by type with an
incident id (never their arguments, which may hold patient data) and answered with
a 500 OperationOutcome naming that id.

A request under ``/fhir`` refused here, before the record's gate audited it, gets its
failure AuditEvent committed before the response goes out (:func:`answer_refusal`,
:mod:`sharedcare.api.refusal_audit`); if that event cannot be stored, the answer is a 500.
"""

from __future__ import annotations

import logging
import uuid
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from sharedcare.api.refusal_audit import audit_refusal, validation_reason
from sharedcare.api.responses import FhirJsonResponse

log = logging.getLogger(__name__)

_ISSUE_CODE_BY_STATUS = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    409: "conflict",
    410: "deleted",
    412: "conflict",
    415: "not-supported",
    422: "processing",
    429: "throttled",
}


def operation_outcome(
    status: int, diagnostics: str, *, code: str | None = None, expression: list[str] | None = None
) -> dict[str, Any]:
    """A single-issue OperationOutcome for an HTTP error."""
    issue: dict[str, Any] = {
        "severity": "error" if status < 500 else "fatal",
        "code": code or _ISSUE_CODE_BY_STATUS.get(status, "exception"),
        "diagnostics": diagnostics,
    }
    if expression:
        issue["expression"] = expression
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def outcome_response(status: int, outcome: dict[str, Any]) -> Response:
    """A FHIR JSON response carrying ``outcome``."""
    return FhirJsonResponse(outcome, status_code=status)


async def answer_refusal(
    request: Request, exc: BaseException, status: int, reason: str, response: Response
) -> Response:
    """``response``, once the refusal's AuditEvent is committed (a request under ``/fhir``
    the record's gate did not audit); a 500 if it cannot be stored (decision 0015).

    Args:
        request: The refused request.
        exc: What refused it.
        status: The refusal's HTTP status.
        reason: Why, for the AuditEvent: fixed text, never a value from the request.
        response: The refusal's response.
    """
    if await audit_refusal(request, exc, status, reason):
        return response
    return outcome_response(
        500,
        operation_outcome(
            500,
            "The audit trail could not be stored, so the request was not answered; "
            "try again later.",
        ),
    )


_ROUTING_REASONS = {404: "no route serves this path", 405: "no route takes this method"}


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(status).phrase
    routing = status in _ROUTING_REASONS and detail == HTTPStatus(status).phrase
    if status == 404 and detail == "Not Found":
        detail = "No such page or endpoint; see /docs for the API"
    response = outcome_response(status, operation_outcome(status, detail))
    for key, value in (exc.headers or {}).items():
        response.headers[key] = value
    reason = _ROUTING_REASONS[status] if routing else type(exc).__name__
    return await answer_refusal(request, exc, status, reason, response)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    issues = []
    for error in exc.errors():
        location = ".".join(str(part) for part in error.get("loc", ()))
        # error["msg"] describes the rule broken; error["input"] (the value) is never echoed.
        issues.append(
            {
                "severity": "error",
                "code": "invalid",
                "diagnostics": f"{location}: {error.get('msg', 'invalid value')}",
                "expression": [location],
            }
        )
    response = outcome_response(400, {"resourceType": "OperationOutcome", "issue": issues})
    return await answer_refusal(request, exc, 400, validation_reason(exc.errors()), response)


async def _client_gone(request: Request, exc: Exception) -> Response:
    """The client disconnected before it sent its whole request: nothing was done, and the
    answer goes nowhere; a request under ``/fhir`` is audited as a minor failure."""
    reason = "the client disconnected before it sent the whole request"
    response = outcome_response(400, operation_outcome(400, reason, code="incomplete"))
    return await answer_refusal(request, exc, 400, reason, response)


async def _unexpected(request: Request, exc: Exception) -> Response:
    incident = uuid.uuid4().hex[:12]
    log.error(
        "unhandled %s on %s %s (incident %s)",
        type(exc).__name__,
        request.method,
        getattr(request.scope.get("route"), "path", "unrouted"),
        incident,
    )
    response = outcome_response(
        500,
        operation_outcome(
            500,
            f"Internal error (incident {incident}); the request was not completed. "
            "Report the incident id to the service team.",
        ),
    )
    reason = f"internal error {type(exc).__name__} (incident {incident})"
    return await answer_refusal(request, exc, 500, reason, response)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers on ``app``."""
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ClientDisconnect, _client_gone)
    app.add_exception_handler(Exception, _unexpected)
