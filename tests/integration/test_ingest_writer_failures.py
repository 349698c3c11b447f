"""The ingest writer process when a batch fails: the rest is written, the failure queued.

A message that stops its whole batch (here one whose mapped resources arrive undecodable)
must not hold the others back, nor sit at ``mapped`` until the listener restarts: it goes
to the error queue with a reason and replays from its stored raw bytes.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, func, select

from sharedcare.db.tables import AuditRecord, Feed, Resource
from sharedcare.ingest import pipeline
from sharedcare.ingest.hl7v2.mapping import map_message
from sharedcare.ingest.stages import Stage
from sharedcare.ingest.store import FeedRegistry, Incoming, store_messages
from sharedcare.ingest.writer import ToWrite, park_failed, write_messages
from sharedcare.ingest.writer_process import _write, encode
from sharedcare.record.sqlstore import SqlStore
from tests.support.message_rows import message_rows


def adt(cid: str, patient: str) -> str:
    return "\r".join(
        [
            f"MSH|^~\\&|PAS|RBD|SC|ICS|20240315101500||ADT^A01|{cid}|P|2.4",
            "EVN|A01|20240315101500",
            f"PID|1||{patient}^^^RBD^MR||TESTER^ALEX||19650412|F",
            f"PV1|1|I|W12^B^3^RBD||||||||||||||||V-{cid}^^^RBD^VN",
        ]
    )


def _stored(engine: Engine, count: int) -> list[ToWrite]:
    items = [
        Incoming(
            "hl7v2", "PAS", "RBD", f"F{i}", "ADT^A01", adt(f"F{i}", f"P{i}").encode(), Stage.MAPPED
        )
        for i in range(count)
    ]
    stored = store_messages(engine, items, FeedRegistry())
    return [
        ToWrite(done.message_id, done.feed, map_message(item.raw))
        for done, item in zip(stored, items, strict=True)
    ]


def _rows(engine: Engine) -> dict[int, Any]:
    with engine.connect() as connection:
        return {r.id: r for r in connection.execute(message_rows()).all()}


def _feed_errors(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.scalar(select(Feed.__table__.c.error_count)) or 0)


def test_a_failing_batch_writes_the_rest_and_queues_the_failure(engine: Engine) -> None:
    good1, bad, good2 = _stored(engine, 3)
    handed: list[Any] = [encode(good1), encode(bad), encode(good2)]
    message_id, feed, header, _resources, merges = handed[1]
    handed[1] = (message_id, feed, header, b"{not json", merges)  # cannot be decoded
    errors_before = _feed_errors(engine)

    done = _write(engine, SqlStore(engine), handed)

    assert done.ids == [good1.message_id, bad.message_id, good2.message_id]
    assert (done.written, done.failed) == (2, 1)
    rows = _rows(engine)
    assert rows[good1.message_id].stage == Stage.WRITTEN.value
    assert rows[good2.message_id].stage == Stage.WRITTEN.value
    failed = rows[bad.message_id]
    assert failed.stage == Stage.FAILED.value
    assert failed.error_stage == Stage.WRITTEN.value
    assert f"sharedcare ingest replay --id {bad.message_id}" in failed.error
    assert "TESTER" not in failed.error  # the reason names the cause, never the data
    assert _feed_errors(engine) == errors_before + 1

    # The raw message is kept: a replay maps it again and writes it.
    report = pipeline.replay(engine, ids=[bad.message_id])
    assert report.stages[Stage.WRITTEN.value] == 1
    assert _rows(engine)[bad.message_id].stage == Stage.WRITTEN.value


def test_a_message_alone_in_its_batch_is_queued_when_it_fails(engine: Engine) -> None:
    [item] = _stored(engine, 1)
    message_id, feed, header, _resources, merges = encode(item)

    done = _write(engine, SqlStore(engine), [(message_id, feed, header, b"[", merges)])

    assert (done.written, done.failed) == (0, 1)
    assert _rows(engine)[message_id].stage == Stage.FAILED.value


def test_parking_leaves_a_message_another_writer_finished(engine: Engine) -> None:
    [item] = _stored(engine, 1)
    assert _write(engine, SqlStore(engine), [encode(item)]).written == 1
    errors_before = _feed_errors(engine)

    assert park_failed(engine, item.message_id, "RuntimeError") is False

    row = _rows(engine)[item.message_id]
    assert (row.stage, row.error) == (Stage.WRITTEN.value, None)
    assert _feed_errors(engine) == errors_before


def _encounters(engine: Engine) -> tuple[int, int]:
    """(Encounters in the record, highest version of any): one per message, each written once."""
    resource = Resource.__table__
    with engine.connect() as connection:
        count, highest = connection.execute(
            select(func.count(), func.max(resource.c.version_id)).where(
                resource.c.resource_type == "Encounter"
            )
        ).one()
    return int(count), int(highest or 0)


def _message_audits(engine: Engine) -> int:
    """AuditEvents of messages written (one per message, in its write transaction)."""
    audit = AuditRecord.__table__
    with engine.connect() as connection:
        return int(
            connection.scalar(
                select(func.count()).select_from(audit).where(audit.c.interaction == "transaction")
            )
            or 0
        )


def test_a_batch_retried_after_part_of_it_committed_counts_each_message_once(
    engine: Engine,
) -> None:
    # The first message is handed over as an id (as after a writer restart): it is read
    # back, mapped and written, and that commits before the second one fails to decode.
    # The batch is then retried one message at a time; the first is found written.
    first, bad, last = _stored(engine, 3)
    handed: list[Any] = [first.message_id, encode(bad), encode(last)]
    message_id, feed, header, _resources, merges = handed[1]
    handed[1] = (message_id, feed, header, b"{not json", merges)
    errors_before = _feed_errors(engine)

    done = _write(engine, SqlStore(engine), handed)

    assert (done.written, done.failed) == (2, 1)  # the first counted once, not lost
    rows = _rows(engine)
    stages = [rows[i.message_id].stage for i in (first, bad, last)]
    assert stages == [Stage.WRITTEN.value, Stage.FAILED.value, Stage.WRITTEN.value]
    assert _encounters(engine) == (2, 1)  # each written once: no second version
    assert _message_audits(engine) == 2
    assert _feed_errors(engine) == errors_before + 1


def test_a_writer_never_takes_a_message_already_in_the_error_queue(engine: Engine) -> None:
    # A retried batch can meet a message an earlier attempt moved to the error queue: it
    # must be left there (not written, its failure not counted again) until a replay.
    [item] = _stored(engine, 1)
    assert park_failed(engine, item.message_id, "RuntimeError")
    errors_before = _feed_errors(engine)
    parked = _rows(engine)[item.message_id]

    [outcome] = write_messages(engine, SqlStore(engine), [item])

    assert (outcome.stage, outcome.skipped) == (Stage.FAILED.value, True)
    row = _rows(engine)[item.message_id]
    assert (row.stage, row.error, row.updated_at) == (
        Stage.FAILED.value,
        parked.error,
        parked.updated_at,
    )
    assert _feed_errors(engine) == errors_before
    assert _encounters(engine) == (0, 0)
    assert park_failed(engine, item.message_id, "RuntimeError") is False  # not counted twice

    report = pipeline.replay(engine, ids=[item.message_id])  # the replay takes it
    assert report.stages[Stage.WRITTEN.value] == 1
    assert _encounters(engine) == (1, 1)
    assert _feed_errors(engine) == errors_before
