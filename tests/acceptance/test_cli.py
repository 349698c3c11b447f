"""The sharedcare command line, as a user runs it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from typer.testing import CliRunner

from sharedcare import __version__
from sharedcare.cli.main import app

runner = CliRunner()


def test_version() -> None:
    result = runner.invoke(app, ["version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == __version__


def test_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("serve", "db", "version"):
        assert command in result.stdout


def test_db_upgrade_creates_then_reports_up_to_date(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/cli.db"
    first = runner.invoke(app, ["db", "upgrade", "--database", url])
    assert first.exit_code == 0, first.output
    assert "upgraded from empty" in first.output
    second = runner.invoke(app, ["db", "upgrade", "--database", url])
    assert second.exit_code == 0
    assert "already at the latest schema" in second.output


def test_db_upgrade_on_postgres(postgres_url: str) -> None:
    result = runner.invoke(app, ["db", "upgrade", "--database", postgres_url])
    assert result.exit_code == 0, result.output


def test_bad_database_url_is_one_line_not_a_traceback() -> None:
    result = runner.invoke(app, ["db", "upgrade", "--database", "mysql://x@y/z"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert result.output.strip().startswith("error:")
    assert len(result.output.strip().splitlines()) == 1


def test_unreachable_database_is_one_line() -> None:
    result = runner.invoke(app, ["db", "upgrade", "--database", "postgresql://x@127.0.0.1:1/z"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert "check the URL" in result.output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_runs_the_app(tmp_path: Path) -> None:
    port = _free_port()
    exe = Path(sys.executable).with_name("sharedcare")
    process = subprocess.Popen(
        [str(exe), "serve", "--database", f"sqlite:///{tmp_path}/s.db", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "SHAREDCARE_LOG_LEVEL": "WARNING"},
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.2)
        assert response.status_code == 200
        assert "Platform status" in httpx.get(f"http://127.0.0.1:{port}/").text
    finally:
        process.terminate()
        output = process.communicate(timeout=20)[0].decode()
    assert f"http://127.0.0.1:{port}/" in output
