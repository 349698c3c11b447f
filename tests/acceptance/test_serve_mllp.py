"""``sharedcare serve`` with ``SHAREDCARE_MLLP_PORT``: the web server and one MLLP listener,
also with several web workers (only the ``serve`` process binds the MLLP port)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from hl7.client import MLLPClient
from sqlalchemy import text

from sharedcare.db.engine import create_engine
from tests.support.hl7_traffic import free_port

CLI = [sys.executable, "-c", "from sharedcare.cli.main import app; app()"]
ADT = (
    "MSH|^~\\&|PAS|RBD|SC|ICS|20240315101500||ADT^A01|SERVE1|P|2.4\r"
    "EVN|A01|20240315101500\r"
    "PID|1||H1^^^RBD^MR||TESTER^ALEX||19650412|F\r"
    "PV1|1|I|W12^B^3^RBD||||||||||||||||V-SERVE1^^^RBD^VN"
)


def _wait_ready(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert process.poll() is None, "serve exited"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("serve did not become ready")


def _written(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            found = connection.execute(
                text("SELECT count(*) FROM message_stage WHERE stage = 'written'")
            ).scalar()
    finally:
        engine.dispose()
    return int(found or 0)


def _postgres_database(request: pytest.FixtureRequest, name: str) -> str:
    """A fresh migrated PostgreSQL database copied from the session's template."""
    cluster = request.getfixturevalue("postgres_cluster")
    template = request.getfixturevalue("postgres_template")
    database = f"{name}_{os.getpid()}_{time.monotonic_ns()}"
    admin = create_engine(cluster.url)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text(f'CREATE DATABASE "{database}" TEMPLATE "{template}"'))
    admin.dispose()
    return str(cluster.url_for(database))


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_serve_runs_one_mllp_listener(
    workers: int, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'serve.db'}"
        if workers == 1
        else _postgres_database(request, "serve_mllp")
    )
    http_port, mllp_port = free_port(), free_port()
    env = {**os.environ, "SHAREDCARE_MLLP_PORT": str(mllp_port), "SHAREDCARE_LOG_LEVEL": "WARNING"}
    command = [*CLI, "serve", "--database", url, "--port", str(http_port)]
    if workers > 1:
        command += ["--workers", str(workers)]
    log = tmp_path / "serve.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            _wait_ready(http_port, process)
            with MLLPClient("127.0.0.1", mllp_port) as client:
                ack = client.send_message(ADT)
            assert "MSA|AA|SERVE1" in ack.decode()
            deadline = time.monotonic() + 30
            while _written(url) < 1 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert _written(url) == 1
        finally:
            process.terminate()
            process.wait(timeout=60)
    output = log.read_text(encoding="utf-8", errors="replace")
    assert "MLLP" in output or "serving" in output
    assert "Address already in use" not in output and "Traceback" not in output
