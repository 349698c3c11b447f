"""Crash test: a real listener process is killed with SIGKILL mid-stream and restarted;
python-hl7's MLLP client resends whatever was not acknowledged. Every message must end up
stored exactly once and written to the record.

The message count is a parameter (``SHAREDCARE_CRASH_MESSAGES``, default 2,000); the
benchmark runs the same scenario with 10,000 (``python -m benchmarks ingest``).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine

from tests.support.hl7_traffic import Listener, exactly_once_problems, send_all, wait_until_written

MESSAGES = int(os.environ.get("SHAREDCARE_CRASH_MESSAGES", "2000"))


@pytest.mark.parametrize("database", ["postgresql", "sqlite"], indirect=True)
def test_every_message_is_stored_exactly_once_across_a_sigkill(
    engine: Engine, database: str, tmp_path: Path
) -> None:
    listener = Listener(database, log=tmp_path / "listener.log")
    listener.start()
    kill_now = threading.Event()
    killed: list[int] = []

    def killer() -> None:
        if kill_now.wait(timeout=300):
            listener.kill()
            killed.append(listener.process.returncode if listener.process else 0)
            listener.start()

    thread = threading.Thread(target=killer)
    thread.start()
    try:
        traffic = send_all(
            listener.port,
            MESSAGES,
            connections=6,
            resend_every=25,
            on_ack=kill_now,
            kill_after=MESSAGES // 3,
            deadline=300,
        )
        thread.join()
        wait_until_written(engine, MESSAGES, timeout=120)
    finally:
        kill_now.set()
        thread.join()
        listener.stop()
    assert killed == [-9], "the listener was not killed mid-stream"
    assert traffic.acked == set(range(MESSAGES))
    assert traffic.deliberate_resends > 0
    assert traffic.resends_after_failure > 0, "the kill interrupted no message in flight"
    assert traffic.non_aa == []
    assert exactly_once_problems(engine, MESSAGES) == []


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_the_writer_process_stops_when_its_listener_is_killed(
    engine: Engine, database: str, tmp_path: Path
) -> None:
    """No orphan keeps writing after a SIGKILL: the restarted listener's writer takes over."""
    listener = Listener(database, log=tmp_path / "listener.log")
    listener.start()
    assert listener.process is not None
    children = _children(listener.process.pid)
    assert children, "the listener started no writer process"
    listener.kill()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(_alive(pid) for pid in children):
        time.sleep(0.2)
    assert [pid for pid in children if _alive(pid)] == []


def _children(pid: int) -> list[int]:
    found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in found]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"
