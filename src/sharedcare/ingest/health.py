"""Feed health and the error queue, read from the ``feed`` and ``message`` tables.

For each feed: its last message, its rate over the last few minutes, its errors (messages
waiting in the error queue, and all errors ever), and its lag (how long the oldest message
not yet in the record has been waiting). Shown at ``GET /api/feeds`` and, through the
``collect_status`` hook, on the home page. Counts and times only; never message content.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, func, select

from sharedcare.db.tables import Feed, Message, MessageStage
from sharedcare.ingest.stages import WAITING, Stage
from sharedcare.plugins import hookimpl
from sharedcare.record.instants import now_us
from sharedcare.status import PlatformStatus

__all__ = [
    "RATE_WINDOW_SECONDS",
    "FeedStatus",
    "QueuedMessage",
    "collect_status",
    "error_queue",
    "feed_statuses",
    "stage_counts",
]

MESSAGE: Any = Message.__table__
STAGE: Any = MessageStage.__table__
FEED: Any = Feed.__table__
RATE_WINDOW_SECONDS = 300
"""The rate is messages received over this many seconds, per minute."""


@dataclass(frozen=True, slots=True)
class FeedStatus:
    """How one feed is doing."""

    id: int
    name: str
    protocol: str
    sending_application: str
    sending_facility: str
    organisation: str | None
    last_message_at: str | None
    messages: int
    errors_total: int
    errors_queued: int
    rate_per_minute: float
    waiting: int
    lag_seconds: float

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.isoformat(timespec="seconds")


def feed_statuses(connection: Connection) -> list[FeedStatus]:
    """Health of every feed, ordered by name."""
    now = now_us()
    since = now - RATE_WINDOW_SECONDS * 1_000_000
    recent: dict[int, int] = dict(
        connection.execute(
            select(MESSAGE.c.feed_id, func.count())
            .where(MESSAGE.c.received_at >= since)
            .group_by(MESSAGE.c.feed_id)
        ).all()
    )
    queued: dict[int, int] = dict(
        connection.execute(
            select(MESSAGE.c.feed_id, func.count())
            .select_from(STAGE)
            .join(MESSAGE, MESSAGE.c.id == STAGE.c.id)
            .where(STAGE.c.stage == Stage.FAILED.value)
            .group_by(MESSAGE.c.feed_id)
        ).all()
    )
    waiting = {
        row.feed_id: (row.n, row.oldest)
        for row in connection.execute(
            select(
                MESSAGE.c.feed_id,
                func.count().label("n"),
                func.min(MESSAGE.c.received_at).label("oldest"),
            )
            .select_from(STAGE)
            .join(MESSAGE, MESSAGE.c.id == STAGE.c.id)
            .where(STAGE.c.stage.in_(WAITING))
            .group_by(MESSAGE.c.feed_id)
        )
    }
    out = []
    for row in connection.execute(select(FEED).order_by(FEED.c.name, FEED.c.id)):
        count, oldest = waiting.get(row.id, (0, None))
        out.append(
            FeedStatus(
                id=row.id,
                name=row.name,
                protocol=row.protocol,
                sending_application=row.sending_application,
                sending_facility=row.sending_facility,
                organisation=row.organisation_ods_code,
                last_message_at=_iso(row.last_message_at),
                messages=row.message_count,
                errors_total=row.error_count,
                errors_queued=int(queued.get(row.id, 0)),
                rate_per_minute=round(recent.get(row.id, 0) * 60 / RATE_WINDOW_SECONDS, 2),
                waiting=int(count),
                lag_seconds=round(max(0, now - oldest) / 1_000_000, 3) if oldest else 0.0,
            )
        )
    return out


def stage_counts(connection: Connection, feed_id: int | None = None) -> dict[str, int]:
    """How many messages are at each stage (optionally for one feed)."""
    query = select(STAGE.c.stage, func.count()).group_by(STAGE.c.stage)
    if feed_id is not None:
        query = query.join(MESSAGE, MESSAGE.c.id == STAGE.c.id).where(MESSAGE.c.feed_id == feed_id)
    return {stage: int(n) for stage, n in connection.execute(query)}


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    """One message in the error queue (no content: ids, type, times, reason)."""

    id: int
    feed: str
    control_id: str
    message_type: str
    received_at: int
    error_stage: str | None
    error: str | None
    attempts: int


def error_queue(
    connection: Connection, *, feed: str | None = None, limit: int = 100
) -> list[QueuedMessage]:
    """Failed messages waiting to be fixed and replayed, oldest first."""
    query = (
        select(
            STAGE.c.id,
            FEED.c.name,
            MESSAGE.c.control_id,
            MESSAGE.c.message_type,
            MESSAGE.c.received_at,
            STAGE.c.error_stage,
            STAGE.c.error,
            STAGE.c.attempts,
        )
        .join(MESSAGE, MESSAGE.c.id == STAGE.c.id)
        .join(FEED, FEED.c.id == MESSAGE.c.feed_id)
        .where(STAGE.c.stage == Stage.FAILED.value)
        .order_by(STAGE.c.id)
        .limit(limit)
    )
    if feed is not None:
        query = query.where(FEED.c.name == feed)
    return [QueuedMessage(*row) for row in connection.execute(query)]


@hookimpl(trylast=True)
def collect_status(connection: Connection, status: PlatformStatus) -> None:
    """Show each feed's open error queue, not its all-time error count, on the home page.

    A feed whose failed messages were all replayed is healthy again.
    """
    queued: dict[str, int] = dict(
        connection.execute(
            select(FEED.c.name, func.count())
            .join(MESSAGE, MESSAGE.c.feed_id == FEED.c.id)
            .join(STAGE, STAGE.c.id == MESSAGE.c.id)
            .where(STAGE.c.stage == Stage.FAILED.value)
            .group_by(FEED.c.name)
        ).all()
    )
    for feed in status.feeds:
        feed.errors = int(queued.get(feed.name, 0))
