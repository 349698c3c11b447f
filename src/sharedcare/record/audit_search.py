"""The audit trail through FHIR: AuditEvent read, vread and search, served from ``audit_event``.

https://hl7.org/fhir/R4/auditevent.html. Every interaction's AuditEvent is a row of the
append-only ``audit_event`` table (:mod:`sharedcare.record.audit`), not a resource of the
record's store, so this module answers ``GET /fhir/AuditEvent…`` from that table
(decision 0024):

* an event's id is its row key, and it has one version (``1``), recorded when it happened;
* the search parameters are :data:`~sharedcare.record.audit_params.PARAMETERS`, each
  compiled to a condition on the table's columns (``recorded``, ``patient``, ``agent``,
  ``interaction``, ``outcome``); the CapabilityStatement lists exactly these;
* results are newest first unless ``_sort=date``, paged by a keyset ``_cursor`` on
  ``(recorded, pk)``, which new events never shift;
* reading the trail is an access like any other: the gate is asked and each read or
  search stores one AuditEvent of its own, however many events it returns (so reading the
  trail cannot feed on itself);
* nothing changes an AuditEvent through the API: :func:`refuse_trail_write` turns every
  update and delete (RESTful, in Bundles, ``sharedcare load``, the ingest writer) into a
  405 (:class:`AuditTrailReadOnly`). AuditEvents sent by other systems (``create``) are
  kept in the record's resource store as sent, under ids that are never all digits, and
  read by id; the search covers sharedcare's own trail.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import orjson
from sqlalchemy import (
    ColumnElement,
    Connection,
    Text,
    cast,
    func,
    literal,
    select,
    tuple_,
)

from sharedcare.record.audit import AUDIT, AuditEntry
from sharedcare.record.audit_params import (
    IGNORED_PARAMETERS,
    PARAMETERS,
    RESULT_PARAMETERS,
    patient_reference,
)
from sharedcare.record.errors import InvalidRequest, NotFound, RecordError
from sharedcare.record.instants import to_instant
from sharedcare.record.sqlstore import StoredResource

if TYPE_CHECKING:
    from sharedcare.record.repository import Repository

AUDIT_EVENT = "AuditEvent"
#: The interactions served for AuditEvent (https://hl7.org/fhir/R4/http.html); the
#: CapabilityStatement lists these.
INTERACTIONS = ("read", "vread", "search-type", "create")
_CHANGES = frozenset({"update", "patch", "delete"})
DEFAULT_COUNT = 50
MAX_COUNT = 1000


def is_trail_id(id: str) -> bool:
    """Whether ``id`` names an event of sharedcare's own trail (its row key: digits only).

    Every other AuditEvent id is one sent by another system (recorded with ``create``) and
    kept in the record's resource store.
    """
    return id.isdigit() and len(id) <= 18


class AuditTrailReadOnly(RecordError):
    """A change to an AuditEvent: audit records are never changed or deleted.

    405 Method Not Allowed, as https://hl7.org/fhir/R4/http.html#delete asks of a server
    that "refuses to delete resources of that type on principle"; the same holds for
    update. The ``Allow`` header names what the URL does allow.
    """

    status = 405
    code = "not-supported"
    headers = {"Allow": "GET"}


def refuse_trail_write(interaction: str, resource_type: str | None, id: str | None = None) -> None:
    """Refuse ``interaction`` if it would change an AuditEvent, or touch the server's trail.

    AuditEvents are records of what happened, so none is ever updated or deleted. Other
    systems may send theirs (``create``, as an IHE ATNA/BALP audit source sends to an audit
    record repository): they are kept in the record, as sent, and read back by id; the
    ids made of digits are reserved for sharedcare's own trail, which only the server
    writes.

    Called by the repository's gate, which every write path asks (RESTful create, update
    and delete, batch and transaction Bundles, ``sharedcare load``, the ingest writer).

    Raises:
        AuditTrailReadOnly: For an update, patch or delete of an AuditEvent, or a create
            with an id of the server's trail.
    """
    if resource_type != AUDIT_EVENT:
        return
    if interaction in _CHANGES:
        raise AuditTrailReadOnly(
            "AuditEvents are never changed or deleted: an audit record stays as it was "
            "written; read the trail with GET /fhir/AuditEvent"
        )
    if interaction == "create" and id is not None and is_trail_id(id):
        raise AuditTrailReadOnly(
            "AuditEvent ids made only of digits are the events of sharedcare's own audit "
            "trail, written by the server only; send your AuditEvent with POST or another id"
        )


# -- the query ----------------------------------------------------------------------------


@dataclass(slots=True)
class TrailQuery:
    """A parsed search of the trail."""

    conditions: list[ColumnElement[bool]] = field(default_factory=list)
    used: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    count: int = DEFAULT_COUNT
    newest_first: bool = True
    total: str = "accurate"
    cursor: tuple[int, int, bool] | None = None
    patients: list[str] = field(default_factory=list)

    def used_query(self) -> list[tuple[str, str]]:
        """The parameters applied, for the bundle's links (without the cursor)."""
        return list(self.used)


