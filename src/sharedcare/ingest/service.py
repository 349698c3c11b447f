"""Run the MLLP listener on the database: ``sharedcare mllp`` and ``serve`` both use this."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable

from sqlalchemy import Engine

from sharedcare.ingest.hl7v2.ack import AckIdentity
from sharedcare.ingest.hl7v2.mllp import MllpServer
from sharedcare.ingest.sink import DatabaseSink

__all__ = ["run_mllp", "serve_mllp"]

logger = logging.getLogger(__name__)


async def serve_mllp(
    engine: Engine,
    host: str,
    port: int,
    *,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[int], None] | None = None,
    identity: AckIdentity | None = None,
) -> None:
    """Listen for HL7 v2 over MLLP until ``stop`` is set, storing into ``engine``.

    On stop, new connections are refused, messages in flight are finished (stored,
    acknowledged and written), and then the listener returns.

    Args:
        engine: The migrated sharedcare database.
        host: Address to bind.
        port: TCP port (0 lets the OS choose; ``on_ready`` receives the real one).
        stop: Set it to stop; ``None`` runs until cancelled.
        on_ready: Called with the port once the listener accepts connections.
        identity: Our MSH-3/MSH-4 for ACKs to messages that name no receiver.
    """
    stop = stop or asyncio.Event()
    async with DatabaseSink(engine) as sink:
        server = MllpServer(sink, identity=identity)
        await server.start(host, port)
        logger.info("MLLP listener on %s:%d", host, server.port)
        if on_ready is not None:
            on_ready(server.port)
        try:
            await stop.wait()
        finally:
            await server.close()


def run_mllp(
    engine: Engine,
    host: str,
    port: int,
    *,
    on_ready: Callable[[int], None] | None = None,
) -> None:
    """Run :func:`serve_mllp` in a new event loop until SIGINT or SIGTERM."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await serve_mllp(engine, host, port, stop=stop, on_ready=on_ready)

    asyncio.run(main())
