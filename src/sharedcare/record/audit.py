"""The audit trail: an AuditEvent for every interaction, on success and on failure.

Events follow IHE Basic Audit Log Patterns (BALP,
https://profiles.ihe.net/ITI/BALP/): ``type`` is ``rest``, ``subtype`` the FHIR restful
interaction (https://hl7.org/fhir/R4/valueset-type-restful-interaction.html), ``agent`` the
requesting user with their organisation, role and purpose of use, ``source`` sharedcare, and
``entity`` the resource acted on and, for patient-centric interactions, the patient.

Events are stored in the append-only ``audit_event`` table, in the same transaction as the
write they describe. Reads, searches and failures have no write of their own: the API
server hands them to an :class:`~sharedcare.record.audit_writer.AuditWriter`, which commits
them in groups and answers no request before its event is committed; elsewhere they get a
transaction of their own.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import Connection

from sharedcare.db.engine import driver_connection, driver_errors
from sharedcare.db.tables import AuditRecord
from sharedcare.record.context import PURPOSES, RequestContext
from sharedcare.record.instants import now_us, to_instant

AUDIT: Any = AuditRecord.__table__
# SQLite: an executemany through the driver (through SQLAlchemy's compiler the binding cost
# more than SQLite's insert); ``content`` is text there.
_SQLITE_INSERT = (
    "INSERT INTO audit_event (recorded, interaction, outcome, agent, patient, content) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
# PostgreSQL: every row of a batch in one statement of fixed text, the rows as one JSON
# array of arrays (one parameter: six array parameters cost psycopg more to convert, and
# a jsonb[] parameter would be sent as array text with every quote escaped).
_PG_INSERT = (
    b"INSERT INTO audit_event (recorded, interaction, outcome, agent, patient, content) "
    b"SELECT (r->>0)::bigint, r->>1, r->>2, r->>3, r->>4, r->5 "
    b"FROM jsonb_array_elements(%s::jsonb) AS r"
)  # encoded once (see ``search.execute._driver_text``)
_PG_INSERT_ONE = (
    "INSERT INTO audit_event (recorded, interaction, outcome, agent, patient, content) "
    "VALUES (%s, %s, %s, %s, %s, %s::jsonb)"
)
log = logging.getLogger(__name__)

#: The AuditEvent.action of each interaction (https://hl7.org/fhir/R4/valueset-audit-event-action.html).
ACTIONS = {
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


def _agent_list(context: RequestContext) -> list[dict[str, Any]]:
    """The event's ``agent``: the requesting user, with organisation, role, purpose of use
    and network address (BALP's "information recipient")."""
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
        "name": context.user,
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
    return [agent]


def audit_event(context: RequestContext, entry: AuditEntry, recorded: int) -> dict[str, Any]:
    """The AuditEvent resource for ``entry``, as stored (the parsed ``content`` of its row)."""
    return dict(orjson.loads(_event_json(context, entry, to_instant(recorded))))


# The parts of an AuditEvent that never change, and the agent of each caller, serialised
# once: :func:`audit_rows` splices them into the event's JSON as it is, so an event costs
# the serialisation of what is its own (the interaction, the time, the entities).
_SUBTYPES: dict[str, orjson.Fragment] = {}


def _subtype(interaction: str) -> Any:
    found = _SUBTYPES.get(interaction)
    if found is None:
        value = [{"system": "http://hl7.org/fhir/restful-interaction", "code": interaction}]
        if interaction not in ACTIONS:  # kept for the interactions there are, no others
            return value
        found = _SUBTYPES[interaction] = orjson.Fragment(orjson.dumps(value))
    return found


_EVENT_TYPE = orjson.Fragment(
    orjson.dumps(
        {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
            "display": "Restful Operation",
        }
    )
)
_SOURCE = orjson.Fragment(
    orjson.dumps(
        {
            "observer": {"display": "sharedcare"},
            "type": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                    "code": "4",
                    "display": "Application Server",
                }
            ],
        }
    )
)
_ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
_SYSTEM_OBJECT = orjson.Fragment(
    orjson.dumps({"system": _ENTITY_TYPE, "code": "2", "display": "System Object"})
)
_ENTITY_CODE_2 = orjson.Fragment(orjson.dumps({"system": _ENTITY_TYPE, "code": "2"}))
_QUERY_ROLE = orjson.Fragment(
    orjson.dumps(
        {
            "system": "http://terminology.hl7.org/CodeSystem/object-role",
            "code": "24",
            "display": "Query",
        }
    )
)
_PATIENT_ENTITY = (
    orjson.Fragment(orjson.dumps({"system": _ENTITY_TYPE, "code": "1", "display": "Person"})),
    orjson.Fragment(
        orjson.dumps(
            {
                "system": "http://terminology.hl7.org/CodeSystem/object-role",
                "code": "1",
                "display": "Patient",
            }
        )
    ),
)
#: The ``agent`` list of each caller, serialised (it depends on the context only; the
#: request id and feed are not part of it). Bounded: cleared when full.
_AGENTS: dict[tuple[Any, ...], orjson.Fragment] = {}
_AGENTS_KEPT = 1024


