"""Batch and transaction Bundles (https://hl7.org/fhir/R4/http.html#transaction).

A **transaction** is all-or-nothing. Entries are processed in the order the specification
sets (DELETE, POST, PUT, then GET); ``urn:uuid:`` full URLs are given ids before anything is
written and every reference to them is rewritten; conditional references
(``Patient?identifier=…``) must match exactly one resource; every write of the bundle is
then applied to the store in one database transaction, with one AuditEvent naming each
resource written.

A **batch** processes each entry on its own; a failed entry carries an OperationOutcome in
its response and does not affect the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from sharedcare.db.engine import write_connection
from sharedcare.fhir.definitions import is_resource_type
from sharedcare.fhir.references import rewrite_references
from sharedcare.record.audit import AuditEntry, write_audit
from sharedcare.record.audit_search import AUDIT_EVENT, refuse_trail_write, trail_entry
from sharedcare.record.errors import (
    ConcurrentUpdate,
    InvalidRequest,
    PreconditionFailed,
    RecordError,
    VersionConflict,
)
from sharedcare.record.instants import now_us, to_instant
from sharedcare.record.repository import Repository, etag_version, new_id, same_content
from sharedcare.record.sqlstore import PendingWrite, StoredResource

__all__ = ["process_bundle"]

_ATTEMPTS = 3  # tries of a transaction that loses a race on a resource it changes
_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}


@dataclass(slots=True)
class _Entry:
    index: int
    method: str
    url: str
    resource: dict[str, Any] | None
    full_url: str | None
    if_none_exist: str | None
    if_match: str | None
    resource_type: str = ""
    id: str | None = None
    criteria: str | None = None
    response: dict[str, Any] = field(default_factory=dict)
    stored: StoredResource | None = None


class EntryError(RecordError):
    """An entry of a transaction failed; the message names the entry."""

    def __init__(self, index: int, error: RecordError) -> None:
        super().__init__(f"Bundle.entry[{index}]: {error.message}")
        self.status = error.status
        self.code = error.code
        self.index = index
        self.inner = error

    def outcome(self) -> dict[str, Any]:
        outcome = self.inner.outcome()
        for issue in outcome.get("issue", []):
            issue["diagnostics"] = f"Bundle.entry[{self.index}]: {issue.get('diagnostics', '')}"
            issue["expression"] = [
                f"Bundle.entry[{self.index}].resource.{e.partition('.')[2]}".rstrip(".")
                for e in issue.get("expression", [])
            ] or [f"Bundle.entry[{self.index}]"]
        return outcome


def _parse_entries(bundle: dict[str, Any]) -> list[_Entry]:
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise InvalidRequest("Bundle.entry must be a list", expression="Bundle.entry")
    parsed = []
    for index, raw in enumerate(entries):
        if not isinstance(raw, dict) or not isinstance(raw.get("request"), dict):
            raise InvalidRequest(
                f"entry {index} has no request; every batch or transaction entry needs "
                "request.method and request.url",
                expression=f"Bundle.entry[{index}].request",
            )
        request = raw["request"]
        method = str(request.get("method", "")).upper()
        url = request.get("url")
        if method not in _ORDER or not isinstance(url, str) or not url:
            raise InvalidRequest(
                f"entry {index} needs request.method (GET, POST, PUT, DELETE) and request.url",
                expression=f"Bundle.entry[{index}].request",
            )
        resource = raw.get("resource")
        if method in {"POST", "PUT"} and not isinstance(resource, dict):
            raise InvalidRequest(
                f"entry {index} is a {method} without a resource",
                expression=f"Bundle.entry[{index}].resource",
            )
        entry = _Entry(
            index,
            method,
            url.lstrip("/"),
            resource if isinstance(resource, dict) else None,
            raw.get("fullUrl"),
            request.get("ifNoneExist"),
            request.get("ifMatch"),
        )
        path, _, query = entry.url.partition("?")
        parts = path.split("/")
        entry.resource_type = parts[0]
        if not is_resource_type(entry.resource_type):
            raise InvalidRequest(
                f"entry {index}: request.url does not start with an R4 resource type",
                expression=f"Bundle.entry[{index}].request.url",
            )
        if query:
            entry.criteria = query
        if len(parts) >= 2 and parts[1]:
            entry.id = parts[1]
        parsed.append(entry)
    return parsed


def _location(stored: StoredResource) -> str:
    return f"{stored.resource_type}/{stored.id}/_history/{stored.version_id}"


def _response(stored: StoredResource, status: str) -> dict[str, Any]:
    return {
        "status": status,
        "location": _location(stored),
        "etag": f'W/"{stored.version_id}"',
        "lastModified": to_instant(stored.last_updated),
    }


def _resolve_conditional(repo: Repository, reference: str) -> str:
    resource_type, _, query = reference.partition("?")
    page = repo.search(
        resource_type, repo.conditional_params(resource_type, parse_qsl(query)), strict=True
    )
    if len(page.matches) != 1:
        raise PreconditionFailed(
            f"conditional reference to {resource_type} matched {len(page.matches)} resources; "
            "it must match exactly one"
        )
    return f"{resource_type}/{page.matches[0].id}"


def _transaction(repo: Repository, entries: list[_Entry]) -> list[dict[str, Any]]:
    ordered = sorted(entries, key=lambda e: (_ORDER[e.method], e.index))
    ids: dict[str, str] = {}  # fullUrl -> Type/id
    conditional_cache: dict[str, str] = {}
    # 1. Give every created resource its id, resolving conditional creates and updates.
    for entry in ordered:
        try:
            if entry.method == "DELETE":  # even a delete of nothing
                refuse_trail_write("delete", entry.resource_type)
            elif entry.method == "PUT" and entry.id is not None:  # the trail's ids
                refuse_trail_write("create", entry.resource_type, entry.id)
            if entry.method == "POST":
                assert entry.resource is not None
                if entry.if_none_exist:
                    page = repo.search(
                        entry.resource_type,
                        repo.conditional_params(
                            entry.resource_type, parse_qsl(entry.if_none_exist)
                        ),
                        strict=True,
                    )
                    if len(page.matches) > 1:
                        raise PreconditionFailed("ifNoneExist matched more than one resource")
                    if page.matches:
                        entry.stored = page.matches[0]
                        entry.id = page.matches[0].id
                entry.id = entry.id if entry.stored else new_id()
            elif entry.method == "PUT" and entry.criteria:
                page = repo.search(
                    entry.resource_type,
                    repo.conditional_params(entry.resource_type, parse_qsl(entry.criteria)),
                    strict=True,
                )
                if len(page.matches) > 1:
                    raise PreconditionFailed("conditional update matched more than one resource")
                entry.id = page.matches[0].id if page.matches else new_id()
            elif entry.method == "DELETE" and entry.criteria:
                page = repo.search(
                    entry.resource_type,
                    repo.conditional_params(entry.resource_type, parse_qsl(entry.criteria)),
                    strict=True,
                )
                if len(page.matches) > 1:
                    raise PreconditionFailed("conditional delete matched more than one resource")
                entry.id = page.matches[0].id if page.matches else None
        except RecordError as error:
            raise EntryError(entry.index, error) from None
        if entry.full_url and entry.id:
            ids[entry.full_url] = f"{entry.resource_type}/{entry.id}"
    # 2. Rewrite references to urn:uuid full URLs and conditional references.
    for entry in ordered:
        if entry.resource is None or entry.method not in {"POST", "PUT"}:
            continue

        def resolve(reference: str) -> str | None:
            if reference in ids:
                return ids[reference]
            if "?" in reference and is_resource_type(reference.partition("?")[0]):
                if reference not in conditional_cache:
                    conditional_cache[reference] = _resolve_conditional(repo, reference)
                return conditional_cache[reference]
            if reference.startswith("urn:uuid:"):
                raise InvalidRequest(
                    "a reference names a urn:uuid that no entry's fullUrl declares"
                )
            return None

        try:
            rewrite_references(entry.resource, resolve)
        except RecordError as error:
            raise EntryError(entry.index, error) from None
    # 3. Prepare every write against the current versions, read in one query.
    now = now_us()
    targets = [
        (e.resource_type, e.id)
        for e in ordered
        if e.method in {"PUT", "DELETE"} and e.id is not None
    ]
    if len(set(targets)) != len(targets):
        raise InvalidRequest("a transaction may not change the same resource twice")
    # Versions are read outside the write lock, so a concurrent writer can get in first; the
    # store then refuses the stale versions (ConcurrentUpdate) and the steps run again.
    for attempt in range(1, _ATTEMPTS + 1):
        with repo.engine.connect() as connection:
            current = repo.store.read_many(connection, targets)
        writes: list[PendingWrite] = []
        written: list[_Entry] = []
        for entry in ordered:
            try:
                _prepare_entry(repo, entry, current, now, writes, written)
            except RecordError as error:
                raise EntryError(entry.index, error) from None
        # 4. Apply everything at once, with one AuditEvent for the transaction.
        audit = AuditEntry("transaction", "0", description=f"{len(writes)} writes")
        audit.entities = [f"{w.resource_type}/{w.id}/_history/{w.version_id}" for w in writes]
        try:
            with write_connection(repo.engine) as connection:
                repo.store.apply(connection, writes)
                write_audit(connection, repo.context, [audit])
        except ConcurrentUpdate:
            if attempt == _ATTEMPTS:
                raise
            now = now_us()
            continue
        break
    repo.committed(writes)
    # 5. Reads, after the writes.
    for entry in ordered:
        if entry.method in {"GET", "HEAD"}:
            entry.response = _read_entry(repo, entry)
    return [e.response for e in sorted(entries, key=lambda e: e.index)]


def _prepare_entry(
    repo: Repository,
    entry: _Entry,
    current: dict[tuple[str, str], StoredResource],
    now: int,
    writes: list[PendingWrite],
    written: list[_Entry],
) -> None:
    if entry.method == "POST":
        assert entry.resource is not None and entry.id is not None
        if entry.stored is not None:
            entry.response = {"response": _response(entry.stored, "200 OK")}
            return
        if entry.resource.get("resourceType") != entry.resource_type:
            raise InvalidRequest("the resource's type differs from request.url")
        write = repo.prepare(entry.resource, id=entry.id, version_id=1, now=now, existed=False)
        writes.append(write)
        written.append(entry)
        entry.response = {"response": _response(_as_stored(write), "201 Created")}
    elif entry.method == "PUT":
        assert entry.resource is not None and entry.id is not None
        if entry.resource.get("resourceType") != entry.resource_type:
            raise InvalidRequest("the resource's type differs from request.url")
        if entry.criteria is None and entry.resource.get("id") != entry.id:
            raise InvalidRequest("the resource's id must match the id in request.url")
        existing = current.get((entry.resource_type, entry.id))
        if entry.if_match is not None:
            wanted = etag_version(entry.if_match)
            if existing is None or existing.version_id != wanted:
                raise VersionConflict(f"ifMatch names version {wanted}, not the current one")
        if (
            existing is not None
            and not existing.deleted
            and same_content(existing.json(), entry.resource)
        ):
            entry.response = {"response": _response(existing, "200 OK")}
            return
        version = existing.version_id + 1 if existing else 1
        write = repo.prepare(
            entry.resource, id=entry.id, version_id=version, now=now, existed=existing is not None
        )
        writes.append(write)
        written.append(entry)
        created = existing is None or existing.deleted
        entry.response = {
            "response": _response(_as_stored(write), "201 Created" if created else "200 OK")
        }
    elif entry.method == "DELETE":
        existing = current.get((entry.resource_type, entry.id or ""))
        if existing is None or existing.deleted:
            entry.response = {"response": {"status": "204 No Content"}}
            return
        write = repo.prepare_delete(existing, now=now)
        writes.append(write)
        written.append(entry)
        entry.response = {"response": {"status": "204 No Content"}}


def _as_stored(write: PendingWrite) -> StoredResource:
    return StoredResource(
        write.resource_type, write.id, write.version_id, write.last_updated, False, write.content
    )


def _read_entry(repo: Repository, entry: _Entry) -> dict[str, Any]:
    try:
        if entry.resource_type == AUDIT_EVENT:  # served from the audit trail
            return trail_entry(repo, entry.url)
        if entry.criteria is not None or entry.id is None:
            page = repo.search(entry.resource_type, parse_qsl(entry.criteria or ""))
            bundle = {
                "resourceType": "Bundle",
                "type": "searchset",
                "total": page.total,
                "entry": [{"resource": s.json()} for s in page.matches],
            }
            return {"resource": bundle, "response": {"status": "200 OK"}}
        path = urlsplit(entry.url).path.split("/")
        if len(path) >= 4 and path[2] == "_history":
            stored = repo.vread(entry.resource_type, entry.id, path[3])
        else:
            stored = repo.read(entry.resource_type, entry.id)
        return {"resource": stored.json(), "response": _response(stored, "200 OK")}
    except RecordError as error:
        return {"response": {"status": f"{error.status}", "outcome": error.outcome()}}


def _batch(repo: Repository, entries: list[_Entry]) -> list[dict[str, Any]]:
    responses = []
    for entry in entries:
        try:
            if entry.method == "POST":
                assert entry.resource is not None
                outcome = repo.create(entry.resource, if_none_exist=entry.if_none_exist)
                status = "201 Created" if outcome.created else "200 OK"
                responses.append({"response": _response(outcome.stored, status)})
            elif entry.method == "PUT":
                assert entry.resource is not None
                if entry.criteria:
                    outcome = repo.conditional_update(
                        entry.resource_type, entry.criteria, entry.resource
                    )
                elif entry.id:
                    outcome = repo.update(
                        entry.resource_type, entry.id, entry.resource, if_match=entry.if_match
                    )
                else:
                    raise InvalidRequest("PUT needs Type/id or Type?criteria in request.url")
                status = "201 Created" if outcome.created else "200 OK"
                responses.append({"response": _response(outcome.stored, status)})
            elif entry.method == "DELETE":
                if entry.criteria:
                    repo.conditional_delete(entry.resource_type, entry.criteria)
                elif entry.id:
                    repo.delete(entry.resource_type, entry.id)
                else:
                    raise InvalidRequest("DELETE needs Type/id or Type?criteria in request.url")
                responses.append({"response": {"status": "204 No Content"}})
            else:
                responses.append(_read_entry(repo, entry))
        except RecordError as error:
            responses.append(
                {"response": {"status": str(error.status), "outcome": error.outcome()}}
            )
    return responses


def process_bundle(repo: Repository, bundle: Any) -> dict[str, Any]:
    """Process a batch or transaction Bundle and return the response Bundle.

    Raises:
        InvalidRequest: If the bundle is not a batch or transaction, or is malformed.
        RecordError: For a transaction, the first entry that fails (naming it); nothing is
            written.
    """
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise InvalidRequest("POST to the base URL takes a Bundle of type batch or transaction")
    kind = bundle.get("type")
    if kind not in {"batch", "transaction"}:
        raise InvalidRequest(
            "Bundle.type must be batch or transaction to be processed; to store a Bundle as a "
            "document, POST it to /fhir/Bundle",
            expression="Bundle.type",
        )
    entries = _parse_entries(bundle)
    if kind == "transaction":
        audit = AuditEntry("transaction", "0", description=f"{len(entries)} entries")
        try:
            responses = _transaction(repo, entries)
        except Exception as error:
            repo.audit_failure(audit, error)
            raise
    else:
        responses = _batch(repo, entries)
    return {
        "resourceType": "Bundle",
        "id": new_id(),
        "type": f"{kind}-response",
        "entry": responses,
    }
