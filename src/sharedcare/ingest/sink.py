"""The database sink behind the MLLP listener: store, then ACK; write to the record after.

For each message the listener hands over, :meth:`DatabaseSink.accept`:

1. maps it to FHIR in memory (a mapping error is known now, so it can be answered AE);
2. queues it for the next **group commit**: one transaction stores every message waiting
   at that moment, with its raw bytes, stage (``mapped``, or ``failed`` with its reason)
   and feed; resends are recognised on (sender, MSH-10);
3. returns the decision only after that commit, so no AA is ever sent for a message that
   is not durably stored.

Accepted messages are then written to the record in batches, each batch in one
transaction with its stage change (:func:`~sharedcare.ingest.writer.write_messages`):
by a background task in this process (``writer="thread"``), or by a writer process
beside it (``writer="process"``, what ``sharedcare mllp`` and ``serve`` use, see
:mod:`sharedcare.ingest.writer_process`), which is handed each stored message's id and
mapped resources. Anything stored but not written when the process
stops is finished by :func:`~sharedcare.ingest.pipeline.recover` when it starts again.

Database work runs in worker threads so the event loop keeps serving connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import Engine, func, select

from sharedcare.db.tables import Message
from sharedcare.ingest.hl7v2.ack import AckDecision
from sharedcare.ingest.hl7v2.errors import ErrorCode, Hl7ParseError, Issue, MappingError, Severity
from sharedcare.ingest.hl7v2.mapping import MappedMessage, map_message
from sharedcare.ingest.hl7v2.parse import MessageHeader, ParsedMessage
from sharedcare.ingest.pipeline import recover
from sharedcare.ingest.stages import Stage
from sharedcare.ingest.store import FeedRegistry, Incoming, Stored, store_messages
from sharedcare.ingest.writer import ToWrite, write_messages
from sharedcare.ingest.writer_process import WriterProcess
from sharedcare.record.sqlstore import SqlStore

__all__ = ["DatabaseSink", "SinkCounters"]

logger = logging.getLogger(__name__)

_WRITER_START_TIMEOUT = 120.0


@dataclass(slots=True)
class SinkCounters:
    """Running totals since the sink started."""

    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    written: int = 0
    failed: int = 0
    recovered: int = 0


@dataclass(slots=True)
class _Pending:
    item: Incoming
    mapped: MappedMessage | None
    issue: Issue | None
    done: asyncio.Future[Stored]


class DatabaseSink:
    """A :class:`~sharedcare.ingest.hl7v2.listener.MessageSink` backed by the database.

    Args:
        engine: The sharedcare database (migrated).
        batch_size: Most messages stored in one group commit.
        write_batch_size: Most messages written to the record in one transaction.
        queue_limit: Accepted messages waiting to be written before ACKs are held back.
        recover_on_start: Finish messages left unwritten by a previous run.
        writer: ``thread`` writes to the record in this process; ``process`` in a writer
            process of its own (a second core; needs a database other processes can open,
            not SQLite ``:memory:``).

    Use it as ``async with DatabaseSink(engine) as sink: ...``, or call :meth:`start` and
    :meth:`close`.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        batch_size: int = 500,
        write_batch_size: int = 500,
        queue_limit: int = 5000,
        recover_on_start: bool = True,
        writer: Literal["thread", "process"] = "thread",
    ) -> None:
        self.engine = engine
        self.counters = SinkCounters()
        self._store = SqlStore(engine)
        self._registry = FeedRegistry()
        self._batch_size = batch_size
        self._write_batch_size = write_batch_size
        self._recover = recover_on_start
        self._incoming: asyncio.Queue[_Pending] = asyncio.Queue()
        self._to_write: asyncio.Queue[ToWrite] = asyncio.Queue(maxsize=queue_limit)
        self._tasks: list[asyncio.Task[None]] = []
        self._recovery_done = asyncio.Event()
        self._queue_limit = queue_limit
        self._writer_mode = writer
        self._process: WriterProcess | None = None

    async def start(self) -> None:
        """Start the group-commit and record-writer tasks (and recovery)."""
        horizon = await asyncio.to_thread(self._last_id)
        loop = asyncio.get_running_loop()
        if self._writer_mode == "process":
            self._process = WriterProcess(
                self.engine,
                batch_size=self._write_batch_size,
                recover_before=horizon + 1 if self._recover else None,
                on_report=self._count_written,
            )
            self._process.start()
            self._tasks = [loop.create_task(self._store_loop())]
            # Accept only once the writer is up (it imports and loads for a second or two).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._process.ready.wait(), _WRITER_START_TIMEOUT)
            return
        await asyncio.to_thread(self._store.ensure_params)
        self._tasks = [
            loop.create_task(self._store_loop()),
            loop.create_task(self._write_loop(horizon)),
        ]

    def _count_written(self, written: int, failed: int, recovered: int) -> None:
        self.counters.written += written
        self.counters.failed += failed
        self.counters.recovered += recovered

    def _last_id(self) -> int:
        with self.engine.connect() as connection:
            return int(connection.scalar(select(func.max(Message.id))) or 0)

    async def close(self) -> None:
        """Finish what is queued, then stop the background tasks."""
        await self.drain()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._process is not None:
            await self._process.close()
            self._process = None

    async def drain(self) -> None:
        """Wait until every accepted message has been stored and written (or failed)."""
        await self._incoming.join()
        if self._process is not None:
            await self._process.idle()
            return
        await self._to_write.join()
        if self._recover:
            await self._recovery_done.wait()

    async def __aenter__(self) -> DatabaseSink:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- MessageSink -----------------------------------------------------------------

    async def accept(self, raw: bytes, header: MessageHeader) -> AckDecision:
        """Map, store (group commit), then say how to acknowledge; see the module docstring."""
        return await self._accept(raw, header, raw)

    async def accept_parsed(self, raw: bytes, parsed: ParsedMessage) -> AckDecision:
        """:meth:`accept` for a message the listener has parsed already (not parsed again)."""
        return await self._accept(raw, parsed.header, parsed)

    async def _accept(
        self, raw: bytes, header: MessageHeader, source: bytes | ParsedMessage
    ) -> AckDecision:
        if not self._tasks:
            raise RuntimeError("DatabaseSink.start() has not been called")
        mapped: MappedMessage | None = None
        issue: Issue | None = None
        try:
            mapped = map_message(source)
        except (MappingError, Hl7ParseError) as error:
            issue = error.issue
        if issue is None:
            item = Incoming(
                "hl7v2",
                header.sending_application,
                header.sending_facility,
                header.control_id,
                header.message_type,
                raw,
                Stage.MAPPED,
            )
        else:
            item = Incoming(
                "hl7v2",
                header.sending_application,
                header.sending_facility,
                header.control_id,
                header.message_type,
                raw,
                Stage.FAILED,
                Stage.MAPPED.value,
                issue.reason,
            )
        done: asyncio.Future[Stored] = asyncio.get_running_loop().create_future()
        self._incoming.put_nowait(_Pending(item, mapped, issue, done))  # unbounded: never full
        stored = await done
        if stored.duplicate:
            self.counters.duplicates += 1
            return AckDecision.accept(duplicate=True)
        self.counters.stored += 1
        if issue is not None or mapped is None:
            self.counters.rejected += 1
            return AckDecision.error(
                issue or Issue("the message could not be mapped", ErrorCode.INTERNAL_ERROR)
            )
        if self._process is not None:
            # Handed to the writer process by the store loop; hold the ACK while it lags.
            await self._process.wait_below(self._queue_limit)
        else:
            await self._to_write.put(ToWrite(stored.message_id, stored.feed, mapped))
        return AckDecision.accept([i for i in mapped.issues if i.severity is not Severity.ERROR])

    # -- background tasks ------------------------------------------------------------------

    async def _store_loop(self) -> None:
        while True:
            batch = [await self._incoming.get()]
            while len(batch) < self._batch_size and not self._incoming.empty():
                batch.append(self._incoming.get_nowait())
            try:
                results = await asyncio.to_thread(
                    store_messages, self.engine, [p.item for p in batch], self._registry
                )
            except Exception as error:  # the listener answers AR: not stored, resend later
                logger.error("could not store %d messages: %s", len(batch), type(error).__name__)
                for pending in batch:
                    if not pending.done.done():
                        pending.done.set_exception(error)
            else:
                if self._process is not None:
                    self._process.submit(
                        [
                            ToWrite(result.message_id, result.feed, pending.mapped)
                            for pending, result in zip(batch, results, strict=True)
                            if not result.duplicate and pending.mapped is not None
                        ]
                    )
                for pending, result in zip(batch, results, strict=True):
                    if not pending.done.done():
                        pending.done.set_result(result)
            finally:
                for _ in batch:
                    self._incoming.task_done()

    async def _write_loop(self, horizon: int) -> None:
        if self._recover:
            try:
                report = await asyncio.to_thread(recover, self.engine, before=horizon + 1)
                self.counters.recovered += report.tried
                if report.tried:
                    logger.info("finished %d messages left by a previous run", report.tried)
            except Exception as error:
                logger.error("recovery of unwritten messages failed: %s", type(error).__name__)
            finally:
                self._recovery_done.set()
        while True:
            batch = [await self._to_write.get()]
            while len(batch) < self._write_batch_size and not self._to_write.empty():
                batch.append(self._to_write.get_nowait())
            try:
                outcomes = await asyncio.to_thread(write_messages, self.engine, self._store, batch)
                for outcome in outcomes:
                    if outcome.stage == Stage.FAILED.value:
                        self.counters.failed += 1
                    else:
                        self.counters.written += 1
            except Exception as error:
                # The messages stay stored at stage "mapped"; recovery finishes them.
                logger.error(
                    "could not write %d messages to the record: %s",
                    len(batch),
                    type(error).__name__,
                )
            finally:
                for _ in batch:
                    self._to_write.task_done()
