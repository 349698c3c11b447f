"""Errors the record raises, each with its HTTP status and an OperationOutcome.

Messages name what is wrong (a path, a parameter, a resource type) and how to fix it,
never a patient's values. https://hl7.org/fhir/R4/http.html#Status-Codes
"""

from __future__ import annotations

from typing import Any

from sharedcare.fhir.validation import Issue, operation_outcome


class RecordError(Exception):
    """Base class: an interaction that cannot be completed as asked."""

    status = 400
    code = "processing"

    def __init__(self, message: str, *, expression: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.expression = expression

    def outcome(self) -> dict[str, Any]:
        """The OperationOutcome describing this error."""
        issue: dict[str, Any] = {
            "severity": "error",
            "code": self.code,
            "diagnostics": self.message,
        }
        if self.expression:
            issue["expression"] = [self.expression]
        return {"resourceType": "OperationOutcome", "issue": [issue]}


class InvalidResource(RecordError):
    """The resource fails validation; carries every issue found."""

    status = 400
    code = "invalid"

    def __init__(self, issues: list[Issue]) -> None:
        errors = [i for i in issues if i.severity in {"error", "fatal"}]
        first = errors[0] if errors else issues[0]
        super().__init__(f"{len(errors)} validation error(s); first at {first.location}")
        self.issues = issues

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.issues)


class InvalidRequest(RecordError):
    """The request is malformed (bad JSON, wrong type in the URL, bad parameter)."""

    status = 400
    code = "invalid"


class UnsupportedMediaType(InvalidRequest):
    """The body is in a format sharedcare does not accept."""

    status = 415
    code = "not-supported"


class UnknownResourceType(RecordError):
    """The URL names a type that is not an R4 resource."""

    status = 404
    code = "not-supported"


class NotFound(RecordError):
    """No such resource or version."""

    status = 404
    code = "not-found"


class Gone(RecordError):
    """The resource was deleted (https://hl7.org/fhir/R4/http.html#read)."""

    status = 410
    code = "deleted"


class VersionConflict(RecordError):
    """``If-Match`` named a version that is not the current one."""

    status = 412
    code = "conflict"


class PreconditionFailed(RecordError):
    """A conditional interaction's criteria matched more than one resource."""

    status = 412
    code = "multiple-matches"


class Conflict(RecordError):
    """The request conflicts with the record's state (e.g. id in body differs from URL)."""

    status = 409
    code = "conflict"


class ConcurrentUpdate(Conflict):
    """Another request changed the same resource between this one reading it and writing it.

    Nothing of this request was written; sending it again reads the new version first.
    """

    def __init__(self, message: str | None = None) -> None:
        super().__init__(
            message
            or "another request changed the same resource at the same time; nothing was "
            "written, so send the request again"
        )


class Forbidden(RecordError):
    """The access gate refused the interaction."""

    status = 403
    code = "forbidden"
