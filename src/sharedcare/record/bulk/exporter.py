"""The exporter: read the resources an export covers and stream them into NDJSON files.

https://hl7.org/fhir/uv/bulkdata/export.html — system level exports every resource (or the
``_type`` ones); Patient level every resource in any Patient compartment; Group level the
compartments of the Group's (active) Patient members. Compartments follow the official R4
CompartmentDefinition (https://hl7.org/fhir/R4/compartmentdefinition-patient.html) through
the reference index, as compartment search does.

Reads go through the record's gate: the caller's :class:`~sharedcare.record.repository.
Repository` is asked (``check_access``) for each resource type (``search-type``) and, at
Group level, for each member Patient (``read``); what it refuses is left out and reported in
the manifest's ``error`` file. The Group itself is read through the repository (gated and
audited), and the finished export writes an AuditEvent naming what was exported.

Rows are read in keyset pages (``pk > last`` in primary-key order, :data:`PAGE` rows at a
time) inside one snapshot (a ``REPEATABLE READ`` transaction on PostgreSQL, a WAL read
transaction on SQLite), so the export is consistent as of one moment, and are written to the
files as they arrive: nothing is held in memory beyond one page.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Connection, Select, Text, and_, cast, exists, func, or_, select

from sharedcare.db.engine import write_connection
from sharedcare.db.tables import IdxReference, Resource
from sharedcare.fhir.definitions import patient_compartment, resource_types
from sharedcare.record.audit import AuditEntry, write_audit
from sharedcare.record.bulk.files import OutputFiles
from sharedcare.record.bulk.params import ExportSpec, compartment_types
from sharedcare.record.context import RequestContext
from sharedcare.record.derived import codes_to
from sharedcare.record.errors import Forbidden
from sharedcare.record.instants import now_us
from sharedcare.record.repository import Repository
from sharedcare.record.sqlstore import SqlStore

__all__ = ["PAGE", "Cancelled", "ExportResult", "run_export"]

R: Any = Resource.__table__
REF: Any = IdxReference.__table__
#: Rows read per keyset page.
PAGE = 2000
_MEMBER_CHUNK = 500
#: ``transactionTime`` is set this far before the snapshot, so that a write already under way
#: when the snapshot is taken (stamped before it, committed after it) is picked up by the next
#: ``_since`` export rather than missed by both.
_IN_FLIGHT_US = 5_000_000
_HEARTBEAT_S = 1.0


class Cancelled(Exception):
    """The job was cancelled (or taken away) while it ran."""


@dataclass(slots=True)
class ExportResult:
    """A finished export: its transaction time, manifest entries and resource count."""

    transaction_time: int
    manifest: dict[str, Any]
    total: int


class _Progress:
    """Calls ``heartbeat`` about once a second; raises :class:`Cancelled` when told to stop."""

    def __init__(self, heartbeat: Callable[[str], bool]) -> None:
        self.heartbeat = heartbeat
        self.last = time.monotonic()

    def tick(self, files: OutputFiles, fraction: float | None) -> None:
        if time.monotonic() - self.last < _HEARTBEAT_S:
            return
        self.last = time.monotonic()
        text = f"{files.total:,} resources written"
        if fraction is not None:
            text = f"{min(fraction, 0.99):.0%} done, {text}"
        if not self.heartbeat(text):
            raise Cancelled


def _issue(severity: str, code: str, message: str) -> dict[str, Any]:
    return {"severity": severity, "code": code, "diagnostics": message}


class _Gate:
    """The caller's access decisions for this export, asked once per type or patient."""

    def __init__(self, repo: Repository, issues: list[dict[str, Any]]) -> None:
        self.repo = repo
        self.issues = issues
        self.types: dict[str, bool] = {}

    def type_allowed(self, resource_type: str) -> bool:
        allowed = self.types.get(resource_type)
        if allowed is None:
            allowed = self._ask("search-type", resource_type, None)
            self.types[resource_type] = allowed
        return allowed

    def patient_allowed(self, patient_id: str) -> bool:
        return self._ask("read", "Patient", patient_id)

    def _ask(self, interaction: str, resource_type: str, resource_id: str | None) -> bool:
        try:
            self.repo.ask_gate(interaction, resource_type, resource_id)
        except Forbidden as refusal:
            what = f"a member Patient ({interaction})" if resource_id else resource_type
            self.issues.append(
                _issue("warning", "forbidden", f"{what} was left out: {refusal.message}")
            )
            return False
        return True


def _columns(store: SqlStore) -> list[Any]:
    content = R.c.content
    if store.dialect == "postgresql":
        content = cast(content, Text)  # jsonb as text: the stored bytes go out unparsed
    return [
        R.c.pk,
        R.c.resource_type,
        R.c.id,
        R.c.deleted,
        content.label("content"),
        R.c.last_updated,
    ]


