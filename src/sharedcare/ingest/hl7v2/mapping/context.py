"""Shared state and identifiers for mapping one HL7 v2 message to FHIR R4.

Resource ids are deterministic (UUID v5) and derived from the sending facility plus the
business identifiers in the message, so a resend, or a later update about the same
patient, order or result, maps to the same resource ids.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import quote

from sharedcare.ingest.hl7v2.errors import ErrorCode, Issue, Severity
from sharedcare.ingest.hl7v2.fields import SegmentView
from sharedcare.ingest.hl7v2.parse import ParsedMessage

__all__ = ["ID_NAMESPACE", "MappingContext", "Resource"]

Resource = dict[str, Any]

ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:sharedcare:ingest:hl7v2")
"""Namespace for the UUID v5 resource ids."""

_URN = "urn:sharedcare:hl7v2"
_ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
_KNOWN_AUTHORITIES = {
    "ODS": _ODS,
    "ODSCODE": _ODS,
    "NHS ODS": _ODS,
    "2.16.840.1.113883.2.1.4.3": _ODS,
    "GMC": "https://fhir.hl7.org.uk/Id/gmc-number",
    "GMP": "https://fhir.hl7.org.uk/Id/gmp-number",
    "NMC": "https://fhir.hl7.org.uk/Id/nmc-number",
    "HCPC": "https://fhir.hl7.org.uk/Id/hcpc-number",
    "SDS": "https://fhir.nhs.uk/Id/sds-user-id",
}
"""Assigning authorities with a national FHIR identifier system (UK Core)."""


_NAMESPACE_BYTES = ID_NAMESPACE.bytes


@lru_cache(maxsize=16384)
def name_uuid(name: str) -> str:
    """``str(uuid.uuid5(ID_NAMESPACE, name))``, computed without building ``UUID`` objects.

    RFC 4122 section 4.3: the first 16 bytes of SHA-1(namespace + name), with the version
    (5) and variant bits set. Patients, wards and organisations recur in message after
    message, so their ids are remembered (the result depends on ``name`` alone).
    """
    digest = bytearray(
        hashlib.sha1(_NAMESPACE_BYTES + name.encode(), usedforsecurity=False).digest()[:16]
    )
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@lru_cache(maxsize=4096)
def _part(text: str) -> str:
    # Facilities and assigning authorities recur in every message: quoted once each.
    return quote(text, safe="") or "-"


@dataclass(slots=True)
class MappingContext:
    """Everything a mapper needs: the message, collected resources and warnings."""

    parsed: ParsedMessage
    resources: dict[tuple[str, str], Resource] = field(default_factory=dict)
    issues: list[Issue] = field(default_factory=list)

    @property
    def facility(self) -> str:
        """The sending facility (or application, when the facility is empty)."""
        h = self.parsed.header
        return h.sending_facility or h.sending_application

    def resource_id(self, resource_type: str, *parts: str) -> str:
        """Deterministic id for a resource identified by ``parts`` (already sender-scoped)."""
        return name_uuid("|".join([resource_type, *parts]))

    def local_system(self, kind: str, authority: str = "") -> str:
        """A URN naming a code or identifier system local to the sending facility."""
        base = f"{_URN}:{kind}:{_part(self.facility)}"
        return f"{base}:{_part(authority)}" if authority else base

    def add(self, resource: Resource) -> dict[str, str]:
        """Keep ``resource`` (a later one with the same id replaces it) and return a reference."""
        key = (resource["resourceType"], resource["id"])
        self.resources[key] = resource
        return {"reference": f"{key[0]}/{key[1]}"}

    def warn(
        self,
        segment: SegmentView | None,
        field_no: int,
        reason: str,
        code: ErrorCode = ErrorCode.DATA_TYPE,
    ) -> None:
        """Record a non-fatal problem (reported as an ERR warning in the AA)."""
        seg_id = segment.id if segment else ""
        seq = segment.index if segment else 0
        prefix = f"{seg_id}-{field_no}: " if segment and field_no else ""
        self.issues.append(Issue(prefix + reason, code, seg_id, seq, field_no, Severity.WARNING))

    def note(self, reason: str) -> None:
        """Record an informational note (severity I)."""
        self.issues.append(Issue(reason, ErrorCode.ACCEPTED, severity=Severity.INFORMATION))

    def identifier_system(
        self, namespace: str, universal: str = "", universal_type: str = "", kind: str = "id"
    ) -> str:
        """System URI for an identifier assigned by an authority (an HD: namespace,
        universal id, universal id type).

        National UK authorities (ODS, GMC, GMP, NMC, HCPC, SDS) give their UK Core system;
        an ISO OID universal id gives ``urn:oid:...``, a URI universal id is used as is;
        otherwise a URN scoped to the sending facility and the namespace id is used.
        """
        known = _KNOWN_AUTHORITIES.get(namespace.strip().upper()) or _KNOWN_AUTHORITIES.get(
            universal.strip()
        )
        if known:
            return known
        utype = universal_type.upper()
        if universal and utype == "ISO" and _is_oid(universal):
            return f"urn:oid:{universal}"
        if universal and utype in ("URI", "URL") and ":" in universal:
            return universal
        return self.local_system(kind, namespace or universal)


def _is_oid(text: str) -> bool:
    parts = text.split(".")
    return len(parts) > 1 and all(p.isdigit() for p in parts)
