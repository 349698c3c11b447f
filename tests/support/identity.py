"""Writing test data without identity's real-time matching (decision 0020).

Every Patient written through the record's repository is matched as it is written, and
gets a golden Patient. Tests of other features (search, bulk export) that count the
resources they stored write their data inside :func:`without_realtime_matching`, so the
record holds exactly what they name; identity's behaviour is tested in
``tests/integration/test_identity_realtime.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sharedcare.identity import realtime
from sharedcare.plugins import plugin_manager

__all__ = ["without_realtime_matching"]


@contextmanager
def without_realtime_matching() -> Iterator[None]:
    """Unregister the identity plugin's ``record_committed`` hook for the block (this process)."""
    manager = plugin_manager()
    manager.unregister(realtime)
    try:
        yield
    finally:
        manager.register(realtime, name="sharedcare.identity.realtime")
