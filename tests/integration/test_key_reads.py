"""Reads by id on their own connections (``SqlStore.read_current``; on PostgreSQL the
``key_reader`` pool of ``sharedcare.db.engine``): the same answers as a read in a
transaction, generic plans there and custom plans still on the main pool, broken
connections discarded, and the pool closed with its engine."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from sharedcare.db.engine import create_engine, key_reader
from sharedcare.record.context import RequestContext
from sharedcare.record.errors import Gone, NotFound
from sharedcare.record.repository import Repository
from sharedcare.record.sqlstore import SqlStore

PATIENT: dict[str, Any] = {"resourceType": "Patient", "gender": "female"}


def _postgres(database: str) -> None:
    if not database.startswith("postgresql"):
        pytest.skip("the key readers' pool is PostgreSQL's")


def test_read_current_answers_as_a_read_in_a_transaction(engine: Engine) -> None:
    store = SqlStore(engine)
    repo = Repository(store, RequestContext.system())
    kept = repo.create(dict(PATIENT)).stored.id
    gone = repo.create(dict(PATIENT)).stored.id
    repo.update("Patient", kept, {**PATIENT, "id": kept, "gender": "male"})
    repo.delete("Patient", gone)
    for rid in (kept, gone, "never"):
        with engine.begin() as connection:
            expected = store.read(connection, "Patient", rid)
        assert store.read_current("Patient", rid) == expected
    assert repo.read("Patient", kept).version_id == 2
    with pytest.raises(Gone):
        repo.read("Patient", gone)
    with pytest.raises(NotFound):
        repo.read("Patient", "never")


def test_key_readers_use_generic_plans_and_leave_the_main_pool_custom(database: str) -> None:
    _postgres(database)
    engine = create_engine(database, pool_size=1)
    try:
        SqlStore(engine).read_current("Patient", "x")
        with key_reader(engine) as raw:
            assert raw.autocommit
            mode = raw.execute("SHOW plan_cache_mode").fetchone()[0]
        assert mode == "force_generic_plan"
        with engine.connect() as connection:
            main = connection.execute(text("SHOW plan_cache_mode")).scalar()
        assert main == "force_custom_plan"  # searches' plans depend on their values
    finally:
        engine.dispose()


def _alive(admin: Engine, pid: int, *, wait_for_exit: bool = False) -> bool:
    """Whether backend ``pid`` is running (with ``wait_for_exit``, after giving a closed
    connection's backend up to 5 s to go: it exits just after its client closes)."""
    sql = "SELECT count(*) FROM pg_stat_activity WHERE pid = :p"
    for _ in range(50 if wait_for_exit else 1):
        with admin.connect() as connection:
            if not connection.execute(text(sql), {"p": pid}).scalar_one():
                return False
        if wait_for_exit:
            time.sleep(0.1)
    return True


def test_a_broken_key_reader_is_discarded_and_the_pool_closes_with_its_engine(
    database: str,
) -> None:
    _postgres(database)
    engine = create_engine(database, pool_size=1)
    admin = create_engine(database, pool_size=1)
    try:
        store = SqlStore(engine)
        assert store.read_current("Patient", "x") is None
        with key_reader(engine) as raw:
            pid = raw.info.backend_pid
        with admin.connect() as connection:
            connection.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        with pytest.raises(OperationalError):  # the one read that finds it dead
            store.read_current("Patient", "x")
        assert store.read_current("Patient", "x") is None  # on a new connection
        with key_reader(engine) as raw:
            again = raw.info.backend_pid
        assert again != pid and _alive(admin, again)
        engine.dispose()
        # The key readers' pool went with its engine.
        assert not _alive(admin, again, wait_for_exit=True)
    finally:
        engine.dispose()
        admin.dispose()
