"""Platform status from the db layer's own tables: organisations and feeds."""

from __future__ import annotations

from sqlalchemy import Connection, func, select

from sharedcare.db.tables import Feed, Organisation
from sharedcare.plugins import hookimpl
from sharedcare.status import FeedHealth, PlatformStatus


@hookimpl
def collect_status(connection: Connection, status: PlatformStatus) -> None:
    """Count organisations (known, and connected through at least one feed) and list feeds."""
    status.organisations_known = (
        connection.scalar(select(func.count()).select_from(Organisation)) or 0
    )
    status.organisations_connected = (
        connection.scalar(select(func.count(func.distinct(Feed.organisation_ods_code)))) or 0
    )
    rows = connection.execute(
        select(
            Feed.name,
            Organisation.name,
            Feed.protocol,
            Feed.last_message_at,
            Feed.message_count,
            Feed.error_count,
        )
        .join(Organisation, Feed.organisation_ods_code == Organisation.ods_code, isouter=True)
        .order_by(Feed.name)
    )
    status.feeds.extend(
        FeedHealth(
            name=name,
            organisation=org,
            protocol=protocol,
            last_message_at=last,
            messages=messages,
            errors=errors,
        )
        for name, org, protocol, last, messages, errors in rows
    )
