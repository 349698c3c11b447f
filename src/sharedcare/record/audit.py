"""The audit trail: an AuditEvent for every interaction, on success and on failure.

Events follow IHE Basic Audit Log Patterns (BALP,
https://profiles.ihe.net/ITI/BALP/): ``type`` is ``rest``, ``subtype`` the FHIR restful
interaction (https://hl7.org/fhir/R4/valueset-type-restful-interaction.html), ``agent`` the
requesting user with their organisation, role and purpose of use, ``source`` sharedcare, and
``entity`` the resource acted on and, for patient-centric interactions, the patient.

Events are stored in the append-only ``audit_event`` table, in the same transaction as the
write they describe; reads and failures are audited in a transaction of their own.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Connection, insert

from sharedcare.db.tables import AuditRecord
from sharedcare.record.context import PURPOSES, RequestContext
from sharedcare.record.instants import now_us, to_instant

AUDIT: Any = AuditRecord.__table__

_ACTION = {
    "create": "C",
    "read": "R",
    "vread": "R",
    "search-type": "E",
    "search-system": "E",
    "search-compartment": "E",
    "history-instance": "R",
    "history-type": "R",
    "history-system": "R",
    "update": "U",
    "patch": "U",
    "delete": "D",
    "batch": "E",
    "transaction": "E",
    "operation": "E",
    "capabilities": "R",
}


@dataclass(slots=True)
class AuditEntry:
    """One interaction to audit."""

    interaction: str
    outcome: str  # "0" success, "4" minor failure (client error), "8" serious, "12" major
    resource_type: str | None = None
    resource_id: str | None = None
    version_id: int | None = None
    patient: str | None = None
    query: str | None = None
    description: str | None = None
    entities: list[str] = field(default_factory=list)


def audit_event(context: RequestContext, entry: AuditEntry, recorded: int) -> dict[str, Any]:
    """Build the AuditEvent resource for ``entry``."""
    agent: dict[str, Any] = {
        "type": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                    "code": "IRCP",
                    "display": "information recipient",
                }
            ]
        },
        "who": {"identifier": {"value": context.user}},
        "requestor": True,
        "role": [{"text": context.role}],
        "purposeOfUse": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                        "code": context.purpose,
                        "display": PURPOSES.get(context.purpose, context.purpose),
                    }
                ]
            }
        ],
        "network": {"address": context.source, "type": "2"},
    }
    if context.organisation:
        agent["who"]["display"] = context.organisation
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": str(uuid.uuid4()),
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
            "display": "Restful Operation",
        },
        "subtype": [
            {"system": "http://hl7.org/fhir/restful-interaction", "code": entry.interaction}
        ],
        "action": _ACTION.get(entry.interaction, "E"),
        "recorded": to_instant(recorded),
        "outcome": entry.outcome,
        "agent": [agent],
        "source": {
            "observer": {"display": "sharedcare"},
            "type": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                    "code": "4",
                    "display": "Application Server",
                }
            ],
        },
    }
    if entry.description:
        event["outcomeDesc"] = entry.description
    entities: list[dict[str, Any]] = []
    if entry.resource_type:
        what = entry.resource_type
        if entry.resource_id:
            what += f"/{entry.resource_id}"
            if entry.version_id:
                what += f"/_history/{entry.version_id}"
        entities.append(
            {
                "what": {"reference": what} if entry.resource_id else {"display": what},
                "type": {
                    "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                    "code": "2",
                    "display": "System Object",
                },
            }
        )
    if entry.query:
        entities.append(
            {
                "type": {
                    "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                    "code": "2",
                },
                "role": {
                    "system": "http://terminology.hl7.org/CodeSystem/object-role",
                    "code": "24",
                    "display": "Query",
                },
                "query": base64.b64encode(entry.query.encode()).decode(),
            }
        )
    for reference in entry.entities:
        entities.append(
            {
                "what": {"reference": reference},
                "type": {
                    "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                    "code": "2",
                },
            }
        )
    if entry.patient:
        entities.append(
            {
                "what": {"reference": entry.patient},
                "type": {
                    "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                    "code": "1",
                    "display": "Person",
                },
                "role": {
                    "system": "http://terminology.hl7.org/CodeSystem/object-role",
                    "code": "1",
                    "display": "Patient",
                },
            }
        )
    if entities:
        event["entity"] = entities
    return event


def write_audit(
    connection: Connection, context: RequestContext, entries: Sequence[AuditEntry]
) -> None:
    """Store AuditEvents for ``entries`` in the caller's transaction."""
    if not entries:
        return
    recorded = now_us()
    connection.execute(
        insert(AUDIT),
        [
            {
                "recorded": recorded,
                "interaction": entry.interaction,
                "outcome": entry.outcome,
                "agent": context.user[:200],
                "patient": entry.patient,
                "content": orjson.dumps(audit_event(context, entry, recorded)),
            }
            for entry in entries
        ],
    )
