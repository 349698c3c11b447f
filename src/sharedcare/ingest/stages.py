"""The stages a message passes through, and the reasons it can stop.

Every message goes ``received → stored → parsed → mapped → identity-matched → written``.
``received`` exists only in memory: a message is first written to the database already
``stored`` (FHIR and CSV inputs) or ``mapped`` (HL7 v2, which is parsed and mapped before
the commit that decides its acknowledgement). A message that cannot go on is ``failed``,
with the stage that failed and the reason, and waits in the error queue until it is
replayed.

Identity matching runs inside the transaction that writes the message's resources
(:mod:`sharedcare.ingest.writer`): each Patient written is placed in a golden record by the
master patient index (:mod:`sharedcare.identity.service`), and an A40 merge is applied by
its merge operation, before the message's stage row moves to ``written``. So
``identity-matched`` is a step, never a resting stage: a message is ``mapped`` until its
resources and their identity decisions have all committed together.

``identity-pending`` is left only by earlier versions, which kept A40 merges pending until
the index was persisted; ``sharedcare identity link`` applies them and moves their messages
to ``written``.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["WAITING", "Stage"]


class Stage(StrEnum):
    """Pipeline stage of one message (the ``message_stage.stage`` column)."""

    RECEIVED = "received"
    STORED = "stored"
    PARSED = "parsed"
    MAPPED = "mapped"
    WRITTEN = "written"
    IDENTITY_PENDING = "identity-pending"
    FAILED = "failed"


WAITING = (Stage.STORED.value, Stage.PARSED.value, Stage.MAPPED.value)
"""Stages of a message that is durably stored but not yet in the record."""
