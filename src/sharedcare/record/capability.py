"""The CapabilityStatement, generated from what the record implements.

https://hl7.org/fhir/R4/capabilitystatement.html — every resource type of R4 with the
interactions the repository supports and every search parameter the store indexes;
AuditEvent with what the audit trail serves (read, vread and search, from the same
definitions its routes use: :mod:`sharedcare.record.audit_params`).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from sharedcare import __version__
from sharedcare.fhir.definitions import resource_types, search_parameters
from sharedcare.record import audit_params, audit_search

INTERACTIONS = (
    "read",
    "vread",
    "update",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
)
SEARCHABLE_TYPES = (
    "number",
    "date",
    "string",
    "token",
    "reference",
    "quantity",
    "uri",
    "composite",
)
#: Bulk Data $export (https://hl7.org/fhir/uv/bulkdata/export.html), by where it is invoked.
_BULK = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/"
BULK_EXPORT = {"Patient": _BULK + "patient-export", "Group": _BULK + "group-export"}


def _audit_trail() -> dict[str, Any]:
    """AuditEvent: read, vread and search of the append-only trail; create of others' events."""
    return {
        "type": audit_search.AUDIT_EVENT,
        "documentation": (
            "The audit trail: one event per interaction, written by the server (ids of "
            "digits only). Searches cover this trail, newest first unless _sort=date, paged "
            "by _cursor. Other systems may record their own AuditEvents with create (or a "
            "PUT of a new id); these are kept as sent and read by id. No AuditEvent is "
            "ever updated or deleted (405)."
        ),
        "interaction": [{"code": code} for code in audit_search.INTERACTIONS],
        "versioning": "versioned",
        "readHistory": False,
        "updateCreate": False,
        "conditionalCreate": False,
        "conditionalRead": "not-supported",
        "conditionalUpdate": False,
        "conditionalDelete": "not-supported",
        "searchParam": [
            {
                "name": p.code,
                "definition": p.definition,
                "type": p.type,
                "documentation": p.documentation,
            }
            for p in audit_params.PARAMETERS.values()
        ],
        "operation": [
            {
                "name": "validate",
                "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate",
            }
        ],
    }


@cache
def capability_statement(base_url: str) -> dict[str, Any]:
    """The server's CapabilityStatement for ``base_url`` (e.g. ``http://host/fhir``)."""
    resources = []
    for rtype in resource_types():
        if rtype == audit_search.AUDIT_EVENT:
            resources.append(_audit_trail())
            continue
        params = [
            {"name": code, "definition": p.url, "type": p.type}
            for code, p in sorted(search_parameters(rtype).items())
            if p.type in SEARCHABLE_TYPES and (p.expression is not None or code == "_id")
        ]
        entry: dict[str, Any] = {
            "type": rtype,
            "interaction": [{"code": code} for code in INTERACTIONS],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": True,
            "conditionalCreate": True,
            "conditionalRead": "not-supported",
            "conditionalUpdate": True,
            "conditionalDelete": "single",
            "referencePolicy": ["literal", "logical"],
            "searchParam": params,
            "operation": [
                {
                    "name": "validate",
                    "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate",
                }
            ],
        }
        if rtype == "Patient":
            entry["operation"].append(
                {
                    "name": "everything",
                    "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
                }
            )
        if rtype in BULK_EXPORT:
            entry["operation"].append({"name": "export", "definition": BULK_EXPORT[rtype]})
        resources.append(entry)
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-21",
        "kind": "instance",
        "instantiates": ["http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"],
        "software": {"name": "sharedcare", "version": __version__},
        "implementation": {"description": "sharedcare shared care record", "url": base_url},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "resource": resources,
                "interaction": [
                    {"code": "transaction"},
                    {"code": "batch"},
                    {"code": "history-system"},
                ],
                "operation": [{"name": "export", "definition": _BULK + "export"}],
            }
        ],
    }
