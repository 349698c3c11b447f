"""load-synthetic keeps a server's log when it logged errors, so a failed load can be diagnosed."""

from __future__ import annotations

import subprocess
import sys
import tempfile

from sharedcare.cli.load_synthetic import _Server


def _stopped_server(log_text: bytes, port: int) -> _Server:
    server = _Server.__new__(_Server)
    server.http_port = port
    server.process = subprocess.Popen([sys.executable, "-c", "pass"])
    server.process.wait()
    server.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop()
    server.log.write(log_text)
    server.output = b""
    return server


def test_a_log_with_errors_is_kept_and_a_clean_one_is_not() -> None:
    failing = _stopped_server(b"ERROR sharedcare.api.errors: unhandled IntegrityError\n", 1)
    kept = failing.stop()
    assert kept is not None
    assert b"IntegrityError" in kept.read_bytes()
    kept.unlink()

    clean = _stopped_server(b"INFO started\n", 2)
    assert clean.stop() is None
