"""Durable storage of received messages: feeds, the ``message`` table, stage changes.

Each message is two rows (decision 0034, addendum of 2026-11-22, session 9): ``message``
(what was received: keys, type, time, raw bytes) and ``message_stage`` (its stage, failure,
times and attempts), inserted together.

:func:`store_messages` is the "store" of store-then-ACK: it registers unknown feeds,
inserts a batch of messages with their raw bytes in one committed transaction (group
commit), and reports, for each, whether it was new or a resend. The caller builds the
acknowledgements only after it returns.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from sharedcare.db.engine import driver_errors, key_reader, write_connection
from sharedcare.db.tables import Feed, Message, MessageStage, Organisation
from sharedcare.ingest.stages import Stage
from sharedcare.record.instants import now_us
from sharedcare.reference import organisations

__all__ = [
    "FeedRef",
    "FeedRegistry",
    "Incoming",
    "Stored",
    "looks_like_ods_code",
    "sender_key",
    "store_messages",
]

MESSAGE: Any = Message.__table__
STAGE: Any = MessageStage.__table__
FEED: Any = Feed.__table__
ORGANISATION: Any = Organisation.__table__

# ODS codes: 3 characters (trusts, e.g. RBD), 5 (their sites, e.g. RBD01), or a letter and
# five digits (GP practices, e.g. J81021). https://digital.nhs.uk/services/organisation-data-service
# Columns of a message's two rows (besides ids).
_MESSAGE_COLUMNS = ("feed_id", "sender_key", "control_id", "message_type", "received_at", "raw")
_STAGE_COLUMNS = ("stage", "error_stage", "error", "updated_at", "attempts")
_RETRY_COLUMNS = ("b_id", "stage", "error_stage", "error", "updated_at")
_ODS = re.compile(r"^(?:[A-Z][A-Z0-9]{2}(?:[A-Z0-9]{2})?|[A-Z]\d{5})$")
# Councils have no ODS code in our reference data; their extracts name them by the ONS
# (GSS) code of the local authority district, e.g. E06000058 for BCP Council.
# https://geoportal.statistics.gov.uk/ (Code History Database)
_GSS_LOCAL_AUTHORITY = re.compile(r"^[EWSN]0[6-9]\d{6}$")


def looks_like_ods_code(text: str) -> bool:
    """Whether ``text`` has the shape of an ODS organisation or site code."""
    return bool(_ODS.match(text))


def organisation_code(facility: str) -> str | None:
    """The organisation a feed's sending facility names, or None.

    An ODS organisation or site code (trusts, their sites, GP practices), or for councils
    the ONS code of the local authority district. Upper-cased.
    """
    code = facility.strip().upper()
    if looks_like_ods_code(code) or _GSS_LOCAL_AUTHORITY.match(code):
        return code
    return None


_KINDS = {
    "Acute trust": "acute-trust",
    "Ambulance trust": "ambulance-trust",
    "Community and mental health trust": "community-mental-health",
    "Integrated care board": "icb",
    "Unitary local authority": "council",
}


def _reference_name(code: str) -> tuple[str, str]:
    """(name, kind) of ``code`` from the Dorset reference data, or (the code, "unknown")."""
    for organisation in organisations():
        if code in {organisation.ods_code, organisation.ons_code}:
            return organisation.name, _KINDS.get(organisation.organisation_type, "unknown")
    return code, "unknown"


def sender_key(protocol: str, application: str, facility: str) -> str:
    """The idempotency scope of a control id: protocol, sending application and facility."""
    return f"{protocol}:{application}|{facility}"


@dataclass(frozen=True, slots=True)
class FeedRef:
    """A registered feed, as the pipeline needs it."""

    id: int
    name: str
    organisation: str | None


@dataclass(slots=True)
class Incoming:
    """One message to store.

    Attributes:
        protocol: ``hl7v2``, ``fhir`` or ``csv``.
        application: Sending application (MSH-3), or the client or folder name.
        facility: Sending facility (MSH-4), or the organisation's ODS code.
        control_id: MSH-10, or another id unique per sender.
        message_type: e.g. ``ADT^A01``.
        raw: The bytes as received.
        stage: The stage it is stored at: ``mapped``, ``stored`` or ``failed``.
        error_stage: For ``failed``, the stage that could not be reached.
        error: For ``failed``, the reason (no patient data).
    """

    protocol: str
    application: str
    facility: str
    control_id: str
    message_type: str
    raw: bytes
    stage: Stage
    error_stage: str | None = None
    error: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        """(sender key, control id): the idempotency key."""
        return (sender_key(self.protocol, self.application, self.facility), self.control_id)


@dataclass(frozen=True, slots=True)
class Stored:
    """What storing one message did.

    Attributes:
        message_id: The ``message`` row.
        feed: Its feed.
        duplicate: True when the message was already stored (a resend) and nothing changed.
        stage: The row's stage after this call.
    """

    message_id: int
    feed: FeedRef
    duplicate: bool
    stage: str


class FeedRegistry:
    """Finds or registers feeds, remembering them for the life of the process."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, str, str], FeedRef] = {}
        self._lock = threading.Lock()

    def known(self, keys: Sequence[tuple[str, str, str]]) -> list[FeedRef] | None:
        """The feeds of ``keys`` (protocol, application, facility) if every one is already
        known to this registry, else None (:meth:`resolve` them)."""
        found: list[FeedRef] = []
        with self._lock:
            for key in keys:
                ref = self._known.get(key)
                if ref is None:
                    return None
                found.append(ref)
        return found

    def resolve(
        self, connection: Connection, protocol: str, application: str, facility: str
    ) -> FeedRef:
        """The feed for (protocol, application, facility), registered on first sight.

        A new feed's organisation is its facility when that is an ODS code, or a council's
        ONS code (:func:`organisation_code`); an organisation not yet known is added under
        its code, named from the Dorset reference data when it is there.
        """
        key = (protocol, application, facility)
        with self._lock:
            known = self._known.get(key)
        if known is not None:
            return known
        ref = self._find(connection, key) or self._register(connection, key)
        with self._lock:
            self._known[key] = ref
        return ref

    @staticmethod
    def _find(connection: Connection, key: tuple[str, str, str]) -> FeedRef | None:
        row = connection.execute(
            select(FEED.c.id, FEED.c.name, FEED.c.organisation_ods_code).where(
                FEED.c.protocol == key[0],
                FEED.c.sending_application == key[1],
                FEED.c.sending_facility == key[2],
            )
        ).first()
        return FeedRef(row.id, row.name, row.organisation_ods_code) if row else None

    def _register(self, connection: Connection, key: tuple[str, str, str]) -> FeedRef:
        protocol, application, facility = key
        ods = organisation_code(facility)
        dialect = connection.dialect.name
        insert_fn = pg_insert if dialect == "postgresql" else sqlite_insert
        if ods is not None:
            name, kind = _reference_name(ods)
            connection.execute(
                insert_fn(ORGANISATION)
                .values(ods_code=ods, name=name[:200], kind=kind)
                .on_conflict_do_nothing(index_elements=["ods_code"])
            )
        name = "@".join(p for p in (application, facility) if p)
        connection.execute(
            insert_fn(FEED)
            .values(
                name=name[:200],
                organisation_ods_code=ods,
                protocol=protocol,
                sending_application=application,
                sending_facility=facility,
            )
            .on_conflict_do_nothing(
                index_elements=["protocol", "sending_application", "sending_facility"]
            )
        )
        found = self._find(connection, key)
        if found is None:  # pragma: no cover - the insert above guarantees a row
            raise RuntimeError("feed registration failed")
        return found


