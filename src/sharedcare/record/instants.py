"""Instants as epoch microseconds (UTC), the store's representation of time."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from email.utils import formatdate
from functools import lru_cache

from sharedcare.fhir.internals.primitives import date_range


def now_us() -> int:
    """The current time in epoch microseconds."""
    return time.time_ns() // 1000


def to_instant(us: int) -> str:
    """Epoch microseconds as a FHIR ``instant`` (https://hl7.org/fhir/R4/datatypes.html#instant)."""
    moment = datetime.fromtimestamp(us / 1_000_000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def to_http_date(us: int) -> str:
    """Epoch microseconds as an HTTP date (for ``Last-Modified``,
    https://www.rfc-editor.org/rfc/rfc9110#section-5.6.7)."""
    return _http_date(us // 1_000_000)


@lru_cache(maxsize=1024)
def _http_date(seconds: int) -> str:
    # Responses written in the same second share it: formatting was 3.5% of a create's
    # time on the event loop. ``formatdate`` uses English names whatever the locale.
    return formatdate(seconds, usegmt=True)


def parse_instant_us(text: str) -> int | None:
    """The start of a FHIR date/dateTime/instant in epoch microseconds, or ``None`` if invalid."""
    parsed = date_range(text)
    return None if parsed is None else parsed[0]
