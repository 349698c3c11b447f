"""Export jobs in the ``bulk_export_job`` table: create, claim, heartbeat, finish, expire.

Every server process runs a worker thread (:mod:`sharedcare.record.bulk.worker`), so jobs
are claimed with a compare-and-swap ``UPDATE``: only one worker wins a job. A running job's
worker writes a heartbeat every second or so; a job whose worker has gone quiet for
:data:`LEASE_US` (or whose worker process on this host has died) is claimed again and
started afresh, up to :data:`MAX_ATTEMPTS` times, after which it is marked failed. Each
state change is one short write transaction, so SQLite's single writer is held only briefly.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, delete, func, select, update

from sharedcare.db.engine import write_connection
from sharedcare.db.tables import BulkExportJob
from sharedcare.record.bulk.params import ExportSpec, Level
from sharedcare.record.context import RequestContext
from sharedcare.record.instants import now_us

__all__ = ["LEASE_US", "MAX_ATTEMPTS", "Job", "JobStore", "worker_identity"]

JOBS: Any = BulkExportJob.__table__
#: A running job whose heartbeat is older than this is taken to be abandoned.
LEASE_US = 60 * 1_000_000
#: Claims of one job before it is marked failed (a job that kills its worker every time).
MAX_ATTEMPTS = 3


def worker_identity() -> str:
    """``host:pid:token`` naming this process's worker (the token tells restarts apart)."""
    return f"{socket.gethostname()[:150]}:{os.getpid()}:{secrets.token_hex(4)}"


def _dead_here(worker: str | None) -> bool:
    """Whether ``worker`` ran on this host in a process that no longer exists."""
    if not worker:
        return False
    host, _, rest = worker.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname()[:150] or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@dataclass(slots=True)
class Job:
    """One row of ``bulk_export_job``."""

    id: str
    status: str
    spec: ExportSpec
    request_url: str
    owner: str
    context: RequestContext
    created_at: int
    transaction_time: int | None
    finished_at: int | None
    expires_at: int | None
    worker: str | None
    attempts: int
    progress: str
    manifest: dict[str, Any] | None
    error: str | None


def _context_json(context: RequestContext) -> str:
    return orjson.dumps(
        {
            "user": context.user,
            "organisation": context.organisation,
            "role": context.role,
            "purpose": context.purpose,
            "source": context.source,
            "request_id": context.request_id,
            "feed": context.feed,
        }
    ).decode()


def _job(row: Any) -> Job:
    level: Level = row.level
    spec = ExportSpec(
        level=level,
        group_id=row.group_id,
        types=tuple(row.types.split(",")) if row.types else None,
        since=row.since,
        output_format=row.output_format,
        issues=orjson.loads(row.issues) if row.issues else [],
    )
    return Job(
        id=row.id,
        status=row.status,
        spec=spec,
        request_url=row.request_url,
        owner=row.owner,
        context=RequestContext(**orjson.loads(row.context)),
        created_at=row.created_at,
        transaction_time=row.transaction_time,
        finished_at=row.finished_at,
        expires_at=row.expires_at,
        worker=row.worker,
        attempts=row.attempts,
        progress=row.progress,
        manifest=orjson.loads(row.manifest) if row.manifest else None,
        error=row.error,
    )