def store_messages(
    engine: Engine, items: Sequence[Incoming], registry: FeedRegistry
) -> list[Stored]:
    """Store a batch of messages, committed when this returns; idempotent per sender key.

    A resend of a stored message is reported as a duplicate and not stored again, except
    when the stored one failed: the resend then takes its place (a fresh attempt, so a
    sender that fixed a message can resend it under the same control id).

    On SQLite the batch is one transaction. On PostgreSQL the new messages and their feeds'
    counters are one statement, run on its own as a transaction (:func:`_insert_committed`:
    one round trip); resends in the batch, if any, are then looked up, retried and counted
    in a second transaction. Either way every message is durably stored (or found stored)
    before this returns, so before its ACK; a crash between the two leaves the resends
    unanswered, and their next resend is handled the same way.

    Returns:
        One :class:`Stored` per item, in order.
    """
    if not items:
        return []
    if engine.dialect.name == "postgresql":
        return _store_postgresql(engine, items, registry)
    with write_connection(engine) as connection:
        feeds = [registry.resolve(connection, i.protocol, i.application, i.facility) for i in items]
        rows = _rows(items, feeds, now_us())
        statement = (
            sqlite_insert(MESSAGE)
            .on_conflict_do_nothing(index_elements=["sender_key", "control_id"])
            .returning(MESSAGE.c.id, MESSAGE.c.sender_key, MESSAGE.c.control_id)
        )
        # One cached statement, sent as multi-row INSERTs by SQLAlchemy's "insertmanyvalues".
        result = connection.execute(
            statement, [{name: row[name] for name in _MESSAGE_COLUMNS} for row in rows]
        )
        inserted = {(row.sender_key, row.control_id): row.id for row in result}
        staged: dict[int, dict[str, Any]] = {}
        for item, row in zip(items, rows, strict=True):  # a key twice: its first row went in
            id_ = inserted.get(item.key)
            if id_ is not None and id_ not in staged:
                staged[id_] = {"id": id_, **{name: row[name] for name in _STAGE_COLUMNS}}
        if staged:
            connection.execute(STAGE.insert(), list(staged.values()))
        return _settle(connection, items, feeds, rows, inserted, counted=False)


