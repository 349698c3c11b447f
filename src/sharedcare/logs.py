"""Logging: plain text or JSON lines, and never patient data.

The rule, as in OpenSAFELY's ehrQL: log lines describe what the system did (counts,
timings, resource types, outcomes), never the people it did it to. Code obeys the rule
by never formatting patient values into messages; this module adds two nets under it:

* the HTTP access log records method, route path and status, never the query string
  (which may carry ``?identifier=<NHS number>`` or ``?name=...``);
* :class:`RedactNhsNumbers` masks anything shaped like an NHS number in every record.

``tests/integration/test_no_patient_data_in_logs.py`` drives the application with
sentinel patient data and fails if any of it reaches a log line.
"""

from __future__ import annotations

import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

__all__ = ["JsonFormatter", "RedactNhsNumbers", "configure_logging"]

_NHS_NUMBER_SHAPE = re.compile(r"(?<!\d)\d{3}[ \-]?\d{3}[ \-]?\d{4}(?!\d)")
_REDACTED = "[redacted]"
_STANDARD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys() | {"message", "asctime"}
)


class RedactNhsNumbers(logging.Filter):
    """Mask ten-digit sequences shaped like NHS numbers in the rendered message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _NHS_NUMBER_SHAPE.sub(_REDACTED, message)
        if redacted != message:
            record.msg = redacted
            record.args = None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                payload[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            payload["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(payload, default=str).decode()


def configure_logging(level: str = "INFO", *, json: bool = False) -> None:
    """Configure the root logger for sharedcare processes (server, CLI, listener).

    Args:
        level: The lowest level written.
        json: Write JSON lines instead of plain text.
    """
    handler = logging.StreamHandler(sys.stderr)
    if json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(RedactNhsNumbers())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    # HTTP clients log whole request URLs (paths and query strings may name a patient).
    for name in ("httpx", "httpcore", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # uvicorn's own access log prints the query string; sharedcare writes its own instead.
    logging.getLogger("uvicorn.access").disabled = True
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
