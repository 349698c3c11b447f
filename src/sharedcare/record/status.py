"""The record's figures on the platform status page."""

from __future__ import annotations

from sqlalchemy import Connection

from sharedcare.plugins import hookimpl
from sharedcare.record.sqlstore import SqlStore
from sharedcare.status import PlatformStatus


@hookimpl
def collect_status(connection: Connection, status: PlatformStatus) -> None:
    """Resources by type, and people (Patient resources) in the record."""
    counts = SqlStore(connection.engine).counts_by_type(connection)
    status.resources_by_type.update(counts)
    status.people = counts.get("Patient", 0)
