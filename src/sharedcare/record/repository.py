"""The repository: the one gate every interaction with the record passes through.

A :class:`Repository` is built per request from the caller's
:class:`~sharedcare.record.context.RequestContext`. Each interaction (RESTful API,
https://hl7.org/fhir/R4/http.html) asks the access policy (the ``check_access`` plugin hook)
whether the caller may proceed, does its work, and writes an AuditEvent whether it succeeds
or fails.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl

import orjson
from sqlalchemy.exc import IntegrityError

from sharedcare.db.engine import write_connection
from sharedcare.fhir.search_index import extract_index
from sharedcare.fhir.validation import has_errors, validate
from sharedcare.record.audit import AuditEntry, audit_rows, insert_audit_rows
from sharedcare.record.audit_search import refuse_trail_write
from sharedcare.record.errors import (
    ConcurrentUpdate,
    Conflict,
    InvalidRequest,
    InvalidResource,
    PreconditionFailed,
    VersionConflict,
)
from sharedcare.record.instants import now_us, to_instant
from sharedcare.record.reads import ReadInteractions, SearchPage
from sharedcare.record.resources import (
    Outcome,
    etag_version,
    new_id,
    patient_of,
    patient_of_json,
    same_content,
    stored_of,
    type_of,
)
from sharedcare.record.sqlstore import PendingWrite, StoredResource

__all__ = ["Outcome", "Repository", "SearchPage", "etag_version", "new_id", "same_content"]

_WRITE_ATTEMPTS = 3  # tries of an update or delete that loses a race on its resource


class Repository(ReadInteractions):
    """Every read and write of the record, on behalf of one caller.

    Built per request from the caller's context (the arguments are
    :class:`~sharedcare.record.gate.Gate`'s). The gate and the audit are ``Gate``'s, the
    reads :class:`~sharedcare.record.reads.ReadInteractions`'; the writes are here.
    """

    #: The last ``now`` given to :meth:`prepare` and its ``meta.lastUpdated`` text.
    _instant: tuple[int, str] = (-1, "")

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
        self.ask_gate("update" if existed else "create", type_of(resource), id)
        issues = validate(resource)
        if has_errors(issues):
            raise InvalidResource(issues)
        resource["id"] = id
        meta = dict(resource.get("meta") or {})
        meta["versionId"] = str(version_id)
        instant = self._instant
        if instant[0] != now:  # a batch's writes share one time
            instant = self._instant = (now, to_instant(now))
        meta["lastUpdated"] = instant[1]
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
                self.store.pipelined(connection, writes, commit=True),
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
        resource_type = type_of(resource)
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
            entry.patient = patient_of_json(resource)
            self._commit([write], [entry])
            return Outcome(stored_of(write), created=True)

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
            if type_of(resource) != resource_type:
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
        if self.store.dialect == "postgresql":
            return self._update_locked(resource_type, id, resource, if_match, entry)
        current = self.store.read_current(resource_type, id)
        planned = self._plan_update(current, resource_type, id, resource, if_match, entry)
        if isinstance(planned, Outcome):
            self._audit_alone(entry)
            return planned
        self._commit([planned], [entry])
        return Outcome(stored_of(planned), created=entry.interaction == "create")

    def _update_locked(
        self,
        resource_type: str,
        id: str,
        resource: dict[str, Any],
        if_match: str | None,
        entry: AuditEntry,
    ) -> Outcome:
        """PostgreSQL: read the current version with its row locked, and write the new one,
        in one transaction of two round trips (the locked read; the write, its AuditEvent
        and the commit). Only this row is locked while the new version is prepared; other
        writers are not held up (SQLite, whose lock is the whole database's, reads first and
        checks the version under the lock instead)."""
        planned: PendingWrite | Outcome
        try:
            with (
                write_connection(self.engine) as connection,
                self.store.own_write(connection),
            ):
                current, locked = self.store.read_locked(connection, resource_type, id)
                planned = self._plan_update(current, resource_type, id, resource, if_match, entry)
                if isinstance(planned, PendingWrite):
                    found = {(resource_type, id): locked} if locked else {}
                    self.store.apply(connection, [planned], locked=found)
                    insert_audit_rows(connection, audit_rows(self.context, [entry]))
        except IntegrityError:
            raise Conflict(
                "another request changed the same resource at the same time; retry the request"
            ) from None
        if isinstance(planned, Outcome):  # no change: nothing was written
            self._audit_alone(entry)
            return planned
        self.committed([planned])
        return Outcome(stored_of(planned), created=entry.interaction == "create")

    def _plan_update(
        self,
        current: StoredResource | None,
        resource_type: str,
        id: str,
        resource: dict[str, Any],
        if_match: str | None,
        entry: AuditEntry,
    ) -> PendingWrite | Outcome:
        """The write an update makes of ``current``, or the outcome if there is nothing to
        write (the content is unchanged: the current version stays)."""
        if if_match is not None:
            _require_version(if_match, current)
        if current is not None and not current.deleted and same_content(current.json(), resource):
            # No change: keep the current version rather than add an identical one.
            self.ask_gate("update", resource_type, id)
            entry.version_id = current.version_id
            return Outcome(current, created=False)
        version = (current.version_id + 1) if current else 1
        write = self.prepare(
            resource, id=id, version_id=version, now=now_us(), existed=current is not None
        )
        entry.version_id = version
        entry.patient = patient_of_json(resource)
        entry.interaction = "create" if current is None or current.deleted else "update"
        return write

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

    def delete(
        self, resource_type: str, id: str, *, if_match: str | None = None
    ) -> StoredResource | None:
        """https://hl7.org/fhir/R4/http.html#delete (logical: a new, deleted version).

        With ``if_match`` (an ETag), the current version must be the one it names, as for
        an update (https://hl7.org/fhir/R4/http.html#concurrency); otherwise 412.
        """
        self._require_type(resource_type)
        entry = AuditEntry("delete", "0", resource_type, id)
        with self._audited(entry):
            for _ in range(_WRITE_ATTEMPTS - 1):
                try:
                    return self._delete_once(resource_type, id, entry, if_match)
                except ConcurrentUpdate:  # another request wrote it since we read it
                    continue
            return self._delete_once(resource_type, id, entry, if_match)

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
            current = self.store.read_current(resource_type, id)
            if current is not None and not current.deleted:
                return False, None
            self.ask_gate("delete", resource_type, id)
            self._audit_alone(entry)
            return True, current

    def _delete_once(
        self, resource_type: str, id: str, entry: AuditEntry, if_match: str | None
    ) -> StoredResource | None:
        current = self.store.read_current(resource_type, id)
        if if_match is not None:  # checked again if the write finds the version moved on
            _require_version(if_match, current)
        if current is None or current.deleted:
            self.ask_gate("delete", resource_type, id)
            self._audit_alone(entry)
            return current
        entry.patient = patient_of(current)
        write = self.prepare_delete(current, now=now_us())
        entry.version_id = write.version_id
        self._commit([write], [entry])
        return stored_of(write)

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

    def validate_only(
        self, resource_type: str, resource: dict[str, Any], resource_id: str | None = None
    ) -> list[Any]:
        """``$validate`` (https://hl7.org/fhir/R4/resource-operation-validate.html) of
        ``resource`` at ``resource_type`` (or its instance ``resource_id``): the issues found.

        Nothing is stored, but the operation passes the gate and is audited like any other
        interaction (an ``operation`` AuditEvent described ``$validate``; the resource sent is
        not recorded in it), whatever the issues found.
        """
        self._require_type(resource_type)  # refused and audited at the API (refusal_audit)
        entry = AuditEntry("operation", "0", resource_type, resource_id)
        entry.description = "$validate"
        with self._audited(entry):
            self.ask_gate("operation", resource_type, resource_id)
            issues = validate(resource)
        self._audit_alone(entry)
        return issues


def _require_version(if_match: str, current: StoredResource | None) -> None:
    """Refuse (412) unless ``current`` is the version the ``If-Match`` ETag names."""
    wanted = etag_version(if_match)
    if current is None or current.deleted or current.version_id != wanted:
        raise VersionConflict(
            f"If-Match names version {wanted} but the current version is "
            f"{current.version_id if current else 'none'}; read it again and "
            "reapply your change"
        )