def _compartment_params(store: SqlStore, types: Sequence[str]) -> list[int]:
    """Ids of the reference parameters that put resources of ``types`` in a compartment."""
    compartment = patient_compartment()
    return [
        pid
        for rtype in types
        for code in codes_to(rtype, compartment.get(rtype, ()), "Patient")
        if (pid := store.param_id(rtype, code)) is not None
    ]


def _snapshot(store: SqlStore) -> Connection:
    connection = store.engine.connect()
    if store.dialect == "postgresql":
        connection = connection.execution_options(isolation_level="REPEATABLE READ")
    return connection


def _keyset_pages(connection: Connection, query: Select[Any]) -> Iterator[Sequence[Any]]:
    after = 0
    while True:
        rows = connection.execute(query.where(R.c.pk > after).order_by(R.c.pk).limit(PAGE)).all()
        if not rows:
            return
        yield rows
        after = rows[-1].pk


def _type_pages(
    connection: Connection, query: Select[Any], resource_type: str
) -> Iterator[Sequence[Any]]:
    """Keyset pages of one type in ``(last_updated, pk)`` order: the order of the
    ``(resource_type, last_updated)`` index, so no page sorts the type's rows (ordering a
    filtered type by ``pk`` alone made SQLite sort every row of the type for every page) and
    ``_since`` is an index range."""
    query = query.where(R.c.resource_type == resource_type)
    after: tuple[int, int] | None = None
    while True:
        page = query
        if after is not None:
            page = page.where(
                R.c.last_updated >= after[0],
                or_(R.c.last_updated > after[0], R.c.pk > after[1]),
            )
        rows = connection.execute(page.order_by(R.c.last_updated, R.c.pk).limit(PAGE)).all()
        if not rows:
            return
        yield rows
        after = (rows[-1].last_updated, rows[-1].pk)


def _group_members(
    repo: Repository, group_id: str, gate: _Gate, issues: list[dict[str, Any]]
) -> list[str]:
    """Active Patient members of the Group that the gate allows, in order, without repeats."""
    group = repo.read("Group", group_id).json()
    members: list[str] = []
    for n, member in enumerate(group.get("member") or []):
        if not isinstance(member, dict) or member.get("inactive") is True:
            continue
        entity = member.get("entity")
        reference = entity.get("reference") if isinstance(entity, dict) else None
        if not isinstance(reference, str) or not reference.startswith("Patient/"):
            issues.append(
                _issue(
                    "information",
                    "not-supported",
                    f"Group.member[{n}] is not a Patient/[id] reference and was left out",
                )
            )
            continue
        patient_id = reference.removeprefix("Patient/").split("/")[0]
        if patient_id and gate.patient_allowed(patient_id):
            members.append(patient_id)
    return list(dict.fromkeys(members))