class JobStore:
    """The job table and the folder of export files, for one database.

    Args:
        engine: The database.
        folder: Where each job's files go (one sub-folder per job).
        expiry_us: How long a finished job's files are kept.
    """

    def __init__(self, engine: Engine, folder: Path, expiry_us: int) -> None:
        self.engine = engine
        self.folder = folder
        self.expiry_us = expiry_us

    def folder_for(self, job_id: str) -> Path:
        """The folder holding ``job_id``'s files."""
        return self.folder / job_id

    def create(self, spec: ExportSpec, context: RequestContext, request_url: str) -> str:
        """Queue a new job; return its id."""
        job_id = secrets.token_hex(16)
        with write_connection(self.engine) as connection:
            connection.execute(
                JOBS.insert().values(
                    id=job_id,
                    status="queued",
                    level=spec.level,
                    group_id=spec.group_id,
                    types=",".join(spec.types) if spec.types else None,
                    since=spec.since,
                    output_format=spec.output_format,
                    request_url=request_url,
                    owner=context.user[:200],
                    context=_context_json(context),
                    issues=orjson.dumps(spec.issues).decode() if spec.issues else None,
                    created_at=now_us(),
                    attempts=0,
                    progress="queued",
                )
            )
        return job_id

    def active(self, owner: str) -> int:
        """How many of ``owner``'s jobs are queued or running."""
        with self.engine.connect() as connection:
            return int(
                connection.scalar(
                    select(func.count()).where(
                        JOBS.c.owner == owner[:200], JOBS.c.status.in_(("queued", "running"))
                    )
                )
                or 0
            )

    def get(self, job_id: str) -> Job | None:
        """The job, or ``None`` if there is none (never was, cancelled or expired)."""
        with self.engine.connect() as connection:
            row = connection.execute(select(JOBS).where(JOBS.c.id == job_id)).first()
        return None if row is None else _job(row)

    def claim_next(self, worker: str) -> Job | None:
        """Claim the oldest queued job, or an abandoned running one; ``None`` if none."""
        now = now_us()
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(JOBS.c.id, JOBS.c.status, JOBS.c.worker, JOBS.c.heartbeat_at)
                .where(JOBS.c.status.in_(("queued", "running")))
                .order_by(JOBS.c.created_at)
                .limit(50)
            ).all()
        for job_id, status, owner, heartbeat in rows:
            if status == "running" and not ((heartbeat or 0) < now - LEASE_US or _dead_here(owner)):
                continue
            with write_connection(self.engine) as connection:
                claimed = connection.execute(
                    update(JOBS)
                    .where(
                        JOBS.c.id == job_id,
                        JOBS.c.status == status,
                        JOBS.c.worker.is_(None) if owner is None else JOBS.c.worker == owner,
                    )
                    .values(
                        status="running",
                        worker=worker,
                        heartbeat_at=now,
                        attempts=JOBS.c.attempts + 1,
                        progress="starting",
                    )
                ).rowcount
            if not claimed:
                continue  # another worker won it
            job = self.get(job_id)
            if job is None:
                continue
            if job.attempts > MAX_ATTEMPTS:
                self.fail(
                    job_id,
                    worker,
                    f"the export was interrupted {MAX_ATTEMPTS} times (server restarts or "
                    "crashes); start a new export",
                )
                continue
            return job
        return None

    def heartbeat(self, job_id: str, worker: str, progress: str) -> bool:
        """Record progress; ``False`` if the job is no longer this worker's (cancelled)."""
        with write_connection(self.engine) as connection:
            return bool(
                connection.execute(
                    update(JOBS)
                    .where(
                        JOBS.c.id == job_id,
                        JOBS.c.worker == worker,
                        JOBS.c.status == "running",
                    )
                    .values(heartbeat_at=now_us(), progress=progress[:100])
                ).rowcount
            )

    def complete(
        self, job_id: str, worker: str, transaction_time: int, manifest: dict[str, Any]
    ) -> bool:
        """Mark the job done with its manifest; ``False`` if it was cancelled meanwhile."""
        now = now_us()
        with write_connection(self.engine) as connection:
            return bool(
                connection.execute(
                    update(JOBS)
                    .where(
                        JOBS.c.id == job_id,
                        JOBS.c.worker == worker,
                        JOBS.c.status == "running",
                    )
                    .values(
                        status="completed",
                        transaction_time=transaction_time,
                        finished_at=now,
                        expires_at=now + self.expiry_us,
                        heartbeat_at=now,
                        progress="completed",
                        manifest=orjson.dumps(manifest).decode(),
                    )
                ).rowcount
            )

    def fail(self, job_id: str, worker: str, error: str) -> None:
        """Mark the job failed (its files are removed; the reason stays until it expires)."""
        now = now_us()
        with write_connection(self.engine) as connection:
            connection.execute(
                update(JOBS)
                .where(JOBS.c.id == job_id, JOBS.c.worker == worker)
                .values(
                    status="failed",
                    finished_at=now,
                    expires_at=now + self.expiry_us,
                    progress="failed",
                    error=error[:2000],
                )
            )
        self.remove_files(job_id)

    def release(self, job_id: str, worker: str) -> None:
        """Give a running job back to the queue (this server is shutting down)."""
        with write_connection(self.engine) as connection:
            connection.execute(
                update(JOBS)
                .where(JOBS.c.id == job_id, JOBS.c.worker == worker, JOBS.c.status == "running")
                .values(
                    status="queued",
                    worker=None,
                    attempts=JOBS.c.attempts - 1,
                    progress="queued (server restarted)",
                )
            )
        self.remove_files(job_id)

    def delete(self, job_id: str) -> bool:
        """Cancel or discard a job: its row and files go; ``False`` if there was none."""
        with write_connection(self.engine) as connection:
            gone = connection.execute(delete(JOBS).where(JOBS.c.id == job_id)).rowcount
        self.remove_files(job_id)
        return bool(gone)

    def expire(self) -> int:
        """Remove finished jobs (and their files) whose time is up; return how many."""
        with self.engine.connect() as connection:
            ids = list(
                connection.scalars(
                    select(JOBS.c.id).where(
                        JOBS.c.status.in_(("completed", "failed")),
                        JOBS.c.expires_at < now_us(),
                    )
                )
            )
        return sum(self.delete(job_id) for job_id in ids)

    def remove_files(self, job_id: str) -> None:
        """Delete a job's folder, if it has one."""
        shutil.rmtree(self.folder_for(job_id), ignore_errors=True)
