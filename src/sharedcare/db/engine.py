"""SQLAlchemy engines for the embedded SQLite database and for PostgreSQL.

SQLite runs in WAL mode with foreign keys on, so readers never block the writer.
PostgreSQL is reached through psycopg 3. Statement parameters are hidden from
error messages and logs (``hide_parameters``), because they may hold patient data.
"""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.engine import create_engine as sa_create_engine
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import ConnectionPoolEntry

__all__ = [
    "DatabaseUrlError",
    "create_engine",
    "dialect_name",
    "normalise_url",
    "write_connection",
]


class DatabaseUrlError(ValueError):
    """The database URL cannot be used. The message says how to fix it."""


def normalise_url(url: str) -> URL:
    """Turn a user-facing database URL into the SQLAlchemy URL sharedcare uses.

    ``postgresql://`` and ``postgres://`` select the psycopg 3 driver; ``sqlite:///path``
    is the embedded database, whose folder is created when missing.

    Args:
        url: ``sqlite:///path/to/file.db`` or ``postgresql://user@host:port/db``.

    Returns:
        The parsed URL with the driver filled in.

    Raises:
        DatabaseUrlError: If the URL is malformed or names an unsupported database.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseUrlError(
            "Could not parse the database URL; use sqlite:///path/to/file.db "
            "or postgresql://user@host:5432/dbname"
        ) from None
    backend = parsed.get_backend_name()
    if backend in {"postgresql", "postgres"}:
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        return parsed.set(drivername="sqlite+pysqlite")
    raise DatabaseUrlError(
        f"Unsupported database {backend!r}; sharedcare runs on SQLite (sqlite:///path) "
        "or PostgreSQL 15+ (postgresql://user@host/db)"
    )


# Decimals (FHIR numbers and quantities) are stored as their exact text; a NUMERIC column's
# affinity turns them into SQLite numbers on the way in.
sqlite3.register_adapter(Decimal, str)


def _sqlite_on_connect(dbapi_connection: sqlite3.Connection, _: ConnectionPoolEntry) -> None:
    # Let SQLAlchemy manage transactions (BEGIN is issued explicitly below).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA temp_store=MEMORY")
    cursor.execute("PRAGMA cache_size=-65536")
    cursor.close()


def _sqlite_on_begin(connection: Any) -> None:
    # Writers ask for BEGIN IMMEDIATE (execution option ``sqlite_immediate``), which takes
    # the write lock up front: two writers then queue on busy_timeout instead of one
    # failing with "database is locked" when its read snapshot upgrades to a write.
    if connection.get_execution_options().get("sqlite_immediate"):
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        connection.exec_driver_sql("BEGIN")


def create_engine(url: str, *, pool_size: int = 10, echo: bool = False) -> Engine:
    """Create an engine for ``url`` with sharedcare's connection settings.

    Args:
        url: A database URL accepted by :func:`normalise_url`.
        pool_size: Connections kept open to PostgreSQL.
        echo: Log SQL statements (never their parameters).

    Returns:
        A SQLAlchemy engine.
    """
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = sa_create_engine(parsed, echo=echo, hide_parameters=True, pool_pre_ping=False)
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    engine = sa_create_engine(
        parsed,
        echo=echo,
        hide_parameters=True,
        pool_size=pool_size,
        max_overflow=pool_size,
        # No pre-ping: it costs a round trip on every checkout. Connections are recycled
        # instead, and one broken by a server restart fails a single request, then is
        # discarded by the pool.
        pool_pre_ping=False,
        pool_recycle=1800,
    )
    event.listen(engine, "connect", _postgresql_on_connect)
    return engine


def _postgresql_on_connect(dbapi_connection: Any, _: ConnectionPoolEntry) -> None:
    # psycopg prepares a statement once it has run five times on a connection, and after
    # five more PostgreSQL may switch it to a generic plan, made without the parameter
    # values. A search's best plan depends on them: one generic plan for "token matches"
    # served an identifier lookup (one row) and then a code matching 100,000 rows, which
    # took seconds instead of a millisecond (benchmarks/bench_search.py at 1M resources).
    # Custom plans cost a fraction of a millisecond of planning; prepared statements still
    # save the parsing.
    dbapi_connection.execute("SET plan_cache_mode = force_custom_plan")
    dbapi_connection.commit()


def dialect_name(engine: Engine) -> str:
    """``"sqlite"`` or ``"postgresql"``."""
    return engine.dialect.name


def write_connection(engine: Engine) -> Any:
    """Begin a write transaction: ``with write_connection(engine) as conn: ...``.

    On SQLite this takes the write lock at BEGIN (``BEGIN IMMEDIATE``); on PostgreSQL it
    is an ordinary transaction.
    """
    return engine.execution_options(sqlite_immediate=True).begin()