def _store_postgresql(
    engine: Engine, items: Sequence[Incoming], registry: FeedRegistry
) -> list[Stored]:
    feeds = registry.known([(i.protocol, i.application, i.facility) for i in items])
    if feeds is None:  # a feed seen for the first time: registered (and committed) first
        with write_connection(engine) as connection:
            feeds = [
                registry.resolve(connection, i.protocol, i.application, i.facility) for i in items
            ]
    rows = _rows(items, feeds, now_us())
    inserted = _insert_committed(engine, rows)
    if len(inserted) == len(items):  # all new (so no key twice): nothing more to do
        return [
            Stored(inserted[item.key], feed, False, item.stage.value)
            for item, feed in zip(items, feeds, strict=True)
        ]
    with write_connection(engine) as connection:
        return _settle(connection, items, feeds, rows, inserted, counted=True)


def _rows(items: Sequence[Incoming], feeds: Sequence[FeedRef], now: int) -> list[dict[str, Any]]:
    return [
        {
            "feed_id": feed.id,
            "sender_key": item.key[0],
            "control_id": item.control_id,
            "message_type": item.message_type[:40],
            "received_at": now,
            "updated_at": now,
            "raw": item.raw,
            "stage": item.stage.value,
            "error_stage": item.error_stage,
            "error": item.error,
            "attempts": 1,
        }
        for item, feed in zip(items, feeds, strict=True)
    ]


def _settle(
    connection: Connection,
    items: Sequence[Incoming],
    feeds: Sequence[FeedRef],
    rows: list[dict[str, Any]],
    inserted: dict[tuple[str, str], int],
    *,
    counted: bool,
) -> list[Stored]:
    """The outcome of every item once the new ones are inserted: resends are looked up (a
    failed message's resend takes its place), and the feeds' counters brought up to date
    (``counted``: the insert has already counted the rows it inserted)."""
    results: list[Stored] = []
    uncounted: list[Stored] = []
    taken: set[tuple[str, str]] = set()
    retried: list[dict[str, Any]] = []
    for item, feed, row in zip(items, feeds, rows, strict=True):
        key = item.key
        if key in inserted and key not in taken:
            taken.add(key)
            results.append(Stored(inserted[key], feed, False, item.stage.value))
            if not counted:
                uncounted.append(results[-1])
            continue
        existing = connection.execute(
            select(MESSAGE.c.id, STAGE.c.stage)
            .join(STAGE, STAGE.c.id == MESSAGE.c.id)
            .where(MESSAGE.c.sender_key == key[0], MESSAGE.c.control_id == key[1])
        ).one()
        if existing.stage == Stage.FAILED.value and key not in taken:
            taken.add(key)
            retried.append({**row, "b_id": existing.id})
            results.append(Stored(existing.id, feed, False, item.stage.value))
        else:
            results.append(Stored(existing.id, feed, True, existing.stage))
        uncounted.append(results[-1])
    if retried:
        connection.execute(
            update(MESSAGE).where(MESSAGE.c.id == bindparam("b_id")).values(raw=bindparam("raw")),
            [{"b_id": r["b_id"], "raw": r["raw"]} for r in retried],
        )
        connection.execute(
            update(STAGE)
            .where(STAGE.c.id == bindparam("b_id"))
            .values(
                stage=bindparam("stage"),
                error_stage=bindparam("error_stage"),
                error=bindparam("error"),
                updated_at=bindparam("updated_at"),
                attempts=STAGE.c.attempts + 1,
            ),
            [{k: r[k] for k in _RETRY_COLUMNS} for r in retried],
        )
    _count_feeds(connection, uncounted)
    return results


