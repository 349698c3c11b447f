"""Bulk Data export jobs (https://hl7.org/fhir/uv/bulkdata/export.html).

One row per ``$export`` kick-off. The row is the job's whole state, so a job survives a
restart: a worker thread in any server process claims a ``queued`` job (or a ``running`` one
whose worker stopped sending heartbeats), writes the NDJSON files under the export folder,
and records the manifest. Times are epoch microseconds (UTC), like the record's.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from sharedcare.db.tables.base import Base


class BulkExportJob(Base):
    """One Bulk Data export: what was asked, by whom, and how far it has got."""

    __tablename__ = "bulk_export_job"
    __table_args__ = (Index("ix_bulk_export_job_status", "status"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, doc="random hex, unguessable")
    status: Mapped[str] = mapped_column(
        String(16), doc="queued, running, completed, failed or cancelled"
    )
    level: Mapped[str] = mapped_column(String(16), doc="system, patient or group")
    group_id: Mapped[str | None] = mapped_column(String(64), doc="Group id (group level)")
    types: Mapped[str | None] = mapped_column(Text, doc="comma-separated _type, if given")
    since: Mapped[int | None] = mapped_column(BigInteger, doc="_since, epoch microseconds")
    output_format: Mapped[str] = mapped_column(String(40))
    request_url: Mapped[str] = mapped_column(Text, doc="the kick-off URL")
    owner: Mapped[str] = mapped_column(String(200), doc="the user who asked")
    context: Mapped[str] = mapped_column(Text, doc="JSON: the caller's RequestContext")
    issues: Mapped[str | None] = mapped_column(
        Text, doc="JSON: OperationOutcome issues for parameters ignored under lenient handling"
    )
    created_at: Mapped[int] = mapped_column(BigInteger)
    transaction_time: Mapped[int | None] = mapped_column(BigInteger)
    heartbeat_at: Mapped[int | None] = mapped_column(BigInteger, doc="last sign of life")
    finished_at: Mapped[int | None] = mapped_column(BigInteger)
    expires_at: Mapped[int | None] = mapped_column(BigInteger, doc="files removed after this")
    worker: Mapped[str | None] = mapped_column(String(200), doc="host:pid:token of the runner")
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    progress: Mapped[str] = mapped_column(String(100), default="", server_default="")
    manifest: Mapped[str | None] = mapped_column(Text, doc="JSON: output and error files")
    error: Mapped[str | None] = mapped_column(Text, doc="why the job failed (no patient data)")
