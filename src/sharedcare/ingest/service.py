"""Run the MLLP listener on the database: ``sharedcare mllp`` and ``serve`` both use this.

``sharedcare mllp`` runs it in its own event loop (:func:`run_mllp`); ``sharedcare serve``
with ``SHAREDCARE_MLLP_PORT`` runs it in a background thread of the serving process
(:class:`MllpThread`), beside the web server or its supervisor, so however many web
workers there are, exactly one process binds the MLLP port.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import threading
from collections.abc import Callable
from typing import Literal

from sqlalchemy import Engine

from sharedcare.ingest.hl7v2.ack import AckIdentity
from sharedcare.ingest.hl7v2.mllp import MllpServer
from sharedcare.ingest.sink import DatabaseSink

__all__ = ["MllpThread", "run_mllp", "serve_mllp", "tune_collector"]

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
    acknowledged and written), and then the listener returns. Messages are written to the
    record by a writer process beside this one (:mod:`sharedcare.ingest.writer_process`),
    except on an in-memory SQLite database, which only this process can see.

    Args:
        engine: The migrated sharedcare database.
        host: Address to bind.
        port: TCP port (0 lets the OS choose; ``on_ready`` receives the real one).
        stop: Set it to stop; ``None`` runs until cancelled.
        on_ready: Called with the port once the listener accepts connections.
        identity: Our MSH-3/MSH-4 for ACKs to messages that name no receiver.
    """
    stop = stop or asyncio.Event()
    in_memory = engine.url.get_backend_name() == "sqlite" and engine.url.database in (
        None,
        "",
        ":memory:",
    )
    writer: Literal["thread", "process"] = "thread" if in_memory else "process"
    async with DatabaseSink(engine, writer=writer) as sink:
        server = MllpServer(sink, identity=identity)
        await server.start(host, port)
        logger.info("MLLP listener on %s:%d", host, server.port)
        if on_ready is not None:
            on_ready(server.port)
        try:
            await stop.wait()
        finally:
            await server.close()


_GC_THRESHOLDS = (50_000, 20, 100)


def tune_collector() -> None:
    """Tune the garbage collector of a process that runs the MLLP listener.

    The listener allocates a few thousand short-lived objects per message: young
    collections run less often, and what start-up built is left out of the older
    generations' scans (``gc.freeze``), as in the writer process (decision 0014). Called by
    ``sharedcare mllp`` and by ``serve`` when it runs the listener (:class:`MllpThread`).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*_GC_THRESHOLDS)


def run_mllp(
    engine: Engine,
    host: str,
    port: int,
    *,
    on_ready: Callable[[int], None] | None = None,
) -> None:
    """Run :func:`serve_mllp` in a new event loop until SIGINT or SIGTERM."""
    tune_collector()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await serve_mllp(engine, host, port, stop=stop, on_ready=on_ready)

    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(main())


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when it is installed (it comes with ``uvicorn[standard]``, whose
    server picks it the same way), else asyncio's own. The listener's loop wakes several
    times per message (the socket, the stream reader, the group commit's future, the
    ACK's write); uvloop runs that machinery in C (decision 0029)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - installed with uvicorn[standard]
        return None
    return uvloop.new_event_loop


class MllpThread:
    """The MLLP listener in a background thread with its own event loop.

    Args:
        engine: The migrated database (the thread uses it; the caller disposes of it).
        host: Address to bind.
        port: TCP port (0 lets the OS choose; see :attr:`port` after :meth:`start`).
    """

    def __init__(self, engine: Engine, host: str, port: int) -> None:
        self.engine = engine
        self.host = host
        self.port = port
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self, timeout: float = 60.0) -> int:
        """Start listening; return the bound port once connections are accepted.

        Raises:
            OSError: If the port cannot be bound.
            TimeoutError: If the listener did not start within ``timeout`` seconds.
        """
        tune_collector()  # the same collector settings as ``sharedcare mllp``
        self._thread = threading.Thread(target=self._run, name="mllp-listener", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("the MLLP listener did not start in time")
        if self._error is not None:
            raise self._error
        return self.port

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()

            def ready(bound: int) -> None:
                self.port = bound
                self._ready.set()

            await serve_mllp(self.engine, self.host, self.port, stop=self._stop, on_ready=ready)

        try:
            asyncio.run(main())
        except BaseException as error:  # reported to start(), or logged after it returned
            self._error = error
            if self._ready.is_set():
                logger.error("the MLLP listener stopped: %s", type(error).__name__)
        finally:
            self._ready.set()

    def stop(self, timeout: float = 120.0) -> None:
        """Refuse new connections, finish messages in flight, then end the thread."""
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout)