# PostgreSQL: the whole batch as one array per column, so the statement text is the same
# for every batch size. A multi-row VALUES list differs with each size and is too long for
# psycopg's statement cache, and converting its placeholders cost more CPU than PostgreSQL
# spent inserting the rows. The times and the attempt count are the same for every row.
_PG_COLUMNS = (
    ("feed_id", "bigint"),
    ("sender_key", "text"),
    ("control_id", "text"),
    ("message_type", "text"),
    ("raw", "bytea"),
    ("stage", "text"),
    ("error_stage", "text"),
    ("error", "text"),
)
# The inserted rows get their stage rows and are added to their feeds' counters in the same
# statement, so a group commit of new messages is this one statement, a transaction of its
# own. Each row takes its id from the sequence first (``u`` is evaluated once), so a stage
# row joins its message row by id; a resend (its key already stored) uses up an id, as the
# sequence default of a conflicting row always did.
_PG_INSERT = (
    "WITH u AS (SELECT nextval('message_id_seq'::regclass) AS id, u.* "
    f"FROM unnest({', '.join(f'%({n})b::{t}[]' for n, t in _PG_COLUMNS)}) "
    f"AS u({', '.join(n for n, _ in _PG_COLUMNS)})), "
    "inserted AS ("
    "INSERT INTO message (id, feed_id, sender_key, control_id, message_type, raw, received_at) "
    "SELECT id, feed_id, sender_key, control_id, message_type, raw, %(now)s::bigint FROM u "
    "ON CONFLICT (sender_key, control_id) DO NOTHING "
    "RETURNING id, sender_key, control_id, feed_id), "
    "staged AS (INSERT INTO message_stage (id, stage, error_stage, error, updated_at, attempts) "
    "SELECT u.id, u.stage, u.error_stage, u.error, %(now)s::bigint, 1 "
    "FROM u JOIN inserted USING (id)), "
    "counts AS (SELECT u.feed_id, count(*) AS new, "
    "count(*) FILTER (WHERE u.stage = 'failed') AS failed "
    "FROM u JOIN inserted USING (id) GROUP BY u.feed_id), "
    "counted AS (UPDATE feed SET last_message_at = %(at)s, "
    "message_count = feed.message_count + counts.new, "
    "error_count = feed.error_count + counts.failed "
    "FROM counts WHERE feed.id = counts.feed_id) "
    "SELECT id, sender_key, control_id FROM inserted"
)


_PG_COUNT_FEEDS = (
    "UPDATE feed SET last_message_at = %(at)s, message_count = feed.message_count + u.new, "
    "error_count = feed.error_count + u.failed "
    "FROM unnest(%(ids)s::bigint[], %(new)s::integer[], %(failed)s::integer[]) "
    "AS u(id, new, failed) WHERE feed.id = u.id"
)


def _insert_committed(engine: Engine, rows: list[dict[str, Any]]) -> dict[tuple[str, str], int]:
    """Insert the rows whose key is new and count them in their feeds; committed on return.

    The statement runs on its own, outside any transaction, on a connection of
    :func:`~sharedcare.db.engine.key_reader`'s pool (autocommit, generic plans): PostgreSQL
    runs it as a transaction of its own and commits it (with its WAL flushed,
    ``synchronous_commit`` being on) before it answers, so one round trip stores the batch
    durably, without ``BEGIN`` and ``COMMIT``. The main pool's connections plan every
    statement with its values (``force_custom_plan``, for searches), and so did the
    foreign-key check PostgreSQL runs for each inserted row: planning was about a third of
    the group commit's CPU in PostgreSQL. The insert has one best plan whatever the batch
    holds, so there it is planned once per connection (decision 0029, addendum
    2026-11-22). A connection found broken is discarded, not used again.

    Returns:
        The id of each row inserted, by (sender key, control id).
    """
    params: dict[str, Any] = {name: [row[name] for row in rows] for name, _ in _PG_COLUMNS}
    params["now"] = rows[0]["received_at"]
    params["at"] = datetime.now(UTC)
    # key_reader sees the driver's error first (and drops a broken connection); then it
    # becomes SQLAlchemy's, as everywhere else.
    with driver_errors(), key_reader(engine) as raw, raw.cursor() as cursor:
        cursor.execute(_PG_INSERT, params, prepare=True)
        found = cursor.fetchall()
    return {(sender, control): id_ for id_, sender, control in found}


def _count_feeds(connection: Connection, results: list[Stored]) -> None:
    """Add messages to their feeds' counters: one statement for every feed in the batch.

    On PostgreSQL one ``UPDATE … FROM unnest(…)`` (one round trip; psycopg's pipelined
    executemany took several and was half the wall time of a small group commit); on
    SQLite an executemany.
    """
    received = Counter(r.feed.id for r in results)
    new = Counter(r.feed.id for r in results if not r.duplicate)
    failed = Counter(
        r.feed.id for r in results if not r.duplicate and r.stage == Stage.FAILED.value
    )
    if not received:
        return
    if connection.dialect.name == "postgresql":
        feeds = sorted(received)
        connection.exec_driver_sql(
            _PG_COUNT_FEEDS,
            {
                "at": datetime.now(UTC),
                "ids": feeds,
                "new": [new[f] for f in feeds],
                "failed": [failed[f] for f in feeds],
            },
        )
        return
    connection.execute(
        update(FEED)
        .where(FEED.c.id == bindparam("b_id"))
        .values(
            last_message_at=datetime.now(UTC),
            message_count=FEED.c.message_count + bindparam("b_new"),
            error_count=FEED.c.error_count + bindparam("b_failed"),
        ),
        [
            {"b_id": feed_id, "b_new": new[feed_id], "b_failed": failed[feed_id]}
            for feed_id in sorted(received)
        ],
    )
