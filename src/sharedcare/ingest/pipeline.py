"""Run stored messages through the pipeline: recovery after a restart, and replay.

Both start from the raw bytes in the ``message`` table, never from anything held in
memory, so a message stored before a crash (or failed before a mapping fix) is processed
exactly as if it had just arrived: parsed, mapped, then written with its stage change in
the same transaction (:func:`~sharedcare.ingest.writer.write_messages`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, bindparam, select, update

from sharedcare.db.engine import write_connection
from sharedcare.db.tables import Feed, Message, MessageStage
from sharedcare.ingest.csvmap.messages import map_stored_row, mapping_error_reason
from sharedcare.ingest.csvmap.render import CsvRowError
from sharedcare.ingest.csvmap.spec import MappingSpecError
from sharedcare.ingest.fhirfeed import FHIR_PROTOCOL, process_fhir_rows
from sharedcare.ingest.hl7v2.errors import Hl7ParseError, MappingError
from sharedcare.ingest.hl7v2.mapping import MappedMessage, map_message
from sharedcare.ingest.stages import WAITING, Stage
from sharedcare.ingest.store import FeedRef
from sharedcare.ingest.writer import ToWrite, write_messages
from sharedcare.record.instants import now_us
from sharedcare.record.sqlstore import SqlStore

__all__ = [
    "MapResult",
    "ReplayReport",
    "map_raw",
    "process_ids",
    "process_rows",
    "recover",
    "replay",
]

MESSAGE: Any = Message.__table__
STAGE: Any = MessageStage.__table__
FEED: Any = Feed.__table__
CHUNK = 500


@dataclass(frozen=True, slots=True)
class MapResult:
    """A mapped message, or the stage that failed and why."""

    mapped: MappedMessage | None
    error_stage: str | None = None
    error: str | None = None


def map_raw(
    protocol: str,
    raw: bytes,
    *,
    message_type: str = "",
    facility: str = "",
    control_id: str = "",
) -> MapResult:
    """Parse and map one stored message. Reasons name positions or columns, never values.

    Args:
        protocol: ``hl7v2`` or ``csv`` (FHIR messages are processed as bundles, not mapped).
        raw: The stored bytes.
        message_type: For CSV, the name of the mapping the row was stored under.
        facility: For CSV, the sending organisation's code (``{$org}`` in the mapping).
        control_id: The message's control id.
    """
    if protocol == "csv":
        try:
            return MapResult(map_stored_row(message_type, facility, control_id, raw))
        except (CsvRowError, MappingSpecError) as error:
            return MapResult(None, Stage.MAPPED.value, mapping_error_reason(error))
    if protocol != "hl7v2":
        return MapResult(
            None,
            Stage.MAPPED.value,
            f"{protocol} messages are not processed by this version of the pipeline",
        )
    try:
        return MapResult(map_message(raw))
    except Hl7ParseError as error:
        return MapResult(None, Stage.PARSED.value, error.reason)
    except MappingError as error:
        return MapResult(None, Stage.MAPPED.value, error.reason)


@dataclass(slots=True)
class ReplayReport:
    """What a replay or recovery did: messages tried, and how many ended in each stage."""

    tried: int = 0
    stages: Counter[str] = field(default_factory=Counter)
    failures: list[tuple[int, str]] = field(default_factory=list)

    @property
    def failed(self) -> int:
        """Messages that failed again."""
        return self.stages.get(Stage.FAILED.value, 0)


def _mark_failed(engine: Engine, failures: Sequence[tuple[int, str, str]]) -> None:
    if not failures:
        return
    with write_connection(engine) as connection:
        connection.execute(
            update(STAGE)
            .where(STAGE.c.id == bindparam("b_id"))
            .values(
                stage=Stage.FAILED.value,
                error_stage=bindparam("b_stage"),
                error=bindparam("b_error"),
                updated_at=now_us(),
            ),
            [{"b_id": i, "b_stage": s, "b_error": e} for i, s, e in failures],
        )


def process_rows(
    engine: Engine, store: SqlStore, rows: Sequence[Any], *, replaying: bool = False
) -> ReplayReport:
    """Map and write stored messages (rows with id, raw, protocol, message type, control id,
    feed id/name/organisation/facility). FHIR messages are processed as bundles instead.

    With ``replaying`` the rows are failed messages from the error queue; otherwise waiting
    ones (:func:`~sharedcare.ingest.writer.write_messages` takes only those)."""
    report = ReplayReport(tried=len(rows))
    to_write: list[ToWrite] = []
    failures: list[tuple[int, str, str]] = []
    fhir_rows = [row for row in rows if row.protocol == FHIR_PROTOCOL]
    if fhir_rows:
        rows = [row for row in rows if row.protocol != FHIR_PROTOCOL]
        for outcome in process_fhir_rows(engine, store, fhir_rows):
            report.stages[outcome.stage] += 1
            if outcome.error:
                report.failures.append((outcome.message_id, outcome.error))
    for row in rows:
        result = map_raw(
            row.protocol,
            row.raw,
            message_type=row.message_type,
            facility=row.facility,
            control_id=row.control_id,
        )
        if result.mapped is None:
            failures.append((row.id, result.error_stage or "", result.error or ""))
            continue
        feed = FeedRef(row.feed_id, row.feed_name, row.organisation)
        to_write.append(ToWrite(row.id, feed, result.mapped))
    _mark_failed(engine, failures)
    for message_id, _, reason in failures:
        report.stages[Stage.FAILED.value] += 1
        report.failures.append((message_id, reason))
    for outcome in write_messages(engine, store, to_write, replaying=replaying):
        report.stages[outcome.stage] += 1
        if outcome.error:
            report.failures.append((outcome.message_id, outcome.error))
    return report


def _select(stages: Sequence[str]) -> Any:
    return (
        select(
            STAGE.c.id,
            STAGE.c.stage,
            MESSAGE.c.raw,
            MESSAGE.c.feed_id,
            MESSAGE.c.message_type,
            MESSAGE.c.control_id,
            FEED.c.protocol,
            FEED.c.sending_facility.label("facility"),
            FEED.c.name.label("feed_name"),
            FEED.c.organisation_ods_code.label("organisation"),
        )
        .join(MESSAGE, MESSAGE.c.id == STAGE.c.id)
        .join(FEED, FEED.c.id == MESSAGE.c.feed_id)
        .where(STAGE.c.stage.in_(list(stages)))
        .order_by(STAGE.c.id)
    )


def _run(engine: Engine, query: Any, *, replaying: bool) -> ReplayReport:
    store = SqlStore(engine)
    store.ensure_params()
    total = ReplayReport()
    last = 0
    while True:
        with engine.connect() as connection:
            rows = connection.execute(query.where(STAGE.c.id > last).limit(CHUNK)).all()
        if not rows:
            return total
        last = rows[-1].id
        if replaying:
            with write_connection(engine) as connection:
                connection.execute(
                    update(STAGE)
                    .where(STAGE.c.id.in_([r.id for r in rows]))
                    .values(attempts=STAGE.c.attempts + 1, updated_at=now_us())
                )
        report = process_rows(engine, store, rows, replaying=replaying)
        total.tried += report.tried
        total.stages.update(report.stages)
        total.failures.extend(report.failures)


def replay(
    engine: Engine, *, feed: str | None = None, ids: Sequence[int] | None = None
) -> ReplayReport:
    """Re-run failed messages from their stored raw bytes (after a mapping or data fix).

    Args:
        engine: The database.
        feed: Only this feed (its name, e.g. ``PAS@RBCH``).
        ids: Only these message ids.

    Returns:
        How many were tried and where they ended; those failing again stay queued with
        their new reason.
    """
    query = _select([Stage.FAILED.value])
    if feed is not None:
        query = query.where(FEED.c.name == feed)
    if ids:
        query = query.where(STAGE.c.id.in_(list(ids)))
    return _run(engine, query, replaying=True)


def recover(engine: Engine, *, before: int | None = None) -> ReplayReport:
    """Finish every message stored but not yet written (after a crash or a restart).

    Args:
        engine: The database.
        before: Only messages with a smaller id: those stored before this process began
            accepting, so messages it is already writing are not written twice.
    """
    query = _select(WAITING)
    if before is not None:
        query = query.where(STAGE.c.id < before)
    return _run(engine, query, replaying=False)


def process_ids(engine: Engine, store: SqlStore, ids: Sequence[int]) -> ReplayReport:
    """Map and write the given stored messages, those of them still waiting.

    The ingest writer process is handed the ids of messages the listener has just stored;
    an id already written or failed (by another writer, or by an earlier attempt at the
    same batch that committed in part) is left alone and counted at the stage it has, so
    each id handed over is counted once, where it ended.
    """
    rows: list[Any] = []
    finished: Counter[str] = Counter()
    with engine.connect() as connection:
        for start in range(0, len(ids), CHUNK):
            chunk = list(ids[start : start + CHUNK])
            query = _select([stage.value for stage in Stage])
            for row in connection.execute(query.where(STAGE.c.id.in_(chunk))):
                if row.stage in WAITING:
                    rows.append(row)
                else:
                    finished[row.stage] += 1
    report = process_rows(engine, store, rows)
    report.stages.update(finished)
    report.tried = len(ids)
    return report
