"""The platform status shown on the home page: what is connected and how it is doing."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

#: A feed that has sent nothing for this long is shown as silent.
SILENT_AFTER = timedelta(hours=24)


@dataclass(slots=True)
class FeedHealth:
    """How one feed is doing."""

    name: str
    organisation: str | None
    protocol: str
    last_message_at: datetime | None
    messages: int
    errors: int

    @property
    def state(self) -> str:
        """``no messages yet``, ``errors``, ``silent`` or ``healthy``."""
        if self.last_message_at is None:
            return "no messages yet"
        if self.errors:
            return "errors"
        last = self.last_message_at
        if last.tzinfo is None:
            last = last.replace(tzinfo=UTC)
        if datetime.now(UTC) - last > SILENT_AFTER:
            return "silent"
        return "healthy"


@dataclass(slots=True)
class PlatformStatus:
    """Figures about the whole platform. Counts only; never patient rows."""

    organisations_connected: int = 0
    organisations_known: int = 0
    people: int = 0
    resources_by_type: dict[str, int] = field(default_factory=dict)
    feeds: list[FeedHealth] = field(default_factory=list)

    @property
    def resources_total(self) -> int:
        """All current resources in the record."""
        return sum(self.resources_by_type.values())


def platform_status(engine: Engine) -> PlatformStatus:
    """Collect the platform status from every plugin."""
    from sharedcare.plugins import plugin_manager

    status = PlatformStatus()
    with engine.connect() as connection:
        plugin_manager().hook.collect_status(connection=connection, status=status)
    return status
