"""Start ``sharedcare serve`` as a real subprocess for a test, and wait until it is ready."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    """A TCP port nothing listens on at the moment."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving(
    database: str, *, workers: int = 1, timeout: float = 90
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """Run ``sharedcare serve`` on ``database``; yield the process and its base URL once
    ``/readyz`` answers 200. The server is terminated on the way out, and must then exit
    cleanly (code 0) within a minute."""
    port = free_port()
    exe = Path(sys.executable).with_name("sharedcare")
    command = [str(exe), "serve", "--database", database, "--port", str(port)]
    command += ["--workers", str(workers)]
    env = {**os.environ, "SHAREDCARE_LOG_LEVEL": "WARNING"}
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)
        yield server, base
    finally:
        server.terminate()
        try:
            code = server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()  # it did not stop within a minute
            code = server.wait()
    assert code == 0, f"the server did not stop cleanly (exit code {code})"
