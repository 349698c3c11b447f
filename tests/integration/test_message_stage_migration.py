"""Integration: migration 0011 moves each message's stage into ``message_stage`` and back.

Messages are written in the 0010 layout (stage columns in the ``message`` row): one
written, one failed, one waiting. After the upgrade every message has its stage row with
the same values, the error queue, the stage counts and restart recovery read them there,
and a resend of the failed message takes its place; the downgrade puts every value back in
``message``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Engine, inspect, text

from sharedcare.db.engine import create_engine, write_connection
from sharedcare.db.migrate import alembic_config, current_revision, head_revision, upgrade
from sharedcare.ingest import pipeline
from sharedcare.ingest.health import error_queue, stage_counts
from sharedcare.ingest.stages import Stage
from sharedcare.ingest.store import FeedRegistry, Incoming, store_messages
from tests.support.hl7_traffic import message

MOVED = ("updated_at", "written_at", "stage", "error_stage", "error", "resource_count", "attempts")
KEPT = {"id", "feed_id", "sender_key", "control_id", "message_type", "received_at", "raw"}
# id: (control id, stage, error stage, error, written at, resource count, attempts)
ROWS = {
    1: ("C1", "written", None, None, 1_700_000_000_000_100, 3, 1),
    2: ("C2", "failed", "mapped", "PID-7: not a date", None, 0, 2),
    3: ("C3", "mapped", None, None, None, 0, 1),
}


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine on a database with no tables yet."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'stage.db'}"
    else:
        cluster = request.getfixturevalue("postgres_cluster")
        admin = create_engine(cluster.url)
        name = f"stage_{tmp_path.name[-20:].replace('-', '_').lower()}"
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        url = str(cluster.url_for(name))
    engine = create_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


def _raw(n: int) -> bytes:
    """A real ADT^A01 whose MSH-10 is replaced by ``C<n>``."""
    segments = message(n).split("\r")
    fields = segments[0].split("|")
    fields[9] = f"C{n}"
    return "\r".join(["|".join(fields), *segments[1:]]).encode()


def _write_0010_rows(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO feed (id, name, protocol, sending_application, sending_facility, "
                "created_at, message_count, error_count) VALUES (1, 'PAS@RBD', 'hl7v2', 'PAS', "
                "'RBD', CURRENT_TIMESTAMP, 3, 1)"
            )
        )
        for id_, (control, stage, error_stage, error, written, count, attempts) in ROWS.items():
            connection.execute(
                text(
                    "INSERT INTO message (id, feed_id, sender_key, control_id, message_type, "
                    "received_at, updated_at, written_at, raw, stage, error_stage, error, "
                    "resource_count, attempts) VALUES (:id, 1, 'hl7v2:PAS|RBD', :control, "
                    "'ADT^A01', :received, :updated, :written, :raw, :stage, :error_stage, "
                    ":error, :count, :attempts)"
                ),
                {
                    "id": id_,
                    "control": control,
                    "received": 1_700_000_000_000_000 + id_,
                    "updated": 1_700_000_000_000_050 + id_,
                    "written": written,
                    "raw": _raw(id_),
                    "stage": stage,
                    "error_stage": error_stage,
                    "error": error,
                    "count": count,
                    "attempts": attempts,
                },
            )


def _values(engine: Engine, table: str) -> dict[int, tuple[Any, ...]]:
    columns = ", ".join(MOVED)
    with engine.connect() as connection:
        rows = connection.execute(text(f"SELECT id, {columns} FROM {table} ORDER BY id"))
        return {row[0]: tuple(row[1:]) for row in rows}


def _downgrade(engine: Engine, revision: str) -> None:
    config = alembic_config()
    with write_connection(engine) as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def _indexes(engine: Engine, table: str) -> set[str]:
    return {str(index["name"]) for index in inspect(engine).get_indexes(table)}


def test_0011_moves_every_stage_and_the_downgrade_puts_it_back(engine: Engine) -> None:
    upgrade(engine, "0010")
    _write_0010_rows(engine)
    before = _values(engine, "message")

    upgrade(engine, "0011")
    assert _values(engine, "message_stage") == before
    assert {c["name"] for c in inspect(engine).get_columns("message")} == KEPT
    assert "ix_message_stage_id" not in _indexes(engine, "message")
    assert "ix_message_stage_stage_id" in _indexes(engine, "message_stage")

    with engine.connect() as connection:
        assert stage_counts(connection) == {"written": 1, "failed": 1, "mapped": 1}
        assert stage_counts(connection, feed_id=1) == {"written": 1, "failed": 1, "mapped": 1}
        [queued] = error_queue(connection)
    assert (queued.id, queued.control_id, queued.error_stage, queued.attempts) == (
        2, "C2", "mapped", 2
    )  # fmt: skip

    upgrade(engine)  # restart recovery and a resend on the migrated rows, at head
    report = pipeline.recover(engine)
    assert (report.tried, dict(report.stages)) == (1, {Stage.WRITTEN.value: 1})
    [resent] = store_messages(
        engine,
        [Incoming("hl7v2", "PAS", "RBD", "C2", "ADT^A01", _raw(2), Stage.MAPPED)],
        FeedRegistry(),
    )
    assert (resent.message_id, resent.duplicate) == (2, False)
    after = _values(engine, "message_stage")
    assert after[1] == before[1]
    assert after[2][2:] == ("mapped", None, None, 0, 3)  # the resend's attempt, no error
    assert after[3][2] == "written" and after[3][5] > 0

    _downgrade(engine, "0010")
    assert current_revision(engine) == "0010"
    assert "message_stage" not in inspect(engine).get_table_names()
    assert "ix_message_stage_id" in _indexes(engine, "message")
    assert _values(engine, "message") == after
    nullable = {c["name"]: c["nullable"] for c in inspect(engine).get_columns("message")}
    assert (nullable["stage"], nullable["updated_at"], nullable["attempts"]) == (False,) * 3

    upgrade(engine)
    assert current_revision(engine) == head_revision()
    assert _values(engine, "message_stage") == after