def _agent(context: RequestContext) -> orjson.Fragment:
    key = (context.user, context.organisation, context.role, context.purpose, context.source)
    found = _AGENTS.get(key)
    if found is None:
        if len(_AGENTS) >= _AGENTS_KEPT:
            _AGENTS.clear()
        found = _AGENTS[key] = orjson.Fragment(orjson.dumps(_agent_list(context)))
    return found


def _event_json(context: RequestContext, entry: AuditEntry, instant: str) -> bytes:
    """The AuditEvent's JSON for ``entry`` recorded at ``instant`` (``to_instant`` of its
    time), with the fixed parts and the agent spliced in ready-made."""
    interaction = entry.interaction
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "type": _EVENT_TYPE,
        "subtype": _subtype(interaction),
        "action": ACTIONS.get(interaction, "E"),
        "recorded": instant,
        "outcome": entry.outcome,
        "agent": _agent(context),
        "source": _SOURCE,
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
                "type": _SYSTEM_OBJECT,
            }
        )
    if entry.query:
        entities.append(
            {
                "type": _ENTITY_CODE_2,
                "role": _QUERY_ROLE,
                "query": base64.b64encode(entry.query.encode()).decode(),
            }
        )
    for reference in entry.entities:
        entities.append({"what": {"reference": reference}, "type": _ENTITY_CODE_2})
    if entry.patient:
        person, role = _PATIENT_ENTITY
        entities.append({"what": {"reference": entry.patient}, "type": person, "role": role})
    if entities:
        event["entity"] = entities
    return orjson.dumps(event)


def _instant(us: int) -> str:
    """``to_instant(us)``: the second's text is formatted once (events recorded in the same
    second share it), the milliseconds each time."""
    seconds, rest = divmod(us, 1_000_000)
    return f"{_second(seconds)}.{rest // 1000:03d}Z"


@lru_cache(maxsize=64)
def _second(seconds: int) -> str:
    return to_instant(seconds * 1_000_000)[:-5]  # without ".000Z"


def audit_rows(
    context: RequestContext, entries: Sequence[AuditEntry], recorded: int | None = None
) -> list[dict[str, Any]]:
    """The ``audit_event`` rows for ``entries``, recorded at ``recorded`` (default: now).

    Each row's ``content`` is the JSON of ``audit_event(context, entry, recorded)``.
    """
    recorded = now_us() if recorded is None else recorded
    instant = _instant(recorded)
    agent = context.user[:200]
    return [
        {
            "recorded": recorded,
            "interaction": entry.interaction,
            "outcome": entry.outcome,
            "agent": agent,
            "patient": entry.patient,
            "content": _event_json(context, entry, instant),
        }
        for entry in entries
    ]


def write_audit(
    connection: Connection, context: RequestContext, entries: Sequence[AuditEntry]
) -> None:
    """Store AuditEvents for ``entries`` in the caller's transaction."""
    if entries:
        insert_audit_rows(connection, audit_rows(context, entries))


def insert_audit_rows(connection: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Insert :func:`audit_rows` in the caller's transaction, through the driver: on
    PostgreSQL as arrays in one statement of fixed text (an executemany ran one ``INSERT``
    per event); on SQLite as an executemany of one ``INSERT``."""
    if not rows:
        return
    with driver_errors():
        _insert_audit_rows(connection, rows)


def _values(row: dict[str, Any]) -> tuple[Any, ...]:
    """One row's values in the column order of the single-row inserts."""
    return (
        row["recorded"],
        row["interaction"],
        row["outcome"],
        row["agent"],
        row["patient"],
        row["content"].decode(),
    )


def _insert_audit_rows(connection: Connection, rows: Sequence[dict[str, Any]]) -> None:
    if connection.dialect.name != "postgresql":
        raw = driver_connection(connection)
        cursor = raw.cursor()
        try:
            cursor.executemany(
                _SQLITE_INSERT,
                [_values(row) for row in rows],
            )
        finally:
            cursor.close()
        return
    raw = driver_connection(connection)
    with raw.cursor() as cursor:
        cursor.execute(*pg_statement(rows))


def pg_statement(rows: Sequence[dict[str, Any]]) -> tuple[str | bytes, Any]:
    """The PostgreSQL ``INSERT`` of ``rows`` (one statement) and its parameters."""
    if len(rows) == 1:  # one write's event: plain parameters, no arrays to convert
        return _PG_INSERT_ONE, _values(rows[0])
    batch = orjson.dumps(
        [
            [
                row["recorded"],
                row["interaction"],
                row["outcome"],
                row["agent"],
                row["patient"],
                orjson.Fragment(row["content"]),
            ]
            for row in rows
        ]
    )
    return _PG_INSERT, (batch.decode(),)