def run_export(
    store: SqlStore,
    context: RequestContext,
    spec: ExportSpec,
    folder: Path,
    *,
    file_limit: int,
    heartbeat: Callable[[str], bool],
) -> ExportResult:
    """Write the export ``spec`` asks for into ``folder``; return its manifest entries.

    Args:
        store: The record's store.
        context: The caller who kicked the export off (the gate decides for them).
        spec: What to export.
        folder: The job's folder; files are written here.
        file_limit: Most resources per file.
        heartbeat: Called about once a second with a progress text; return ``False`` to
            cancel.

    Raises:
        Cancelled: If ``heartbeat`` returned ``False``.
        RecordError: If the Group is missing or refused.
    """
    repo = Repository(store, context)
    issues: list[dict[str, Any]] = list(spec.issues)
    gate = _Gate(repo, issues)
    progress = _Progress(heartbeat)
    members = (
        _group_members(repo, spec.group_id, gate, issues)
        if spec.level == "group" and spec.group_id
        else None
    )
    if spec.level == "system":
        types = list(spec.types) if spec.types else None
    else:
        types = sorted(set(spec.types or compartment_types()) & compartment_types())
    if types is not None:
        types = [t for t in types if gate.type_allowed(t)]

    output = OutputFiles(folder, file_limit)
    deleted = OutputFiles(folder, file_limit, prefix="deleted-")
    columns = _columns(store)
    transaction_time = now_us() - _IN_FLIGHT_US
    try:
        with _snapshot(store) as connection:
            top = connection.scalar(select(func.max(R.c.pk))) or 1
            filters: list[Any] = []
            if spec.since is not None:
                filters.append(R.c.last_updated > spec.since)
            # Deletions are reported (system level, with _since) in the ``deleted`` files.
            report_deletions = spec.level == "system" and spec.since is not None
            if not report_deletions:
                filters.append(R.c.deleted.is_(False))
            # Pages come in primary-key order (so the last key tells how far the export is)
            # except when read type by type.
            in_key_order = members is not None or (types is None and spec.since is None)
            if types == []:
                pages: Iterator[Sequence[Any]] = iter(())
            elif members is not None:
                pages = _member_pages(connection, store, columns, filters, members, types or [])
            elif types is None and spec.since is None:
                # The whole store: one pass in primary-key order.
                pages = _keyset_pages(connection, select(*columns).where(and_(*filters)))
            else:
                if spec.level == "patient":
                    params = _compartment_params(store, types or [])
                    in_compartment = exists().where(
                        REF.c.res == R.c.pk,
                        REF.c.param.in_(params),
                        REF.c.target_type == "Patient",
                    )
                    filters.append(or_(R.c.resource_type == "Patient", in_compartment))
                query = select(*columns).where(and_(*filters))
                pages = (
                    rows
                    for rtype in (types if types is not None else resource_types())
                    for rows in _type_pages(connection, query, rtype)
                )
            for rows in pages:
                by_type: dict[str, list[bytes]] = {}
                for _, rtype, rid, is_deleted, content, _ in rows:
                    if types is None and not gate.type_allowed(rtype):
                        continue
                    if is_deleted:
                        deleted.write("Bundle", _deletion(rtype, rid))
                        continue
                    lines = by_type.get(rtype)
                    if lines is None:
                        lines = by_type[rtype] = []
                    lines.append(content.encode() if content.__class__ is str else content)
                for rtype, lines in by_type.items():
                    output.write_many(rtype, lines)
                progress.tick(output, rows[-1][0] / top if in_key_order else None)
    finally:
        written = output.close()
        removed = deleted.close()
    errors = OutputFiles(folder, file_limit, prefix="error-")
    for issue in issues:
        errors.write("OperationOutcome", _outcome(issue))
    reported = errors.close()
    total = sum(f.count for f in written)
    _audit_done(repo, spec, total, len(written))
    return ExportResult(
        transaction_time=transaction_time,
        manifest={
            "output": [{"type": f.type, "name": f.name, "count": f.count} for f in written],
            "deleted": [{"type": f.type, "name": f.name, "count": f.count} for f in removed],
            "error": [{"type": f.type, "name": f.name, "count": f.count} for f in reported],
        },
        total=total,
    )


def _member_pages(
    connection: Connection,
    store: SqlStore,
    columns: list[Any],
    filters: list[Any],
    members: list[str],
    types: list[str],
) -> Iterator[Sequence[Any]]:
    """Pages of the resources in the members' compartments, in primary-key order.

    The members' resource keys are gathered first (index scans of the reference index, a
    chunk of members at a time; a set of integers), so a resource in two members'
    compartments is exported once.
    """
    params = _compartment_params(store, types)
    keys: set[int] = set()
    for start in range(0, len(members), _MEMBER_CHUNK):
        chunk = members[start : start + _MEMBER_CHUNK]
        if params:
            keys.update(
                connection.scalars(
                    select(REF.c.res).where(
                        REF.c.param.in_(params),
                        REF.c.target_type == "Patient",
                        REF.c.target_id.in_(chunk),
                    )
                )
            )
        if "Patient" in types:
            keys.update(
                connection.scalars(
                    select(R.c.pk).where(R.c.resource_type == "Patient", R.c.id.in_(chunk))
                )
            )
    ordered = sorted(keys)
    for start in range(0, len(ordered), PAGE):
        page = ordered[start : start + PAGE]
        rows = connection.execute(
            select(*columns).where(R.c.pk.in_(page), *filters).order_by(R.c.pk)
        ).all()
        if rows:
            yield rows


def _deletion(resource_type: str, resource_id: str) -> bytes:
    """One line of a ``deleted`` file: a transaction Bundle with one DELETE entry."""
    return orjson.dumps(
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [{"request": {"method": "DELETE", "url": f"{resource_type}/{resource_id}"}}],
        }
    )


def _outcome(issue: dict[str, Any]) -> bytes:
    return orjson.dumps({"resourceType": "OperationOutcome", "issue": [issue]})


def _audit_done(repo: Repository, spec: ExportSpec, total: int, files: int) -> None:
    entry = AuditEntry(
        "operation",
        "0",
        "Group" if spec.level == "group" else "Patient" if spec.level == "patient" else None,
        spec.group_id,
        description=f"$export ({spec.level} level) wrote {total} resources in {files} files",
    )
    with write_connection(repo.engine) as connection:
        write_audit(connection, repo.context, [entry])
