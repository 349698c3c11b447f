"""The audit trail: an AuditEvent for every interaction, on success and on failure.

Events follow IHE Basic Audit Log Patterns (BALP,
https://profiles.ihe.net/ITI/BALP/): ``type`` is ``rest``, ``subtype`` the FHIR restful
interaction (https://hl7.org/fhir/R4/valueset-type-restful-interaction.html), ``agent`` the
requesting user with their organisation, role and purpose of use, ``source`` sharedcare, and
``entity`` the resource acted on and, for patient-centric interactions, the patient.

Events are stored in the append-only ``audit_event`` table, in the same transaction as the
write they describe. Reads, searches and failures have no write of their own: the API
server hands them to an :class:`AuditWriter`, which commits them in groups and answers no
request before its event is committed; elsewhere they get a transaction of their own.
"""

from __future__ import annotations

import base64
import logging
import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Connection, Engine

from sharedcare.db.engine import driver_connection, driver_errors, write_connection
from sharedcare.db.tables import AuditRecord
from sharedcare.record.context import PURPOSES, RequestContext
from sharedcare.record.instants import now_us, to_instant
from sharedcare.record.sqlstore import json_array

AUDIT: Any = AuditRecord.__table__
# SQLite: an executemany through the driver (through SQLAlchemy's compiler the binding cost
# more than SQLite's insert); ``content`` is text there.
_SQLITE_INSERT = (
    "INSERT INTO audit_event (recorded, interaction, outcome, agent, patient, content) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
# PostgreSQL: every row of a batch in one statement of fixed text; the documents as one
# JSON array (a jsonb[] parameter would be sent as array text with every quote escaped).
_PG_INSERT = (
    "INSERT INTO audit_event (recorded, interaction, outcome, agent, patient, content) "
    "SELECT * FROM ROWS FROM (unnest(%(recorded)s::bigint[]), "
    "unnest(%(interaction)s::text[]), unnest(%(outcome)s::text[]), "
    "unnest(%(agent)s::text[]), unnest(%(patient)s::text[]), "
    "jsonb_array_elements(%(docs)s::jsonb))"
)
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
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
            "display": "Restful Operation",
        },
        "subtype": [
            {"system": "http://hl7.org/fhir/restful-interaction", "code": entry.interaction}
        ],
        "action": ACTIONS.get(entry.interaction, "E"),
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


def audit_rows(
    context: RequestContext, entries: Sequence[AuditEntry], recorded: int | None = None
) -> list[dict[str, Any]]:
    """The ``audit_event`` rows for ``entries``, recorded at ``recorded`` (default: now)."""
    recorded = now_us() if recorded is None else recorded
    return [
        {
            "recorded": recorded,
            "interaction": entry.interaction,
            "outcome": entry.outcome,
            "agent": context.user[:200],
            "patient": entry.patient,
            "content": orjson.dumps(audit_event(context, entry, recorded)),
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
    if len(rows) == 1:  # one write's event: plain parameters, no arrays to convert
        (row,) = rows
        with raw.cursor() as cursor:
            cursor.execute(_PG_INSERT_ONE, _values(row))
        return
    with raw.cursor() as cursor:
        cursor.execute(
            _PG_INSERT,
            {
                "recorded": [row["recorded"] for row in rows],
                "interaction": [row["interaction"] for row in rows],
                "outcome": [row["outcome"] for row in rows],
                "agent": [row["agent"] for row in rows],
                "patient": [row["patient"] for row in rows],
                "docs": json_array([row["content"] for row in rows]),
            },
        )


class AuditUnavailable(RuntimeError):
    """The audit trail could not be stored, so the interaction must not be answered."""


class _Pending:
    """Rows waiting for the writer, and the future that says they are committed (or not)."""

    __slots__ = ("future", "rows")

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.future: Future[None] = Future()


class AuditWriter:
    """Group commit for AuditEvents that have no write transaction of their own.

    Reads, searches and failed interactions produce an AuditEvent but no other write.
    Committing each one in its own transaction cost a transaction per read (and on SQLite
    the database's one write lock, taken by every read). Here requests hand their rows to
    one writer thread per process, which inserts everything queued with
    :func:`insert_audit_rows` and one commit, then completes their futures. No response may
    leave before its AuditEvent is stored: :meth:`write` blocks until then, and callers on
    the event loop use :meth:`submit` and await the future. A batch that fails fails every
    request in it (:class:`AuditUnavailable`). See ``docs/decisions/0015-audit-group-commit.md``.

    Batches form naturally: while one commits, the next fills, so an idle server pays no
    extra latency and a busy one pays one commit for many reads.
    """

    def __init__(self, engine: Engine, *, max_rows: int = 1000) -> None:
        self._engine = engine
        self._max_rows = max_rows
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="sharedcare-audit", daemon=True)
        self._thread.start()

    def submit(self, context: RequestContext, entries: Sequence[AuditEntry]) -> Future[None]:
        """Queue AuditEvents for ``entries``.

        Returns:
            A future that completes when they are committed, or fails with
            :class:`AuditUnavailable`. The interaction must not be answered before then.

        Raises:
            AuditUnavailable: The writer is closed.
        """
        pending = _Pending(audit_rows(context, entries))
        with self._lock:
            if self._closed:
                raise AuditUnavailable("the audit writer is closed")
            self._queue.put(pending)
        return pending.future

    def write(self, context: RequestContext, entries: Sequence[AuditEntry]) -> None:
        """Store AuditEvents for ``entries``; return once they are committed.

        Raises:
            AuditUnavailable: The writer is closed, or the batch could not be committed.
        """
        if entries:
            self.submit(context, entries).result()

    def close(self) -> None:
        """Commit everything queued, then stop the writer thread (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            batch: list[_Pending] = []
            rows = 0
            item = first
            while True:
                if item is None:
                    stopping = True
                else:
                    batch.append(item)
                    rows += len(item.rows)
                if rows >= self._max_rows:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._flush(batch)

    def _flush(self, batch: list[_Pending]) -> None:
        try:
            with write_connection(self._engine) as connection:
                insert_audit_rows(connection, [row for p in batch for row in p.rows])
        except Exception as error:  # every waiting request fails; none is answered unaudited
            log.error("audit batch of %d events not stored: %s", len(batch), type(error).__name__)
            for pending in batch:
                pending.future.set_exception(
                    AuditUnavailable("the audit trail could not be stored")
                )
        else:
            for pending in batch:
                pending.future.set_result(None)
