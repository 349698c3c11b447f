"""The key readers' own pool (``sharedcare.db.engine._KeyReaders``, behind ``key_reader``)
on a real PostgreSQL: connections reused, at most twice the main pool's size open (a reader
beyond that waits for one to come back), and a connection closed rather than reused when it
is left in a transaction, too old, or from before its engine was disposed."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text

from sharedcare.db import engine as engine_module
from sharedcare.db.engine import create_engine, key_reader


@pytest.fixture
def pg(postgres_url: str) -> Iterator[tuple[Engine, Engine]]:
    """An engine with a main pool of one (so two key readers at most), and an admin one."""
    engine = create_engine(postgres_url, pool_size=1)
    admin = create_engine(postgres_url, pool_size=1)
    try:
        yield engine, admin
    finally:
        engine.dispose()
        admin.dispose()


def _pid(engine: Engine) -> int:
    with key_reader(engine) as raw:
        return int(raw.info.backend_pid)


def _backends(admin: Engine, pids: set[int]) -> set[int]:
    sql = "SELECT pid FROM pg_stat_activity WHERE pid = ANY(:p)"
    with admin.connect() as connection:
        return {row[0] for row in connection.execute(text(sql), {"p": list(pids)})}


def test_a_connection_is_used_again(pg: tuple[Engine, Engine]) -> None:
    engine, _ = pg
    first = _pid(engine)
    assert _pid(engine) == first
    with key_reader(engine) as raw:
        assert raw.autocommit
        assert raw.execute("SHOW plan_cache_mode").fetchone()[0] == "force_generic_plan"


def test_a_reader_beyond_the_limit_waits_for_a_connection(pg: tuple[Engine, Engine]) -> None:
    engine, _ = pg
    got: list[int] = []
    with key_reader(engine) as one, key_reader(engine) as two:  # the limit: 2 × pool of 1
        assert one.info.backend_pid != two.info.backend_pid
        third = threading.Thread(target=lambda: got.append(_pid(engine)))
        third.start()
        third.join(0.5)
        assert third.is_alive() and not got  # waiting: both connections are in use
        held = int(two.info.backend_pid)
    third.join(30)
    assert got and got[0] in (held, one.info.backend_pid)


def test_a_connection_left_in_a_transaction_is_closed_not_reused(
    pg: tuple[Engine, Engine],
) -> None:
    engine, _ = pg
    with key_reader(engine) as raw:
        raw.autocommit = False
        raw.execute("SELECT 1")  # a transaction left open
        left = int(raw.info.backend_pid)
    assert _pid(engine) != left


def test_old_connections_are_recycled_and_disposal_closes_them(
    pg: tuple[Engine, Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, admin = pg
    first = _pid(engine)
    monkeypatch.setattr(engine_module, "_KEY_READER_RECYCLE", 0.0)
    second = _pid(engine)  # the first was too old: closed, a new one made
    assert second != first
    monkeypatch.undo()
    assert _pid(engine) == second
    with key_reader(engine) as raw:  # in use while its engine is disposed
        engine.dispose()
        in_use = int(raw.info.backend_pid)
    assert _pid(engine) != in_use  # closed when it came back, not reused
    engine.dispose()
    for _ in range(50):
        if not _backends(admin, {first, second, in_use}):
            break
        threading.Event().wait(0.1)
    assert not _backends(admin, {first, second, in_use})
