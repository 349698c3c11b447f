"""The listener's group commit (``store_messages``): what it stores, and on PostgreSQL the
connections it runs on (decision 0029, addendum 2026-11-22).

On PostgreSQL a group commit of new messages is one statement run outside any transaction
on a pool of its own (autocommit, generic plans), with the columns sent as binary arrays.
These tests read back every column it writes, and check that a connection it loses is not
used again.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import DBAPIError

from sharedcare.db.engine import key_reader
from sharedcare.db.tables import Feed
from sharedcare.ingest.stages import Stage
from sharedcare.ingest.store import FeedRegistry, Incoming, store_messages
from tests.support.message_rows import message_rows


def _rows(engine: Engine) -> list[Any]:
    with engine.connect() as connection:
        return list(connection.execute(message_rows()).all())


def _feeds(engine: Engine) -> dict[str, tuple[int, int]]:
    with engine.connect() as connection:
        found = connection.execute(select(Feed.__table__)).all()
    return {f.sending_facility: (f.message_count, f.error_count) for f in found}


def _incoming(cid: str, raw: bytes, *, facility: str = "RBD", failed: bool = False) -> Incoming:
    if failed:
        return Incoming(
            "hl7v2", "PAS", facility, cid, "ORU^R01", raw, Stage.FAILED, "mapped", "no PID-3"
        )
    return Incoming("hl7v2", "PAS", facility, cid, "ADT^A01" * 8, raw, Stage.MAPPED)


def test_a_group_commit_stores_every_column_as_given(engine: Engine) -> None:
    """Raw bytes that are not text (NUL, 0xFF, a lone CR), an error reason and its stage,
    NULLs, a message type longer than its column (cut at 40), two feeds in one batch: each
    row reads back exactly, with one time for the batch and one attempt, and each feed
    counts its own messages and failures."""
    registry = FeedRegistry()
    odd = b"MSH|^~\\&|PAS|RBD\r\x00\xff\xfe\x0b\x1c\r" + bytes(range(256))
    batch = [
        _incoming("B1", odd),
        _incoming("B2", b"MSH|x", failed=True),
        _incoming("B3", "MSH|é".encode(), facility="RDZ"),
    ]
    results = store_messages(engine, batch, registry)
    assert [(r.duplicate, r.stage) for r in results] == [
        (False, "mapped"),
        (False, "failed"),
        (False, "mapped"),
    ]
    stored = _rows(engine)
    assert [r.id for r in stored] == [r.message_id for r in results]
    assert [bytes(r.raw) for r in stored] == [odd, b"MSH|x", "MSH|é".encode()]
    assert [(r.control_id, r.stage, r.error_stage, r.error) for r in stored] == [
        ("B1", "mapped", None, None),
        ("B2", "failed", "mapped", "no PID-3"),
        ("B3", "mapped", None, None),
    ]
    assert [r.message_type for r in stored] == [
        ("ADT^A01" * 8)[:40],
        "ORU^R01",
        ("ADT^A01" * 8)[:40],
    ]
    assert [r.sender_key for r in stored] == ["hl7v2:PAS|RBD", "hl7v2:PAS|RBD", "hl7v2:PAS|RDZ"]
    assert {r.attempts for r in stored} == {1}
    assert len({(r.received_at, r.updated_at) for r in stored}) == 1
    assert stored[0].received_at == stored[0].updated_at
    assert [r.feed_id for r in stored] == [
        results[0].feed.id,
        results[0].feed.id,
        results[2].feed.id,
    ]
    assert _feeds(engine) == {"RBD": (2, 1), "RDZ": (1, 0)}
    # The same batch again: the stored messages are resends, stored and counted once; the
    # failed one is tried again in its place (a second attempt, counted again).
    again = store_messages(engine, batch, registry)
    assert [(r.message_id, r.duplicate) for r in again] == [
        (results[0].message_id, True),
        (results[1].message_id, False),
        (results[2].message_id, True),
    ]
    assert [r.attempts for r in _rows(engine)] == [1, 2, 1]
    assert _feeds(engine) == {"RBD": (3, 2), "RDZ": (1, 0)}


def test_the_group_commit_runs_alone_on_generic_plans(pg_engine: Engine) -> None:
    """The insert commits by itself (autocommit) on connections that plan it once; the main
    pool keeps planning every statement with its values (searches need it)."""
    store_messages(pg_engine, [_incoming("G1", b"MSH|1")], FeedRegistry())
    with key_reader(pg_engine) as raw:
        assert raw.execute("SHOW plan_cache_mode").fetchone()[0] == "force_generic_plan"
        assert raw.autocommit is True
    with pg_engine.connect() as connection:
        assert connection.exec_driver_sql("SHOW plan_cache_mode").scalar() == "force_custom_plan"


def test_a_lost_group_commit_connection_fails_one_batch_then_is_replaced(
    pg_engine: Engine,
) -> None:
    """If PostgreSQL drops the group commit's connection, that batch fails (the listener
    answers AR and the sender resends) and the connection is discarded: the next batch is
    stored on a new one, and the resend stores the failed batch's message once."""
    registry = FeedRegistry()
    store_messages(pg_engine, [_incoming("L1", b"MSH|1")], registry)
    with key_reader(pg_engine) as raw:  # the connection the first batch left idle
        pid = raw.execute("SELECT pg_backend_pid()").fetchone()[0]
    with pg_engine.connect() as connection:
        assert connection.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
    with pytest.raises(DBAPIError):
        store_messages(pg_engine, [_incoming("L2", b"MSH|2")], registry)
    [stored] = store_messages(pg_engine, [_incoming("L2", b"MSH|2")], registry)
    assert not stored.duplicate
    assert [r.control_id for r in _rows(pg_engine)] == ["L1", "L2"]
    assert _feeds(pg_engine) == {"RBD": (2, 0)}
