"""The repository: the one gate every interaction with the record passes through.

A :class:`Repository` is built per request from the caller's
:class:`~sharedcare.record.context.RequestContext`. Each interaction (RESTful API,
https://hl7.org/fhir/R4/http.html) asks the access policy (the ``check_access`` plugin hook)
whether the caller may proceed, does its work, and writes an AuditEvent whether it succeeds
or fails.
"""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode

import orjson
from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import IntegrityError

from sharedcare.db.engine import write_connection
from sharedcare.db.tables import IdentityLink, IdxReference, Resource
from sharedcare.fhir.definitions import is_resource_type, patient_compartment
from sharedcare.fhir.search_index import extract_index
from sharedcare.fhir.validation import has_errors, validate
from sharedcare.record.audit import (
    AuditEntry,
    AuditWriter,
    audit_rows,
    insert_audit_rows,
    write_audit,
)
from sharedcare.record.audit_search import refuse_trail_write
from sharedcare.record.context import RequestContext
from sharedcare.record.errors import (
    ConcurrentUpdate,
    Conflict,
    Forbidden,
    Gone,
    InvalidRequest,
    InvalidResource,
    NotFound,
    PreconditionFailed,
    RecordError,
    UnknownResourceType,
    VersionConflict,
)
from sharedcare.record.instants import now_us, parse_instant_us, to_instant
from sharedcare.record.search import SearchRequest, compile_search, parse_search
from sharedcare.record.search.everything import compartment_keys
from sharedcare.record.search.execute import bytewise_collation, run_search
from sharedcare.record.search.include import resolve_includes
from sharedcare.record.search.shape import shape
from sharedcare.record.sqlstore import PendingWrite, SqlStore, StoredResource

__all__ = ["Outcome", "Repository", "SearchPage", "etag_version", "new_id", "same_content"]

_WRITE_ATTEMPTS = 3  # tries of an update or delete that loses a race on its resource

T = TypeVar("T")
R = Resource.__table__


def new_id() -> str:
    """A new server-assigned id: a time-ordered UUID (version 7 layout).

    Time order keeps new rows at the right-hand end of the primary-key index.
    """
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & (2**48 - 1)) << 80 | 0x7 << 76 | (rand >> 68) << 64 | 0b10 << 62
    value |= rand & (2**62 - 1)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass(slots=True)
class Outcome:
    """The result of a write: the stored version and whether it was created."""

    stored: StoredResource
    created: bool


@dataclass(slots=True)
class SearchPage:
    """One page of search results, with the cursors of the neighbouring pages."""

    request: SearchRequest
    matches: list[StoredResource]
    total: int | None
    included: list[StoredResource]
    next_cursor: str | None = None
    previous_cursor: str | None = None


def etag_version(if_match: str) -> int:
    raw = if_match.strip()
    if raw.startswith("W/"):
        raw = raw[2:]
    raw = raw.strip('"')
    try:
        return int(raw)
    except ValueError:
        raise InvalidRequest('If-Match must be an ETag such as W/"3"') from None


