"""The record writer in a process of its own, beside the MLLP listener.

The listener (receive, parse, map, store, ACK) and the writer (validate, index, match
identity, write) each need about a core's worth of Python at full rate; in one process
they share one GIL. ``serve_mllp`` therefore runs the writer in a child process
(``docs/decisions/0014-ingest-writer-process.md``):

* after each group commit the listener sends the newly stored messages down a pipe
  (:meth:`WriterProcess.submit`): their ids, feeds and the FHIR resources it mapped (as
  JSON), so the writer neither reads nor parses them again. The database keeps the only
  durable copy: what is in the pipe when a process dies is recovered from the stored rows;
* the child writes them with :func:`~sharedcare.ingest.writer.write_messages`, each batch
  in one transaction with its stage change, and reports back which ids it finished. One
  thread plans the next batch (validation, index extraction) while another writes the one
  before, in order (:mod:`sharedcare.ingest.preplan`, decision 0025);
* on start the child first finishes what an earlier run left stored but unwritten
  (:func:`~sharedcare.ingest.pipeline.recover`).

If the listener dies (even by SIGKILL) the pipe closes and the child stops after the batch
in hand; if the child dies, the listener starts another and hands it the id of every
message not reported finished, which it reads back from the database and maps again. A
message handed to two writers is still written once: each write transaction locks its
messages' stage rows and skips those already written
(:func:`~sharedcare.ingest.writer.write_messages`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import multiprocessing
import operator
import os
import queue
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import orjson
from sqlalchemy import Engine

from sharedcare.ingest.hl7v2.mapping import MappedMessage, PatientMerge
from sharedcare.ingest.hl7v2.parse import MessageHeader
from sharedcare.ingest.pipeline import ReplayReport, process_ids, recover
from sharedcare.ingest.preplan import Preplanner, Ticket
from sharedcare.ingest.stages import Stage
from sharedcare.ingest.store import FeedRef
from sharedcare.ingest.writer import ToWrite, park_failed, write_messages, write_preplanned

__all__ = ["WriterProcess", "decode", "encode", "writer_main"]

logger = logging.getLogger(__name__)

_EOF = "eof"
_MAX_RESTARTS = 10
_READY = "ready"
# Young collections every 200,000 net allocations: a planned batch keeps ~100,000 young
# objects alive, which every young collection scans (decision 0014, session-10 addendum).
_GC_THRESHOLDS = (200_000, 20, 100)
_Handed = tuple[int, tuple[int, str, str | None], tuple[Any, ...], bytes, list[PatientMerge]]
# The header crosses the pipe as a tuple of its fields: pickling the slotted dataclass
# runs Python code per message in the listener (dataclasses' ``__getstate__``).
_header_values = operator.attrgetter(*(f.name for f in dataclasses.fields(MessageHeader)))


@dataclass(frozen=True, slots=True)
class _Done:
    """Child → parent: ids finished (written, failed or found already written)."""

    ids: list[int]
    written: int
    failed: int
    recovered: int | None = None  # set on the report of the start-up recovery


def _counts(report: ReplayReport) -> tuple[int, int]:
    failed = report.stages.get(Stage.FAILED.value, 0)
    return sum(report.stages.values()) - failed, failed


def writer_main(
    url: str,
    connection: Connection,
    recover_before: int | None,
    batch_size: int,
    log_level: str,
    log_json: bool,
) -> None:
    """The child process: write the ids the listener sends until told to stop.

    Args:
        url: The database URL (the parent's engine URL).
        connection: The child's end of the pipe.
        recover_before: First finish every waiting message with a smaller id (``None``:
            no recovery).
        batch_size: Most messages written in one transaction.
        log_level: The parent's log level.
        log_json: Whether the parent logs JSON lines.
    """
    from sharedcare.db.engine import create_engine
    from sharedcare.logs import configure_logging

    # Ctrl-C reaches the whole process group; the parent decides when the writer stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    configure_logging(log_level, json=log_json)
    engine = create_engine(url, pool_size=2)
    try:
        _serve(engine, connection, recover_before, batch_size)
    finally:
        engine.dispose()


def _serve(
    engine: Engine, connection: Connection, recover_before: int | None, batch_size: int
) -> None:
    from sharedcare.plugins import plugin_manager
    from sharedcare.record.sqlstore import SqlStore

    inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def read() -> None:  # keeps the pipe drained, so the listener never blocks on it
        try:
            while True:
                item = connection.recv()
                inbox.put(item)
                if item is None:
                    return
        except (EOFError, OSError):
            inbox.put(_EOF)

    threading.Thread(target=read, name="ingest-writer-pipe", daemon=True).start()
    store = SqlStore(engine)
    store.ensure_params()
    plugin_manager()  # the access gate's plugins, imported now rather than mid-batch
    # Long-lived objects (the master patient index, definitions) are left out of the
    # collector's work, and young collections run less often: each batch allocates
    # hundreds of thousands of short-lived dicts, and with the default thresholds the
    # collections cost about a quarter of the writer's CPU (decision 0014).
    gc.collect()
    gc.freeze()
    gc.set_threshold(*_GC_THRESHOLDS)
    connection.send(_READY)
    if recover_before is not None:
        report = recover(engine, before=recover_before)
        if report.tried:
            logger.info("finished %d messages left by a previous run", report.tried)
        written, failed = _counts(report)
        connection.send(_Done([], written, failed, recovered=report.tried))
    planner = Preplanner(engine, store)
    tickets: queue.Queue[tuple[list[Any], Ticket] | None] = queue.Queue(maxsize=1)
    writing = threading.Thread(
        target=_write_in_order,
        args=(engine, store, planner, tickets, connection),
        name="ingest-writer-write",
    )
    writing.start()
    gone = True
    try:
        gone = _plan_in_order(inbox, planner, tickets, batch_size)
    finally:
        if gone:  # the batch being written is finished; one planned after it is not
            with contextlib.suppress(queue.Empty):
                tickets.get_nowait()
        tickets.put(None)
        writing.join()


def _plan_in_order(
    inbox: queue.SimpleQueue[Any],
    planner: Preplanner,
    tickets: queue.Queue[tuple[list[Any], Ticket] | None],
    batch_size: int,
) -> bool:
    """Gather batches from the pipe and plan each while the one before is written.

    ``tickets`` holds one batch: planning runs at most one batch ahead of writing.

    Returns:
        True if the listener has gone (the pipe closed), False when told to stop.
    """
    stopping = False
    while True:
        ids: list[Any] = []
        item = inbox.get()
        while True:
            if item == _EOF:
                logger.warning("the MLLP listener has gone; the writer stops")
                return True  # unwritten messages stay stored; the next start recovers them
            if item is None:
                stopping = True
            else:
                ids.extend(item)
            if len(ids) >= batch_size or inbox.empty():
                break
            item = inbox.get()
        if ids:
            tickets.put((ids, _ticket(planner, ids)))
        if stopping and inbox.empty():
            return False


def _ticket(planner: Preplanner, handed: list[Any]) -> Ticket:
    if any(isinstance(h, int) for h in handed):  # ids to read back and map: planned later
        return planner.unplanned()
    try:
        items = [decode(h) for h in handed]
    except Exception:  # written (or parked) one at a time by _write
        return planner.unplanned()
    return planner.plan(items)


def _write_in_order(
    engine: Engine,
    store: Any,
    planner: Preplanner,
    tickets: queue.Queue[tuple[list[Any], Ticket] | None],
    connection: Connection,
) -> None:
    """Write the planned batches in the order they were handed over; report each.

    Once the listener has gone, batches still handed over are left unwritten (stored, for
    the next start's recovery), but taken, so the planning thread never waits on them.
    """
    gone = False
    while True:
        job = tickets.get()
        if job is None:
            return
        if gone:
            continue
        handed, ticket = job
        preplanned = planner.usable(ticket)
        done: _Done | None = None
        if preplanned is not None:
            try:
                outcomes, as_planned = write_preplanned(engine, store, preplanned)
            except Exception as error:
                logger.error(
                    "could not write a batch of %d messages as planned (%s)",
                    len(handed),
                    type(error).__name__,
                )
                as_planned = False
            else:
                done = _Done([h[0] for h in handed], *_tally(outcomes))
        else:
            as_planned = False
        if done is None:
            done = _write(engine, store, handed)
        planner.finished(ticket, as_planned)
        try:
            connection.send(done)
        except OSError:  # the listener has gone; what is unwritten stays stored
            gone = True


def _tally(outcomes: Sequence[Any]) -> tuple[int, int]:
    failed = sum(1 for o in outcomes if o.stage == Stage.FAILED.value)
    return len(outcomes) - failed, failed


def encode(item: ToWrite) -> _Handed:
    """A mapped message as it crosses the pipe (JSON resources: cheaper than pickle)."""
    mapped = item.mapped
    return (
        item.message_id,
        (item.feed.id, item.feed.name, item.feed.organisation),
        _header_values(mapped.header),
        orjson.dumps(mapped.resources),
        mapped.merges,
    )


def _encode_or_id(item: ToWrite) -> _Handed | int:
    try:
        return encode(item)
    except (TypeError, ValueError):  # not JSON: the writer reads it back and maps it again
        return item.message_id


def decode(handed: _Handed) -> ToWrite:
    """The :class:`ToWrite` sent by :func:`encode`."""
    message_id, feed, header, resources, merges = handed
    mapped = MappedMessage(MessageHeader(*header), orjson.loads(resources), merges)
    return ToWrite(message_id, FeedRef(*feed), mapped)


def _write_batch(engine: Engine, store: Any, handed: list[Any]) -> tuple[int, int]:
    # Mapped by the listener; or, after a restart, ids to read back and map again.
    report = process_ids(engine, store, [h for h in handed if isinstance(h, int)])
    items = [decode(h) for h in handed if not isinstance(h, int)]
    for outcome in write_messages(engine, store, items):
        report.stages[outcome.stage] += 1
    return _counts(report)


def _write(engine: Engine, store: Any, handed: list[Any]) -> _Done:
    """Write a batch; if it fails as a whole, each message alone; park those that fail.

    ``write_messages`` already isolates a message its database rejects. Anything else
    that stops a batch (a defect met by one message's content, a message that cannot be
    decoded) is retried one message at a time, so the others are written now; a message
    that still fails is moved to the error queue with the reason
    (:func:`~sharedcare.ingest.writer.park_failed`), not left ``mapped`` until the next
    start. If even that cannot be recorded (the database is down), it stays stored and
    the next start's recovery writes it: nothing is lost either way.
    """
    ids = [h if isinstance(h, int) else h[0] for h in handed]
    try:
        written, failed = _write_batch(engine, store, handed)
        return _Done(ids, written, failed)
    except Exception as error:
        if len(handed) == 1:
            return _Done(ids, 0, _park(engine, handed[0], error))
        logger.error(
            "could not write a batch of %d messages (%s); writing them one at a time",
            len(ids),
            type(error).__name__,
        )
    written = failed = 0
    for h in handed:
        try:
            w, f = _write_batch(engine, store, [h])
        except Exception as error:
            f, w = _park(engine, h, error), 0
        written += w
        failed += f
    return _Done(ids, written, failed)


def _park(engine: Engine, handed: Any, error: Exception) -> int:
    """Move one message that cannot be written to the error queue; 1 if it was moved."""
    message_id = handed if isinstance(handed, int) else handed[0]
    cause = type(error).__name__
    logger.error("message %s could not be written to the record: %s", message_id, cause)
    try:
        return 1 if park_failed(engine, message_id, cause) else 0
    except Exception as again:  # the database itself: the row stays stored for recovery
        logger.error(
            "message %s stays stored until the next start (%s)", message_id, type(again).__name__
        )
        return 0


class WriterProcess:
    """The parent's handle on the writer child; used from the listener's event loop.

    Args:
        engine: The listener's engine; the child connects to the same database URL.
        batch_size: Most messages the child writes in one transaction.
        recover_before: The child first finishes waiting messages with a smaller id.
        on_report: Called with (written, failed, recovered) for each report from the child.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        batch_size: int,
        recover_before: int | None,
        on_report: Callable[[int, int, int], None] | None = None,
    ) -> None:
        self._url = engine.url.render_as_string(hide_password=False)
        self._on_report = on_report
        self._batch_size = batch_size
        self._recover_before = recover_before
        self._outstanding: set[int] = set()
        self._process: Any = None
        self._pipe: Connection | None = None
        self._changed = asyncio.Event()
        self._closing = False
        self.recovered_done = asyncio.Event()
        self.ready = asyncio.Event()
        self.written = 0
        self.failed = 0
        self.recovered = 0
        self.restarts = 0

    @property
    def outstanding(self) -> int:
        """Ids handed over and not yet reported finished."""
        return len(self._outstanding)

    def start(self) -> None:
        """Start the child (``spawn``: no copy of the listener's threads or sockets)."""
        context = multiprocessing.get_context("spawn")
        parent_end, child_end = context.Pipe(duplex=True)
        root = logging.getLogger()
        from sharedcare.logs import JsonFormatter

        log_json = any(isinstance(h.formatter, JsonFormatter) for h in root.handlers)
        self._process = context.Process(
            target=writer_main,
            args=(
                self._url,
                child_end,
                self._recover_before,
                self._batch_size,
                logging.getLevelName(root.getEffectiveLevel()),
                log_json,
            ),
            name="sharedcare-ingest-writer",
            daemon=True,
        )
        self._process.start()
        child_end.close()
        if self._recover_before is None:
            self.recovered_done.set()
        self._pipe = parent_end
        asyncio.get_running_loop().add_reader(parent_end.fileno(), self._on_readable)
        # uvloop's add_reader makes the descriptor non-blocking; the pipe is also written
        # with blocking sends (submit) and a report is read whole once readable, so it is
        # made blocking again (a no-op on asyncio's own loop, which leaves it as it is).
        os.set_blocking(parent_end.fileno(), True)
        if self._outstanding:  # a restart: hand over everything the last child left
            parent_end.send(sorted(self._outstanding))

    def submit(self, items: Sequence[ToWrite]) -> None:
        """Hand stored, mapped messages to the writer (call after their commit)."""
        if not items:
            return
        self._outstanding.update(item.message_id for item in items)
        if self._pipe is not None:
            # If the child has gone, _on_readable restarts it and hands it these ids.
            with contextlib.suppress(OSError):
                self._pipe.send([_encode_or_id(item) for item in items])

    async def wait_below(self, limit: int) -> None:
        """Wait until fewer than ``limit`` ids are outstanding (back-pressure on ACKs)."""
        while len(self._outstanding) >= limit and self._process is not None:
            self._changed.clear()
            await self._changed.wait()

    async def idle(self) -> None:
        """Wait until recovery is done and every submitted id is finished."""
        await self.recovered_done.wait()
        while self._outstanding and self._process is not None:
            self._changed.clear()
            await self._changed.wait()

    def _on_readable(self) -> None:
        pipe = self._pipe
        if pipe is None:
            return
        try:
            while pipe.poll():
                done: _Done | str = pipe.recv()
                if isinstance(done, str):  # _READY
                    self.ready.set()
                    continue
                self._outstanding.difference_update(done.ids)
                self.written += done.written
                self.failed += done.failed
                if done.recovered is not None:
                    self.recovered += done.recovered
                    self.recovered_done.set()
                if self._on_report is not None:
                    self._on_report(done.written, done.failed, done.recovered or 0)
        except (EOFError, OSError):
            self._child_gone()
        self._changed.set()

    def _child_gone(self) -> None:
        loop = asyncio.get_running_loop()
        if self._pipe is not None:
            loop.remove_reader(self._pipe.fileno())
            self._pipe.close()
            self._pipe = None
        if self._process is not None:
            self._process.join(5)
        if self._closing:
            self._process = None
            self.recovered_done.set()
            self.ready.set()
            return
        exitcode = self._process.exitcode if self._process is not None else None
        if self.restarts >= _MAX_RESTARTS:
            logger.error(
                "the ingest writer process stopped (exit code %s) %d times; not restarting it. "
                "Stored messages wait at stage mapped until the listener is restarted",
                exitcode,
                self.restarts + 1,
            )
            self._process = None
            self.recovered_done.set()
            self.ready.set()
            return
        logger.error("the ingest writer process stopped (exit code %s); restarting it", exitcode)
        self.restarts += 1
        self.start()

    async def close(self, timeout: float = 600.0) -> None:
        """Let the child finish what it was given, then stop it."""
        self._closing = True
        if self._pipe is not None:
            with contextlib.suppress(OSError):
                self._pipe.send(None)
        process = self._process
        if process is not None:
            await asyncio.to_thread(process.join, timeout)
            if process.is_alive():
                logger.error("the ingest writer did not stop in time; terminating it")
                process.terminate()
                await asyncio.to_thread(process.join, 10)
        if self._pipe is not None:
            self._on_readable()  # collect the last reports
        if self._pipe is not None:
            asyncio.get_running_loop().remove_reader(self._pipe.fileno())
            self._pipe.close()
            self._pipe = None
        self._process = None
        self.recovered_done.set()
        self.ready.set()
        self._changed.set()
