"""Small values shared by the repository's interactions: ids, outcomes, ETags, and the
patient a resource is about (for its AuditEvent)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from sharedcare.fhir.definitions import is_resource_type
from sharedcare.record.errors import InvalidRequest
from sharedcare.record.sqlstore import PendingWrite, StoredResource

__all__ = [
    "Outcome",
    "etag_version",
    "new_id",
    "patient_of",
    "patient_of_json",
    "same_content",
    "stored_of",
    "type_of",
]


#: Crockford's base-32 digits in ASCII order (no i, l, o, u), so ids sort as they were made.
_ID_DIGITS = "0123456789abcdefghjkmnpqrstvwxyz"
_ID_PAIRS = [a + b for a in _ID_DIGITS for b in _ID_DIGITS]  # ten bits at a time


def new_id() -> str:
    """A new server-assigned id: 26 characters, time-ordered, in the ULID layout.

    48 bits of milliseconds since 1970 then 80 random bits (``os.urandom``), written as 26
    lower-case Crockford base-32 digits (https://github.com/ulid/spec). A valid FHIR id
    (https://hl7.org/fhir/R4/datatypes.html#id). Time order keeps new rows at the right-hand
    end of the key index; ten characters fewer than a UUID's text in the id column, its
    index, the JSON, and every reference to the resource
    (``docs/decisions/0011-record-footprint.md``, addendum of 2026-11-22, session 10).
    """
    value = (time.time_ns() // 1_000_000 & (2**48 - 1)) << 80
    value |= int.from_bytes(os.urandom(10), "big")
    pairs = _ID_PAIRS
    return "".join([pairs[(value >> shift) & 1023] for shift in range(120, -1, -10)])


@dataclass(slots=True)
class Outcome:
    """The result of a write: the stored version and whether it was created."""

    stored: StoredResource
    created: bool


def etag_version(if_match: str) -> int:
    raw = if_match.strip()
    if raw.startswith("W/"):
        raw = raw[2:]
    raw = raw.strip('"')
    try:
        return int(raw)
    except ValueError:
        raise InvalidRequest('If-Match must be an ETag such as W/"3"') from None


_SERVER_META = frozenset({"versionId", "lastUpdated", "source"})
_ABSENT = object()


def same_content(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two versions differ only in server-set meta (versionId, lastUpdated, source).

    Compared element by element, without copying either resource: feeds send most
    resources again unchanged (the same ward, practitioner, organisation), so this runs on
    every write of the API, the loader and the ingest writer.
    """
    if len(a) - ("meta" in a) != len(b) - ("meta" in b):
        return False
    for key, value in b.items():
        if key != "meta" and a.get(key, _ABSENT) != value:
            return False
    meta_a, meta_b = a.get("meta") or {}, b.get("meta") or {}
    if not meta_a and not meta_b:
        return True
    return {k: v for k, v in meta_a.items() if k not in _SERVER_META} == {
        k: v for k, v in meta_b.items() if k not in _SERVER_META
    }


def type_of(resource: Any) -> str:
    if not isinstance(resource, dict):
        raise InvalidRequest("the body must be a JSON object (a FHIR resource)")
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str) or not is_resource_type(resource_type):
        raise InvalidRequest(
            "the body's resourceType is missing or is not an R4 resource type",
            expression="resourceType",
        )
    return resource_type


def stored_of(write: PendingWrite) -> StoredResource:
    return StoredResource(
        write.resource_type,
        write.id,
        write.version_id,
        write.last_updated,
        write.deleted,
        write.content,
    )


def patient_of_json(resource: dict[str, Any]) -> str | None:
    if resource.get("resourceType") == "Patient" and resource.get("id"):
        return f"Patient/{resource['id']}"
    for key in ("subject", "patient", "beneficiary"):
        ref = resource.get(key)
        if isinstance(ref, dict):
            target = ref.get("reference")
            if isinstance(target, str) and target.startswith("Patient/"):
                return target[:100]
    return None


def patient_of(stored: StoredResource) -> str | None:
    if stored.resource_type == "Patient":
        return f"Patient/{stored.id}"
    if stored.content is None:
        return None
    return patient_of_json(stored.json())
