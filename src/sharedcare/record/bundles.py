"""Batch and transaction Bundles (https://hl7.org/fhir/R4/http.html#transaction).

A **transaction** is all-or-nothing. Entries are processed in the order the specification
sets (DELETE, POST, PUT, then GET); ``urn:uuid:`` full URLs are given ids before anything is
written and every link to them is rewritten (references, ``uri``/``url``/``oid``/``uuid``
elements, ``href`` and ``src`` in the narrative); conditional references
(``Patient?identifier=…``) must match exactly one resource; no two entries may change the
same resource; every write of the bundle is then applied to the store in one database
transaction, with an AuditEvent for each entry's interaction and one for the transaction.

A **batch** processes each entry on its own, in the same order; a failed entry carries an
OperationOutcome in its response and does not affect the others. Batch entries may not refer
to each other (https://hl7.org/fhir/R4/http.html#brules). See docs/reference/bundles.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from sharedcare.db.engine import write_connection
from sharedcare.fhir.definitions import is_resource_type, node_for_type, node_of_prop
from sharedcare.fhir.definitions.model import ObjectNode
from sharedcare.record.audit import AuditEntry, audit_rows, insert_audit_rows
from sharedcare.record.audit_search import AUDIT_EVENT, refuse_trail_write, trail_entry
from sharedcare.record.errors import (
    ConcurrentUpdate,
    InvalidRequest,
    NotFound,
    PreconditionFailed,
    RecordError,
    VersionConflict,
)
from sharedcare.record.instants import now_us, to_instant
from sharedcare.record.repository import Repository, etag_version, new_id, same_content
from sharedcare.record.resources import patient_of, patient_of_json
from sharedcare.record.sqlstore import PendingWrite, StoredResource

__all__ = ["process_bundle"]

_ATTEMPTS = 3  # tries of a transaction that loses a race on a resource it changes
_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "GET": 3, "HEAD": 3}
_INTERACTION = {
    "DELETE": "delete",
    "POST": "create",
    "PUT": "update",
    "GET": "read",
    "HEAD": "read",
}
_LINK_TYPES = frozenset({"uri", "url", "oid", "uuid"})  # rewritten like references (trules)
_BRULES = "https://hl7.org/fhir/R4/http.html#brules"


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


class _NotSupported(InvalidRequest):
    code = "not-supported"


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
                e
                if e.startswith("Bundle.")
                else f"Bundle.entry[{self.index}].resource.{e.partition('.')[2]}".rstrip(".")
                for e in issue.get("expression", [])
            ] or [f"Bundle.entry[{self.index}]"]
        return outcome


def _parse_entries(bundle: dict[str, Any]) -> list[_Entry]:
    entries = bundle.get("entry")
    if entries is None:
        return []
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
        if method == "PATCH":
            raise _NotSupported(
                f"entry {index}: PATCH is not supported; send a PUT with the whole resource",
                expression=f"Bundle.entry[{index}].request.method",
            )
        for name, value in (
            ("fullUrl", raw.get("fullUrl")),
            ("request.ifNoneExist", request.get("ifNoneExist")),
            ("request.ifMatch", request.get("ifMatch")),
        ):
            if value is not None and not isinstance(value, str):
                raise InvalidRequest(
                    f"entry {index}: {name} must be a string",
                    expression=f"Bundle.entry[{index}].{name}",
                )
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


def _check_target(entry: _Entry) -> None:
    """Refuse a request.url that does not fit the method (https://hl7.org/fhir/R4/http.html)."""
    if entry.method == "POST" and (entry.id is not None or entry.criteria is not None):
        raise InvalidRequest(
            "a POST's request.url is the resource type alone; to choose the id, use PUT Type/id",
            expression=f"Bundle.entry[{entry.index}].request.url",
        )
    if entry.resource is not None and entry.resource.get("resourceType") != entry.resource_type:
        raise InvalidRequest(
            "the resource's type differs from the one in request.url",
            expression=f"Bundle.entry[{entry.index}].resource.resourceType",
        )
    if entry.method in {"PUT", "DELETE"} and entry.id is None and not entry.criteria:
        raise InvalidRequest(
            f"a {entry.method} needs Type/id or Type?criteria in request.url",
            expression=f"Bundle.entry[{entry.index}].request.url",
        )


def _matches(repo: Repository, resource_type: str, criteria: str) -> list[StoredResource]:
    """The resources conditional ``criteria`` find (at most two: one is wanted)."""
    params = parse_qsl(criteria.lstrip("?"), keep_blank_values=True)
    if not params:
        raise InvalidRequest("conditional criteria must not be empty")
    page = repo.search(resource_type, repo.conditional_params(resource_type, params), strict=True)
    return page.matches


def _resolve_conditional(repo: Repository, reference: str) -> str:
    resource_type, _, query = reference.partition("?")
    found = _matches(repo, resource_type, query)
    if not found:
        raise NotFound(
            f"a conditional reference to {resource_type} matched no resource; it must match "
            "exactly one"
        )
    if len(found) > 1:
        raise PreconditionFailed(
            f"a conditional reference to {resource_type} matched more than one resource; it "
            "must match exactly one"
        )
    return f"{resource_type}/{found[0].id}"


def _rewrite_links(
    obj: dict[str, Any],
    node: ObjectNode,
    resolve: Callable[[str], str | None],
    ids: dict[str, str],
) -> None:
    """Rewrite, in one walk of the element model, every ``Reference.reference`` that
    ``resolve`` maps, and full URLs (``ids``) in ``uri``, ``url``, ``oid`` and ``uuid``
    elements and in the narrative's ``href`` and ``src``
    (https://hl7.org/fhir/R4/http.html#trules). References are found as
    :func:`~sharedcare.fhir.references.find_references` finds them, including in extensions
    and contained resources."""
    for key, value in obj.items():
        prop = node.props.get(key)
        if prop is None:
            continue
        kind = prop.type_code
        if prop.is_primitive:
            if not ids:
                continue
            if kind in _LINK_TYPES:
                if type(value) is str:
                    obj[key] = ids.get(value, value)
                elif type(value) is list:
                    obj[key] = [ids.get(v, v) if type(v) is str else v for v in value]
            elif kind == "xhtml" and type(value) is str:
                obj[key] = _rewrite_div(value, ids)
            continue
        for item in value if type(value) is list else (value,):
            if type(item) is not dict:
                continue
            if kind == "Reference":
                text = item.get("reference")
                if type(text) is str:
                    new = resolve(text)
                    if new is not None:
                        item["reference"] = new
            if kind == "Resource":
                rtype = item.get("resourceType")
                sub = node_for_type(rtype) if isinstance(rtype, str) else None
            else:
                sub = node_of_prop(prop)
            if sub is not None:
                _rewrite_links(item, sub, resolve, ids)


def _rewrite_div(div: str, ids: dict[str, str]) -> str:
    for old, new in ids.items():
        if old in div:
            for attribute in ("href", "src"):
                div = div.replace(f'{attribute}="{old}"', f'{attribute}="{new}"')
                div = div.replace(f"{attribute}='{old}'", f"{attribute}='{new}'")
    return div


def _assign_ids(repo: Repository, ordered: list[_Entry]) -> dict[str, str]:
    """Step 1: give every created resource its id and resolve conditional creates, updates
    and deletes. Returns the ``Type/id`` each entry's fullUrl stands for."""
    ids: dict[str, str] = {}  # fullUrl -> Type/id
    full_urls: set[str] = set()
    for entry in ordered:
        try:
            _check_target(entry)
            if entry.full_url:
                if entry.full_url in full_urls:
                    raise InvalidRequest(
                        "another entry has the same fullUrl; fullUrls are unique in a Bundle "
                        "(bdl-7)",
                        expression=f"Bundle.entry[{entry.index}].fullUrl",
                    )
                full_urls.add(entry.full_url)
            if entry.method == "DELETE":  # even a delete of nothing
                refuse_trail_write("delete", entry.resource_type)
            elif entry.method == "PUT" and entry.id is not None:  # the trail's ids
                refuse_trail_write("create", entry.resource_type, entry.id)
            if entry.method == "POST":
                found = (
                    _matches(repo, entry.resource_type, entry.if_none_exist)
                    if entry.if_none_exist
                    else []
                )
                if len(found) > 1:
                    raise PreconditionFailed("ifNoneExist matched more than one resource")
                entry.stored = found[0] if found else None
                entry.id = found[0].id if found else new_id()
            elif entry.criteria and entry.method in {"PUT", "DELETE"}:
                found = _matches(repo, entry.resource_type, entry.criteria)
                if len(found) > 1:
                    interaction = "update" if entry.method == "PUT" else "delete"
                    raise PreconditionFailed(
                        f"conditional {interaction} matched more than one resource"
                    )
                entry.id = found[0].id if found else None
                if entry.method == "PUT" and not found:
                    entry.id = new_id()
        except RecordError as error:
            raise EntryError(entry.index, error) from None
        if entry.full_url and entry.id:
            ids[entry.full_url] = f"{entry.resource_type}/{entry.id}"
    # A resource changed (or found by a conditional create) by two entries (trules).
    seen: dict[tuple[str, str], int] = {}
    for entry in ordered:
        if entry.id is None or entry.method in {"GET", "HEAD"}:
            continue
        if entry.method == "POST" and entry.stored is None:
            continue  # a new id
        key = (entry.resource_type, entry.id)
        if key in seen:
            raise EntryError(
                entry.index,
                InvalidRequest(
                    f"entry {seen[key]} acts on the same resource; a transaction may act on "
                    "a resource once"
                ),
            )
        seen[key] = entry.index
    return ids


def _rewrite_entries(repo: Repository, ordered: list[_Entry], ids: dict[str, str]) -> None:
    """Step 2: rewrite links to full URLs, and conditional references."""
    conditional_cache: dict[str, str] = {}

    def resolve(reference: str) -> str | None:
        if reference in ids:
            return ids[reference]
        if "?" in reference and is_resource_type(reference.partition("?")[0]):
            if reference not in conditional_cache:
                conditional_cache[reference] = _resolve_conditional(repo, reference)
            return conditional_cache[reference]
        if reference.startswith("urn:uuid:"):
            raise InvalidRequest("a reference names a urn:uuid that no entry's fullUrl declares")
        return None

    for entry in ordered:
        if entry.resource is None or entry.method not in {"POST", "PUT"}:
            continue
        if entry.stored is not None:  # a conditional create that found its resource
            continue
        node = node_for_type(entry.resource_type)
        if node is None:
            continue
        try:
            _rewrite_links(entry.resource, node, resolve, ids)
        except RecordError as error:
            raise EntryError(entry.index, error) from None


def _transaction(repo: Repository, entries: list[_Entry]) -> list[dict[str, Any]]:
    ordered = sorted(entries, key=lambda e: (_ORDER[e.method], e.index))
    ids = _assign_ids(repo, ordered)
    _rewrite_entries(repo, ordered, ids)
    # 3. Prepare every write against the current versions, read in one query.
    now = now_us()
    targets = [
        (e.resource_type, e.id)
        for e in ordered
        if e.method in {"PUT", "DELETE"} and e.id is not None
    ]
    # Versions are read outside the write lock, so a concurrent writer can get in first; the
    # store then refuses the stale versions (ConcurrentUpdate) and the steps run again.
    for attempt in range(1, _ATTEMPTS + 1):
        with repo.engine.connect() as connection:
            current = repo.store.read_many(connection, targets)
        writes: list[PendingWrite] = []
        audits: list[AuditEntry] = []
        for entry in ordered:
            try:
                _prepare_entry(repo, entry, current, now, writes, audits)
            except RecordError as error:
                raise EntryError(entry.index, error) from None
        # 4. Apply everything at once, with the AuditEvents of the entries and the bundle.
        audit = AuditEntry("transaction", "0", description=f"{len(writes)} writes")
        audit.entities = [f"{w.resource_type}/{w.id}/_history/{w.version_id}" for w in writes]
        rows = audit_rows(repo.context, [audit, *audits])
        try:
            with write_connection(repo.engine) as connection:
                repo.store.apply(connection, writes)
                insert_audit_rows(connection, rows)
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
    audits: list[AuditEntry],
) -> None:
    """The write (if any) and the AuditEvent of one entry of a transaction."""
    if entry.method == "POST":
        assert entry.resource is not None and entry.id is not None
        if entry.stored is not None:  # ifNoneExist found it: a read, as for a lone POST
            found = entry.stored
            audits.append(AuditEntry("read", "0", found.resource_type, found.id))
            entry.response = {"response": _response(found, "200 OK")}
            return
        write = repo.prepare(entry.resource, id=entry.id, version_id=1, now=now, existed=False)
        writes.append(write)
        audits.append(
            AuditEntry(
                "create", "0", write.resource_type, write.id, 1, patient_of_json(entry.resource)
            )
        )
        entry.response = {"response": _response(_as_stored(write), "201 Created")}
    elif entry.method == "PUT":
        assert entry.resource is not None and entry.id is not None
        if entry.criteria is None and entry.resource.get("id") != entry.id:
            raise InvalidRequest("the resource's id must match the id in request.url")
        existing = current.get((entry.resource_type, entry.id))
        _check_if_match(entry, existing)
        if (
            existing is not None
            and not existing.deleted
            and same_content(existing.json(), entry.resource)
        ):
            audits.append(
                AuditEntry(
                    "update",
                    "0",
                    entry.resource_type,
                    entry.id,
                    existing.version_id,
                    patient_of(existing),
                )
            )
            entry.response = {"response": _response(existing, "200 OK")}
            return
        version = existing.version_id + 1 if existing else 1
        write = repo.prepare(
            entry.resource, id=entry.id, version_id=version, now=now, existed=existing is not None
        )
        writes.append(write)
        created = existing is None or existing.deleted
        audits.append(
            AuditEntry(
                "create" if created else "update",
                "0",
                write.resource_type,
                write.id,
                version,
                patient_of_json(entry.resource),
            )
        )
        entry.response = {
            "response": _response(_as_stored(write), "201 Created" if created else "200 OK")
        }
    elif entry.method == "DELETE":
        existing = current.get((entry.resource_type, entry.id or ""))
        _check_if_match(entry, existing)
        entry.response = {"response": {"status": "204 No Content"}}
        if existing is None or existing.deleted:  # nothing to delete; still audited
            repo.ask_gate("delete", entry.resource_type, entry.id)
            audits.append(
                AuditEntry(
                    "delete",
                    "0",
                    entry.resource_type,
                    entry.id,
                    query=entry.criteria if entry.id is None else None,
                )
            )
            return
        write = repo.prepare_delete(existing, now=now)
        writes.append(write)
        audits.append(
            AuditEntry(
                "delete",
                "0",
                write.resource_type,
                write.id,
                write.version_id,
                patient_of(existing),
            )
        )


