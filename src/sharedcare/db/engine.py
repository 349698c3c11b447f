"""SQLAlchemy engines for the embedded SQLite database and for PostgreSQL.

SQLite runs in WAL mode with foreign keys on, so readers never block the writer.
PostgreSQL is reached through psycopg 3. Statement parameters are hidden from
error messages and logs (``hide_parameters``), because they may hold patient data.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.engine import create_engine as sa_create_engine
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.exc import TimeoutError as SqlAlchemyTimeoutError
from sqlalchemy.pool import ConnectionPoolEntry, NullPool

__all__ = [
    "DatabaseUrlError",
    "WriteGate",
    "create_engine",
    "dialect_name",
    "driver_errors",
    "key_reader",
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


def _key_reader_on_connect(dbapi_connection: Any, _: ConnectionPoolEntry) -> None:
    # Reads by key alone run here (:func:`key_reader`): one plan serves every value.
    dbapi_connection.execute("SET plan_cache_mode = force_generic_plan")
    dbapi_connection.commit()


_key_engines_lock = threading.Lock()


# A key reader's connection older than this is closed rather than used again (as the
# main pool's ``pool_recycle``).
_KEY_READER_RECYCLE = 1800.0
# How long a key reader waits for a connection when all it may open are in use (as a
# QueuePool's ``pool_timeout``).
_KEY_READER_TIMEOUT = 30.0


class _KeyReaders:
    """The connections of :func:`key_reader` for one engine.

    They are made by a SQLAlchemy engine of their own (``maker``: same URL, autocommit, its
    ``connect`` event sets generic plans, no pool of its own), then detached from it and
    kept here: checking a connection out of a SQLAlchemy pool and back in (events, the
    connection record, recycle and reset logic) cost a read by id about as much Python as
    its statement (``docs/decisions/0032-crud-serving-costs.md``). Here it is a list's
    ``pop`` and ``append``, atomic under the GIL, so the loop and threads share the list
    without a lock; the lock is taken only to open or close a connection, or to wait for one.

    At most ``limit`` connections are open at once; a reader that finds them all in use
    waits up to ``_KEY_READER_TIMEOUT`` seconds for one (then ``sqlalchemy.exc.TimeoutError``,
    as from a pool). A connection is closed instead of kept when it is broken, not idle
    (a statement left running), older than ``_KEY_READER_RECYCLE`` seconds, or older than
    the last :meth:`dispose` (which closes the idle ones at once).
    """

    def __init__(self, maker: Engine, limit: int) -> None:
        from psycopg.pq import TransactionStatus

        self._at_rest = TransactionStatus.IDLE
        self._maker = maker
        self._limit = limit
        self._idle: list[tuple[float, Any, int]] = []  # (made at, connection, generation)
        self._open = 0
        self._waiting = 0
        self._generation = 0
        self._lock = threading.Condition()

    def checkout(self) -> tuple[float, Any, int]:
        """An idle connection, or a new one (waiting while ``limit`` are open)."""
        try:
            held = self._idle.pop()
        except IndexError:
            return self._slow_checkout()
        if held[2] == self._generation and time.monotonic() - held[0] < _KEY_READER_RECYCLE:
            return held
        self._close(held)
        return self._slow_checkout()

    def _slow_checkout(self) -> tuple[float, Any, int]:
        deadline = time.monotonic() + _KEY_READER_TIMEOUT
        with self._lock:
            self._waiting += 1
            try:
                while True:
                    if self._idle:
                        held = self._idle.pop()
                        if held[2] == self._generation:
                            return held
                        self._close(held)
                        continue
                    if self._open < self._limit:
                        self._open += 1
                        generation = self._generation
                        break
                    left = deadline - time.monotonic()
                    if left <= 0 or not self._lock.wait(left):
                        raise SqlAlchemyTimeoutError(
                            f"no key reader connection free within {_KEY_READER_TIMEOUT:.0f} s"
                        )
            finally:
                self._waiting -= 1
        try:
            fairy = self._maker.raw_connection()
            raw = fairy.driver_connection
            fairy.detach()  # ours from now on: the maker keeps no pool
        except BaseException:
            with self._lock:
                self._open -= 1
                self._lock.notify()
            raise
        return time.monotonic(), raw, generation

    def checkin(self, held: tuple[float, Any, int], *, broken: bool = False) -> None:
        """Put ``held`` back for the next reader, or close it (see the class)."""
        raw = held[1]
        if (
            broken
            or held[2] != self._generation
            or raw.closed
            or raw.pgconn.transaction_status != self._at_rest
        ):
            self._close(held)
            return
        self._idle.append(held)
        if self._waiting:
            with self._lock:
                self._lock.notify()

    def _close(self, held: tuple[float, Any, int]) -> None:
        with contextlib.suppress(Exception):
            held[1].close()
        with self._lock:
            self._open -= 1
            self._lock.notify()

    def dispose(self) -> None:
        """Close the idle connections; those in use are closed when they come back."""
        with self._lock:
            self._generation += 1
            idle, self._idle = self._idle, []
        for held in idle:
            self._close(held)


_key_readers: weakref.WeakKeyDictionary[Engine, _KeyReaders] = weakref.WeakKeyDictionary()


def _key_readers_of(engine: Engine) -> _KeyReaders:
    """The :class:`_KeyReaders` of ``engine``: same database, up to the main pool's size and
    as many more connections, autocommit, generic plans; disposed with ``engine``."""
    found = _key_readers.get(engine)
    if found is not None:
        return found
    with _key_engines_lock:
        found = _key_readers.get(engine)
        if found is None:
            size = engine.pool.size() if hasattr(engine.pool, "size") else 10
            maker = sa_create_engine(
                engine.url,
                hide_parameters=True,
                poolclass=NullPool,
                # Autocommit: nothing to roll back when a connection comes back.
                isolation_level="AUTOCOMMIT",
            )
            event.listen(maker, "connect", _key_reader_on_connect)
            found = _KeyReaders(maker, 2 * size)
            readers = found
            event.listen(engine, "engine_disposed", lambda _: readers.dispose())
            _key_readers[engine] = found
    return found


@contextmanager
def key_reader(engine: Engine) -> Iterator[Any]:
    """A psycopg connection for one statement that reads rows by their unique key (a read by
    id), outside any transaction: ``with key_reader(engine) as raw: raw.execute(...)``. The
    ingest group commit's insert of new messages runs here too (it commits on its own, and
    its one best plan does not depend on its values: ``sharedcare.ingest.store``).

    PostgreSQL only. The connection comes from a pool of its own (:class:`_KeyReaders`), in
    autocommit, whose connections run prepared statements with a generic plan
    (``plan_cache_mode = force_generic_plan``): a lookup by a unique key has one best plan
    whatever the values, so it is planned once per connection instead of at every
    execution, as the main pool's connections must (their searches' best plans depend on
    the values: see :func:`_postgresql_on_connect`). Nothing whose best plan depends on its
    values may run here. It also skips SQLAlchemy's ``Connection`` and pool around the
    driver's connection, which cost a read by id more Python than its statement
    (``docs/decisions/0030-crud-request-path.md``, ``0032-crud-serving-costs.md``). A
    connection the statement found broken is discarded, not put back.
    """
    import psycopg

    readers = _key_readers_of(engine)
    held = readers.checkout()
    broken = False
    try:
        yield held[1]
    except psycopg.OperationalError:
        broken = True
        raise
    finally:
        readers.checkin(held, broken=broken)


def dialect_name(engine: Engine) -> str:
    """``"sqlite"`` or ``"postgresql"``."""
    return engine.dialect.name


# How long a writer queues on the write gate before it falls back to SQLite's own busy
# handler (which then waits up to ``busy_timeout`` more, and fails with "database is locked").
_GATE_TIMEOUT = 30.0


class WriteGate:
    """The queue SQLite writers of one database file wait in before ``BEGIN IMMEDIATE``.

    SQLite has one write lock per database. A writer that finds it taken does not wait on
    it: its busy handler sleeps and retries (1, 2, 5, 10, 15, 20, 25… ms), so under load a
    waiter sleeps long after the lock was freed, and the last to arrive can be first to
    retry. Here writers queue instead: threads of one process on a lock, processes on an
    exclusive ``flock`` of a side file (``<database>-wlock``), and each wakes as soon as the
    one before it is done. SQLite's lock still guards the data; the gate only orders the
    waiters. A writer that waits on the gate longer than ``_GATE_TIMEOUT`` goes on to
    ``BEGIN IMMEDIATE`` without it (as before the gate: busy handler, then an error).

    Args:
        lock_path: The side file, or ``None`` (in-memory database): threads only.
    """

    def __init__(self, lock_path: str | None) -> None:
        self._lock = threading.RLock()
        self._depth = 0
        self._lock_path = lock_path
        self._fd: int | None = None
        self._pid = 0

    def _file(self) -> int | None:
        """This process's descriptor of the side file (a fork must not share the parent's:
        ``flock`` belongs to the open file, so parent and child would hold it together)."""
        if self._lock_path is None:
            return None
        if self._fd is None or self._pid != os.getpid():
            try:
                self._fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError:  # a read-only folder: threads still queue, processes do not
                self._lock_path = None
                return None
            self._pid = os.getpid()
        return self._fd

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold the gate (re-entrant in one thread) for the duration of the block."""
        if not self._lock.acquire(timeout=_GATE_TIMEOUT):
            yield
            return
        try:
            fd = self._file() if self._depth == 0 else None
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)  # releases the GIL while it waits
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if fd is not None:
                    fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            self._lock.release()


