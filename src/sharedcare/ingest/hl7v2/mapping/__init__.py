"""HL7 v2 to FHIR R4, following the HL7 v2-to-FHIR mappings (hl7.org/fhir/uv/v2mappings).

Entry point: :func:`map_message`. Supported: ADT A01, A02, A03, A04, A08, A11, A13, A28,
A31 (Patient, Encounter with location history) and A40 (merge instructions for the identity
service); ORU^R01 (DiagnosticReport, Observations, Specimens; radiology adds the report text
and an ImagingStudy); ORM^O01 and OML^O21 (ServiceRequest). Resource ids are deterministic,
so a resend maps to the same resources. Field-by-field tables: docs/reference/hl7v2-mapping.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sharedcare.ingest.hl7v2.errors import ErrorCode, Hl7ParseError, Issue, MappingError, Severity
from sharedcare.ingest.hl7v2.mapping.adt import ADT_EVENTS, PatientMerge, map_adt
from sharedcare.ingest.hl7v2.mapping.context import MappingContext, Resource
from sharedcare.ingest.hl7v2.mapping.orders import map_order
from sharedcare.ingest.hl7v2.mapping.oru import map_oru
from sharedcare.ingest.hl7v2.parse import (
    MessageHeader,
    ParsedMessage,
    decode,
    parse_message,
    split_payload,
)

__all__ = [
    "SUPPORTED_MESSAGES",
    "MappedMessage",
    "MappingError",
    "PatientMerge",
    "map_message",
    "support_problem",
    "to_transaction_bundle",
]

SUPPORTED_MESSAGES: dict[str, frozenset[str]] = {
    "ADT": ADT_EVENTS,
    "ORU": frozenset({"R01"}),
    "ORM": frozenset({"O01"}),
    "OML": frozenset({"O21"}),
}
"""Message codes (MSH-9.1) and the trigger events (MSH-9.2) this mapping accepts."""


@dataclass(frozen=True, slots=True)
class MappedMessage:
    """The FHIR view of one HL7 v2 message.

    Attributes:
        header: The message's MSH.
        resources: FHIR R4 resources as JSON-ready dicts, each with a deterministic id.
        merges: Patient merges for the identity service (ADT^A40 only).
        issues: Warnings and notes (severity W or I); report them in the AA's ERR segments.
    """

    header: MessageHeader
    resources: list[Resource]
    merges: list[PatientMerge] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)

    def of_type(self, resource_type: str) -> list[Resource]:
        """The mapped resources of one type."""
        return [r for r in self.resources if r["resourceType"] == resource_type]


def support_problem(header: MessageHeader) -> Issue | None:
    """Say why this listener does not take a message type, or ``None`` if it does.

    Returns:
        An error issue with table 0357 code 200 (unsupported message type) or 201
        (unsupported event code), naming what is supported.
    """
    events = SUPPORTED_MESSAGES.get(header.message_code)
    if events is None:
        supported = ", ".join(sorted(SUPPORTED_MESSAGES))
        reason = (
            f"message type {header.message_code or '(empty)'} is not accepted here; "
            f"send one of {supported}"
        )
        if header.message_code == "ACK":
            reason = "ACK messages are acknowledgements and are not processed by this listener"
        return Issue(reason[:200], ErrorCode.UNSUPPORTED_MESSAGE_TYPE, "MSH", 1, 9, Severity.ERROR)
    if header.trigger_event not in events:
        reason = (
            f"{header.message_code} event {header.trigger_event or '(empty)'} is not "
            f"accepted here; supported events: {', '.join(sorted(events))}"
        )
        return Issue(reason[:200], ErrorCode.UNSUPPORTED_EVENT, "MSH", 1, 9, Severity.ERROR)
    return None


def map_message(message: ParsedMessage | bytes) -> MappedMessage:
    """Map one HL7 v2 message to FHIR R4 resources.

    Args:
        message: A :class:`ParsedMessage`, or the raw bytes of exactly one message (as
            given to a sink).

    Returns:
        The :class:`MappedMessage`.

    Raises:
        MappingError: If the message cannot be mapped (missing PID, OBR, identifiers...);
            the reason names the segment and field and never contains patient data.
        Hl7ParseError: If ``message`` is bytes that do not parse, or hold several messages.
    """
    parsed = _parsed(message) if isinstance(message, bytes) else message
    problem = support_problem(parsed.header)
    if problem is not None:
        raise MappingError(problem.reason, "MSH", 1, 9, problem.code)
    ctx = MappingContext(parsed)
    merges: list[PatientMerge] = []
    code = parsed.header.message_code
    if code == "ADT":
        merges = map_adt(ctx)
    elif code == "ORU":
        map_oru(ctx)
    else:
        map_order(ctx)
    z_segments = parsed.z_segments
    if z_segments:
        ctx.note(
            f"site-defined segments {', '.join(z_segments)} are kept in the raw message "
            "and not mapped to FHIR"
        )
    return MappedMessage(parsed.header, list(ctx.resources.values()), merges, list(ctx.issues))


def _parsed(raw: bytes) -> ParsedMessage:
    text, _ = decode(raw)
    payload = split_payload(text)
    if payload.error is not None:
        raise payload.error
    if len(payload.messages) != 1:
        raise Hl7ParseError(
            "map_message takes exactly one message; split batches first", ErrorCode.SEGMENT_SEQUENCE
        )
    return parse_message(payload.messages[0])


def to_transaction_bundle(mapped: MappedMessage) -> dict[str, Any]:
    """A FHIR transaction Bundle that PUTs every mapped resource at its deterministic id.

    PUT makes a resend idempotent: https://hl7.org/fhir/R4/http.html#transaction
    """
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{r['id']}",
                "resource": r,
                "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
            }
            for r in mapped.resources
        ],
    }
