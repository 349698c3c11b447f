"""The API server's asyncio engine for searches on PostgreSQL.

A search used to leave the event loop for a worker thread, and its answer came back to the
loop: two thread wake-ups per request, each a cross-CPU wake-up on this virtual machine,
which profiling showed as a fifth of an API worker's time during the search mix. Running
the search on the loop with the blocking driver stalled every other request of the worker
while PostgreSQL worked (0022). Here the search's code (unchanged, synchronous) runs in a
greenlet on the loop (SQLAlchemy's ``greenlet_spawn``) over psycopg's asyncio connection:
each statement is awaited, and the loop serves other requests meanwhile
(``docs/decisions/0026-search-request-path.md``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

__all__ = ["search_engine"]


def search_engine(engine: Engine, pool_size: int) -> AsyncEngine | None:
    """An asyncio engine on ``engine``'s PostgreSQL database, in autocommit (a search is
    read in single statements, decision 0012), with ``engine``'s connection settings;
    ``None`` on SQLite (no asyncio driver: searches run in worker threads).

    Args:
        engine: The application's engine.
        pool_size: Connections kept open (as many more may open under load).
    """
    if engine.dialect.name != "postgresql":
        return None
    url = engine.url.set(drivername="postgresql+psycopg_async")
    searches = create_async_engine(
        url,
        hide_parameters=True,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=False,
        pool_recycle=1800,
        isolation_level="AUTOCOMMIT",
        # Nothing to roll back when a connection returns: every statement committed itself.
        pool_reset_on_return=None,
    )
    event.listen(searches.sync_engine, "connect", _on_connect)
    return searches


def _on_connect(dbapi_connection: Any, _: ConnectionPoolEntry) -> None:
    # Custom plans for every execution, as on the application's engine
    # (``sharedcare.db.engine``, decision 0012). No merge joins: costing them probed the
    # ends of the ``pk`` / ``res`` indexes on every planning (a tenth of a backend's CPU,
    # 0022); a page's joins are nested loops or hashes, and counts at 1M resources were
    # not slower without them. This engine runs searches only, so the setting reaches
    # nothing else (identity matching, exports, views keep the application's engine).
    # Runs inside SQLAlchemy's greenlet.
    cursor = dbapi_connection.cursor()
    cursor.execute("SET plan_cache_mode = force_custom_plan")
    cursor.execute("SET enable_mergejoin = off")
    cursor.close()
    dbapi_connection.commit()
