"""Batch linking: ``sharedcare identity link`` over every Patient already in the record."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Engine, func, select

from sharedcare.identity import store as rows
from sharedcare.identity.service import IDENTITY_CONTEXT, SourcePatient, Work, identity_service
from sharedcare.record.context import RequestContext
from sharedcare.record.sqlstore import SqlStore, StoredResource

__all__ = ["LinkReport", "SyncReport", "link_all", "sync_patients"]


@dataclass(slots=True)
class LinkReport:
    """What :func:`link_all` did."""

    seen: int = 0
    matched: int = 0
    unchanged: int = 0
    removed: int = 0
    goldens: int = 0
    open_reviews: int = 0


@dataclass(slots=True)
class SyncReport:
    """What :func:`sync_patients` did with the Patients it was given."""

    placed: int = 0
    removed: int = 0
    unchanged: int = 0
    golden: int = 0


def sync_patients(
    work: Work,
    patient_ids: Sequence[str],
    written: Mapping[str, tuple[int, bytes]] | None = None,
) -> SyncReport:
    """Bring the index in line with the current versions of ``patient_ids``.

    The one rule of both the batch run and real-time matching of repository writes: a
    source Patient not linked, or linked at an older version, is placed by the matcher; a
    deleted one leaves the index; one linked at its current version, and any golden
    record, is left alone. Runs in ``work``'s transaction and reads the versions there, so
    the decision is taken against what is committed now, whatever version a caller wrote;
    only the Patients to place are read whole.

    Args:
        work: The identity transaction.
        patient_ids: Patients to bring in line.
        written: Version and stored JSON of Patients the caller has just written (the
            real-time hook): a Patient whose current version is the one written is not
            read back.
    """
    report = SyncReport()
    service = work.service
    ids = list(dict.fromkeys(patient_ids))
    sources = [i for i in ids if not service.is_golden(i)]
    report.golden = len(ids) - len(sources)
    if not sources:
        return report
    prefetched, work.prefetched = work.prefetched, None
    if prefetched is not None and prefetched[0].issuperset(sources):
        states = prefetched[1]
    else:
        states = rows.patient_states(work.connection, sources)
    todo: list[str] = []
    gone: list[str] = []
    for source_id in sources:
        state = states.get(source_id)
        if state is None:
            continue
        if state.deleted:
            if state.linked_version is not None:
                gone.append(source_id)
        elif state.linked_version != state.version:
            todo.append(source_id)
    known: dict[str, SourcePatient] = {}
    if written:
        for i in todo:
            held = written.get(i)
            if held is not None and held[1] and held[0] == states[i].version:
                known[i] = SourcePatient(i, held[0], orjson.loads(held[1]))
    unread = [("Patient", i) for i in todo if i not in known]
    stored = work.store.read_many(work.connection, unread) if unread else {}
    place = [
        p for i in todo if (p := known.get(i) or _source(stored.get(("Patient", i)))) is not None
    ]
    work.place(place)
    work.remove(gone)
    report.placed, report.removed = len(place), len(gone)
    report.unchanged = len(sources) - len(place) - len(gone)
    return report


def _source(stored: StoredResource | None) -> SourcePatient | None:
    if stored is None or stored.deleted:
        return None
    return SourcePatient(stored.id, stored.version_id, stored.json())


def link_all(
    engine: Engine,
    store: SqlStore,
    context: RequestContext = IDENTITY_CONTEXT,
    *,
    chunk: int = 1000,
    progress: Callable[[int], None] | None = None,
) -> LinkReport:
    """Match every source Patient in the record not yet matched at its current version.

    Idempotent: a second run matches only Patients changed (or deleted) since the first.
    Each chunk is one transaction, so an interrupted run keeps what it finished. Patients
    written during the run are left to the real-time path (and the next run).

    Args:
        engine: The database.
        store: Its record store.
        context: Who is running it (for the audit trail).
        chunk: Patients per transaction.
        progress: Called with the number of Patients handled after each chunk.
    """
    service = identity_service(engine)
    report = LinkReport()
    resource: Any = rows.RESOURCE
    patients = resource.c.resource_type == "Patient"
    with engine.connect() as connection:
        # Patients written after this point are matched as they are written.
        horizon = connection.scalar(select(func.max(resource.c.pk)).where(patients)) or 0
    last = 0
    while last < horizon:
        with service.transaction(engine, store, context) as work:
            batch = work.connection.execute(
                select(resource.c.pk, resource.c.id)
                .where(patients, resource.c.pk > last, resource.c.pk <= horizon)
                .order_by(resource.c.pk)
                .limit(chunk)
            ).all()
            if not batch:
                break
            last = batch[-1].pk
            synced = sync_patients(work, [r.id for r in batch])
            report.seen += len(batch) - synced.golden
            report.matched += synced.placed
            report.removed += synced.removed
            report.unchanged += synced.unchanged
        if progress is not None:
            progress(len(batch))
    with engine.connect() as connection:
        report.goldens = int(
            connection.scalar(
                select(func.count())
                .select_from(rows.GOLDEN)
                .where(rows.GOLDEN.c.status == "active")
            )
            or 0
        )
        report.open_reviews = int(
            connection.scalar(
                select(func.count()).select_from(rows.REVIEW).where(rows.REVIEW.c.status == "open")
            )
            or 0
        )
    return report
