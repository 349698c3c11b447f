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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, select, update

from sharedcare.db.engine import write_connection
from sharedcare.identity import store as rows
from sharedcare.identity.golden import empty_patient, golden_patient, retired_patient
from sharedcare.identity.matcher import DecisionKind, LinkDecision, Matcher, MatchError
from sharedcare.identity.model import Band, MatchModel, Score
from sharedcare.identity.person import PersonDataError, PersonRecord
from sharedcare.identity.survivorship import SurvivorshipPolicy
from sharedcare.record.audit import AuditEntry, write_audit
from sharedcare.record.context import RequestContext
from sharedcare.record.instants import now_us
from sharedcare.record.repository import Repository, new_id, same_content
from sharedcare.record.sqlstore import SqlStore

__all__ = [
    "IDENTITY_CONTEXT",
    "IdentityError",
    "IdentityService",
    "SourcePatient",
    "Work",
    "identity_service",
]

RecordKey = tuple[str, str]

IDENTITY_CONTEXT = RequestContext(
    user="sharedcare:identity", role="system", purpose="TREAT", source="identity"
)
"""The context golden records are written under when no person asked (real-time matching)."""


class IdentityError(ValueError):
    """An identity operation cannot be done; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class SourcePatient:
    """A source Patient as written to the record: id, version and content."""

    id: str
    version: int
    content: dict[str, Any]


def _evidence(score: Score | None) -> bytes | None:
    return orjson.dumps(score.to_dict()) if score is not None else None


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
        for source in rows.source_rows(connection):
            if source.content is None:
                continue  # deleted at source; `identity link` removes it
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
        self._goldens = goldens
        self._replaces = replaces
        self._events = events
        self._reviews_seen = 0
        self._last_created = max((g[2] for g in goldens.values()), default=0)
        self._trail_seen = rows.last_trail_id(connection)
        self.last_rebuild_seconds = time.perf_counter() - started

    @contextmanager
    def transaction(
        self,
        engine: Engine,
        store: SqlStore,
        context: RequestContext = IDENTITY_CONTEXT,
    ) -> Iterator[Work]:
        """One write transaction with the index loaded and current; see the module docstring.

        The caller may write other rows on ``work.connection``; they commit together.
        """
        with self._lock:
            with write_connection(engine) as connection:
                version = rows.bump_version(connection)
                known = self._version
                stale = self._matcher is None or known is None
                if not stale and known is not None and known != version - 1:
                    stale = not self._catch_up(connection, known)
                if stale:
                    self.rebuild(connection)
                self._version = None  # stale until this transaction commits
                try:
                    work = Work(self, connection, store, context, version)
                    yield work
                    written = work.flush()
                    trail_seen = written or rows.last_trail_id(connection)
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
        self._reviews_seen = len(m.reviews(open_only=False))
        return True


@dataclass
class _Pending:
    links: dict[str, dict[str, Any]] = field(default_factory=dict)
    moved: set[str] = field(default_factory=set)
    removed: set[str] = field(default_factory=set)
    affected: set[str] = field(default_factory=set)
    goldens: set[str] = field(default_factory=set)
    reviews: list[dict[str, Any]] = field(default_factory=list)
    trail: list[rows.TrailEntry] = field(default_factory=list)
    audits: list[AuditEntry] = field(default_factory=list)


class Work:
    """Identity changes inside one :meth:`IdentityService.transaction`."""

    def __init__(
        self,
        service: IdentityService,
        connection: Connection,
        store: SqlStore,
        context: RequestContext,
        version: int = 0,
    ) -> None:
        self.service = service
        self.connection = connection
        self.store = store
        self.context = context
        self.version = version
        self.now = now_us()
        self._pending = _Pending()

    @property
    def _m(self) -> Matcher:
        return self.service.matcher

    # -- matching -------------------------------------------------------------------------

    def place(self, patients: Sequence[SourcePatient]) -> list[LinkDecision]:
        """Match source Patients (new or changed) and place each in a golden record.

        Golden Patients are skipped. A Patient whose demographics cannot be read (which the
        record's validation should already prevent) is left out and noted in the trail.
        """
        decisions: list[LinkDecision] = []
        svc = self.service
        for patient in patients:
            if svc.is_golden(patient.id):
                continue
            meta = patient.content.get("meta")
            system = meta.get("source") if isinstance(meta, dict) else None
            try:
                record = PersonRecord.from_fhir(
                    patient.content, source=str(system or "unknown"), local_id=patient.id
                )
            except PersonDataError as error:
                self._pending.trail.append(
                    rows.TrailEntry("unmatched", patient.id, detail={"reason": str(error)})
                )
                continue
            decisions.append(self._place(record, patient.version))
        return decisions

    def _place(self, record: PersonRecord, version: int) -> LinkDecision:
        svc, m, p = self.service, self._m, self._pending
        source_id = record.local_id
        old_key = svc._keys.get(source_id)
        old_golden: str | None = None
        if old_key is not None:
            old_golden = m.golden_id_of(old_key)
            if old_key != record.key:  # sent again under another meta.source
                m.remove(old_key)
        decision = m.add(record)
        svc._keys[source_id] = record.key
        golden_id = decision.golden_id
        self._note_golden(golden_id)
        p.affected.add(golden_id)
        if old_golden is not None and old_golden != golden_id:
            p.affected.add(old_golden)
            replaced = m.replaced_by(old_golden)
            if replaced is not None:
                self._retire(old_golden, replaced)
            p.trail.append(
                rows.TrailEntry("relink", source_id, golden_id, old_golden, _detail(decision))
            )
        elif old_golden is None:
            p.trail.append(rows.TrailEntry("link", source_id, golden_id, None, _detail(decision)))
        score = decision.score
        p.links[source_id] = {
            "source_id": source_id,
            "source_system": record.source[:300],
            "source_version": version,
            "golden_id": golden_id,
            "kind": decision.kind.value,
            "band": decision.band.value,
            "match_weight": score.match_weight if score else None,
            "probability": score.match_probability if score else None,
            "matched_source_id": decision.matched_record[1] if decision.matched_record else None,
            "candidates": decision.candidates,
            "evidence": _evidence(score),
            "decided_by": self.context.user[:200],
            "decided_at": self.now,
            "changed": self.version,
        }
        p.moved.discard(source_id)
        if decision.kind is not DecisionKind.DETERMINISTIC and decision.band is not Band.NO_LINK:
            self._collect_reviews()
        return decision

    def _collect_reviews(self) -> None:
        svc, p = self.service, self._pending
        items = self._m.reviews(open_only=False)
        for item in items[svc._reviews_seen :]:
            pair = {item.golden_id, item.candidate_golden_id}
            if any({r["golden_id"], r["candidate_golden_id"]} == pair for r in p.reviews):
                continue
            if rows.pair_queued_or_rejected(self.connection, *sorted(pair)):
                continue  # already waiting, or a reviewer said they are different people
            p.reviews.append(
                {
                    "kind": item.kind.value,
                    "source_id": item.record[1],
                    "golden_id": item.golden_id,
                    "candidate_golden_id": item.candidate_golden_id,
                    "match_weight": item.score.match_weight,
                    "probability": item.score.match_probability,
                    "evidence": orjson.dumps(item.score.to_dict()),
                    "status": "open",
                    "created_at": self.now,
                }
            )
            p.trail.append(
                rows.TrailEntry(
                    "review-open", item.record[1], item.golden_id, item.candidate_golden_id
                )
            )
        svc._reviews_seen = len(items)

    def remove(self, source_ids: Sequence[str]) -> None:
        """Take source Patients (deleted at source) out of the index.

        A source already left out of the in-memory index (a rebuild skips deleted
        Patients) still loses its link row, and its golden record is rewritten.
        """
        svc, p = self.service, self._pending
        missing = [s for s in source_ids if s not in svc._keys]
        stored = rows.link_rows(self.connection, missing) if missing else {}
        for source_id in source_ids:
            key = svc._keys.pop(source_id, None)
            if key is not None:
                golden_id = self._m.golden_id_of(key)
                self._m.remove(key)
            elif source_id in stored:
                golden_id = stored[source_id].golden_id
                with contextlib.suppress(MatchError):  # unknown in memory: it has no records
                    golden_id = self._m.resolve(golden_id)
            else:
                continue
            p.affected.add(golden_id)
            p.removed.add(source_id)
            p.links.pop(source_id, None)
            p.trail.append(rows.TrailEntry("remove", source_id, golden_id))

    # -- manual actions ---------------------------------------------------------------------

    def merge(self, keep: str, retire: str, *, origin: str, reason: str | None = None) -> int:
        """Merge golden record ``retire`` into ``keep``; return the merge id (for unmerge).

        Raises:
            IdentityError: If either id is unknown or they are the same person already.
        """
        m, p = self._m, self._pending
        try:
            kept, retired = m.resolve(keep), m.resolve(retire)
        except MatchError:
            raise IdentityError(
                "unknown golden id; list golden ids with `sharedcare identity review`"
            ) from None
        if kept == retired:
            raise IdentityError("those golden records are already one; nothing to merge")
        try:
            event = m.merge(kept, retired)
        except MatchError as error:
            raise IdentityError(str(error)) from None
        moved = [key[1] for key in event.moved]
        merge_id = rows.insert_merge(
            self.connection,
            {
                "kept": kept,
                "retired": retired,
                "moved": orjson.dumps(moved),
                "origin": origin,
                "status": "applied",
                "created_by": self.context.user[:200],
                "created_at": self.now,
            },
        )
        self.service._events[merge_id] = event.id
        self._retire(retired, kept)
        p.moved.update(moved)
        p.affected.update((kept, retired))
        detail: dict[str, Any] = {"merge": merge_id, "origin": origin, "moved": len(moved)}
        if reason:
            detail["reason"] = reason
        p.trail.append(rows.TrailEntry("merge", None, kept, retired, detail))
        p.audits.append(
            AuditEntry(
                "operation",
                "0",
                "Patient",
                kept,
                patient=f"Patient/{kept}",
                description=f"identity merge {merge_id} ({origin})",
                entities=[f"Patient/{retired}"],
            )
        )
        return merge_id

    def unmerge(self, merge_id: int, *, reason: str | None = None) -> None:
        """Undo a merge: the retired golden record is active again with the records it brought.

        Raises:
            IdentityError: If the merge is unknown, undone already, or cannot be undone.
        """
        svc, p = self.service, self._pending
        row = self.connection.execute(select(rows.MERGE).where(rows.MERGE.c.id == merge_id)).first()
        if row is None or row.status != "applied":
            raise IdentityError(
                f"merge {merge_id} does not exist or was undone already; "
                "see `sharedcare identity merges`"
            )
        event = svc._events.get(merge_id)
        if event is None and not self._has_changes():
            # A merge made by another process is not in this index: rebuilding replays it.
            svc.rebuild(self.connection)
            event = svc._events.get(merge_id)
        if event is None:
            raise IdentityError(
                f"merge {merge_id} cannot be undone: one of its golden records has no source "
                "records left"
            )
        try:
            self._m.unmerge(event)
        except MatchError as error:
            raise IdentityError(f"merge {merge_id} cannot be undone: {error}") from None
        del svc._events[merge_id]
        svc._goldens[row.retired] = ("active", None, svc._goldens[row.retired][2])
        svc._replaces.get(row.kept, set()).discard(row.retired)
        p.goldens.add(row.retired)
        p.moved.update(orjson.loads(row.moved))
        p.affected.update((row.kept, row.retired))
        self.connection.execute(
            update(rows.MERGE)
            .where(rows.MERGE.c.id == merge_id)
            .values(status="undone", undone_by=self.context.user[:200], undone_at=self.now)
        )
        detail: dict[str, Any] = {"merge": merge_id}
        if reason:
            detail["reason"] = reason
        p.trail.append(rows.TrailEntry("unmerge", None, row.kept, row.retired, detail))
        p.audits.append(
            AuditEntry(
                "operation",
                "0",
                "Patient",
                row.retired,
                patient=f"Patient/{row.retired}",
                description=f"identity unmerge {merge_id}",
                entities=[f"Patient/{row.kept}"],
            )
        )

    def decide(self, review_id: int, *, same_person: bool, reason: str | None = None) -> int | None:
        """Record a reviewer's verdict on a queued pair; the same person merges them.

        The older golden record keeps its id. Returns the merge id, if a merge was made.

        Raises:
            IdentityError: If the review does not exist or was decided already.
        """
        svc = self.service
        row = self.connection.execute(
            select(rows.REVIEW).where(rows.REVIEW.c.id == review_id)
        ).first()
        if row is None or row.status != "open":
            raise IdentityError(
                f"review {review_id} is not open; list open reviews with "
                "`sharedcare identity review`"
            )
        merge_id: int | None = None
        if same_person:
            a, b = self._m.resolve(row.golden_id), self._m.resolve(row.candidate_golden_id)
            if a != b:
                keep, retire = sorted((a, b), key=lambda g: (svc._goldens[g][2], g))
                merge_id = self.merge(keep, retire, origin="review", reason=reason)
        status = "confirmed" if same_person else "rejected"
        self.connection.execute(
            update(rows.REVIEW)
            .where(rows.REVIEW.c.id == review_id)
            .values(
                status=status,
                reviewer=self.context.user[:200],
                reason=reason,
                decided_at=self.now,
                merge_id=merge_id,
            )
        )
        detail: dict[str, Any] = {"review": review_id}
        if reason:
            detail["reason"] = reason
        self._pending.trail.append(
            rows.TrailEntry(
                f"review-{status}", row.source_id, row.golden_id, row.candidate_golden_id, detail
            )
        )
        return merge_id

    def apply_a40(self, surviving_id: str, prior_id: str) -> str:
        """Apply an HL7 v2 A40 merge through :meth:`merge`: ``prior`` is the same person.

        Returns:
            ``applied`` (merged, or already one person), or ``rejected`` when the surviving
            patient is not in the index; the reason is in the trail.
        """
        svc, p = self.service, self._pending
        for patient_id in (surviving_id, prior_id):
            if patient_id not in svc._keys:
                stored = self.store.read(self.connection, "Patient", patient_id)
                if stored is not None and not stored.deleted:
                    self.place([SourcePatient(patient_id, stored.version_id, stored.json())])
        surviving, prior = svc.golden_of(surviving_id), svc.golden_of(prior_id)
        if surviving is None:
            p.trail.append(
                rows.TrailEntry(
                    "a40-rejected",
                    surviving_id,
                    detail={"reason": "the surviving Patient is not in the record"},
                )
            )
            return "rejected"
        if prior is None or prior == surviving:
            p.trail.append(
                rows.TrailEntry(
                    "a40", prior_id, surviving, None, {"merged": False, "same": prior is not None}
                )
            )
            return "applied"
        self.merge(surviving, prior, origin="hl7-a40")
        return "applied"

    # -- writing ------------------------------------------------------------------------

    def _has_changes(self) -> bool:
        p = self._pending
        return bool(p.links or p.moved or p.removed or p.affected or p.goldens or p.reviews)

    def _note_golden(self, golden_id: str) -> None:
        svc = self.service
        if golden_id not in svc._goldens:
            # Creation times are unique and increasing, so "the older golden record" (kept
            # by a review's merge) is well defined even within one transaction.
            svc._last_created = max(self.now, svc._last_created + 1)
            svc._goldens[golden_id] = ("active", None, svc._last_created)
            self._pending.goldens.add(golden_id)

    def _retire(self, golden_id: str, replaced_by: str) -> None:
        svc = self.service
        created = svc._goldens.get(golden_id, ("", None, self.now))[2]
        svc._goldens[golden_id] = ("retired", replaced_by, created)
        svc._replaces.setdefault(replaced_by, set()).add(golden_id)
        self._pending.goldens.add(golden_id)

    def _golden_content(self, golden_id: str) -> tuple[str, str | None, dict[str, Any]]:
        m = self._m
        try:
            replaced_by = m.replaced_by(golden_id)
            members = m.members(golden_id)
        except MatchError:  # not in memory: a golden record whose sources are all gone
            held = self.service._goldens.get(golden_id)
            if held is not None and held[0] == "retired" and held[1]:
                return "retired", held[1], retired_patient(golden_id, held[1])
            return "empty", None, empty_patient(golden_id)
        if replaced_by is not None:
            return "retired", replaced_by, retired_patient(golden_id, replaced_by)
        if not members:
            return "empty", None, empty_patient(golden_id)
        sources = [key[1] for key in members]
        replaces = self.service._replaces.get(golden_id, set())
        return "active", None, golden_patient(m.golden(golden_id), sources, replaces)

    def flush(self) -> int | None:
        """Write everything this work changed (called by the transaction).

        Returns:
            The newest identity trail id written, if any.
        """
        svc, p, c = self.service, self._pending, self.connection
        rows.upsert(c, rows.LINK, list(p.links.values()), "source_id")
        if p.removed:
            removed = sorted(p.removed)
            for start in range(0, len(removed), 500):
                c.execute(
                    rows.LINK.delete().where(
                        rows.LINK.c.source_id.in_(removed[start : start + 500])
                    )
                )
        for source_id in sorted(p.moved - p.removed):
            key = svc._keys.get(source_id)
            if key is None:
                continue
            c.execute(
                update(rows.LINK)
                .where(rows.LINK.c.source_id == source_id)
                .values(
                    golden_id=self._m.golden_id_of(key),
                    kind=DecisionKind.MANUAL.value,
                    band=Band.AUTO_LINK.value,
                    match_weight=None,
                    probability=None,
                    matched_source_id=None,
                    candidates=0,
                    evidence=None,
                    decided_by=self.context.user[:200],
                    decided_at=self.now,
                    changed=self.version,
                )
            )
        self._write_goldens()
        rows.insert_reviews(c, p.reviews)
        written = rows.insert_trail(c, self.context.user, p.trail, self.now)
        write_audit(c, self.context, p.audits)
        return written

    def _write_goldens(self) -> None:
        svc, p, c = self.service, self._pending, self.connection
        if not p.affected:
            return
        repo = Repository(self.store, self.context)
        affected = sorted(p.affected)
        current = self.store.read_many(c, [("Patient", g) for g in affected])
        writes = []
        entries: list[AuditEntry] = []
        for golden_id in affected:
            status, replaced_by, content = self._golden_content(golden_id)
            held = svc._goldens.get(golden_id, ("", None, self.now))
            state = (status, replaced_by, held[2])
            if held != state:
                svc._goldens[golden_id] = state
                p.goldens.add(golden_id)
            stored = current.get(("Patient", golden_id))
            if stored is not None and not stored.deleted and same_content(stored.json(), content):
                continue
            version = stored.version_id + 1 if stored is not None else 1
            writes.append(
                repo.prepare(
                    content,
                    id=golden_id,
                    version_id=version,
                    now=self.now,
                    existed=stored is not None,
                )
            )
            entries.append(
                AuditEntry(
                    "update" if stored is not None else "create",
                    "0",
                    "Patient",
                    golden_id,
                    version,
                    patient=f"Patient/{golden_id}",
                    description="golden record",
                )
            )
        self.store.apply(c, writes)
        p.audits.extend(entries)
        rows.upsert(
            c,
            rows.GOLDEN,
            [
                {
                    "golden_id": g,
                    "status": svc._goldens[g][0],
                    "replaced_by": svc._goldens[g][1],
                    "created_at": svc._goldens[g][2],
                    "updated_at": self.now,
                    "changed": self.version,
                }
                for g in sorted(p.goldens)
                if g in svc._goldens
            ],
            "golden_id",
        )


def _detail(decision: LinkDecision) -> dict[str, Any]:
    detail: dict[str, Any] = {"kind": decision.kind.value, "band": decision.band.value}
    if decision.score is not None:
        detail["match_weight"] = round(decision.score.match_weight, 3)
    return detail


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
