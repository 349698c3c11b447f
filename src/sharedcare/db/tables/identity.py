"""Master patient index tables: link decisions, golden records, reviews, merges, trail.

The in-memory :class:`~sharedcare.identity.matcher.Matcher` is rebuilt from these rows (and
the source Patients in the record) when a process first needs it. Golden records
themselves are Patient resources in the record; ``identity_golden`` only says which
Patients are golden, and whether each is active or replaced by another.

``identity_state`` holds one row whose ``version`` every identity write increments in its
own transaction: it serialises identity writes across processes and tells a process that
another one changed the index since it last looked. Times are epoch microseconds (UTC).

Evidence JSON names comparison levels and weights, never values. Free text a reviewer
types (``reason``) and the trail's ``detail`` may hold personal data and are marked so.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Float, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from sharedcare.db.tables.base import Base, personal_data
from sharedcare.db.tables.record import BigKey


class IdentityState(Base):
    """One row (``id = 1``): the index's version, bumped by every identity write."""

    __tablename__ = "identity_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, default=0)


class IdentityGolden(Base):
    """A golden record's id and status (its content is the Patient of the same id)."""

    __tablename__ = "identity_golden"

    golden_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(12), doc="active or retired")
    replaced_by: Mapped[str | None] = mapped_column(String(64), doc="survivor, if retired")
    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)
    changed: Mapped[int] = mapped_column(
        BigInteger, default=0, server_default="0", index=True, doc="index version of last change"
    )


class IdentityLink(Base):
    """The latest decision placing one source Patient in a golden record."""

    __tablename__ = "identity_link"
    __table_args__ = (Index("ix_identity_link_golden_id", "golden_id"),)

    source_id: Mapped[str] = mapped_column(String(64), primary_key=True, doc="Patient.id")
    source_system: Mapped[str] = mapped_column(String(300), doc="Patient.meta.source")
    source_version: Mapped[int] = mapped_column(Integer, doc="Patient version matched")
    golden_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16), doc="deterministic, probabilistic, new, manual")
    band: Mapped[str] = mapped_column(String(12))
    match_weight: Mapped[float | None] = mapped_column(Float)
    probability: Mapped[float | None] = mapped_column(Float)
    matched_source_id: Mapped[str | None] = mapped_column(String(64))
    candidates: Mapped[int] = mapped_column(Integer, default=0)
    evidence: Mapped[bytes | None] = mapped_column(
        LargeBinary, doc="JSON: per-field level and weight; never values"
    )
    decided_by: Mapped[str] = mapped_column(String(200))
    decided_at: Mapped[int] = mapped_column(BigInteger)
    changed: Mapped[int] = mapped_column(
        BigInteger, default=0, server_default="0", index=True, doc="index version of last change"
    )


class IdentityReview(Base):
    """A pair of golden records queued for a person to decide."""

    __tablename__ = "identity_review"
    __table_args__ = (
        Index("ix_identity_review_status_id", "status", "id"),
        Index(
            "ix_identity_review_golden_id_candidate_golden_id", "golden_id", "candidate_golden_id"
        ),
    )

    id: Mapped[int] = mapped_column(BigKey, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(24), doc="possible-match or possible-duplicate")
    source_id: Mapped[str] = mapped_column(String(64), doc="the source Patient that raised it")
    golden_id: Mapped[str] = mapped_column(String(64))
    candidate_golden_id: Mapped[str] = mapped_column(String(64))
    match_weight: Mapped[float] = mapped_column(Float)
    probability: Mapped[float] = mapped_column(Float)
    evidence: Mapped[bytes] = mapped_column(LargeBinary, doc="JSON, as identity_link.evidence")
    status: Mapped[str] = mapped_column(String(12), doc="open, confirmed or rejected")
    reviewer: Mapped[str | None] = mapped_column(String(200))
    reason: Mapped[str | None] = personal_data(String(2000))
    created_at: Mapped[int] = mapped_column(BigInteger)
    decided_at: Mapped[int | None] = mapped_column(BigInteger)
    merge_id: Mapped[int | None] = mapped_column(BigInteger, doc="the merge a confirm made")


class IdentityMerge(Base):
    """A merge of one golden record into another, kept so that it can be undone."""

    __tablename__ = "identity_merge"

    id: Mapped[int] = mapped_column(BigKey, primary_key=True, autoincrement=True)
    kept: Mapped[str] = mapped_column(String(64))
    retired: Mapped[str] = mapped_column(String(64))
    moved: Mapped[bytes] = mapped_column(LargeBinary, doc="JSON list of source Patient ids")
    origin: Mapped[str] = mapped_column(String(16), doc="review, manual or hl7-a40")
    status: Mapped[str] = mapped_column(String(12), doc="applied or undone")
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[int] = mapped_column(BigInteger)
    undone_by: Mapped[str | None] = mapped_column(String(200))
    undone_at: Mapped[int | None] = mapped_column(BigInteger)


class IdentityTrail(Base):
    """The identity audit trail: every change to the index, who made it and why."""

    __tablename__ = "identity_trail"
    __table_args__ = (Index("ix_identity_trail_golden_id", "golden_id"),)

    id: Mapped[int] = mapped_column(BigKey, primary_key=True, autoincrement=True)
    recorded: Mapped[int] = mapped_column(BigInteger)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(24))
    source_id: Mapped[str | None] = mapped_column(String(64))
    golden_id: Mapped[str | None] = mapped_column(String(64))
    other_golden_id: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[bytes | None] = personal_data(LargeBinary, doc="JSON; a reviewer's reason")