def parse_trail_search(
    params: Sequence[tuple[str, str]], *, strict: bool, dialect: str
) -> TrailQuery:
    """Parse the parameters of ``GET /fhir/AuditEvent?…``.

    Args:
        params: The query parameters, repeated ones as given (repetition is AND, a comma OR).
        strict: ``Prefer: handling=strict``: an unknown parameter is a 400, not ignored.
        dialect: The database's dialect name.

    Raises:
        InvalidRequest: A parameter or value that cannot be used (named in the message).
    """
    query = TrailQuery()
    sort_given = total_given = False
    for name, raw in params:
        code, _, modifier = name.partition(":")
        if code in IGNORED_PARAMETERS:
            continue
        if code in RESULT_PARAMETERS:
            if modifier:
                raise InvalidRequest(f"{code} takes no modifier", expression=name)
            if code == "_count":
                if not raw.isdigit() or int(raw) > MAX_COUNT:
                    raise InvalidRequest(
                        f"_count must be a whole number from 0 to {MAX_COUNT}", expression=name
                    )
                query.count = int(raw)
            elif code == "_sort":
                if raw not in {"date", "-date"}:
                    raise InvalidRequest(
                        "AuditEvents sort by date only: _sort=-date (newest first, the "
                        "default) or _sort=date",
                        expression=name,
                    )
                query.newest_first, sort_given = raw == "-date", True
            elif code == "_total":
                if raw not in {"none", "estimate", "accurate"}:
                    raise InvalidRequest(
                        "_total must be none, estimate or accurate", expression=name
                    )
                query.total, total_given = raw, True
            else:
                query.cursor = _decode_cursor(raw)
            continue
        parameter = PARAMETERS.get(code)
        if parameter is None:
            if strict:
                raise InvalidRequest(
                    f"AuditEvent has no search parameter {code}; see /fhir/metadata for those "
                    "it supports",
                    expression=name,
                )
            query.ignored.append(name)
            continue
        if modifier and modifier not in parameter.modifiers:
            raise InvalidRequest(
                f"{code} does not take the :{modifier} modifier"
                + (
                    f" (it takes {', '.join(sorted(parameter.modifiers))})"
                    if parameter.modifiers
                    else ""
                ),
                expression=name,
            )
        values = [v for v in raw.split(",") if v]
        if not values:
            raise InvalidRequest(f"{name} needs a value", expression=name)
        query.conditions.append(parameter.compile(modifier, name, values, dialect))
        query.used.append((name, raw))
        if code == "patient" and modifier != "missing" and len(values) == 1:
            query.patients.append(patient_reference(values[0]))
    if query.cursor is not None and query.cursor[2] != query.newest_first:
        raise _cursor_problem()
    if sort_given:
        query.used.append(("_sort", "-date" if query.newest_first else "date"))
    if total_given:
        query.used.append(("_total", query.total))
    query.used.append(("_count", str(query.count)))
    return query


def _encode_cursor(recorded: int, pk: int, newest_first: bool) -> str:
    raw = orjson.dumps(["audit", recorded, pk, newest_first])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _cursor_problem() -> InvalidRequest:
    return InvalidRequest(
        "_cursor does not belong to this search; follow the links of the latest page, or "
        "start again without _cursor",
        expression="_cursor",
    )


def _decode_cursor(cursor: str) -> tuple[int, int, bool]:
    problem = _cursor_problem()
    try:
        kind, recorded, pk, newest_first = orjson.loads(
            base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        )
    except (ValueError, binascii.Error, orjson.JSONDecodeError, TypeError):
        raise problem from None
    if kind != "audit" or not isinstance(recorded, int) or not isinstance(pk, int):
        raise problem
    return recorded, pk, bool(newest_first)


# -- running it ---------------------------------------------------------------------------


@dataclass(slots=True)
class TrailPage:
    """One page of a trail search."""

    query: TrailQuery
    events: list[StoredResource]
    total: int | None
    next_cursor: str | None


def _content(dialect: str) -> Any:
    return cast(AUDIT.c.content, Text) if dialect == "postgresql" else AUDIT.c.content


def event_resource(pk: int, recorded: int, content: str | bytes) -> StoredResource:
    """The AuditEvent resource of one ``audit_event`` row: its id is the row key, its one
    version is ``1``, last updated when it was recorded."""
    event = orjson.loads(content)
    body = {
        "resourceType": AUDIT_EVENT,
        "id": str(pk),
        "meta": {"versionId": "1", "lastUpdated": to_instant(recorded)},
        **{k: v for k, v in event.items() if k not in {"resourceType", "id", "meta"}},
    }
    return StoredResource(AUDIT_EVENT, str(pk), 1, recorded, False, orjson.dumps(body))


def page_statement(query: TrailQuery, dialect: str) -> Any:
    """The ``SELECT`` of one page (``_count`` + 1 rows, to know whether there is a next):
    ordered by ``(recorded, pk)``, after the cursor's event."""
    key = tuple_(AUDIT.c.recorded, AUDIT.c.pk)
    where = list(query.conditions)
    if query.cursor is not None:
        anchor = tuple_(literal(query.cursor[0]), literal(query.cursor[1]))
        where.append(key < anchor if query.newest_first else key > anchor)
    order = (
        (AUDIT.c.recorded.desc(), AUDIT.c.pk.desc())
        if query.newest_first
        else (AUDIT.c.recorded, AUDIT.c.pk)
    )
    return (
        select(AUDIT.c.pk, AUDIT.c.recorded, _content(dialect))
        .where(*where)
        .order_by(*order)
        .limit(query.count + 1)
    )