_gates: dict[str, WriteGate] = {}
_gates_lock = threading.Lock()
_writers: weakref.WeakKeyDictionary[Engine, tuple[Engine, WriteGate | None]] = (
    weakref.WeakKeyDictionary()
)


def _writer(engine: Engine) -> tuple[Engine, WriteGate | None]:
    """The engine that begins with ``BEGIN IMMEDIATE``, and the write gate (SQLite only)."""
    found = _writers.get(engine)
    if found is not None:
        return found
    gate = None
    if engine.dialect.name == "sqlite":
        database = engine.url.database or ""
        on_disk = database not in {"", ":memory:"} and not database.startswith("file:")
        key = str(Path(database).expanduser().resolve()) if on_disk else f"memory:{id(engine)}"
        with _gates_lock:
            gate = _gates.get(key)
            if gate is None:
                gate = _gates[key] = WriteGate(f"{key}-wlock" if on_disk else None)
    found = (engine.execution_options(sqlite_immediate=True), gate)
    _writers[engine] = found
    return found


@contextmanager
def write_connection(engine: Engine) -> Iterator[Connection]:
    """Begin a write transaction: ``with write_connection(engine) as conn: ...``.

    On SQLite the writer first queues on the database's :class:`WriteGate`, then takes the
    write lock at BEGIN (``BEGIN IMMEDIATE``); on PostgreSQL it is an ordinary transaction.
    """
    writer, gate = _writer(engine)
    if gate is None:
        with writer.begin() as connection:
            yield connection
        return
    with gate.held(), writer.begin() as connection:
        yield connection


def driver_connection(connection: Connection) -> Any:
    """The driver's own connection (``sqlite3`` or psycopg) under ``connection``, in its
    transaction. Hot statements go straight to it: through SQLAlchemy, building and running
    them cost more Python than the driver's own execution (decisions 0016 and 0022)."""
    raw = connection.connection.driver_connection
    assert raw is not None
    return raw


@contextmanager
def driver_errors() -> Iterator[None]:
    """Raise errors of statements run straight through the driver (``sqlite3``, psycopg) as
    SQLAlchemy's ``DBAPIError`` subclasses (``IntegrityError``, ``DataError``…), as if
    SQLAlchemy had run them: callers tell a conflict from bad data by those classes.
    Parameters are never part of the message."""
    import psycopg

    try:
        yield
    except sqlite3.Error as error:
        raise DBAPIError.instance(None, None, error, sqlite3.Error, hide_parameters=True) from error
    except psycopg.Error as error:
        raise DBAPIError.instance(None, None, error, psycopg.Error, hide_parameters=True) from error
