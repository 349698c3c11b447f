"""The MLLP listener: HL7 v2 over TCP, framed as in HL7 v2.5.1 Appendix C.

A block is ``<VT> message <FS><CR>`` (0x0B, then 0x1C 0x0D). The server is python-hl7's
asyncio ``start_hl7_server``; framing is read here so the listener can be forgiving about
bytes between blocks (Appendix C receivers discard anything before the start block) and
can answer a malformed block with a NACK instead of dropping the connection.

Each connection is served by its own task, so many senders are served at once; within a
connection, messages are handled strictly in order and each ACK is written only after
:func:`~sharedcare.ingest.hl7v2.listener.acknowledge` (and so the sink) has returned:
store, then ACK.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import hl7.mllp

from sharedcare.ingest.hl7v2.ack import AckDecision, AckIdentity, build_ack
from sharedcare.ingest.hl7v2.errors import ErrorCode, Issue
from sharedcare.ingest.hl7v2.listener import INTERNAL_ERROR_REASON, MessageSink, acknowledge

__all__ = ["END_BLOCK", "START_BLOCK", "MllpServer", "frame"]

logger = logging.getLogger(__name__)

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c\x0d"
DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024


def frame(payload: bytes) -> bytes:
    """Wrap ``payload`` in an MLLP block (Appendix C)."""
    return START_BLOCK + payload + END_BLOCK


class MllpServer:
    """An asyncio MLLP listener that hands every message to a :class:`MessageSink`.

    Args:
        sink: Stores each message and decides its acknowledgement.
        identity: Our application/facility for ACKs to messages that name no receiver.
        max_message_bytes: Largest block accepted; a larger one is answered with an AR
            NACK and the connection is closed (the rest of it cannot be re-synchronised).
        idle_timeout: Seconds a connection may stay silent before it is closed; ``None``
            keeps idle connections open.

    Example:
        >>> server = MllpServer(sink)          # doctest: +SKIP
        >>> await server.start("0.0.0.0", 2575)  # doctest: +SKIP
    """

    def __init__(
        self,
        sink: MessageSink,
        *,
        identity: AckIdentity | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        idle_timeout: float | None = None,
    ) -> None:
        self._sink = sink
        self._identity = identity or AckIdentity()
        self._limit = max_message_bytes
        self._idle_timeout = idle_timeout
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._busy: set[asyncio.Task[None]] = set()
        self._closing = False
        self.messages_handled = 0

    async def start(self, host: str = "127.0.0.1", port: int = 2575) -> None:
        """Start listening. Use port 0 to let the OS choose (see :attr:`port`)."""
        self._server = await hl7.mllp.start_hl7_server(
            self._on_connect, host, port, limit=self._limit
        )

    @property
    def port(self) -> int:
        """The TCP port the server listens on."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the MLLP server is not started; call start() first")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def active_connections(self) -> int:
        """Number of connections currently being served."""
        return len(self._connections)

    async def serve_forever(self) -> None:
        """Serve until cancelled."""
        if self._server is None:
            raise RuntimeError("the MLLP server is not started; call start() first")
        await self._server.serve_forever()

    async def close(self) -> None:
        """Stop accepting connections, let in-flight messages finish, close connections."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            if task not in self._busy:
                task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> MllpServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _on_connect(self, reader: Any, writer: Any) -> None:
        task = asyncio.get_running_loop().create_task(self._serve(reader, writer))
        self._connections.add(task)
        task.add_done_callback(self._connections.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        logger.info("MLLP connection from %s", peer)
        try:
            task = asyncio.current_task()
            while not self._closing:
                block = await self._read_block(reader, writer)
                if block is None:
                    break
                if task is not None:
                    self._busy.add(task)
                try:
                    await self._answer(block, writer)
                finally:
                    if task is not None:
                        self._busy.discard(task)
        except asyncio.CancelledError:
            pass
        except (ConnectionError, OSError) as exc:
            logger.info("MLLP connection from %s lost: %s", peer, type(exc).__name__)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            logger.info("MLLP connection from %s closed", peer)

    async def _read_block(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bytes | None:
        """Read the next block; ``None`` at end of stream or after an unrecoverable error."""
        try:
            read = reader.readuntil(END_BLOCK)
            data = await (
                asyncio.wait_for(read, self._idle_timeout) if self._idle_timeout else read
            )
        except asyncio.IncompleteReadError as exc:
            if exc.partial.strip(b"\r\n\t "):
                logger.warning(
                    "MLLP connection closed in the middle of a block (%d bytes discarded)",
                    len(exc.partial),
                )
            return None
        except asyncio.LimitOverrunError:
            await self._reject(
                writer,
                f"the block is larger than {self._limit} bytes; split "
                "the batch or raise the listener's limit",
            )
            return None
        except TimeoutError:
            logger.info("MLLP connection idle for %s s; closing", self._idle_timeout)
            return None
        start = data.rfind(START_BLOCK)
        if start < 0:
            await self._reject(
                writer,
                "the MLLP block has no start-block character 0x0B; frame "
                "each message as 0x0B message 0x1C 0x0D",
                keep_open=True,
            )
            return b""
        if start > 0:
            logger.warning("discarded %d bytes before an MLLP start block", start)
        return data[start + 1 : -len(END_BLOCK)]

    async def _answer(self, block: bytes, writer: asyncio.StreamWriter) -> None:
        if not block:
            return
        try:
            result = await acknowledge(block, self._sink, self._identity)
        except Exception as exc:  # last resort: the sender must still get an answer
            logger.error("could not process an MLLP block: %s", type(exc).__name__)
            await self._reject(
                writer, INTERNAL_ERROR_REASON, keep_open=True, code=ErrorCode.INTERNAL_ERROR
            )
            return
        self.messages_handled += len(result.results)
        writer.write(frame(result.reply))
        await writer.drain()

    async def _reject(
        self,
        writer: asyncio.StreamWriter,
        reason: str,
        keep_open: bool = False,
        code: ErrorCode = ErrorCode.SEGMENT_SEQUENCE,
    ) -> None:
        decision = AckDecision.reject(Issue(reason, code))
        logger.warning("MLLP block rejected: %s", reason)
        with contextlib.suppress(ConnectionError, OSError):
            writer.write(frame(build_ack(None, decision, self._identity).encode("ascii")))
            await writer.drain()
        if not keep_open:
            writer.close()
