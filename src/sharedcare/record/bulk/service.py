"""Bulk Data export interactions on behalf of one caller: kick-off, status, cancel, download.

https://hl7.org/fhir/uv/bulkdata/export.html — each interaction asks the access gate
(the ``check_access`` hook, interaction ``operation``) and is audited like every other
interaction with the record. A job's status, files and cancellation belong to the user who
started it: anyone else is told there is no such job.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from sharedcare.db.engine import write_connection
from sharedcare.record.audit import AuditEntry, write_audit
from sharedcare.record.bulk.jobs import Job, JobStore
from sharedcare.record.bulk.params import ExportSpec
from sharedcare.record.errors import NotFound, RecordError
from sharedcare.record.instants import now_us
from sharedcare.record.repository import Repository

__all__ = ["MAX_ACTIVE_PER_USER", "BulkExports", "TooManyExports"]

#: Exports one user may have queued or running at once; more is a 429.
MAX_ACTIVE_PER_USER = 4


class TooManyExports(RecordError):
    """The user already has :data:`MAX_ACTIVE_PER_USER` exports in progress
    (https://hl7.org/fhir/uv/bulkdata/export.html#response---error: 429)."""

    status = 429
    code = "throttled"


T = TypeVar("T")
_FILE_NAME = re.compile(r"^[A-Za-z-]+-[0-9]+\.ndjson$")


_DEFINITIONS = {
    level: f"http://hl7.org/fhir/uv/bulkdata/OperationDefinition/{name}"
    for level, name in (
        ("system", "export"),
        ("patient", "patient-export"),
        ("group", "group-export"),
    )
}


def _level_type(spec: ExportSpec) -> str | None:
    return {"group": "Group", "patient": "Patient"}.get(spec.level)


class BulkExports:
    """The export interactions, through one caller's repository.

    Args:
        repo: The caller's repository (their context, the store, the gate).
        jobs: The job table and export folder.
        wake: Called after a job is queued, to start a worker at once.
    """

    def __init__(self, repo: Repository, jobs: JobStore, wake: Callable[[], None]) -> None:
        self.repo = repo
        self.jobs = jobs
        self.wake = wake

    def _audited(self, entry: AuditEntry, work: Callable[[], T]) -> T:
        try:
            self.repo.ask_gate(entry.interaction, entry.resource_type, entry.resource_id)
            result = work()
        except Exception as error:
            self.repo.audit_failure(entry, error)
            raise
        with write_connection(self.repo.engine) as connection:
            write_audit(connection, self.repo.context, [entry])
        return result

    def kick_off(self, spec: ExportSpec, request_url: str) -> str:
        """Queue an export; return the job id.

        Raises:
            Forbidden: If the gate refuses the export.
            TooManyExports: If the caller already has too many exports in progress.
            NotFound: For a group-level export of a Group that does not exist.
        """
        entry = AuditEntry(
            "operation",
            "0",
            _level_type(spec),
            spec.group_id,
            description=f"$export kick-off ({spec.level} level)",
            # Named here too, since a failure's audit replaces the description with the reason.
            entities=[_DEFINITIONS[spec.level]],
            query=urlsplit(request_url).query or None,
        )

        def work() -> str:
            if self.jobs.active(self.repo.context.user) >= MAX_ACTIVE_PER_USER:
                raise TooManyExports(
                    f"you already have {MAX_ACTIVE_PER_USER} exports in progress; wait for one "
                    "to finish, or cancel one (DELETE its status URL), then try again"
                )
            if spec.group_id is not None:
                self.repo.read("Group", spec.group_id)  # gated and audited; 404/410 if absent
            job_id = self.jobs.create(spec, self.repo.context, request_url)
            entry.entities.append(f"urn:sharedcare:bulk-export:{job_id}")
            return job_id

        job_id = self._audited(entry, work)
        self.wake()
        return job_id

    def status(self, job_id: str) -> Job:
        """The caller's job (polled often, so not audited: it returns no patient data).

        Raises:
            NotFound: If the caller has no such job (never had, cancelled, or expired).
        """
        job = self.jobs.get(job_id)
        if job is None or job.owner != self.repo.context.user[:200]:
            raise NotFound(
                "no export job with this id for you: it was cancelled, has expired or never "
                "existed; start a new $export"
            )
        if job.expires_at is not None and job.expires_at < now_us():
            raise NotFound("this export has expired and its files were removed; start a new one")
        return job

    def cancel(self, job_id: str) -> None:
        """Cancel a running job, or discard a finished one and its files (audited)."""
        job = self.status(job_id)
        entry = AuditEntry(
            "operation",
            "0",
            _level_type(job.spec),
            job.spec.group_id,
            description="$export cancelled",
            entities=[f"urn:sharedcare:bulk-export:{job_id}"],
        )
        self._audited(entry, lambda: self.jobs.delete(job_id))

    def file(self, job_id: str, name: str) -> Path:
        """The path of one of a completed job's files, for the caller to download (audited).

        Raises:
            NotFound: If the job or file does not exist (or is not finished yet).
        """
        job = self.status(job_id)
        listed = {
            item["name"]: item["type"]
            for key in ("output", "deleted", "error")
            for item in (job.manifest or {}).get(key, [])
        }
        if job.status != "completed" or name not in listed or not _FILE_NAME.match(name):
            raise NotFound(f"export {job_id} has no file {name[:80]!r}; see its status manifest")
        path = self.jobs.folder_for(job_id) / name
        entry = AuditEntry(
            "operation",
            "0",
            listed[name],
            description=f"$export file download ({job.spec.level} level)",
            entities=[f"urn:sharedcare:bulk-export:{job_id}/{name}"],
        )

        def work() -> Path:
            if not path.is_file():
                raise NotFound(f"the file {name} of export {job_id} is gone; start a new export")
            return path

        return self._audited(entry, work)
