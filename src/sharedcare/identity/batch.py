"""Batch linking: ``sharedcare identity link`` over every Patient already in the record."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, func, select

from sharedcare.identity import store as rows
from sharedcare.identity.service import IDENTITY_CONTEXT, SourcePatient, identity_service
from sharedcare.record.context import RequestContext
from sharedcare.record.sqlstore import SqlStore

__all__ = ["LinkReport", "link_all"]


@dataclass(slots=True)
class LinkReport:
    """What :func:`link_all` did."""

    seen: int = 0
    matched: int = 0
    unchanged: int = 0
    removed: int = 0
    goldens: int = 0
    open_reviews: int = 0


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
                select(resource.c.pk, resource.c.id, resource.c.version_id, resource.c.deleted)
                .where(patients, resource.c.pk > last, resource.c.pk <= horizon)
                .order_by(resource.c.pk)
                .limit(chunk)
            ).all()
            if not batch:
                break
            last = batch[-1].pk
            sources = [r for r in batch if not service.is_golden(r.id)]
            linked = rows.link_rows(work.connection, [r.id for r in sources])
            todo = [
                r.id
                for r in sources
                if not r.deleted
                and (r.id not in linked or linked[r.id].source_version != r.version_id)
            ]
            gone = [r.id for r in sources if r.deleted and r.id in linked]
            stored = work.store.read_many(work.connection, [("Patient", i) for i in todo])
            work.place(
                [
                    SourcePatient(i, s.version_id, s.json())
                    for i in todo
                    if (s := stored.get(("Patient", i))) is not None and not s.deleted
                ]
            )
            work.remove(gone)
            report.seen += len(sources)
            report.matched += len(todo)
            report.removed += len(gone)
            report.unchanged += len(sources) - len(todo) - len(gone)
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