def same_content(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two versions differ only in server-set meta (versionId, lastUpdated, source)."""

    def strip(resource: dict[str, Any]) -> dict[str, Any]:
        copy = dict(resource)
        meta = {
            k: v
            for k, v in (copy.pop("meta", None) or {}).items()
            if k not in {"versionId", "lastUpdated", "source"}
        }
        if meta:
            copy["meta"] = meta
        return copy

    return strip(a) == strip(b)


_single_readers: weakref.WeakKeyDictionary[Engine, Engine] = weakref.WeakKeyDictionary()


def _single_reader(engine: Engine) -> Engine:
    """The engine for one-statement reads (see :meth:`Repository._single_read`)."""
    reader = _single_readers.get(engine)
    if reader is None:
        reader = engine
        if engine.dialect.name == "postgresql":
            reader = engine.execution_options(isolation_level="AUTOCOMMIT")
        _single_readers[engine] = reader
    return reader


class Repository:
    """Every read and write of the record, on behalf of one caller.

    Args:
        store: The SQL store.
        context: Who is asking, and why.
        audit_writer: Where AuditEvents with no write of their own (reads, searches,
            failures) go: a group-commit :class:`~sharedcare.record.audit.AuditWriter` in the
            API server. Without one, each is committed in a transaction of its own.
    """

    def __init__(
        self, store: SqlStore, context: RequestContext, audit_writer: AuditWriter | None = None
    ) -> None:
        self.store = store
        self.context = context
        self.engine = store.engine
        self.audit_writer = audit_writer
        #: With an audit writer: leave AuditEvents queued in :attr:`pending_audits` rather
        #: than wait for them, for a caller on an event loop that awaits them itself before
        #: it answers.
        self.defer_audit = False
        self.pending_audits: list[Future[None]] = []

    # -- the gate -----------------------------------------------------------------------

    def ask_gate(
        self, interaction: str, resource_type: str | None, resource_id: str | None
    ) -> None:
        """Ask the access gate (the ``check_access`` hook) whether this caller may do this.

        Raises:
            Forbidden: A plugin refused; its reason is the message.
            AuditTrailReadOnly: A write of an AuditEvent (405).
        """
        from sharedcare.plugins import plugin_manager

        refuse_trail_write(interaction, resource_type)  # AuditEvents: append-only, server's
        refusals = plugin_manager().hook.check_access(
            context=self.context,
            interaction=interaction,
            resource_type=resource_type,
            resource_id=resource_id,
        )
        refusal = next((r for r in refusals if r), None)
        if refusal:
            raise Forbidden(refusal)

    def audit_failure(self, entry: AuditEntry, error: Exception) -> None:
        entry.outcome = "4" if isinstance(error, RecordError) and error.status < 500 else "8"
        entry.description = (
            error.message if isinstance(error, RecordError) else type(error).__name__
        )
        self._audit_alone(entry)

    def _audit_alone(self, entry: AuditEntry) -> None:
        """Store the AuditEvent of an interaction that writes nothing else; return once stored."""
        if self.audit_writer is not None:
            if self.defer_audit:
                self.pending_audits.append(self.audit_writer.submit(self.context, [entry]))
            else:
                self.audit_writer.write(self.context, [entry])
            return
        with write_connection(self.engine) as connection:
            write_audit(connection, self.context, [entry])

    def _single_read(self) -> Connection:
        """A connection for a read of one statement.

        On PostgreSQL it runs in autocommit: one statement sees one snapshot either way, and
        this saves the ``BEGIN`` and ``ROLLBACK`` round trips around it.
        """
        return _single_reader(self.engine).connect()

    @contextmanager
    def _audited(self, entry: AuditEntry) -> Iterator[AuditEntry]:
        """Audit ``entry`` on failure; callers audit success in their own transaction."""
        try:
            yield entry
        except Exception as error:
            self.audit_failure(entry, error)
            raise

    def _audited_read(
        self, entry: AuditEntry, work: Callable[[Connection], T], *, single: bool = False
    ) -> T:
        """Run ``work`` behind the gate and audit it; ``single`` if it is one statement."""
        with self._audited(entry):
            self.ask_gate(entry.interaction, entry.resource_type, entry.resource_id)
            # The read runs in its own snapshot and the audit is stored after it (grouped
            # with other requests' by the audit writer). Reading inside the audit's write
            # transaction was measured: on PostgreSQL at 1M resources a broad search went
            # from 1.6 ms to 400-775 ms, and on SQLite a write transaction would serialise
            # readers.
            with self._single_read() if single else self.engine.connect() as connection:
                result = work(connection)
            self._audit_alone(entry)
            return result

    @staticmethod
    def _require_type(resource_type: str) -> None:
        if not is_resource_type(resource_type):
            raise UnknownResourceType(
                f"{resource_type} is not an R4 resource type; see /fhir/metadata"
            )

    # -- reads --------------------------------------------------------------------------

    def read(self, resource_type: str, id: str) -> StoredResource:
        """https://hl7.org/fhir/R4/http.html#read"""
        self._require_type(resource_type)
        entry = AuditEntry("read", "0", resource_type, id)

        def work(connection: Connection) -> StoredResource:
            stored = self.store.read(connection, resource_type, id)
            if stored is None:
                raise NotFound(f"{resource_type}/{id} does not exist")
            if stored.deleted:
                raise Gone(f"{resource_type}/{id} was deleted")
            entry.patient = _patient_of(stored)
            return stored

        return self._audited_read(entry, work, single=True)

    def vread(self, resource_type: str, id: str, version: str) -> StoredResource:
        """https://hl7.org/fhir/R4/http.html#vread"""
        self._require_type(resource_type)
        entry = AuditEntry("vread", "0", resource_type, id)
        try:
            version_id = int(version)
        except ValueError:
            version_id = -1

        def work(connection: Connection) -> StoredResource:
            stored = self.store.vread(connection, resource_type, id, version_id)
            if stored is None:
                raise NotFound(f"{resource_type}/{id} has no version {version}")
            if stored.deleted:
                raise Gone(f"version {version} of {resource_type}/{id} is a deletion")
            entry.version_id = version_id
            entry.patient = _patient_of(stored)
            return stored

        return self._audited_read(entry, work, single=True)

    def history(
        self,
        resource_type: str | None = None,
        id: str | None = None,
        *,
        since: str | None = None,
        count: int = 50,
        offset: int = 0,
        before_us: int | None = None,
    ) -> tuple[list[StoredResource], int]:
        """https://hl7.org/fhir/R4/http.html#history (instance, type and system level)."""
        if resource_type is not None:
            self._require_type(resource_type)
        level = "history-instance" if id else "history-type" if resource_type else "history-system"
        since_us = None
        if since is not None:
            since_us = parse_instant_us(since)
            if since_us is None:
                raise InvalidRequest("_since must be a FHIR instant such as 2024-05-01T00:00:00Z")
        entry = AuditEntry(level, "0", resource_type, id)

        def work(connection: Connection) -> tuple[list[StoredResource], int]:
            versions, total = self.store.history(
                connection,
                resource_type=resource_type,
                id=id,
                since=since_us,
                before=before_us,
                limit=count,
                offset=offset,
            )
            if id is not None and total == 0:
                raise NotFound(f"{resource_type}/{id} does not exist")
            return versions, total

        return self._audited_read(entry, work)

    def search(
        self,
        resource_type: str,
        params: Sequence[tuple[str, str]],
        *,
        strict: bool = False,
        compartment: tuple[str, str] | None = None,
    ) -> SearchPage:
        """https://hl7.org/fhir/R4/search.html"""
        self._require_type(resource_type)
        query = urlencode(list(params))
        entry = AuditEntry("search-type", "0", resource_type, query=query)
        if compartment:
            entry.interaction = "search-compartment"
            entry.patient = f"{compartment[0]}/{compartment[1]}"

        def work(connection: Connection) -> SearchPage:
            request = parse_search(resource_type, params, strict=strict)
            extra = self._compartment_members(resource_type, compartment) if compartment else None
            compiled = compile_search(
                request,
                self.store.param_id,
                dialect=self.store.dialect,
                bytewise=bytewise_collation(connection),
                extra=extra,
            )
            result = run_search(connection, request, compiled)
            matches = result.resources
            included = resolve_includes(
                connection, self.store.param_id, request.includes, matches, result.pks
            )
            if request.summary or request.elements:
                for stored in matches:
                    if stored.content is not None:
                        stored.content = shape(stored.content, request.summary, request.elements)
            return SearchPage(
                request,
                matches,
                result.total,
                included,
                result.next_cursor,
                result.previous_cursor,
            )

        # Autocommit on PostgreSQL (no BEGIN/ROLLBACK round trips): most searches are the one
        # page query; a count or an _include step, when one runs, reads its own snapshot.
        return self._audited_read(entry, work, single=True)

    def _compartment_members(self, resource_type: str, compartment: tuple[str, str]) -> Any:
        """Index rows placing ``resource_type`` resources in the compartment, per the official
        CompartmentDefinition (https://hl7.org/fhir/R4/compartmentdefinition-patient.html)."""
        kind, owner = compartment
        if kind != "Patient":
            raise InvalidRequest("only the Patient compartment is supported")
        if resource_type == "Patient":
            return R.c.id == owner
        params = patient_compartment().get(resource_type, ())
        ids = [p for p in (self.store.param_id(resource_type, c) for c in params) if p]
        if not ids:
            raise InvalidRequest(
                f"{resource_type} is not in the Patient compartment; see "
                "https://hl7.org/fhir/R4/compartmentdefinition-patient.html"
            )
        ref = IdxReference.__table__
        return select(ref.c.res).where(
            ref.c.param.in_(ids), ref.c.target_type == "Patient", ref.c.target_id == owner
        )

    def everything(
        self,
        patient_id: str,
        *,
        since: str | None = None,
        types: Sequence[str] | None = None,
        count: int = 100,
        offset: int = 0,
    ) -> tuple[list[StoredResource], int]:
        """``Patient/{id}/$everything`` (https://hl7.org/fhir/R4/patient-operation-everything.html).

        The patient and every resource in its compartment, per the official Patient
        CompartmentDefinition, found through the reference index
        (:func:`~sharedcare.record.search.everything.compartment_keys`). For a golden
        record of the master patient index the compartment is that of every source Patient
        linked to it (the ``identity_link`` table, not the resource's own ``link``
        elements, which a client could write): the person's data from every organisation,
        in one paged result.
        """
        entry = AuditEntry("operation", "0", "Patient", patient_id, patient=f"Patient/{patient_id}")
        entry.description = "$everything"
        since_us = None
        if since is not None:
            since_us = parse_instant_us(since)
            if since_us is None:
                raise InvalidRequest("_since must be a FHIR instant")
        for t in types or ():
            self._require_type(t)

        def work(connection: Connection) -> tuple[list[StoredResource], int]:
            patient = self.store.read(connection, "Patient", patient_id)
            if patient is None or patient.deleted:
                raise NotFound(f"Patient/{patient_id} does not exist")
            link = IdentityLink.__table__
            sources = select(link.c.source_id).where(link.c.golden_id == patient_id)
            patients = [patient_id, *connection.scalars(sources)]
            # Index lookups first, then the resource table by key (see search/everything.py).
            keys = compartment_keys(
                connection, self.store, patients, types=types, since_us=since_us
            )
            return self.store.read_by_pks(connection, keys[offset : offset + count]), len(keys)

        return self._audited_read(entry, work)

    # -- writes -------------------------------------------------------------------------

    def prepare(
        self,
        resource: dict[str, Any],
        *,
        id: str,
        version_id: int,
        now: int,
        existed: bool,
    ) -> PendingWrite:
        """Validate ``resource`` and turn it into a write: id, meta, JSON bytes, index values.

        Every write path (the REST interactions, transaction bundles, ``sharedcare load`` and
        the ingest writer) prepares its writes here, so this is where the access gate is
        asked: ``update`` when the resource already exists, ``create`` otherwise.

        Raises:
            Forbidden: If the access policy refuses the write.
            InvalidResource: If the resource fails validation.
        """
        self.ask_gate("update" if existed else "create", _type_of(resource), id)
        issues = validate(resource)
        if has_errors(issues):
            raise InvalidResource(issues)
        resource["id"] = id
        meta = dict(resource.get("meta") or {})
        meta["versionId"] = str(version_id)
        meta["lastUpdated"] = to_instant(now)
        if "source" not in meta:
            meta["source"] = self.source_uri()
        resource["meta"] = meta
        return PendingWrite(
            resource_type=resource["resourceType"],
            id=id,
            version_id=version_id,
            last_updated=now,
            deleted=False,
            content=orjson.dumps(resource),
            index=extract_index(resource),
            existed=existed,
        )

    def prepare_delete(self, current: StoredResource, *, now: int) -> PendingWrite:
        """The write that logically deletes ``current``: a new version with no content.

        Raises:
            Forbidden: If the access policy refuses the delete.
        """
        self.ask_gate("delete", current.resource_type, current.id)
        return PendingWrite(
            current.resource_type, current.id, current.version_id + 1, now, True, None, [], True
        )

    def source_uri(self) -> str:
        """``meta.source`` for resources this caller writes: organisation and feed."""
        organisation = self.context.organisation or "unknown"
        return f"urn:sharedcare:source:{organisation}:{self.context.feed or self.context.user}"

    def _commit(self, writes: list[PendingWrite], entries: list[AuditEntry]) -> None:
        # The AuditEvents are built before the write lock is taken: only the inserts and the
        # commit run while other writers wait.
        audits = audit_rows(self.context, entries)
        try:
            with (
                write_connection(self.engine) as connection,
                self.store.pipelined(connection, writes),
            ):
                self.store.apply(connection, writes)
                insert_audit_rows(connection, audits)
        except IntegrityError:
            raise Conflict(
                "another request changed the same resource at the same time; retry the request"
            ) from None
        self.committed(writes)

    def committed(self, writes: Sequence[PendingWrite]) -> None:
        """Tell the plugins (``record_committed`` hook) about ``writes``, now committed.

        Every write path that commits its own transaction calls this after the commit
        (identity matches the Patients written: :mod:`sharedcare.identity.realtime`).
        """
        from sharedcare.plugins import plugin_manager

        plugin_manager().hook.record_committed(
            store=self.store, context=self.context, writes=writes
        )

    def create(self, resource: dict[str, Any], *, if_none_exist: str | None = None) -> Outcome:
        """https://hl7.org/fhir/R4/http.html#create, with conditional create (If-None-Exist)."""
        resource_type = _type_of(resource)
        entry = AuditEntry("create", "0", resource_type)
        with self._audited(entry):
            if if_none_exist is not None:
                found = self._conditional_matches(resource_type, if_none_exist)
                if len(found) > 1:
                    raise PreconditionFailed(
                        f"If-None-Exist matched {len(found)} resources; make the criteria "
                        "more specific"
                    )
                if found:
                    entry.interaction = "read"
                    entry.resource_id = found[0].id
                    self._audit_alone(entry)
                    return Outcome(found[0], created=False)
            id = new_id()
            write = self.prepare(resource, id=id, version_id=1, now=now_us(), existed=False)
            entry.resource_id, entry.version_id = id, 1
            entry.patient = _patient_of_json(resource)
            self._commit([write], [entry])
            return Outcome(_stored(write), created=True)

    def update(
        self,
        resource_type: str,
        id: str,
        resource: dict[str, Any],
        *,
        if_match: str | None = None,
    ) -> Outcome:
        """https://hl7.org/fhir/R4/http.html#update, including update-as-create."""
        self._require_type(resource_type)
        entry = AuditEntry("update", "0", resource_type, id)
        with self._audited(entry):
            if _type_of(resource) != resource_type:
                raise InvalidRequest(
                    f"the body is a {resource.get('resourceType')} but the URL names "
                    f"{resource_type}"
                )
            if resource.get("id") != id:
                raise InvalidRequest(
                    "the resource's id must match the id in the URL", expression="id"
                )
            for _ in range(_WRITE_ATTEMPTS - 1):
                try:
                    return self._update_once(resource_type, id, resource, if_match, entry)
                except ConcurrentUpdate:  # another request wrote it since we read it
                    continue
            return self._update_once(resource_type, id, resource, if_match, entry)

    def _update_once(
        self,
        resource_type: str,
        id: str,
        resource: dict[str, Any],
        if_match: str | None,
        entry: AuditEntry,
    ) -> Outcome:
        with self._single_read() as connection:
            current = self.store.read(connection, resource_type, id)
        if if_match is not None:
            wanted = etag_version(if_match)
            if current is None or current.deleted or current.version_id != wanted:
                raise VersionConflict(
                    f"If-Match names version {wanted} but the current version is "
                    f"{current.version_id if current else 'none'}; read it again and "
                    "reapply your change"
                )
        if current is not None and not current.deleted and same_content(current.json(), resource):
            # No change: keep the current version rather than add an identical one.
            self.ask_gate("update", resource_type, id)
            entry.version_id = current.version_id
            self._audit_alone(entry)
            return Outcome(current, created=False)
        version = (current.version_id + 1) if current else 1
        write = self.prepare(
            resource, id=id, version_id=version, now=now_us(), existed=current is not None
        )
        entry.version_id = version
        entry.patient = _patient_of_json(resource)
        entry.interaction = "create" if current is None or current.deleted else "update"
        self._commit([write], [entry])
        return Outcome(_stored(write), created=current is None or current.deleted)

    def conditional_update(
        self, resource_type: str, criteria: str, resource: dict[str, Any]
    ) -> Outcome:
        """https://hl7.org/fhir/R4/http.html#cond-update"""
        self._require_type(resource_type)
        found = self._conditional_matches(resource_type, criteria)
        if len(found) > 1:
            raise PreconditionFailed(
                f"the criteria matched {len(found)} resources; make them more specific"
            )
        if found:
            resource_id = resource.get("id")
            if resource_id is not None and resource_id != found[0].id:
                raise Conflict("the resource's id differs from the one the criteria matched")
            resource["id"] = found[0].id
            return self.update(resource_type, found[0].id, resource)
        if "id" in resource:
            return self.update(resource_type, resource["id"], resource)
        return self.create(resource)

    def delete(self, resource_type: str, id: str) -> StoredResource | None:
        """https://hl7.org/fhir/R4/http.html#delete (logical: a new, deleted version)."""
        self._require_type(resource_type)
        entry = AuditEntry("delete", "0", resource_type, id)
        with self._audited(entry):
            for _ in range(_WRITE_ATTEMPTS - 1):
                try:
                    return self._delete_once(resource_type, id, entry)
                except ConcurrentUpdate:  # another request wrote it since we read it
                    continue
            return self._delete_once(resource_type, id, entry)

    def delete_if_absent(self, resource_type: str, id: str) -> tuple[bool, StoredResource | None]:
        """The delete of a resource that is absent or already deleted: nothing to write.

        Returns ``(True, current)`` when that is so (``current`` the deletion found, or
        ``None``; the gate was asked and the AuditEvent stored or, with
        :attr:`defer_audit`, queued); ``(False, None)`` if the resource exists, for
        :meth:`delete` to write the deletion. One indexed read that never waits on a lock,
        so the API runs it on the event loop and only real deletes go to a worker thread.
        """
        self._require_type(resource_type)
        entry = AuditEntry("delete", "0", resource_type, id)
        with self._audited(entry):
            with self._single_read() as connection:
                current = self.store.read(connection, resource_type, id)
            if current is not None and not current.deleted:
                return False, None
            self.ask_gate("delete", resource_type, id)
            self._audit_alone(entry)
            return True, current

    def _delete_once(self, resource_type: str, id: str, entry: AuditEntry) -> StoredResource | None:
        with self._single_read() as connection:
            current = self.store.read(connection, resource_type, id)
        if current is None or current.deleted:
            self.ask_gate("delete", resource_type, id)
            self._audit_alone(entry)
            return current
        entry.patient = _patient_of(current)
        write = self.prepare_delete(current, now=now_us())
        entry.version_id = write.version_id
        self._commit([write], [entry])
        return _stored(write)

    def conditional_delete(self, resource_type: str, criteria: str) -> int:
        """https://hl7.org/fhir/R4/http.html#cdelete (single match only)."""
        with self._audited(AuditEntry("delete", "0", resource_type, query=criteria)):
            refuse_trail_write("delete", resource_type)  # even when nothing matches
        found = self._conditional_matches(resource_type, criteria)
        if len(found) > 1:
            raise PreconditionFailed(
                f"the criteria matched {len(found)} resources; sharedcare deletes one at a time"
            )
        for stored in found:
            self.delete(resource_type, stored.id)
        return len(found)

    def _conditional_matches(self, resource_type: str, criteria: str) -> list[StoredResource]:
        params = parse_qsl(criteria.lstrip("?"), keep_blank_values=True)
        if not params:
            raise InvalidRequest("conditional criteria must not be empty")
        page = self.search(
            resource_type, self.conditional_params(resource_type, params), strict=True
        )
        return page.matches

    def conditional_params(
        self, resource_type: str, params: Sequence[tuple[str, str]]
    ) -> list[tuple[str, str]]:
        """The search for a conditional interaction: the client's criteria, the parameters
        plugins add (``conditional_criteria`` hook), and ``_count=2`` (one match is wanted).
        """
        from sharedcare.plugins import plugin_manager

        added = plugin_manager().hook.conditional_criteria(resource_type=resource_type)
        return [*params, *(p for extra in added if extra for p in extra), ("_count", "2")]

    def validate_only(self, resource: dict[str, Any]) -> list[Any]:
        """``$validate`` (https://hl7.org/fhir/R4/resource-operation-validate.html)."""
        return validate(resource)


def _type_of(resource: Any) -> str:
    if not isinstance(resource, dict):
        raise InvalidRequest("the body must be a JSON object (a FHIR resource)")
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str) or not is_resource_type(resource_type):
        raise InvalidRequest(
            "the body's resourceType is missing or is not an R4 resource type",
            expression="resourceType",
        )
    return resource_type


def _stored(write: PendingWrite) -> StoredResource:
    return StoredResource(
        write.resource_type,
        write.id,
        write.version_id,
        write.last_updated,
        write.deleted,
        write.content,
    )


def _patient_of_json(resource: dict[str, Any]) -> str | None:
    if resource.get("resourceType") == "Patient" and resource.get("id"):
        return f"Patient/{resource['id']}"
    for key in ("subject", "patient", "beneficiary"):
        ref = resource.get(key)
        if isinstance(ref, dict):
            target = ref.get("reference")
            if isinstance(target, str) and target.startswith("Patient/"):
                return target[:100]
    return None


def _patient_of(stored: StoredResource) -> str | None:
    if stored.resource_type == "Patient":
        return f"Patient/{stored.id}"
    if stored.content is None:
        return None
    return _patient_of_json(stored.json())
