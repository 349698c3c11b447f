"""A unit of identity work: matching source Patients and manual actions, in one transaction.

A :class:`Work` is handed out by :meth:`~sharedcare.identity.service.IdentityService.transaction`;
what it changes is written by :meth:`~sharedcare.identity.writing.WorkWriter.flush` when the
transaction ends.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

import orjson
from sqlalchemy import Connection

from sharedcare.identity import store as rows
from sharedcare.identity.changes import (
    PendingChanges,
    SourcePatient,
    detail,
    evidence,
    person_of,
)
from sharedcare.identity.matcher import DecisionKind, LinkDecision, MatchError
from sharedcare.identity.merges import WorkMerges
from sharedcare.identity.model import Band
from sharedcare.identity.person import PersonDataError, PersonRecord
from sharedcare.record.context import RequestContext
from sharedcare.record.instants import now_us
from sharedcare.record.sqlstore import SqlStore

if TYPE_CHECKING:
    from sharedcare.identity.service import IdentityService


class Work(WorkMerges):
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
        self._pending = PendingChanges()
        # States of Patients read with the version's bump (``IdentityService.transaction``),
        # for the first ``sync_patients`` of this work.
        self.prefetched: tuple[frozenset[str], dict[str, rows.PatientState]] | None = None

    # -- matching -------------------------------------------------------------------------

    def place(self, patients: Sequence[SourcePatient]) -> list[LinkDecision]:
        """Match source Patients (new or changed) and place each in a golden record.

        Golden Patients are skipped. A Patient whose demographics cannot be read (which the
        record's validation should already prevent) is left out and noted in the trail. A
        new version whose matching values are all those already indexed for it keeps its
        place without being scored again (:meth:`_refresh`; decision 0020).

        Returns:
            The decisions taken (none for Patients kept in place).
        """
        decisions: list[LinkDecision] = []
        svc = self.service
        for patient in patients:
            if svc.is_golden(patient.id):
                continue
            record = patient.record
            if record is None:
                try:
                    record = person_of(patient.id, patient.content)
                except PersonDataError as error:
                    self._pending.trail.append(
                        rows.TrailEntry("unmatched", patient.id, detail={"reason": str(error)})
                    )
                    continue
            if not self._refresh(record, patient.version):
                decisions.append(self._place(record, patient.version))
        return decisions

    def _refresh(self, record: PersonRecord, version: int) -> bool:
        """Keep a source whose matching values did not change where it is, unscored.

        Its link keeps its decision and moves to ``version``; the copy held in memory takes
        the new ``updated`` time. Survivorship weighs a cluster's records by that time, so
        a golden record with other sources is recomputed (and rewritten only if its content
        changes); one with this source alone cannot change. Only a copy held at the version
        its link was decided on is compared: one loaded at a newer version (changed while no
        match ran) is placed again.

        Returns:
            Whether the source was kept in place (``False``: it must be placed).
        """
        svc, p = self.service, self._pending
        source_id = record.local_id
        if svc._keys.get(source_id) != record.key or source_id in svc._unmatched:
            return False
        size = self._m.refresh(record)
        if size is None:
            return False
        link = p.links.get(source_id)
        if link is not None:
            link["source_version"] = version
        else:
            p.versions[source_id] = version
        if size > 1:
            p.affected.add(self._m.golden_id_of(record.key))
        return True

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
        svc._unmatched.discard(source_id)
        golden_id = decision.golden_id
        self._note_golden(golden_id)
        p.affected.add(golden_id)
        if old_golden is not None and old_golden != golden_id:
            p.affected.add(old_golden)
            replaced = m.replaced_by(old_golden)
            if replaced is not None:
                self._retire(old_golden, replaced)
            p.trail.append(
                rows.TrailEntry("relink", source_id, golden_id, old_golden, detail(decision))
            )
        elif old_golden is None:
            p.trail.append(rows.TrailEntry("link", source_id, golden_id, None, detail(decision)))
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
            "evidence": evidence(score),
            "decided_by": self.context.user[:200],
            "decided_at": self.now,
            "changed": self.version,
        }
        p.moved.discard(source_id)
        p.versions.pop(source_id, None)
        if decision.kind is not DecisionKind.DETERMINISTIC and decision.band is not Band.NO_LINK:
            self._collect_reviews()
        return decision

    def _collect_reviews(self) -> None:
        svc, p = self.service, self._pending
        items = self._m.reviews_since(svc._reviews_seen)
        for item in items:
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
        svc._reviews_seen += len(items)

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
            p.versions.pop(source_id, None)
            svc._unmatched.discard(source_id)
            p.trail.append(rows.TrailEntry("remove", source_id, golden_id))

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
