"""Errors and issues raised while reading HL7 v2, with HL7 table 0357 codes.

Every reason names a position (segment, field) and says how to fix the problem; none
contains a value from the message, so they are safe to log and to send back in a NACK.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any

__all__ = ["ErrorCode", "Hl7ParseError", "Issue", "MappingError", "Severity"]


class ErrorCode(IntEnum):
    """HL7 table 0357 message error condition codes (used in ERR-3 and ERR-1.4)."""

    ACCEPTED = 0
    SEGMENT_SEQUENCE = 100
    REQUIRED_FIELD_MISSING = 101
    DATA_TYPE = 102
    TABLE_VALUE_NOT_FOUND = 103
    UNSUPPORTED_MESSAGE_TYPE = 200
    UNSUPPORTED_EVENT = 201
    UNSUPPORTED_PROCESSING_ID = 202
    UNSUPPORTED_VERSION = 203
    UNKNOWN_KEY = 204
    DUPLICATE_KEY = 205
    RECORD_LOCKED = 206
    INTERNAL_ERROR = 207

    @property
    def text(self) -> str:
        """The table 0357 display text."""
        return _CODE_TEXT[self]


_CODE_TEXT = {
    ErrorCode.ACCEPTED: "Message accepted",
    ErrorCode.SEGMENT_SEQUENCE: "Segment sequence error",
    ErrorCode.REQUIRED_FIELD_MISSING: "Required field missing",
    ErrorCode.DATA_TYPE: "Data type error",
    ErrorCode.TABLE_VALUE_NOT_FOUND: "Table value not found",
    ErrorCode.UNSUPPORTED_MESSAGE_TYPE: "Unsupported message type",
    ErrorCode.UNSUPPORTED_EVENT: "Unsupported event code",
    ErrorCode.UNSUPPORTED_PROCESSING_ID: "Unsupported processing id",
    ErrorCode.UNSUPPORTED_VERSION: "Unsupported version id",
    ErrorCode.UNKNOWN_KEY: "Unknown key identifier",
    ErrorCode.DUPLICATE_KEY: "Duplicate key identifier",
    ErrorCode.RECORD_LOCKED: "Application record locked",
    ErrorCode.INTERNAL_ERROR: "Application internal error",
}


class Severity(StrEnum):
    """HL7 table 0516 error severity (ERR-4)."""

    ERROR = "E"
    WARNING = "W"
    INFORMATION = "I"


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem found in a message, located by segment and field.

    Attributes:
        reason: What is wrong and how to fix it. Never contains message values.
        code: HL7 table 0357 code.
        segment: Segment id, e.g. ``PID``.
        sequence: 1-based position of that segment in the message (0 if unknown).
        field: Field number (0 if the whole segment).
        severity: Error, warning or information.
    """

    reason: str
    code: ErrorCode = ErrorCode.DATA_TYPE
    segment: str = ""
    sequence: int = 0
    field: int = 0
    severity: Severity = Severity.WARNING


class Hl7ParseError(Exception):
    """The bytes are not a usable HL7 v2 message; answered with an AR NACK.

    ``header`` is set (to a ``MessageHeader``) when MSH could be read but failed
    validation, so the NACK can still echo MSH-10 and address the sender.
    """

    header: Any = None

    def __init__(
        self,
        reason: str,
        code: ErrorCode = ErrorCode.SEGMENT_SEQUENCE,
        segment: str = "",
        sequence: int = 0,
        field: int = 0,
    ) -> None:
        super().__init__(reason)
        self.issue = Issue(reason, code, segment, sequence, field, Severity.ERROR)

    @property
    def reason(self) -> str:
        """The reason text (safe to log and send)."""
        return self.issue.reason


class MappingError(Exception):
    """The message is valid HL7 but cannot be mapped to FHIR; answered with an AE NACK."""

    def __init__(
        self,
        reason: str,
        segment: str = "",
        sequence: int = 0,
        field: int = 0,
        code: ErrorCode = ErrorCode.REQUIRED_FIELD_MISSING,
    ) -> None:
        super().__init__(reason)
        self.issue = Issue(reason, code, segment, sequence, field, Severity.ERROR)

    @property
    def reason(self) -> str:
        """The reason text (safe to log and send)."""
        return self.issue.reason
