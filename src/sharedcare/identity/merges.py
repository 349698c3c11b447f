"""Manual identity actions in a unit of work: merges, unmerges and review decisions."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import select, update

from sharedcare.identity import store as rows
from sharedcare.identity.changes import IdentityError
from sharedcare.identity.matcher import MatchError
from sharedcare.identity.writing import WorkWriter
from sharedcare.record.audit import AuditEntry


class WorkMerges(WorkWriter):
    """Merging and unmerging golden records, and deciding reviews (base of ``Work``)."""

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
