"""The identity service: the master patient index, persisted and applied as data arrives.

One :class:`IdentityService` per database and process holds the in-memory
:class:`~sharedcare.identity.matcher.Matcher`, rebuilt from the identity tables and the
source Patients the first time it is used. Every change runs in
:meth:`IdentityService.transaction`, one database transaction that:

1. bumps ``identity_state.version`` (which queues identity writers across processes, and
   tells this process to rebuild if another one changed the index since it last looked);
2. lets the caller match, merge, unmerge or decide reviews through a :class:`Work`;
3. writes the link decisions, review items, merge events and trail rows, and every golden
   Patient whose content changed, through the record's
   :class:`~sharedcare.record.repository.Repository` (access gate, validation, AuditEvent).

If the transaction fails, the in-memory index is dropped and rebuilt on next use, so it
never disagrees with what was committed. The ingest writer runs its batches inside
:meth:`IdentityService.transaction`, so a Patient is matched in the same transaction that
writes it (``mapped → identity-matched → written``); Patients written through the
record's repository (the FHIR API, Bundles, ``sharedcare load``) are matched just after
their commit by :mod:`sharedcare.identity.realtime`; ``sharedcare identity link`` runs
:func:`sharedcare.identity.batch.link_all` over Patients already in the record.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import orjson
from sqlalchemy import Connection, Engine

from sharedcare.db.engine import write_connection
from sharedcare.identity import store as rows
from sharedcare.identity.changes import IDENTITY_CONTEXT, IdentityError, RecordKey, SourcePatient
from sharedcare.identity.matcher import Matcher, MatchError
from sharedcare.identity.model import MatchModel
from sharedcare.identity.person import PersonDataError, PersonRecord
from sharedcare.identity.survivorship import SurvivorshipPolicy
from sharedcare.identity.work import Work
from sharedcare.record.context import RequestContext
from sharedcare.record.repository import new_id
from sharedcare.record.sqlstore import SqlStore

__all__ = [
    "IDENTITY_CONTEXT",
    "IdentityError",
    "IdentityService",
    "SourcePatient",
    "Work",
    "identity_service",
]


class IdentityService:
    """The persisted master patient index of one database, in this process.

    Args:
        model: Match model; the checked-in default when omitted.
        policy: Survivorship policy.
    """

    def __init__(
        self, model: MatchModel | None = None, policy: SurvivorshipPolicy | None = None
    ) -> None:
        self.model = model or MatchModel.default()
        self.policy = policy or SurvivorshipPolicy()
        self._lock = threading.RLock()
        self._matcher: Matcher | None = None
        self._version: int | None = None
        self._keys: dict[str, RecordKey] = {}
        # Sources held in memory at a version their link was not decided on (changed while
        # no match ran): never kept in place unscored (``Work._refresh``).
        self._unmatched: set[str] = set()
        self._goldens: dict[str, tuple[str, str | None, int]] = {}
        self._replaces: dict[str, set[str]] = {}
        self._events: dict[int, int] = {}
        self._reviews_seen = 0
        self._last_created = 0
        self._trail_seen = 0
        self.last_rebuild_seconds: float | None = None

    # -- state ----------------------------------------------------------------------------

    @property
    def matcher(self) -> Matcher:
        """The in-memory index; loaded by :meth:`transaction` (an error before that)."""
        if self._matcher is None:
            raise IdentityError("the index is not loaded; use it inside transaction()")
        return self._matcher

    def is_golden(self, patient_id: str) -> bool:
        """Whether ``patient_id`` is a golden record (as of the last transaction)."""
        return patient_id in self._goldens

    def golden_of(self, source_id: str) -> str | None:
        """The active golden id of a source Patient, or ``None`` if it is not indexed."""
        key = self._keys.get(source_id)
        if key is None or self._matcher is None:
            return None
        return self._matcher.resolve(self._matcher.golden_id_of(key))

    def rebuild(self, connection: Connection) -> None:
        """Load the index from the identity tables and the source Patients they link.

        Merges not undone are replayed on top of the loaded records, so that they can still
        be undone after a restart.
        """
        started = time.perf_counter()
        matcher = Matcher(self.model, policy=self.policy, id_factory=new_id)
        goldens = {
            g: (status, rb, created) for g, status, rb, created in rows.golden_rows(connection)
        }
        replaces: dict[str, set[str]] = {}
        for golden_id, (status, replaced_by, _) in goldens.items():
            if status == "retired" and replaced_by:
                replaces.setdefault(replaced_by, set()).add(golden_id)
        merges = rows.open_merges(connection)
        placed: dict[str, list[Any]] = {}
        unmatched: set[str] = set()
        for source in rows.source_rows(connection):
            if source.content is None:
                continue  # deleted at source; `identity link` removes it
            if not source.matched:
                unmatched.add(source.source_id)
            try:
                record = PersonRecord.from_fhir(
                    orjson.loads(source.content),
                    source=source.source_system,
                    local_id=source.source_id,
                )
            except PersonDataError:
                continue
            placed[source.source_id] = [record, source.golden_id]
        for event in reversed(merges):  # place moved records where they were before the merge
            for source_id in event.moved:
                entry = placed.get(source_id)
                if entry is not None and entry[1] == event.kept:
                    entry[1] = event.retired
        for record, golden_id in placed.values():
            matcher.load(record, golden_id)
        events: dict[int, int] = {}
        for event in merges:
            # A merge one side of which has no records left has nothing to undo in memory.
            with contextlib.suppress(MatchError):
                events[event.id] = matcher.merge(event.kept, event.retired).id
        for golden_id, (status, replaced_by, _) in goldens.items():
            if status != "retired" or not replaced_by:
                continue
            try:
                if matcher.replaced_by(golden_id) is not None or matcher.members(golden_id):
                    continue
            except MatchError:
                pass
            matcher.load_retired(golden_id, replaced_by)
        self._matcher = matcher
        self._keys = {source_id: entry[0].key for source_id, entry in placed.items()}
        self._unmatched = unmatched
        self._goldens = goldens
        self._replaces = replaces
        self._events = events
        self._reviews_seen = 0
        self._last_created = max((g[2] for g in goldens.values()), default=0)
        self._trail_seen = rows.last_trail_id(connection)
        self.last_rebuild_seconds = time.perf_counter() - started

    def warm(self, engine: Engine) -> bool:
        """Load the index outside any identity transaction (at process start).

        Reads the committed index version before and after :meth:`rebuild`: identity's
        tables change only in identity transactions, each of which commits a new version,
        so if the two agree the index is that version's and the next transaction treats
        it as any other (catching up what changed after it). If they differ, the index is
        dropped and the next transaction rebuilds as it would have.

        Returns:
            Whether the index was loaded (``False`` if it already was, or changed meanwhile).
        """
        with self._lock:
            if self._matcher is not None:
                return False
            with engine.connect() as connection:
                before = rows.current_version(connection)
                self.rebuild(connection)
                after = rows.current_version(connection)
            if before != after:
                self._matcher = None
                return False
            self._version = before
            return True

    @contextmanager
    def transaction(
        self,
        engine: Engine,
        store: SqlStore,
        context: RequestContext = IDENTITY_CONTEXT,
        *,
        commit: bool = False,
        patients: Sequence[str] = (),
        lead: Callable[[Any], None] | None = None,
    ) -> Iterator[Work]:
        """One write transaction with the index loaded and current; see the module docstring.

        The caller may write other rows on ``work.connection``; they commit together.
        With ``commit`` (a real-time match, which writes nothing else) the work's last
        statements and the ``COMMIT`` may go to PostgreSQL in one pipeline
        (:meth:`Work.flush`). ``patients``: ids whose :class:`~sharedcare.identity.store.
        PatientState` the work will need (:func:`~sharedcare.identity.batch.sync_patients`);
        on PostgreSQL they are read with the version's bump, in one round trip.
        ``lead``: on PostgreSQL, sends the caller's first statements in that round trip
        (:func:`~sharedcare.identity.store.bump_with`).
        """
        with self._lock:
            with write_connection(engine) as connection:
                prefetched: dict[str, rows.PatientState] | None = None
                if patients and len(patients) <= 500 and connection.dialect.name == "postgresql":
                    version, prefetched = rows.bump_with_states(connection, patients)
                elif lead is not None and connection.dialect.name == "postgresql":
                    version = rows.bump_with(connection, lead)
                else:
                    version = rows.bump_version(connection)
                known = self._version
                stale = self._matcher is None or known is None
                caught_up = False
                if not stale and known is not None and known != version - 1:
                    stale = not self._catch_up(connection, known)
                    caught_up = not stale
                if stale:
                    self.rebuild(connection)
                self._version = None  # stale until this transaction commits
                try:
                    work = Work(self, connection, store, context, version)
                    if prefetched is not None:
                        work.prefetched = (frozenset(patients), prefetched)
                    yield work
                    # Only identity transactions write the trail, one at a time: unless
                    # another process wrote since this one last looked (caught up), the
                    # newest trail id is this transaction's, or the one already known.
                    written, _ = work.flush(commit=commit, last_trail=caught_up)
                    trail_seen = self._trail_seen if written is None else written
                except BaseException:
                    self._matcher = None
                    raise
            self._version = version
            self._trail_seen = trail_seen

    def _catch_up(self, connection: Connection, since: int) -> bool:
        """Apply what other processes changed after index version ``since``.

        Re-reads only the links and golden records changed since then (and the sources
        removed), so a process behind by a few changes need not rebuild. Returns ``False``
        when a change cannot be applied incrementally (an unmerge made elsewhere); the
        caller then rebuilds.
        """
        m = self.matcher
        links = list(rows.source_rows(connection, changed_after=since))
        goldens = rows.golden_rows(connection, changed_after=since)
        for golden_id, status, _, _ in goldens:
            held = self._goldens.get(golden_id)
            if held is not None and held[0] == "retired" and status != "retired":
                return False
        changed = {link.source_id for link in links}
        for source_id in rows.removed_since(connection, self._trail_seen):
            key = self._keys.get(source_id)
            if key is not None and source_id not in changed:
                m.remove(key)
                del self._keys[source_id]
        for link in links:
            key = self._keys.pop(link.source_id, None)
            if key is not None:
                m.remove(key)
        for link in links:
            if link.matched:
                self._unmatched.discard(link.source_id)
            else:
                self._unmatched.add(link.source_id)
            if link.content is None:
                continue
            try:
                record = PersonRecord.from_fhir(
                    orjson.loads(link.content), source=link.source_system, local_id=link.source_id
                )
            except PersonDataError:
                continue
            try:
                m.load(record, link.golden_id)
            except MatchError:
                return False
            self._keys[link.source_id] = record.key
        for golden_id, status, replaced_by, created in goldens:
            self._goldens[golden_id] = (status, replaced_by, created)
            self._last_created = max(self._last_created, created)
            if status == "retired" and replaced_by:
                self._replaces.setdefault(replaced_by, set()).add(golden_id)
                try:
                    if m.replaced_by(golden_id) is None:
                        m.load_retired(golden_id, replaced_by)
                except MatchError:
                    m.load_retired(golden_id, replaced_by)
        self._reviews_seen = m.review_count()
        return True


# -- one service per database ----------------------------------------------------------------

_services: dict[str, IdentityService] = {}
_services_lock = threading.Lock()


def identity_service(engine: Engine) -> IdentityService:
    """The process's identity service for ``engine``'s database (made on first use).

    Keyed by the database URL, so engines on one database in one process (the web server
    and the MLLP listener of ``serve``, say) share one index rather than each rebuilding
    after the other's writes.
    """
    key = engine.url.render_as_string(hide_password=True)
    with _services_lock:
        service = _services.get(key)
        if service is None:
            service = _services[key] = IdentityService()
        return service
