"""The repository's reads: read, vread, history, search and ``$everything``
(https://hl7.org/fhir/R4/http.html), each behind the gate and audited."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import Connection, select

from sharedcare.db.tables import IdentityLink, IdxReference, Resource
from sharedcare.fhir.definitions import patient_compartment
from sharedcare.record.audit import AuditEntry
from sharedcare.record.derived import codes_to
from sharedcare.record.errors import Gone, InvalidRequest, NotFound
from sharedcare.record.gate import Gate
from sharedcare.record.instants import parse_instant_us
from sharedcare.record.resources import patient_of
from sharedcare.record.search import SearchRequest, compile_search, parse_search
from sharedcare.record.search.everything import compartment_keys
from sharedcare.record.search.execute import bytewise_collation, run_search
from sharedcare.record.search.include import resolve_includes
from sharedcare.record.search.paging import SortKey, decode_cursor, encode_cursor
from sharedcare.record.search.shape import shape
from sharedcare.record.sqlstore import HistoryPosition, StoredResource

__all__ = ["EverythingPage", "HistoryPage", "ReadInteractions", "SearchPage"]

R = Resource.__table__
# The history order's keys, for the cursor's checks: (last_updated, type, id, version).
_HISTORY_KEYS = [
    SortKey(None, True, "int", False),
    SortKey(None, True, "str", False),
    SortKey(None, True, "str", False),
    SortKey(None, True, "int", False),
]


@dataclass(slots=True)
class SearchPage:
    """One page of search results, with the cursors of the neighbouring pages."""

    request: SearchRequest
    matches: list[StoredResource]
    total: int | None
    included: list[StoredResource]
    next_cursor: str | None = None
    previous_cursor: str | None = None


@dataclass(slots=True)
class HistoryPage:
    """One page of versions, newest first, with the cursors of the neighbouring pages."""

    versions: list[StoredResource]
    total: int | None
    next_cursor: str | None = None
    previous_cursor: str | None = None


@dataclass(slots=True)
class EverythingPage:
    """One page of ``$everything``, in key order, with the cursors of the neighbouring
    pages and the number of resources in the whole result."""

    resources: list[StoredResource]
    total: int
    next_cursor: str | None = None
    previous_cursor: str | None = None


_EVERYTHING_KEYS = [SortKey(None, False, "int", False)]


def _everything_page(
    keys: list[int], count: int, offset: int, cursor: str | None
) -> tuple[list[int], str | None, str | None]:
    """The keys of one page of ``keys`` (ascending), and its next and previous cursors.

    A cursor holds the key of the last (``next``) or first (``prev``) resource of the page
    it was made on, so a page is "resources after (before) that key": resources added to or
    removed from the result elsewhere never shift the pages still to fetch.
    """
    if cursor is None:
        start = offset
        end = start + count
    else:
        try:
            direction, (anchor,) = decode_cursor(cursor, _EVERYTHING_KEYS)
        except InvalidRequest:
            raise InvalidRequest(
                "_cursor does not belong to this $everything; follow the links of the latest "
                "page, or start again without _cursor",
                expression="_cursor",
            ) from None
        if direction == "next":
            start = bisect_right(keys, anchor)
            end = start + count
        else:
            end = bisect_left(keys, anchor)
            start = max(0, end - count)
    page = keys[start:end]
    following = encode_cursor("next", [page[-1]]) if page and end < len(keys) else None
    preceding = encode_cursor("prev", [page[0]]) if page and start > 0 else None
    return page, following, preceding


def _history_cursor(direction: str, position: HistoryPosition) -> str:
    return encode_cursor(direction, list(position))


def _decode_history_cursor(cursor: str) -> tuple[bool, HistoryPosition]:
    """Whether ``cursor`` pages backwards (``previous``), and its anchor position.

    Raises:
        InvalidRequest: If the cursor is malformed (or was made for a search).
    """
    try:
        direction, values = decode_cursor(cursor, _HISTORY_KEYS)
    except InvalidRequest:
        raise InvalidRequest(
            "_cursor does not belong to this history; follow the links of the latest page, "
            "or start again without _cursor",
            expression="_cursor",
        ) from None
    updated, resource_type, id, version = values
    return direction == "prev", (updated, resource_type, id, version)


class ReadInteractions(Gate):
    """Reads of the record on behalf of one caller (see :class:`Gate`)."""

    # -- reads --------------------------------------------------------------------------

    def read(self, resource_type: str, id: str) -> StoredResource:
        """https://hl7.org/fhir/R4/http.html#read"""
        self._require_type(resource_type)
        entry = AuditEntry("read", "0", resource_type, id)
        # As :meth:`Gate._audited_read`, its one statement on the store's connections for
        # reads by key (``SqlStore.read_current``).
        with self._audited(entry):
            self.ask_gate("read", resource_type, id)
            stored = self.store.read_current(resource_type, id)
            if stored is None:
                raise NotFound(f"{resource_type}/{id} does not exist")
            if stored.deleted:
                raise Gone(f"{resource_type}/{id} was deleted")
            entry.patient = patient_of(stored)
            self._audit_alone(entry)
            return stored

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
            entry.patient = patient_of(stored)
            return stored

        return self._audited_read(entry, work, single=True)

    def history(
        self,
        resource_type: str | None = None,
        id: str | None = None,
        *,
        since: str | None = None,
        count: int = 50,
        cursor: str | None = None,
        offset: int = 0,
    ) -> HistoryPage:
        """https://hl7.org/fhir/R4/http.html#history (instance, type and system level).

        Versions newest first, paged by keyset (as search is,
        ``docs/decisions/0010-search-paging.md``): ``cursor`` is a ``next`` or ``previous``
        link's ``_cursor``, and versions written while a client pages never shift the
        pages it has still to fetch. ``count`` 0 gives the total alone.
        """
        if resource_type is not None:
            self._require_type(resource_type)
        level = "history-instance" if id else "history-type" if resource_type else "history-system"
        entry = AuditEntry(level, "0", resource_type, id)
        since_us = None
        position: HistoryPosition | None = None
        backwards = False
        with self._audited(entry):  # a refused request is audited as a failure too
            if since is not None:
                since_us = parse_instant_us(since)
                if since_us is None:
                    raise InvalidRequest(
                        "_since must be a FHIR instant such as 2024-05-01T00:00:00Z",
                        expression="_since",
                    )
            if cursor is not None:
                if offset:
                    raise InvalidRequest(
                        "use either _cursor (from a paging link) or _offset, not both"
                    )
                backwards, position = _decode_history_cursor(cursor)

        def work(connection: Connection) -> HistoryPage:
            page = HistoryPage([], None)
            first = position is None and offset == 0
            more = False
            if count:
                rows = self.store.history(
                    connection,
                    resource_type=resource_type,
                    id=id,
                    since=since_us,
                    position=position,
                    backwards=backwards,
                    limit=count + 1,
                    offset=offset,
                )
                more = len(rows) > count
                rows = rows[1:] if backwards and more else rows[:count]
                page.versions = [stored for _, stored in rows]
                if rows:
                    if more or backwards:
                        page.next_cursor = _history_cursor("next", rows[-1][0])
                    if (backwards and more) or (not backwards and not first):
                        page.previous_cursor = _history_cursor("prev", rows[0][0])
            if count and first and not more:
                page.total = len(page.versions)
            else:
                page.total = self.store.history_total(
                    connection, resource_type=resource_type, id=id, since=since_us
                )
            absent = id is not None and not page.versions and not page.total
            if absent and self.store.read(connection, resource_type or "", id or "") is None:
                raise NotFound(f"{resource_type}/{id} does not exist")
            return page

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
        params = codes_to(resource_type, patient_compartment().get(resource_type, ()), "Patient")
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
        cursor: str | None = None,
    ) -> EverythingPage:
        """``Patient/{id}/$everything`` (https://hl7.org/fhir/R4/patient-operation-everything.html).

        The patient and every resource in its compartment, per the official Patient
        CompartmentDefinition, found through the reference index
        (:func:`~sharedcare.record.search.everything.compartment_keys`). For a golden
        record of the master patient index the compartment is that of every source Patient
        linked to it (the ``identity_link`` table, not the resource's own ``link``
        elements, which a client could write): the person's data from every organisation,
        in one paged result, in key order. Pages are found by keyset (``cursor``, from a
        ``next`` or ``previous`` link), as search's are (decision 0010); ``offset`` is kept
        for clients that page by position.
        """
        entry = AuditEntry("operation", "0", "Patient", patient_id, patient=f"Patient/{patient_id}")
        entry.description = "$everything"
        since_us = None
        with self._audited(entry):  # a refused request is audited as a failure too
            if since is not None:
                since_us = parse_instant_us(since)
                if since_us is None:
                    raise InvalidRequest("_since must be a FHIR instant", expression="_since")
            if cursor is not None and offset:
                raise InvalidRequest("use either _cursor (from a paging link) or _offset, not both")
            for t in types or ():
                self._require_type(t)

        def work(connection: Connection) -> EverythingPage:
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
            page, following, preceding = _everything_page(keys, count, offset, cursor)
            resources = self.store.read_by_pks(connection, page)
            return EverythingPage(resources, len(keys), following, preceding)

        return self._audited_read(entry, work)
