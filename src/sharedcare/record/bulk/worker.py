"""The export worker: a background thread in each server process that runs queued jobs.

With ``serve --workers N`` every process runs one; the job table's compare-and-swap claim
(:meth:`~sharedcare.record.bulk.jobs.JobStore.claim_next`) makes sure each job runs once. A
thread (rather than a process of its own) keeps deployment to the one ``serve`` command; an
export's database reads release the GIL, but its Python row loop does compete with request
handling in the same process, so large exports are best run where ``--workers`` > 1.

On SQLite the export reads in a WAL snapshot, which never blocks writers; the job's own
state changes are single-row writes, each in a short ``BEGIN IMMEDIATE`` transaction.

When the server stops, a running job is handed back to the queue and its partial files are
removed, so the next start (of any process) runs it afresh; a job whose process died without
stopping is claimed again once its heartbeat is stale (or at once, if its process on this
host is gone). Finished jobs past their expiry are removed about once a minute.
"""

from __future__ import annotations

import logging
import threading
import time

from sharedcare.record.bulk.exporter import Cancelled, run_export
from sharedcare.record.bulk.jobs import Job, JobStore, worker_identity
from sharedcare.record.errors import RecordError
from sharedcare.record.sqlstore import SqlStore

__all__ = ["BulkWorker"]

log = logging.getLogger(__name__)
_POLL_S = 2.0
_EXPIRE_EVERY_S = 60.0


class BulkWorker:
    """Runs export jobs one at a time on a daemon thread.

    Args:
        store: The record's store.
        jobs: The job table and export folder.
        file_limit: Most resources per output file.
    """

    def __init__(self, store: SqlStore, jobs: JobStore, *, file_limit: int) -> None:
        self.store = store
        self.jobs = jobs
        self.file_limit = file_limit
        self.identity = worker_identity()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_expiry = 0.0

    def start(self) -> None:
        """Start the thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="bulk-export", daemon=True)
            self._thread.start()

    def wake(self) -> None:
        """Look for work now rather than at the next poll (a job was just queued)."""
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the thread; a running job is handed back to the queue."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if time.monotonic() - self._last_expiry > _EXPIRE_EVERY_S:
                    self._last_expiry = time.monotonic()
                    self.jobs.expire()
                job = self.jobs.claim_next(self.identity)
            except Exception as error:  # the database may be briefly unreachable
                log.warning("bulk export worker could not poll: %s", type(error).__name__)
                job = None
            if job is not None:
                self.run(job)
                continue
            self._wake.wait(_POLL_S)
            self._wake.clear()

    def run(self, job: Job) -> None:
        """Run one claimed job to the end: completed, failed, cancelled or handed back."""
        folder = self.jobs.folder_for(job.id)
        self.jobs.remove_files(job.id)  # a resumed job starts afresh

        def heartbeat(progress: str) -> bool:
            if self._stop.is_set():
                return False
            return self.jobs.heartbeat(job.id, self.identity, progress)

        started = time.perf_counter()
        try:
            result = run_export(
                self.store,
                job.context,
                job.spec,
                folder,
                file_limit=self.file_limit,
                heartbeat=heartbeat,
            )
        except Cancelled:
            if self._stop.is_set():
                self.jobs.release(job.id, self.identity)
                log.info("bulk export %s handed back: the server is stopping", job.id)
            else:
                self.jobs.remove_files(job.id)
                log.info("bulk export %s cancelled", job.id)
            return
        except RecordError as error:
            self.jobs.fail(job.id, self.identity, error.message)
            log.info("bulk export %s failed: %s", job.id, type(error).__name__)
            return
        except Exception as error:
            self.jobs.fail(
                job.id,
                self.identity,
                f"the export stopped on an internal error ({type(error).__name__}); "
                "start a new export, and report it to the service team if it recurs",
            )
            # By type only: an exception's text may hold patient data.
            log.error("bulk export %s failed on %s", job.id, type(error).__name__)
            return
        if self.jobs.complete(job.id, self.identity, result.transaction_time, result.manifest):
            log.info(
                "bulk export %s done: %d resources in %.1fs",
                job.id,
                result.total,
                time.perf_counter() - started,
            )
        else:
            self.jobs.remove_files(job.id)  # cancelled just as it finished
