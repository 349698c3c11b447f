"""The stages a message passes through, and the reasons it can stop.

Every message goes ``received → stored → parsed → mapped → written``. ``received`` exists
only in memory: a message is first written to the database already ``stored`` (FHIR and
CSV inputs) or ``mapped`` (HL7 v2, which is parsed and mapped before the commit that
decides its acknowledgement). A message that cannot go on is ``failed``, with the stage
that failed and the reason, and waits in the error queue until it is replayed. An A40
merge ends ``identity-pending``: its surviving patient is written and the merge is kept
as a pending identity action until the master patient index applies it.

Identity matching, between ``mapped`` and ``written``, joins when the master patient index
is persisted; until then patients are keyed by their sender's identifiers (see
docs/explanation/ingest-pipeline.md).
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["WAITING", "Stage"]


class Stage(StrEnum):
    """Pipeline stage of one message (the ``message.stage`` column)."""

    RECEIVED = "received"
    STORED = "stored"
    PARSED = "parsed"
    MAPPED = "mapped"
    WRITTEN = "written"
    IDENTITY_PENDING = "identity-pending"
    FAILED = "failed"


WAITING = (Stage.STORED.value, Stage.PARSED.value, Stage.MAPPED.value)
"""Stages of a message that is durably stored but not yet in the record."""
