"""Ingest tables: every received message, its pipeline stage, and pending identity actions.

A ``message`` row is written, with the raw bytes, and its ``message_stage`` row in the same
committed transaction that decides the acknowledgement, so an AA is never sent for a
message that is not stored. The stage row then moves through the pipeline stages (see
:mod:`sharedcare.ingest.stages`); a failed message keeps its reason and waits in the error
queue until it is replayed. Times are epoch microseconds (UTC), like the record's.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from sharedcare.db.tables.base import Base, personal_data
from sharedcare.db.tables.record import BigKey


class Message(Base):
    """One received message (HL7 v2, FHIR or CSV row batch), as received.

    ``(sender_key, control_id)`` is unique: a resend of the same message (HL7 v2: same
    MSH-3, MSH-4 and MSH-10) finds the stored row instead of adding one. Where the message
    is in the pipeline is its :class:`MessageStage` row: this one (the raw bytes and the
    sender's keys, with three indexes) is written once, and only its ``raw`` is replaced,
    when a failed message is resent.
    """

    __tablename__ = "message"
    __table_args__ = (
        UniqueConstraint("sender_key", "control_id"),
        Index("ix_message_feed_id_received_at", "feed_id", "received_at"),
    )

    id: Mapped[int] = mapped_column(BigKey, primary_key=True, autoincrement=True)
    feed_id: Mapped[int] = mapped_column(ForeignKey("feed.id"))
    sender_key: Mapped[str] = mapped_column(
        String(420), doc="protocol:sending application|sending facility"
    )
    control_id: Mapped[str] = mapped_column(String(200), doc="MSH-10, or the file's own id")
    message_type: Mapped[str] = mapped_column(String(40), default="", doc="e.g. ADT^A01")
    received_at: Mapped[int] = mapped_column(BigInteger, doc="epoch microseconds, UTC")
    raw: Mapped[bytes] = personal_data(LargeBinary)


class MessageStage(Base):
    """Where one message is in the pipeline: its stage, and its failure if it failed.

    One row per ``message`` row, with its id, written by the same statement (PostgreSQL)
    or transaction (SQLite); nothing deletes either. The columns that change as a message
    moves on are kept apart from the raw bytes and the sender's keys, so a stage change
    (the ingest writer moves every message to ``written``) rewrites a narrow row with two
    index entries, not the ~1 KB message row with four (decision 0034, addendum of
    2026-11-22, session 9). ``(stage, id)`` finds the messages waiting, failed or at any
    other stage, in id order. There is no foreign key to ``message``: its check locked
    each new message row (a row lock written to the heap and the WAL) in the listener's
    group commit, for rows the same statement had just inserted.
    """

    __tablename__ = "message_stage"
    __table_args__ = (Index("ix_message_stage_stage_id", "stage", "id"),)

    id: Mapped[int] = mapped_column(BigKey, primary_key=True, autoincrement=False)
    stage: Mapped[str] = mapped_column(String(20))
    error_stage: Mapped[str | None] = mapped_column(String(20), doc="stage that failed")
    error: Mapped[str | None] = mapped_column(
        Text, doc="why it failed; names positions and paths, never values"
    )
    updated_at: Mapped[int] = mapped_column(BigInteger, doc="last stage change")
    written_at: Mapped[int | None] = mapped_column(BigInteger, doc="when it reached the record")
    resource_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class IdentityAction(Base):
    """An instruction for the identity service taken from a message, e.g. an A40 merge.

    Kept here, ``pending``, until the master patient index is persisted and applies it.
    """

    __tablename__ = "identity_action"

    id: Mapped[int] = mapped_column(BigKey, primary_key=True, autoincrement=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("message.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20), doc="merge")
    status: Mapped[str] = mapped_column(String(20), doc="pending, applied or rejected")
    payload: Mapped[bytes] = personal_data(LargeBinary, doc="JSON: references and identifiers")
    created_at: Mapped[int] = mapped_column(BigInteger, doc="epoch microseconds, UTC")
