"""Real-time matching of Patients written through the record's repository.

The ingest writer matches the Patients it writes inside its own write transaction. Every
other write path goes through :class:`~sharedcare.record.repository.Repository`: the FHIR
RESTful API (create, update, delete), batch and transaction bundles (the GP and community
feeds, the FHIR drop folder, ``sharedcare load-synthetic``) and ``sharedcare load``. After
each of those commits, the repository calls the ``record_committed`` plugin hook; this
module implements it. The record does not import identity: identity listens.

For the Patients among the writes, :func:`~sharedcare.identity.batch.sync_patients` (the
batch run's rule) runs in one identity transaction
(:meth:`~sharedcare.identity.service.IdentityService.transaction`, queued behind every other
identity writer in every process) and brings the index in line with each Patient's
*current* version, read inside that transaction:

* a Patient not linked, or linked at an older version, is placed by the real-time matcher
  (linked, a new golden record, or queued for review, as for an HL7 v2 Patient);
* a deleted Patient leaves the index and its golden record is rewritten;
* golden records are never matched as sources, and a Patient already linked at its
  current version (written by the ingest writer, or matched by a racing request) is left
  alone.

Concurrent writes in one process are matched together (:class:`_GroupMatcher`): identity
transactions queue one at a time anyway, so whichever request gets its turn matches the
Patients of every request waiting behind it in the same transaction.

Reading the current version rather than the one written makes two requests that race on
one Patient converge: whichever matches second sees the newer version, or finds it linked
already. It runs after the commit (decision 0020), so a failure here never loses the
write: it is logged (without patient data) and the Patient stays unlinked at that version,
which the next ``sharedcare identity link`` (idempotent, :func:`~sharedcare.identity.batch.
link_all`) picks up.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from typing import Any

from sharedcare.identity.batch import SyncReport, sync_patients
from sharedcare.identity.golden import GOLDEN_TAG
from sharedcare.identity.service import identity_service
from sharedcare.plugins import hookimpl
from sharedcare.record.sqlstore import PendingWrite, SqlStore

__all__ = [
    "SyncReport",
    "conditional_criteria",
    "match_written",
    "record_committed",
    "sync_patients",
]

log = logging.getLogger(__name__)


def match_written(
    store: SqlStore,
    patient_ids: Sequence[str],
    written: Mapping[str, tuple[int, bytes]] | None = None,
) -> SyncReport:
    """Match ``patient_ids`` (just written) in one identity transaction of their own.

    ``written`` holds the version and JSON of each as written, so that a Patient still at
    that version is not read back (:func:`~sharedcare.identity.batch.sync_patients`).
    """
    service = identity_service(store.engine)
    with service.transaction(store.engine, store, commit=True, patients=patient_ids) as work:
        return sync_patients(work, patient_ids, written)


class _GroupMatcher:
    """Matches the Patients of concurrent writes in this process in one transaction.

    Identity transactions queue one at a time anyway (the service's lock, then the
    ``identity_state`` row). A request that gets its turn matches its own Patients and
    those of every request queued behind it, and tells them; a request whose Patients were
    matched while it waited returns at once. So under concurrent writes one commit serves
    several, as the AuditEvents of reads are group-committed (decision 0015), and alone a
    request pays for one transaction as before.
    """

    def __init__(self) -> None:
        self._queue_lock = threading.Lock()
        self._turn = threading.Lock()
        self._queue: list[tuple[dict[str, tuple[int, bytes]], Future[None]]] = []

    def match(self, store: SqlStore, written: dict[str, tuple[int, bytes]]) -> None:
        mine: Future[None] = Future()
        with self._queue_lock:
            self._queue.append((written, mine))
        with self._turn:
            if not mine.done():
                with self._queue_lock:
                    group, self._queue = self._queue, []
                everything: dict[str, tuple[int, bytes]] = {}
                for batch, _ in group:
                    for i, held in batch.items():
                        if i not in everything or held[0] > everything[i][0]:
                            everything[i] = held
                try:
                    match_written(store, list(everything), everything)
                except BaseException as error:
                    for _, future in group:
                        future.set_exception(error)
                else:
                    for _, future in group:
                        future.set_result(None)
        mine.result()


_groups: dict[str, _GroupMatcher] = {}
_groups_lock = threading.Lock()


def _group_of(store: SqlStore) -> _GroupMatcher:
    key = store.engine.url.render_as_string(hide_password=True)
    with _groups_lock:
        group = _groups.get(key)
        if group is None:
            group = _groups[key] = _GroupMatcher()
        return group


@hookimpl
def record_committed(store: Any, context: Any, writes: Sequence[Any]) -> None:
    """Match the Patients among ``writes`` (the ``record_committed`` hook).

    A failure is logged and left to the next batch run; the writes stand.
    """
    del context  # identity decisions are made as the identity service, whoever wrote
    # Each Patient written, with the version and JSON as stored (empty for a deletion).
    written: dict[str, tuple[int, bytes]] = {}
    for w in writes:
        if isinstance(w, PendingWrite) and w.resource_type == "Patient":
            held = written.get(w.id)
            if held is None or w.version_id > held[0]:
                written[w.id] = (w.version_id, w.content or b"")
    if not written or not isinstance(store, SqlStore):
        return
    try:
        _group_of(store).match(store, written)
    except Exception as error:  # the Patients are written; the batch run links them
        log.warning(
            "identity: real-time matching of %d written Patient(s) failed (%s); "
            "`sharedcare identity link` will match them",
            len(written),
            type(error).__name__,
        )


_NOT_GOLDEN = [("_tag:not", f"{GOLDEN_TAG['system']}|{GOLDEN_TAG['code']}")]


@hookimpl
def conditional_criteria(resource_type: str) -> list[tuple[str, str]] | None:
    """Keep golden records out of conditional interactions (the ``conditional_criteria`` hook).

    A golden Patient carries the NHS number of its sources, so ``Patient?identifier=`` an NHS
    number would otherwise find it beside the client's own record (412), or write over a
    record the identity service maintains when the client's is gone.
    """
    return _NOT_GOLDEN if resource_type == "Patient" else None