def run_trail_search(connection: Connection, query: TrailQuery) -> TrailPage:
    """One page of events matching ``query``, with the total when asked for."""
    rows: list[Any] = []
    if query.count:
        rows = list(connection.execute(page_statement(query, connection.dialect.name)))
    more = len(rows) > query.count
    rows = rows[: query.count]
    total = None
    if query.total != "none":
        total = int(
            connection.scalar(select(func.count()).select_from(AUDIT).where(*query.conditions)) or 0
        )
    next_cursor = None
    if more and rows:
        last = rows[-1]
        next_cursor = _encode_cursor(last[1], last[0], query.newest_first)
    return TrailPage(
        query, [event_resource(pk, rec, content) for pk, rec, content in rows], total, next_cursor
    )


def read_trail_event(connection: Connection, id: str) -> tuple[StoredResource, str | None]:
    """The AuditEvent ``id`` and the patient it concerns.

    Raises:
        NotFound: No event has that id.
    """
    if not id.isdigit() or len(id) > 18:
        raise NotFound(f"AuditEvent/{id} does not exist")
    row = connection.execute(
        select(
            AUDIT.c.pk, AUDIT.c.recorded, _content(connection.dialect.name), AUDIT.c.patient
        ).where(AUDIT.c.pk == int(id))
    ).first()
    if row is None:
        raise NotFound(f"AuditEvent/{id} does not exist")
    return event_resource(row[0], row[1], row[2]), row[3]


# -- through the repository (gate and audit) ----------------------------------------------


def search_trail(
    repo: Repository,
    params: Sequence[tuple[str, str]],
    *,
    strict: bool = False,
    patient: str | None = None,
) -> TrailPage:
    """Search the trail as ``repo``'s caller: the gate is asked and the search audited
    (one AuditEvent, ``search-type`` of AuditEvent, whatever it returns).

    Args:
        repo: The caller's repository.
        params: The query parameters.
        strict: ``Prefer: handling=strict``.
        patient: The patient compartment searched (``GET /fhir/Patient/{id}/AuditEvent``).
    """
    params = list(params)
    entry = AuditEntry("search-type", "0", AUDIT_EVENT, query=urlencode(params))
    if patient is not None:
        entry.interaction = "search-compartment"
        entry.patient = f"Patient/{patient}"
        params.append(("patient", f"Patient/{patient}"))

    def work(connection: Connection) -> TrailPage:
        query = parse_trail_search(params, strict=strict, dialect=connection.dialect.name)
        if entry.patient is None and len(query.patients) == 1:
            entry.patient = query.patients[0][:100]
        return run_trail_search(connection, query)

    return repo._audited_read(entry, work)


def read_trail(repo: Repository, id: str, version: str | None = None) -> StoredResource:
    """Read (or vread version ``1`` of) AuditEvent ``id`` as ``repo``'s caller, gated and
    audited."""
    entry = AuditEntry("read" if version is None else "vread", "0", AUDIT_EVENT, id)

    def work(connection: Connection) -> StoredResource:
        event, patient = read_trail_event(connection, id)
        if version is not None:
            if version != "1":
                raise NotFound(f"AuditEvent/{id} has one version, 1: events never change")
            entry.version_id = 1
        entry.patient = patient
        return event

    return repo._audited_read(entry, work, single=True)


def trail_entry(repo: Repository, url: str) -> dict[str, Any]:
    """The response entry of a batch or transaction ``GET`` of the trail (``AuditEvent/1``,
    ``AuditEvent/1/_history/1`` or ``AuditEvent?…``), as the record's entries are."""
    try:
        parts = urlsplit(url)
        path = parts.path.strip("/").split("/")
        if len(path) == 1:
            page = search_trail(repo, parse_qsl(parts.query))
            bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
            if page.total is not None:
                bundle["total"] = page.total
            bundle["entry"] = [{"resource": orjson.loads(e.content or b"{}")} for e in page.events]
            return {"resource": bundle, "response": {"status": "200 OK"}}
        version = path[3] if len(path) >= 4 and path[2] == "_history" else None
        if not is_trail_id(path[1]):  # one sent by another system: kept in the record
            stored = (
                repo.read(AUDIT_EVENT, path[1])
                if version is None
                else repo.vread(AUDIT_EVENT, path[1], version)
            )
            etag = f'W/"{stored.version_id}"'
            return {"resource": stored.json(), "response": {"status": "200 OK", "etag": etag}}
        event = read_trail(repo, path[1], version)
        return {
            "resource": orjson.loads(event.content or b"{}"),
            "response": {"status": "200 OK", "etag": 'W/"1"'},
        }
    except RecordError as error:
        return {"response": {"status": f"{error.status}", "outcome": error.outcome()}}
