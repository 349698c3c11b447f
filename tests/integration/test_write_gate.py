"""SQLite writers queue on the write gate: threads on a lock, processes on a file lock.

The gate (``sharedcare.db.engine.WriteGate``) only orders writers; SQLite's own lock still
guards the data. These check that writers of one process never overlap in the gate, that
a writer in another process holds the side file's ``flock`` while it writes, that the gate
is re-entrant in one thread, and that concurrent writers all commit.
"""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import threading
from pathlib import Path

import pytest
from sqlalchemy import text

from sharedcare.db.engine import WriteGate, create_engine, write_connection


def _lock_is_free(path: Path) -> bool:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    finally:
        os.close(fd)


def test_threads_take_turns_and_every_write_commits(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'gate.db'}")
    with write_connection(engine) as connection:
        connection.execute(text("CREATE TABLE counter (n INTEGER)"))
        connection.execute(text("INSERT INTO counter VALUES (0)"))
    inside = 0
    most = 0
    guard = threading.Lock()
    errors: list[BaseException] = []

    def writer() -> None:
        nonlocal inside, most
        try:
            for _ in range(25):
                with write_connection(engine) as connection:
                    with guard:
                        inside += 1
                        most = max(most, inside)
                    value = connection.execute(text("SELECT n FROM counter")).scalar_one()
                    connection.execute(text("UPDATE counter SET n = :n"), {"n": value + 1})
                    with guard:
                        inside -= 1
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=writer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert most == 1
    with engine.connect() as connection:
        assert connection.execute(text("SELECT n FROM counter")).scalar_one() == 200
    engine.dispose()


def test_the_gate_is_reentrant_and_releases_the_file_lock(tmp_path: Path) -> None:
    side = tmp_path / "x.db-wlock"
    gate = WriteGate(str(side))
    with gate.held():
        assert not _lock_is_free(side)
        with gate.held():
            assert not _lock_is_free(side)
        assert not _lock_is_free(side)  # still held by the outer block
    assert _lock_is_free(side)


def test_a_gate_without_a_file_still_orders_threads() -> None:
    gate = WriteGate(None)
    order: list[str] = []
    entered = threading.Event()
    release = threading.Event()

    def first() -> None:
        with gate.held():
            entered.set()
            release.wait(10)
            order.append("first")

    def second() -> None:
        with gate.held():
            order.append("second")

    one = threading.Thread(target=first)
    one.start()
    assert entered.wait(10)
    two = threading.Thread(target=second)
    two.start()
    release.set()
    one.join()
    two.join()
    assert order == ["first", "second"]


def _hold_write(url: str, ready: str, release: str) -> None:
    """In another process: hold a write transaction until ``release`` exists."""
    engine = create_engine(url)
    with write_connection(engine) as connection:
        connection.execute(text("INSERT INTO marks VALUES ('child')"))
        Path(ready).touch()
        for _ in range(200):
            if Path(release).exists():
                break
            threading.Event().wait(0.05)
    engine.dispose()


def test_another_process_writing_holds_the_side_file_lock(tmp_path: Path) -> None:
    database = tmp_path / "shared.db"
    url = f"sqlite:///{database}"
    engine = create_engine(url)
    with write_connection(engine) as connection:
        connection.execute(text("CREATE TABLE marks (who TEXT)"))
    side = Path(f"{database.resolve()}-wlock")
    ready, release = tmp_path / "ready", tmp_path / "release"
    child = multiprocessing.get_context("spawn").Process(
        target=_hold_write, args=(url, str(ready), str(release))
    )
    child.start()
    try:
        for _ in range(600):
            if ready.exists() or not child.is_alive():
                break
            threading.Event().wait(0.05)
        assert ready.exists(), "the child process never began its write"
        assert not _lock_is_free(side)
        release.touch()
        child.join(30)
        assert child.exitcode == 0
        assert _lock_is_free(side)
        with write_connection(engine) as connection:
            connection.execute(text("INSERT INTO marks VALUES ('parent')"))
        with engine.connect() as connection:
            who = connection.execute(text("SELECT who FROM marks ORDER BY rowid")).scalars()
            assert list(who) == ["child", "parent"]
    finally:
        release.touch()
        child.join(30)
        engine.dispose()


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_in_memory_databases_need_no_side_file(url: str, tmp_path: Path) -> None:
    engine = create_engine(url)
    with write_connection(engine) as connection:
        assert connection.execute(text("SELECT 1")).scalar_one() == 1
    engine.dispose()
    assert not list(tmp_path.iterdir())