def _check_if_match(entry: _Entry, existing: StoredResource | None) -> None:
    """``request.ifMatch`` (https://hl7.org/fhir/R4/http.html#concurrency)."""
    if entry.if_match is not None:
        wanted = etag_version(entry.if_match)
        if existing is None or existing.deleted or existing.version_id != wanted:
            raise VersionConflict(f"ifMatch names version {wanted}, not the current one")


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
        return _failure(error)


def _failure(error: RecordError) -> dict[str, Any]:
    return {"response": {"status": str(error.status), "outcome": error.outcome()}}


def _batch(repo: Repository, entries: list[_Entry]) -> list[dict[str, Any]]:
    """Each entry on its own, in the order of a transaction
    (https://hl7.org/fhir/R4/http.html#brules)."""
    full_urls = {e.full_url for e in entries if e.full_url}
    responses: dict[int, dict[str, Any]] = {}
    for entry in sorted(entries, key=lambda e: (_ORDER[e.method], e.index)):
        try:
            _check_target(entry)
            _resolve_batch_references(repo, entry, full_urls - {entry.full_url})
        except RecordError as error:  # refused before it reached the record: audit it here
            interaction = _INTERACTION[entry.method]
            repo.audit_failure(AuditEntry(interaction, "0", entry.resource_type, entry.id), error)
            responses[entry.index] = _failure(error)
            continue
        responses[entry.index] = _batch_entry(repo, entry)
    return [responses[i] for i in range(len(entries))]


