"""``sharedcare serve --workers N``: worker processes, each with its own listening socket.

uvicorn's own multi-process mode hands every worker one shared listening socket. When
clients open their keep-alive connections together (a load balancer's pool, a benchmark's
clients), the first worker to wake accepts every connection that is waiting, and the others
serve none: measured with 8 clients and 2 workers, one worker used 4.94 s of CPU and the
other 0.02 s. Here each worker listens on a socket of its own bound to the same address
with ``SO_REUSEPORT``, and the kernel spreads new connections across them.

The parent binds the sockets (so a port in use fails at once, with a one-line message),
starts the workers, restarts one that dies, and stops them all on SIGINT or SIGTERM.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import signal
import socket
import threading
import time
from multiprocessing.context import SpawnProcess
from typing import Any

log = logging.getLogger(__name__)

_EARLY_EXIT = 10.0  # seconds: a worker that dies this soon after starting is not restarted


class WorkerFailed(RuntimeError):
    """A worker exited during its start-up: restarting it would fail the same way."""


# Sockets travel to spawned workers (multiprocessing duplicates the descriptor).
multiprocessing.allow_connection_pickling()
_spawn = multiprocessing.get_context("spawn")


def bind_reuseport(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A listening TCP socket on ``host:port`` that other sockets may share (``SO_REUSEPORT``).

    Raises:
        OSError: The address cannot be bound (in use without ``SO_REUSEPORT``, or not local).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _worker(config_kwargs: dict[str, Any], sock: socket.socket) -> None:
    """Run one uvicorn server on ``sock`` (in the worker process)."""
    import uvicorn

    config = uvicorn.Config(**config_kwargs)
    server = uvicorn.Server(config)
    with contextlib.suppress(KeyboardInterrupt):  # the parent is stopping us too
        server.run(sockets=[sock])


def run_workers(config_kwargs: dict[str, Any], workers: int, host: str, port: int) -> None:
    """Serve with ``workers`` processes until SIGINT or SIGTERM.

    Args:
        config_kwargs: Keyword arguments for ``uvicorn.Config`` (an import string for the app,
            so that each worker builds its own).
        workers: How many worker processes.
        host: Address to bind.
        port: Port to bind.

    Raises:
        OSError: The address cannot be bound.
        WorkerFailed: A worker exited while starting (every worker is stopped).
    """
    sockets = [bind_reuseport(host, port) for _ in range(workers)]
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }

    started: list[float] = [0.0] * workers

    def start(index: int) -> SpawnProcess:
        process = _spawn.Process(
            target=_worker, args=(config_kwargs, sockets[index]), name=f"sharedcare-worker-{index}"
        )
        process.start()
        started[index] = time.monotonic()
        return process

    processes = [start(i) for i in range(workers)]
    try:
        while not stop.wait(0.5):
            for index, process in enumerate(processes):
                if process.is_alive() or stop.is_set():
                    continue
                if time.monotonic() - started[index] < _EARLY_EXIT:
                    raise WorkerFailed(f"a worker exited while starting (code {process.exitcode})")
                log.warning("worker %d exited (code %s); restarting it", index, process.exitcode)
                processes[index] = start(index)
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
                process.join()
        for sock in sockets:
            sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
