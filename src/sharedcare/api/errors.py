"""Error responses: every error is specific, and none is a traceback.

Requests under ``/fhir`` get a FHIR OperationOutcome
(https://hl7.org/fhir/R4/operationoutcome.html); other API paths get the same shape,
so clients handle one format. Unexpected exceptions are logged by type with an
incident id (never their arguments, which may hold patient data) and answered with
a 500 OperationOutcome naming that id.
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


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    if exc.status_code == 404 and detail == "Not Found":
        detail = "No such page or endpoint; see /docs for the API"
    response = outcome_response(exc.status_code, operation_outcome(exc.status_code, detail))
    for key, value in (exc.headers or {}).items():
        response.headers[key] = value
    return response


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
    return outcome_response(400, {"resourceType": "OperationOutcome", "issue": issues})


async def _unexpected(request: Request, exc: Exception) -> Response:
    incident = uuid.uuid4().hex[:12]
    log.error(
        "unhandled %s on %s %s (incident %s)",
        type(exc).__name__,
        request.method,
        getattr(request.scope.get("route"), "path", "unrouted"),
        incident,
    )
    return outcome_response(
        500,
        operation_outcome(
            500,
            f"Internal error (incident {incident}); the request was not completed. "
            "Report the incident id to the service team.",
        ),
    )


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers on ``app``."""
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)