def _resolve_batch_references(repo: Repository, entry: _Entry, others: set[str]) -> None:
    """Resolve a batch entry's conditional references against the record as it is now, and
    refuse references to other entries' full URLs: batch entries are independent."""
    if entry.resource is None or entry.method not in {"POST", "PUT"}:
        return
    node = node_for_type(entry.resource_type)
    if node is None:
        return

    def resolve(reference: str) -> str | None:
        if reference in others:
            raise InvalidRequest(
                f"the resource refers to another entry's fullUrl, but batch entries are "
                f"independent ({_BRULES}); send a transaction to link new resources"
            )
        if "?" in reference and is_resource_type(reference.partition("?")[0]):
            return _resolve_conditional(repo, reference)
        return None

    _rewrite_links(entry.resource, node, resolve, {})


def _batch_entry(repo: Repository, entry: _Entry) -> dict[str, Any]:
    """One batch entry; the record audits it, success or failure."""
    if entry.method == "DELETE" and entry.if_match is not None:
        try:  # the version checked and the deletion written atomically, as a transaction
            return _transaction(repo, [entry])[0]
        except RecordError as error:
            repo.audit_failure(AuditEntry("delete", "0", entry.resource_type, entry.id), error)
            return _failure(error)
    try:
        if entry.method == "POST":
            assert entry.resource is not None
            outcome = repo.create(entry.resource, if_none_exist=entry.if_none_exist)
            status = "201 Created" if outcome.created else "200 OK"
            return {"response": _response(outcome.stored, status)}
        if entry.method == "PUT":
            assert entry.resource is not None
            if entry.criteria:
                outcome = repo.conditional_update(
                    entry.resource_type, entry.criteria, entry.resource
                )
            else:
                assert entry.id is not None
                outcome = repo.update(
                    entry.resource_type, entry.id, entry.resource, if_match=entry.if_match
                )
            status = "201 Created" if outcome.created else "200 OK"
            return {"response": _response(outcome.stored, status)}
        if entry.method == "DELETE":
            if entry.criteria:
                repo.conditional_delete(entry.resource_type, entry.criteria)
            else:
                assert entry.id is not None
                repo.delete(entry.resource_type, entry.id)
            return {"response": {"status": "204 No Content"}}
        return _read_entry(repo, entry)
    except RecordError as error:
        return _failure(error)


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
