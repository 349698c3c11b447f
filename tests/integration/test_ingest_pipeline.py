"""The database-backed ingest pipeline, on SQLite and PostgreSQL: store then ACK, resends,
AE with the error queue, replay after a fix, recovery, A40 merges and feed health."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import hl7
import hl7.mllp
import orjson
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, text

from sharedcare.api import feeds as feeds_api
from sharedcare.config import Settings
from sharedcare.db import status as db_status
from sharedcare.db.tables import Feed, IdentityAction
from sharedcare.ingest import health, pipeline
from sharedcare.ingest.hl7v2.mapping import map_message
from sharedcare.ingest.hl7v2.mllp import MllpServer
from sharedcare.ingest.sink import DatabaseSink
from sharedcare.ingest.stages import Stage
from sharedcare.ingest.store import FeedRegistry, Incoming, store_messages
from sharedcare.ingest.writer import Outcome, ToWrite, write_messages
from sharedcare.record.sqlstore import SqlStore
from sharedcare.status import PlatformStatus
from tests.support.message_rows import message_rows

TIMEOUT = 30.0


def adt(cid: str, event: str = "A01", patient: str = "H100", extra: tuple[str, ...] = ()) -> str:
    return "\r".join(
        [
            f"MSH|^~\\&|PAS|RBD|SC|ICS|20240315101500||ADT^{event}|{cid}|P|2.4",
            f"EVN|{event}|20240315101500",
            f"PID|1||{patient}^^^RBD^MR||TESTER^ALEX||19650412|F",
            f"PV1|1|I|W12^B^3^RBD||||||||||||||||V-{cid}^^^RBD^VN",
            *extra,
        ]
    )


NO_PID3 = "\r".join(
    [
        "MSH|^~\\&|PAS|RBD|SC|ICS|20240315101500||ADT^A01|BAD1|P|2.4",
        "EVN|A01|20240315101500",
        "PID|1||||TESTER^ALEX||19650412|F",
        "PV1|1|I|W12^B^3^RBD||||||||||||||||VBAD^^^RBD^VN",
    ]
)


def run(
    engine: Engine,
    body: Callable[[MllpServer, DatabaseSink], Awaitable[None]],
    writer: Literal["thread", "process"] = "thread",
) -> None:
    async def main() -> None:
        async with DatabaseSink(engine, writer=writer) as sink:
            server = MllpServer(sink)
            await server.start("127.0.0.1", 0)
            try:
                await asyncio.wait_for(body(server, sink), TIMEOUT)
            finally:
                await server.close()

    asyncio.run(main())


async def send(server: MllpServer, *texts: str) -> list[hl7.Message]:
    reader, writer = await hl7.mllp.open_hl7_connection("127.0.0.1", server.port)
    try:
        replies = []
        for message in texts:
            writer.writemessage(message)
            await writer.drain()
            replies.append(await reader.readmessage())
        return replies
    finally:
        writer.close()
        await writer.wait_closed()


def msa(reply: hl7.Message) -> tuple[str, str, str]:
    segment = reply.segment("MSA")
    return str(segment[1]), str(segment[2]), str(segment[3]) if len(segment) > 3 else ""


def rows(engine: Engine) -> list[Any]:
    with engine.connect() as connection:
        return list(connection.execute(message_rows()).all())


def test_aa_is_sent_only_once_the_raw_message_is_committed(engine: Engine) -> None:
    seen_at_ack: list[Any] = []

    async def body(server: MllpServer, sink: DatabaseSink) -> None:
        [reply] = await send(server, adt("M1"))
        # Read from a separate connection the moment the AA arrives: it must be committed.
        seen_at_ack.extend(await asyncio.to_thread(rows, engine))
        assert msa(reply)[:2] == ("AA", "M1")
        await sink.drain()

    run(engine, body)
    [row] = seen_at_ack
    assert row.raw == adt("M1").encode()
    assert row.control_id == "M1"
    assert row.sender_key == "hl7v2:PAS|RBD"
    assert row.stage in (Stage.MAPPED.value, Stage.WRITTEN.value)
    [done] = rows(engine)
    assert done.stage == Stage.WRITTEN.value
    assert done.resource_count == 3  # Patient, Location, Encounter
    assert done.written_at is not None and done.written_at >= done.received_at
    with engine.connect() as connection:
        types: dict[str, int] = dict(
            connection.execute(
                text("SELECT resource_type, count(*) FROM resource GROUP BY resource_type")
            ).all()
        )
    # The source Patient, and the golden Patient the identity stage made for it.
    assert types == {"Patient": 2, "Location": 1, "Encounter": 1}


def test_a_store_failure_is_answered_ar_never_aa(engine: Engine) -> None:
    async def body(server: MllpServer, sink: DatabaseSink) -> None:
        with engine.begin() as connection:
            connection.execute(text("DROP TABLE identity_action"))
            connection.execute(text("DROP TABLE message_stage"))
            connection.execute(text("DROP TABLE message"))
        [reply] = await send(server, adt("M1"))
        code, control, reason = msa(reply)
        assert (code, control) == ("AR", "M1")
        assert "internal error" in reason

    run(engine, body)


def test_a_resend_is_acknowledged_but_stored_once(engine: Engine) -> None:
    async def body(server: MllpServer, sink: DatabaseSink) -> None:
        first, again = await send(server, adt("M1"), adt("M1"))
        [other] = await send(server, adt("M1"))  # on another connection too
        assert [msa(r)[:2] for r in (first, again, other)] == [("AA", "M1")] * 3
        await sink.drain()
        assert sink.counters.duplicates == 2

    run(engine, body)
    assert len(rows(engine)) == 1
    with engine.connect() as connection:
        feed = connection.execute(select(Feed.__table__)).one()
        versions = connection.scalar(text("SELECT max(version_id) FROM resource"))
    assert (feed.name, feed.message_count, feed.error_count) == ("PAS@RBD", 1, 0)
    assert feed.organisation_ods_code == "RBD"
    assert versions == 1


def test_an_unmappable_message_gets_ae_with_its_reason_and_waits_in_the_queue(
    engine: Engine,
) -> None:
    async def body(server: MllpServer, sink: DatabaseSink) -> None:
        [reply] = await send(server, NO_PID3)
        code, control, reason = msa(reply)
        assert (code, control) == ("AE", "BAD1")
        assert "PID-3" in reason
        await sink.drain()

    run(engine, body)
    with engine.connect() as connection:
        [queued] = health.error_queue(connection)
        feed = connection.execute(select(Feed.__table__)).one()
    assert queued.control_id == "BAD1"
    assert queued.error_stage == Stage.MAPPED.value
    assert queued.error is not None and "PID-3" in queued.error
    assert "TESTER" not in queued.error  # reasons never carry patient data
    assert feed.error_count == 1
    [row] = rows(engine)
    assert row.raw == NO_PID3.encode()  # kept, to be replayed


def test_replay_after_a_mapping_fix_writes_the_message(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def body(server: MllpServer, sink: DatabaseSink) -> None:
        await send(server, NO_PID3, adt("M2"))
        await sink.drain()

    run(engine, body)
    assert [r.stage for r in rows(engine)] == [Stage.FAILED.value, Stage.WRITTEN.value]

    # Nothing changed yet: a replay fails again, keeps the message and counts the attempt.
    report = pipeline.replay(engine)
    assert (report.tried, report.failed) == (1, 1)
    assert rows(engine)[0].attempts == 2

    # A mapping change: this site's PID-3 is taken from PID-2 when empty.
    def fixed_mapping(raw: bytes) -> Any:
        return map_message(raw.replace(b"PID|1||||", b"PID|1||FIX1^^^RBD^MR||"))

    monkeypatch.setattr(pipeline, "map_message", fixed_mapping)
    report = pipeline.replay(engine, feed="PAS@RBD")
    assert (report.tried, report.failed) == (1, 0)
    assert report.stages == {Stage.WRITTEN.value: 1}
    first = rows(engine)[0]
    assert (first.stage, first.error, first.attempts) == (Stage.WRITTEN.value, None, 3)
    assert first.resource_count == 3
    with engine.connect() as connection:
        assert health.error_queue(connection) == []
    assert pipeline.replay(engine).tried == 0  # nothing left to replay


def test_messages_left_unwritten_by_a_crash_are_finished_on_start(engine: Engine) -> None:
    items = [
        Incoming("hl7v2", "PAS", "RBD", f"C{i}", "ADT^A01", adt(f"C{i}").encode(), Stage.MAPPED)
        for i in range(3)
    ]
    store_messages(engine, items, FeedRegistry())
    assert {r.stage for r in rows(engine)} == {Stage.MAPPED.value}

    async def body(server: MllpServer, sink: DatabaseSink) -> None:
        await sink.drain()
        assert sink.counters.recovered == 3

    run(engine, body)
    assert [r.stage for r in rows(engine)] == [Stage.WRITTEN.value] * 3
    assert [r.resource_count for r in rows(engine)] == [3, 3, 3]


def test_a40_merge_goes_through_the_identity_service(engine: Engine) -> None:
    merge = adt("MERGE1", "A40", "H100", ("MRG|H099^^^RBD^MR",)).replace("PV1|1|I", "PV1|1|N")

    async def body(server: MllpServer, sink: DatabaseSink) -> None:
        [reply] = await send(server, merge)
        assert msa(reply)[0] == "AA"
        await sink.drain()

    run(engine, body)
    [row] = rows(engine)
    assert row.stage == Stage.WRITTEN.value
    with engine.connect() as connection:
        [action] = connection.execute(select(IdentityAction.__table__)).all()
    # The prior patient was never sent, so there is nothing to merge: applied, no change.
    assert (action.message_id, action.kind, action.status) == (row.id, "merge", "applied")
    payload = orjson.loads(action.payload)
    assert payload["priorIdentifiers"][0]["value"] == "H099"
    assert payload["surviving"]["reference"].startswith("Patient/")


def test_feed_health_on_the_api_and_the_home_page_status(engine: Engine, database: str) -> None:
    async def body(server: MllpServer, sink: DatabaseSink) -> None:
        await send(server, adt("M1"), adt("M2", patient="H200"), NO_PID3)
        await send(server, adt("L1").replace("|PAS|", "|WINPATH|"))
        await sink.drain()

    run(engine, body)
    app = FastAPI()
    app.state.engine = engine
    app.state.settings = Settings(database_url=database)
    app.include_router(feeds_api.router)
    payload = TestClient(app).get("/api/feeds").json()
    by_name = {f["name"]: f for f in payload["feeds"]}
    assert set(by_name) == {"PAS@RBD", "WINPATH@RBD"}
    pas = by_name["PAS@RBD"]
    assert (pas["messages"], pas["errors_total"], pas["errors_queued"]) == (3, 1, 1)
    assert pas["rate_per_minute"] == pytest.approx(3 * 60 / health.RATE_WINDOW_SECONDS)
    assert (pas["waiting"], pas["lag_seconds"]) == (0, 0.0)
    assert pas["last_message_at"] is not None
    assert pas["organisation"] == "RBD"
    assert payload["stages"] == {"written": 3, "failed": 1}

    status = PlatformStatus()
    with engine.connect() as connection:
        db_status.collect_status(connection=connection, status=status)
        health.collect_status(connection=connection, status=status)
    home = {f.name: f for f in status.feeds}
    assert (home["PAS@RBD"].errors, home["PAS@RBD"].state) == (1, "errors")
    assert (home["WINPATH@RBD"].errors, home["WINPATH@RBD"].state) == (0, "healthy")


def test_lag_counts_the_oldest_message_not_yet_written(engine: Engine) -> None:
    items = [
        Incoming("hl7v2", "PAS", "RBD", "W1", "ADT^A01", adt("W1").encode(), Stage.MAPPED),
    ]
    store_messages(engine, items, FeedRegistry())
    with engine.begin() as connection:
        connection.execute(text("UPDATE message SET received_at = received_at - 90000000"))
    with engine.connect() as connection:
        [feed] = health.feed_statuses(connection)
    assert feed.waiting == 1
    assert 89 < feed.lag_seconds < 200


def test_the_writer_process_writes_what_the_listener_stored_and_acknowledged(
    engine: Engine,
) -> None:
    """``sharedcare mllp`` and ``serve`` write to the record from a second process."""
    left = Incoming("hl7v2", "PAS", "RBD", "OLD1", "ADT^A01", adt("OLD1").encode(), Stage.MAPPED)
    store_messages(engine, [left], FeedRegistry())  # left unwritten by an earlier run
    seen_at_ack: list[Any] = []

    async def body(server: MllpServer, sink: DatabaseSink) -> None:
        replies = await send(server, adt("M1"), adt("M2", patient="H200"), adt("M1"), NO_PID3)
        seen_at_ack.extend(await asyncio.to_thread(rows, engine))
        assert [msa(r)[:2] for r in replies] == [
            ("AA", "M1"),
            ("AA", "M2"),
            ("AA", "M1"),
            ("AE", "BAD1"),
        ]
        await sink.drain()
        assert (sink.counters.written, sink.counters.recovered, sink.counters.duplicates) == (
            3,
            1,
            1,
        )

    run(engine, body, writer="process")
    assert {r.control_id for r in seen_at_ack} == {"OLD1", "M1", "M2", "BAD1"}  # stored at ACK
    by_id = {r.control_id: r for r in rows(engine)}
    assert {c: r.stage for c, r in by_id.items()} == {
        "OLD1": Stage.WRITTEN.value,
        "M1": Stage.WRITTEN.value,
        "M2": Stage.WRITTEN.value,
        "BAD1": Stage.FAILED.value,
    }
    assert [by_id[c].resource_count for c in ("OLD1", "M1", "M2")] == [3, 3, 3]
    with engine.connect() as connection:
        encounters = connection.scalar(
            text("SELECT count(*) FROM resource WHERE resource_type = 'Encounter'")
        )
        versions = connection.scalar(
            text("SELECT max(version_id) FROM resource WHERE resource_type = 'Encounter'")
        )
    assert (encounters, versions) == (3, 1)


def test_two_writers_given_the_same_messages_write_them_once(engine: Engine) -> None:
    """An orphaned writer process and its successor's recovery can race on a message."""
    items = [
        Incoming("hl7v2", "PAS", "RBD", f"W{i}", "ADT^A01", adt(f"W{i}").encode(), Stage.MAPPED)
        for i in range(20)
    ]
    stored = store_messages(engine, items, FeedRegistry())
    to_write = [
        ToWrite(done.message_id, done.feed, map_message(item.raw))
        for done, item in zip(stored, items, strict=True)
    ]
    store = SqlStore(engine)
    results: list[list[Outcome]] = []
    threads = [
        threading.Thread(target=lambda: results.append(write_messages(engine, store, to_write)))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    first, second = sorted(results, key=lambda outcomes: sum(o.skipped for o in outcomes))
    assert [o.skipped for o in first] == [False] * 20
    assert [o.skipped for o in second] == [True] * 20
    assert {o.stage for o in second} == {Stage.WRITTEN.value}
    assert {r.stage for r in rows(engine)} == {Stage.WRITTEN.value}
    with engine.connect() as connection:
        versions: dict[str, int] = dict(
            connection.execute(
                text("SELECT resource_type, max(version_id) FROM resource GROUP BY resource_type")
            ).all()
        )
        audits = connection.scalar(
            text("SELECT count(*) FROM audit_event WHERE interaction = 'transaction'")
        )
    assert versions["Encounter"] == 1
    assert versions["Location"] == 1
    assert audits == 20  # one per message written, none for the skipped copies


def test_a_writer_process_that_dies_is_replaced_and_nothing_is_lost(engine: Engine) -> None:
    async def body(server: MllpServer, sink: DatabaseSink) -> None:
        writer = sink._process
        assert writer is not None and writer._process is not None
        first = await send(server, *(adt(f"K{i}", patient=f"H{i}") for i in range(5)))
        os.kill(writer._process.pid, signal.SIGKILL)
        second = await send(server, *(adt(f"L{i}", patient=f"H{i}") for i in range(5)))
        assert {msa(r)[0] for r in first + second} == {"AA"}
        await sink.drain()
        assert writer.restarts == 1

    run(engine, body, writer="process")
    assert {r.stage for r in rows(engine)} == {Stage.WRITTEN.value}
    assert len(rows(engine)) == 10
    with engine.connect() as connection:
        encounters = connection.scalar(
            text("SELECT count(*) FROM resource WHERE resource_type = 'Encounter'")
        )
    assert encounters == 10


def test_a_group_commit_of_new_messages_and_resends_stores_each_once(engine: Engine) -> None:
    """New messages, a repeat within the batch, a resend of a stored message and a resend
    of a failed one in one group commit (on PostgreSQL the new rows commit in one round
    trip and the resends after them, decision 0029): each is stored once, the failed one
    is replaced by its resend, and the feed counts each new or retried message once."""
    registry = FeedRegistry()

    def incoming(cid: str, stage: Stage = Stage.MAPPED) -> Incoming:
        error = ("mapped", "no PID-3") if stage is Stage.FAILED else (None, None)
        return Incoming("hl7v2", "PAS", "RBD", cid, "ADT^A01", adt(cid).encode(), stage, *error)

    [old] = store_messages(engine, [incoming("S1")], registry)
    [bad] = store_messages(engine, [incoming("F1", Stage.FAILED)], registry)
    batch = [incoming("N1"), incoming("S1"), incoming("N2"), incoming("N1"), incoming("F1")]
    results = store_messages(engine, batch, registry)
    assert [(r.duplicate, r.stage) for r in results] == [
        (False, Stage.MAPPED.value),
        (True, Stage.MAPPED.value),
        (False, Stage.MAPPED.value),
        (True, Stage.MAPPED.value),
        (False, Stage.MAPPED.value),
    ]
    assert results[1].message_id == old.message_id
    assert results[3].message_id == results[0].message_id
    assert results[4].message_id == bad.message_id
    stored = {r.control_id: r for r in rows(engine)}
    assert sorted(stored) == ["F1", "N1", "N2", "S1"]
    assert (stored["F1"].stage, stored["F1"].error, stored["F1"].attempts) == (
        Stage.MAPPED.value,
        None,
        2,
    )
    with engine.connect() as connection:
        feed = connection.execute(select(Feed.__table__)).one()
    assert (feed.message_count, feed.error_count) == (5, 1)


def test_the_writer_process_takes_large_hand_overs_on_uvloop(engine: Engine) -> None:
    """``sharedcare mllp`` runs on uvloop (decision 0029), whose ``add_reader`` makes the
    pipe to the writer process non-blocking; a hand-over larger than the pipe's buffer then
    failed part-way and its messages were never written. The pipe is kept blocking, so a
    batch of several hundred kilobytes reaches the writer whole and every message is
    written."""
    import uvloop

    from sharedcare.ingest.service import _loop_factory
    from sharedcare.ingest.writer_process import WriterProcess

    assert _loop_factory() is uvloop.new_event_loop
    items = [
        Incoming("hl7v2", "PAS", "RBD", f"U{i}", "ADT^A01", adt(f"U{i}").encode(), Stage.MAPPED)
        for i in range(300)
    ]
    stored = store_messages(engine, items, FeedRegistry())
    to_write = [
        ToWrite(done.message_id, done.feed, map_message(item.raw))
        for done, item in zip(stored, items, strict=True)
    ]

    async def body() -> None:
        writer = WriterProcess(engine, batch_size=500, recover_before=None)
        writer.start()
        try:
            await asyncio.wait_for(writer.ready.wait(), 120)
            assert writer._pipe is not None and os.get_blocking(writer._pipe.fileno())
            writer.submit(to_write * 4)  # ~1 MB in one send: far past a pipe's buffer
            await asyncio.wait_for(writer.idle(), 120)
        finally:
            await writer.close()
        assert writer.restarts == 0

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(body())
    assert {r.stage for r in rows(engine)} == {Stage.WRITTEN.value}
