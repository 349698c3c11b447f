"""Group commit of AuditEvents that have no write transaction of their own.

Reads, searches and failed interactions produce an AuditEvent but no other write; the API
server hands them to an :class:`AuditWriter`, which commits them in groups and answers no
request before its event is committed (``docs/decisions/0015-audit-group-commit.md``; on
an event loop on PostgreSQL, ``docs/decisions/0028-search-audit-on-the-loop.md``). The
events themselves are built by :mod:`sharedcare.record.audit`.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import weakref
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

import psycopg
from sqlalchemy import Engine

from sharedcare.db.engine import write_connection
from sharedcare.record.audit import AuditEntry, audit_rows, insert_audit_rows, pg_statement
from sharedcare.record.context import RequestContext

__all__ = ["AuditUnavailable", "AuditWriter"]

log = logging.getLogger(__name__)


class AuditUnavailable(RuntimeError):
    """The audit trail could not be stored, so the interaction must not be answered."""


class _Pending:
    """Rows waiting for the writer, and the future that says they are committed (or not)."""

    __slots__ = ("future", "rows")

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.future: Future[None] = Future()
        # Running from the start, so that it cannot be cancelled: a request cancelled while
        # it awaits ``asyncio.wrap_future(future)`` would cancel it, and the writer thread's
        # ``set_result`` would then raise and stop the thread (every later event unstored).
        self.future.set_running_or_notify_cancel()


class AuditWriter:
    """Group commit for AuditEvents that have no write transaction of their own.

    Reads, searches and failed interactions produce an AuditEvent but no other write.
    Committing each one in its own transaction cost a transaction per read (and on SQLite
    the database's one write lock, taken by every read). Here requests hand their rows to
    one writer thread per process, which inserts everything queued with
    :func:`insert_audit_rows` and one commit, then completes their futures. No response may
    leave before its AuditEvent is stored: :meth:`write` blocks until then, and callers on
    the event loop use :meth:`submit` and await the future. A batch that fails fails every
    request in it (:class:`AuditUnavailable`). See ``docs/decisions/0015-audit-group-commit.md``.

    Batches form naturally: while one commits, the next fills, so an idle server pays no
    extra latency and a busy one pays one commit for many reads.

    On PostgreSQL, events submitted on an event loop (the API server's reads by id and
    searches) are group-committed on that loop instead, over a connection of its own in
    autocommit: each batch is one ``INSERT`` statement, its own transaction, committed
    before the statement returns; no thread is woken and no ``BEGIN`` / ``COMMIT`` is sent
    (``docs/decisions/0028-search-audit-on-the-loop.md``).
    """

    def __init__(self, engine: Engine, *, max_rows: int = 1000) -> None:
        self._engine = engine
        self._max_rows = max_rows
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="sharedcare-audit", daemon=True)
        self._thread.start()
        #: psycopg's connection arguments for the writers on event loops (PostgreSQL).
        self._connect_args: dict[str, Any] | None = None
        if engine.dialect.name == "postgresql":
            _, params = engine.dialect.create_connect_args(engine.url)
            params.pop("context", None)  # SQLAlchemy's adapters: the driver's own will do
            self._connect_args = dict(params)
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopWriter] = (
            weakref.WeakKeyDictionary()
        )
        self._loops_closed = False

    def submit(
        self, context: RequestContext, entries: Sequence[AuditEntry]
    ) -> Future[None] | asyncio.Future[None]:
        """Queue AuditEvents for ``entries``.

        Returns:
            A future that completes when they are committed, or fails with
            :class:`AuditUnavailable`. The interaction must not be answered before then.
            Called on an event loop on PostgreSQL, an :class:`asyncio.Future` of that loop
            (await it, or ``asyncio.wrap_future`` it); otherwise a
            :class:`concurrent.futures.Future`.

        Raises:
            AuditUnavailable: The writer is closed.
        """
        rows = audit_rows(context, entries)
        if self._connect_args is not None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                pass
            else:
                if self._closed or self._loops_closed:
                    raise AuditUnavailable("the audit writer is closed")
                writer = self._loops.get(loop)
                if writer is None:
                    writer = self._loops[loop] = _LoopWriter(
                        loop, self._connect_args, self._max_rows
                    )
                return writer.submit(rows)
        return self._submit(rows)

    def _submit(self, rows: list[dict[str, Any]]) -> Future[None]:
        pending = _Pending(rows)
        with self._lock:
            if self._closed:
                raise AuditUnavailable("the audit writer is closed")
            self._queue.put(pending)
        return pending.future

    def write(self, context: RequestContext, entries: Sequence[AuditEntry]) -> None:
        """Store AuditEvents for ``entries``; return once they are committed (through the
        writer thread, whatever thread calls it).

        Raises:
            AuditUnavailable: The writer is closed, or the batch could not be committed.
        """
        if entries:
            self._submit(audit_rows(context, entries)).result()

    def close(self) -> None:
        """Commit everything queued for the writer thread, then stop it (idempotent).

        Events queued on an event loop are committed by :meth:`aclose`, on that loop.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        self._thread.join()

    async def aclose(self) -> None:
        """Commit everything queued (on the running event loop, and for the writer thread),
        close the loop's connection, then stop the writer thread (idempotent)."""
        self._loops_closed = True
        writer = self._loops.pop(asyncio.get_running_loop(), None)
        if writer is not None:
            await writer.close()
        self.close()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            batch: list[_Pending] = []
            rows = 0
            item = first
            while True:
                if item is None:
                    stopping = True
                else:
                    batch.append(item)
                    rows += len(item.rows)
                if rows >= self._max_rows:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._flush(batch)

    def _flush(self, batch: list[_Pending]) -> None:
        try:
            with write_connection(self._engine) as connection:
                insert_audit_rows(connection, [row for p in batch for row in p.rows])
        except Exception as error:  # every waiting request fails; none is answered unaudited
            log.error("audit batch of %d events not stored: %s", len(batch), type(error).__name__)
            for pending in batch:
                pending.future.set_exception(
                    AuditUnavailable("the audit trail could not be stored")
                )
        else:
            for pending in batch:
                pending.future.set_result(None)


class _LoopWriter:
    """Group commit on one event loop, over one psycopg connection in autocommit
    (PostgreSQL): while a batch's ``INSERT`` runs, the next fills."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, connect_args: dict[str, Any], max_rows: int
    ) -> None:
        self._loop = loop
        self._connect_args = connect_args
        self._max_rows = max_rows
        self._queue: list[tuple[list[dict[str, Any]], asyncio.Future[None]]] = []
        self._connection: psycopg.AsyncConnection[Any] | None = None
        self._task: asyncio.Task[None] | None = None

    def submit(self, rows: list[dict[str, Any]]) -> asyncio.Future[None]:
        future: asyncio.Future[None] = self._loop.create_future()
        self._queue.append((rows, future))
        if self._task is None:
            self._task = self._loop.create_task(self._drain())
        return future

    async def _drain(self) -> None:
        try:
            while self._queue:
                count = 0
                taken = 0
                for rows, _ in self._queue:
                    if taken and count + len(rows) > self._max_rows:
                        break
                    count += len(rows)
                    taken += 1
                batch, self._queue = self._queue[:taken], self._queue[taken:]
                await self._flush(batch)
        finally:
            self._task = None

    async def _flush(self, batch: list[tuple[list[dict[str, Any]], asyncio.Future[None]]]) -> None:
        rows = [row for entries, _ in batch for row in entries]
        try:
            connection = self._connection
            if connection is None or connection.closed:
                connection = self._connection = await psycopg.AsyncConnection.connect(
                    autocommit=True, **self._connect_args
                )
            # One statement in autocommit: one transaction, committed (and, with
            # ``synchronous_commit`` on, flushed) before the statement returns.
            async with connection.cursor() as cursor:
                await cursor.execute(*pg_statement(rows))
        except asyncio.CancelledError:  # the loop is going: its requests are not answered
            self._connection = None  # perhaps mid-statement: not to be used again
            for _, future in batch:
                if not future.done():
                    future.set_exception(AuditUnavailable("the audit trail could not be stored"))
            raise
        except Exception as error:  # every waiting request fails; none is answered unaudited
            log.error("audit batch of %d events not stored: %s", len(rows), type(error).__name__)
            await self._discard()
            for _, future in batch:
                if not future.done():  # a request cancelled meanwhile
                    future.set_exception(AuditUnavailable("the audit trail could not be stored"))
        else:
            for _, future in batch:
                if not future.done():
                    future.set_result(None)

    async def _discard(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                await connection.close()
            except Exception:  # already broken: nothing more to release
                log.debug("audit connection close failed", exc_info=True)

    async def close(self) -> None:
        """Commit what is queued, then close the connection."""
        while self._task is not None:
            await asyncio.shield(self._task)
        await self._discard()
