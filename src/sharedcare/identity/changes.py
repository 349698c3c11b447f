"""What the identity service's units of work share: its context, errors and pending changes.

See :mod:`sharedcare.identity.service` for how a transaction uses them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from sharedcare.identity import store as rows
from sharedcare.identity.matcher import LinkDecision
from sharedcare.identity.model import Score
from sharedcare.identity.person import PersonDataError, PersonRecord
from sharedcare.record.audit import AuditEntry
from sharedcare.record.context import RequestContext

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
    #: Its demographics as matching reads them (:func:`person_of`), if read ahead.
    record: PersonRecord | None = field(default=None, compare=False)


def person_of(patient_id: str, content: dict[str, Any]) -> PersonRecord:
    """The demographics matching reads from a source Patient (``meta.source`` its system).

    Raises:
        PersonDataError: If a value cannot be read.
    """
    meta = content.get("meta")
    system = meta.get("source") if isinstance(meta, dict) else None
    return PersonRecord.from_fhir(content, source=str(system or "unknown"), local_id=patient_id)


def read_ahead(patient: SourcePatient) -> SourcePatient:
    """``patient`` with its demographics read (the ingest writer does it while it plans a
    batch ahead, off its write transaction). One that cannot be read is returned as it is:
    matching reads it again and notes why in the trail."""
    try:
        return replace(patient, record=person_of(patient.id, patient.content))
    except PersonDataError:
        return patient


def evidence(score: Score | None) -> bytes | None:
    return orjson.dumps(score.to_dict()) if score is not None else None


@dataclass
class PendingChanges:
    """What a :class:`~sharedcare.identity.work.Work` has changed and not yet written."""

    links: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Sources whose new version left every matching value as it was: the link keeps its
    # decision and moves to this version (``Work._refresh``).
    versions: dict[str, int] = field(default_factory=dict)
    moved: set[str] = field(default_factory=set)
    removed: set[str] = field(default_factory=set)
    affected: set[str] = field(default_factory=set)
    goldens: set[str] = field(default_factory=set)
    # Golden ids first handed out in this transaction: no resource can hold them yet.
    minted: set[str] = field(default_factory=set)
    reviews: list[dict[str, Any]] = field(default_factory=list)
    trail: list[rows.TrailEntry] = field(default_factory=list)
    audits: list[AuditEntry] = field(default_factory=list)


def detail(decision: LinkDecision) -> dict[str, Any]:
    detail: dict[str, Any] = {"kind": decision.kind.value, "band": decision.band.value}
    if decision.score is not None:
        detail["match_weight"] = round(decision.score.match_weight, 3)
    return detail
