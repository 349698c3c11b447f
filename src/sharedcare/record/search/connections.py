"""Connections of the API server's search engine, kept between searches.

Every search on the API server's asyncio engine (``api.search_engine``, decision 0026)
checked a SQLAlchemy ``Connection`` out of the engine's pool and back in: about 5% of an
API worker's time during the search mix (the pool's checkout and check-in events, the
reset on return, the asyncio queue). The connections are in autocommit and a search leaves
nothing on them, so here a finished search's ``Connection`` is kept as it is, and the next
search of the same event loop takes it again (``docs/decisions/0028-search-audit-on-the-loop.md``).

What is kept is bounded by the pool's size (the pool would keep as many idle); a
connection is handed back to the pool instead when a search on it failed (whatever state
an error left it in, the pool deals with it as before), when it is older than the
engine's ``pool_recycle``, or when the engine has been disposed (the kept ones are then
closed). A connection only ever serves one search at a time: the engine is used on one
event loop, and a connection is taken from the list before the search starts.
"""

from __future__ import annotations

import time
import weakref
from types import TracebackType

from sqlalchemy import Connection, Engine, event

__all__ = ["KeptConnection", "kept_connection"]


class _Kept:
    """The connections kept for one engine, with the time each was first checked out."""

    __slots__ = ("__weakref__", "closed", "engine", "free", "keep", "recycle")

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.free: list[tuple[Connection, float]] = []
        size = getattr(engine.pool, "size", None)
        self.keep = size() if callable(size) else 5
        recycle = getattr(engine.pool, "_recycle", -1)
        self.recycle = float(recycle) if recycle and recycle > 0 else float("inf")
        self.closed = False

    def release_all(self) -> None:
        """Close every kept connection (the engine was disposed)."""
        self.closed = True
        free, self.free = self.free, []
        for connection, _ in free:
            # Closes the driver's connection itself: its pool has been disposed.
            connection.invalidate()
            connection.close()


_kept: weakref.WeakKeyDictionary[Engine, _Kept] = weakref.WeakKeyDictionary()


def _kept_for(engine: Engine) -> _Kept:
    kept = _kept.get(engine)
    if kept is None:
        kept = _kept[engine] = _Kept(engine)
        holder = weakref.ref(kept)

        def disposed(_: Engine) -> None:
            found = holder()
            if found is not None:
                found.release_all()
            _kept.pop(engine, None)

        event.listen(engine, "engine_disposed", disposed)
    return kept


class KeptConnection:
    """``with KeptConnection(kept) as connection:`` a kept connection, or a new one."""

    __slots__ = ("_connection", "_kept", "_since")

    def __init__(self, kept: _Kept) -> None:
        self._kept = kept
        if kept.free:
            self._connection, self._since = kept.free.pop()
        else:
            self._connection, self._since = kept.engine.connect(), time.monotonic()

    def __enter__(self) -> Connection:
        return self._connection

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        connection, kept = self._connection, self._kept
        if (
            kind is None
            and not kept.closed
            and not connection.invalidated
            and not connection.closed
            and len(kept.free) < kept.keep
            and time.monotonic() - self._since < kept.recycle
        ):
            if connection.in_transaction():  # SQLAlchemy's own, begun by an execute
                connection.rollback()  # in autocommit: nothing is sent
            kept.free.append((connection, self._since))
            return
        connection.close()


def kept_connection(engine: Engine) -> KeptConnection:
    """A connection of ``engine`` (in autocommit, used on one event loop) for one search,
    kept for the next when the search is done."""
    return KeptConnection(_kept_for(engine))
