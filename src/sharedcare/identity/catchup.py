"""At process start: load the identity index, and link Patients a crash left unlinked.

Patients written through the record's repository are matched just after their commit
(:mod:`sharedcare.identity.realtime`, decision 0020). A process that dies between the two
leaves the Patient without a link at its current version. When an API server worker
starts, :class:`IdentityWarmup` runs in a background thread:

1. :func:`warm_index` loads this process's in-memory index without taking the identity
   queue (so the first Patient write does not pay for it, and other identity writers do
   not wait for it);
2. :func:`find_unlinked` looks for source Patients not linked at their current version
   (never linked, changed since, or deleted but still linked) and written before the
   worker started (later writes are matched live): one anti-join on the record, indexed on
   both sides;
3. if there are any, :func:`catch_up` brings them in line with
   :func:`~sharedcare.identity.batch.sync_patients`, the one rule of the batch run and of
   real-time matching, in identity transactions of their own.

It is bounded: a crash leaves at most the Patients in flight unlinked, so when more than
:data:`START_LIMIT` are found the store was filled some other way (loaded before identity
existed, restored, or written with matching off), and linking it is a deliberate batch job
with a progress bar, ``sharedcare identity link``. The worker then links nothing and logs
the command to run, rather than quietly writing thousands of golden records in the
background of a serving process.

Several workers starting at once are safe: identity transactions queue one at a time
across processes (the ``identity_state`` row), and ``sync_patients`` reads each Patient's
version and link inside its transaction, so whichever worker comes second finds them
linked and does nothing. The catch-up is part of real-time matching: when that plugin is
not registered (``tests.support.identity.without_realtime_matching``) it does not run.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, and_, exists, or_, select

from sharedcare.identity import store as rows
from sharedcare.identity.batch import sync_patients
from sharedcare.identity.service import identity_service
from sharedcare.record.instants import now_us
from sharedcare.record.sqlstore import SqlStore

__all__ = ["CatchUpReport", "IdentityWarmup", "catch_up", "find_unlinked", "warm_index"]

log = logging.getLogger(__name__)
_CHUNK = 1000  # Patients per identity transaction
START_LIMIT = 1000
"""The most unlinked Patients a worker links by itself at start (see the module)."""


@dataclass(slots=True)
class CatchUpReport:
    """What the start-up work did, and how long it took (seconds)."""

    warmed: bool = False
    warm_seconds: float = 0.0
    found: int = 0
    too_many: bool = False
    placed: int = 0
    removed: int = 0
    find_seconds: float = 0.0
    link_seconds: float = 0.0


def warm_index(engine: Engine) -> bool:
    """Load this process's identity index now rather than at its first Patient write.

    Returns whether it was loaded (``False`` if it was already, or if identity changed
    while it loaded; the first identity transaction then loads it as before).
    """
    return identity_service(engine).warm(engine)


def find_unlinked(
    engine: Engine, *, limit: int | None = None, before_us: int | None = None
) -> list[str]:
    """Source Patients not linked at their current version, oldest first.

    Those never linked or changed since their link, and deleted ones still linked; golden
    records (``identity_golden``) are not sources.

    Args:
        engine: The database.
        limit: At most this many.
        before_us: Only versions written before this instant (epoch microseconds).
    """
    resource: Any = rows.RESOURCE
    link: Any = rows.LINK
    golden: Any = rows.GOLDEN
    query = (
        select(resource.c.id)
        .select_from(resource.outerjoin(link, link.c.source_id == resource.c.id))
        .where(
            resource.c.resource_type == "Patient",
            or_(
                and_(
                    resource.c.deleted.is_(False),
                    or_(
                        link.c.source_id.is_(None),
                        link.c.source_version != resource.c.version_id,
                    ),
                ),
                and_(resource.c.deleted.is_(True), link.c.source_id.is_not(None)),
            ),
            ~exists(select(golden.c.golden_id).where(golden.c.golden_id == resource.c.id)),
        )
        .order_by(resource.c.pk)
    )
    if before_us is not None:
        query = query.where(resource.c.last_updated < before_us)
    if limit is not None:
        query = query.limit(limit)
    with engine.connect() as connection:
        return list(connection.scalars(query))


def catch_up(
    engine: Engine,
    store: SqlStore,
    *,
    stop: threading.Event | None = None,
    limit: int | None = START_LIMIT,
    before_us: int | None = None,
) -> CatchUpReport:
    """Warm the index, then link every source Patient left unlinked (see the module).

    Args:
        engine: The database.
        store: Its record store.
        stop: Set to stop after the identity transaction under way (at shutdown); what is
            left is found at the next start.
        limit: Link nothing when more than this many are unlinked (``report.too_many``);
            ``None`` for no limit.
        before_us: Only Patients written before this instant (epoch microseconds): a
            worker passes its start, since what is written after it is matched live (and
            a test may write unlinked Patients on purpose).
    """
    report = CatchUpReport()
    started = time.perf_counter()
    report.warmed = warm_index(engine)
    report.warm_seconds = time.perf_counter() - started
    if limit is not None:
        started = time.perf_counter()
        backlog = len(find_unlinked(engine, limit=limit + 1, before_us=before_us))
        report.find_seconds += time.perf_counter() - started
        if backlog > limit:
            report.too_many = True
            return report
    service = identity_service(engine)
    seen: set[str] = set()
    while stop is None or not stop.is_set():
        started = time.perf_counter()
        found = find_unlinked(engine, limit=_CHUNK + len(seen), before_us=before_us)
        ids = [i for i in found if i not in seen]
        report.find_seconds += time.perf_counter() - started
        if not ids:
            return report
        started = time.perf_counter()
        with service.transaction(engine, store) as work:
            synced = sync_patients(work, ids)
        report.link_seconds += time.perf_counter() - started
        report.found += len(ids)
        report.placed += synced.placed
        report.removed += synced.removed
        # A Patient the matcher cannot read stays unlinked (its reason is in the trail):
        # remembered so that the loop ends.
        seen.update(ids)
    return report


class IdentityWarmup:
    """:func:`catch_up` in a background thread, so that a worker starts serving at once.

    Args:
        engine: The database.
        store: Its record store.
    """

    def __init__(self, engine: Engine, store: SqlStore) -> None:
        self.report: CatchUpReport | None = None
        self._engine = engine
        self._store = store
        self._stop = threading.Event()
        self._started_us = now_us()
        self._thread = threading.Thread(
            target=self._run, name="sharedcare-identity-warmup", daemon=True
        )

    @classmethod
    def start_if_matching(cls, engine: Engine, store: SqlStore) -> IdentityWarmup | None:
        """Start it when real-time matching is on (the identity plugin is registered)."""
        from sharedcare.identity import realtime
        from sharedcare.plugins import plugin_manager

        if not plugin_manager().is_registered(realtime):
            return None
        warmup = cls(engine, store)
        warmup._thread.start()
        return warmup

    def join(self, timeout: float | None = None) -> None:
        """Wait for it to finish (tests; the start-up's work is done after this)."""
        self._thread.join(timeout)

    def stop(self) -> None:
        """Stop after the identity transaction under way, and wait (the application's
        shutdown does, before the engine goes)."""
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            self.report = catch_up(
                self._engine, self._store, stop=self._stop, before_us=self._started_us
            )
        except Exception as error:  # the next start, or `sharedcare identity link`, retries
            log.warning(
                "identity: start-up catch-up failed (%s); `sharedcare identity link` will "
                "match any Patient left unlinked",
                type(error).__name__,
            )
            return
        report = self.report
        if report.too_many:
            log.warning(
                "identity: more than %d source Patients have no golden record, more than a "
                "crash can leave; run `sharedcare identity link` to match them",
                START_LIMIT,
            )
        elif report.found:
            log.info(
                "identity: linked %d Patient(s) left unlinked (%d placed, %d removed) in %.2fs",
                report.found,
                report.placed,
                report.removed,
                report.find_seconds + report.link_seconds,
            )
