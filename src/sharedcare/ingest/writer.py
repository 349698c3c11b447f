"""Write mapped messages to the record, many at a time, each exactly once.

A batch of messages becomes one database transaction that both writes their resources and
moves their ``message_stage`` rows to ``written``: the stage change and the resources commit
together, so a crash leaves a message either wholly written or still waiting, never half.
Resources are PUT at their deterministic ids through the record's
:class:`~sharedcare.record.repository.Repository` (validation, index extraction, ``meta``)
and its store, with one AuditEvent per message, in the manner of a FHIR transaction
(https://hl7.org/fhir/R4/http.html#transaction).

Every Patient written is matched by the master patient index in the same transaction
(``mapped → identity-matched → written``, :mod:`sharedcare.identity.service`): it is placed
in a golden record, and the golden Patient is written or updated with it. An HL7 v2 A40
merge goes through the identity service's merge operation in that transaction too. So a
message is written only once its patients are matched, and a crash leaves neither half.

Messages are applied in arrival order. When several messages in a batch touch the same
resource (the same ward Location, or the same patient's successive ADT events), each one
still makes its own version: writes are applied in rounds, the n-th change of every
resource in round n. A message whose resources fail validation fails alone; the rest of
the batch goes on.

The writer process plans a batch before its transaction (:func:`build_plan`, from
:mod:`sharedcare.ingest.preplan`) while the batch before commits; :func:`write_preplanned`
uses that plan only if its transaction finds every resource at the version planned on, and
otherwise plans the batch again inside the transaction.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, bindparam, insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from sharedcare.db.engine import write_connection
from sharedcare.db.tables import Feed, IdentityAction, Message, MessageStage
from sharedcare.identity.service import SourcePatient, Work, identity_service
from sharedcare.ingest.hl7v2.mapping import MappedMessage, PatientMerge
from sharedcare.ingest.stages import WAITING, Stage
from sharedcare.ingest.store import FeedRef
from sharedcare.record import sqlstore_pg
from sharedcare.record.audit import AuditEntry, write_audit
from sharedcare.record.context import RequestContext
from sharedcare.record.errors import RecordError
from sharedcare.record.instants import now_us
from sharedcare.record.repository import Repository, same_content
from sharedcare.record.sqlstore import PendingWrite, SqlStore

__all__ = [
    "Outcome",
    "Preplanned",
    "ToWrite",
    "apply_pending_merges",
    "build_plan",
    "feed_context",
    "finish_messages",
    "park_failed",
    "read_current",
    "write_messages",
    "write_preplanned",
]

logger = logging.getLogger(__name__)

MESSAGE: Any = Message.__table__
STAGE: Any = MessageStage.__table__
FEED: Any = Feed.__table__
ACTION: Any = IdentityAction.__table__
_RETRIES = 3
_WAITING = frozenset(WAITING)
_REPLAYABLE = frozenset({Stage.FAILED.value})
# PostgreSQL statements whose text is the same for any batch (arrays, not IN lists).
_PG_CLAIM = "SELECT id, stage FROM message_stage WHERE id = ANY(%(ids)s::bigint[]) FOR UPDATE"
_PG_VERSIONS = (
    "SELECT r.resource_type, r.id, r.version_id FROM resource r "
    f"JOIN {sqlstore_pg.KEYS} ON r.resource_type = k.t AND r.id = k.i"
)
# The stage row is narrow and has two indexes (decision 0034, addendum of session 9): the
# update rewrites ~100 bytes and two index entries a message, not the raw bytes and four.
_PG_FINISH = (
    "UPDATE message_stage SET stage = u.stage, resource_count = u.n, written_at = %(now)s, "
    "updated_at = %(now)s, error = NULL, error_stage = NULL "
    "FROM ROWS FROM (unnest(%(ids)s::bigint[]), json_array_elements_text(%(stages)s::json), "
    "unnest(%(counts)s::integer[])) AS u(id, stage, n) "
    "WHERE message_stage.id = u.id AND message_stage.id = ANY(%(ids)s::bigint[])"
)


@dataclass(slots=True)
class ToWrite:
    """A mapped message waiting to be written to the record."""

    message_id: int
    feed: FeedRef
    mapped: MappedMessage


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one message: its final stage and resource count, or the reason.

    ``resources`` counts the resources the message holds in the record; those already
    identical there are counted but get no new version. ``skipped`` marks a message another
    writer had already finished (its row is left as that writer left it).
    """

    message_id: int
    stage: str
    resources: int = 0
    error: str | None = None
    skipped: bool = False


def feed_context(feed: FeedRef) -> RequestContext:
    """The request context a feed writes under (``meta.source`` names organisation and feed)."""
    return RequestContext(
        user=f"feed:{feed.name}",
        organisation=feed.organisation,
        role="feed",
        purpose="TREAT",
        source="ingest",
        feed=feed.name,
    )


@dataclass(slots=True)
class _Plan:
    rounds: list[list[PendingWrite]] = field(default_factory=list)
    audits: dict[int, tuple[RequestContext, list[AuditEntry]]] = field(default_factory=dict)
    outcomes: list[Outcome] = field(default_factory=list)
    merges: list[tuple[int, PatientMerge]] = field(default_factory=list)
    patients: list[SourcePatient] = field(default_factory=list)


_Current = dict[tuple[str, str], tuple[int, dict[str, Any] | None]]


def read_current(connection: Connection, store: SqlStore, items: Sequence[ToWrite]) -> _Current:
    """The current version (and content, ``None`` if deleted) of every resource in ``items``."""
    keys = [(r["resourceType"], r["id"]) for item in items for r in item.mapped.resources]
    return {
        key: (stored.version_id, None if stored.deleted else stored.json())
        for key, stored in store.read_many(connection, keys).items()
    }


def _plan(connection: Connection, store: SqlStore, items: Sequence[ToWrite], now: int) -> _Plan:
    return build_plan(store, items, read_current(connection, store, items), now)[0]


def build_plan(
    store: SqlStore, items: Sequence[ToWrite], current: _Current, now: int
) -> tuple[_Plan, _Current]:
    """The writes, AuditEvents and outcomes of ``items`` over ``current`` (not modified).

    Returns:
        The plan, and the version and content of each resource it writes as they will be
        once it commits (what a plan built before this one commits must assume).
    """
    current = dict(current)
    written: _Current = {}
    per_key: dict[tuple[str, str], list[PendingWrite]] = defaultdict(list)
    plan = _Plan()
    repos: dict[int, Repository] = {}
    for item in items:
        repo = repos.get(item.feed.id)
        if repo is None:
            repo = repos[item.feed.id] = Repository(store, feed_context(item.feed))
        writes: list[PendingWrite] = []
        seen: _Current = {}
        try:
            for resource in item.mapped.resources:
                key = (resource["resourceType"], resource["id"])
                version, content = seen.get(key) or current.get(key) or (0, None)
                if content is not None and same_content(content, resource):
                    continue
                write = repo.prepare(
                    resource, id=key[1], version_id=version + 1, now=now, existed=version > 0
                )
                writes.append(write)
                seen[key] = (version + 1, resource)
        except RecordError as error:
            where = f"{resource.get('resourceType', 'resource')} mapped from the message"
            plan.outcomes.append(
                Outcome(item.message_id, Stage.FAILED.value, error=f"{where}: {error.message}")
            )
            continue
        current.update(seen)
        written.update(seen)
        for write in writes:
            per_key[(write.resource_type, write.id)].append(write)
        plan.outcomes.append(
            Outcome(item.message_id, Stage.WRITTEN.value, len(item.mapped.resources))
        )
        plan.merges.extend((item.message_id, merge) for merge in item.mapped.merges)
        entry = AuditEntry(
            "transaction", "0", description=f"message {item.message_id}: {len(writes)} writes"
        )
        entry.entities = [f"{w.resource_type}/{w.id}/_history/{w.version_id}" for w in writes]
        plan.audits.setdefault(item.feed.id, (repo.context, []))[1].append(entry)
    depth = max((len(w) for w in per_key.values()), default=0)
    plan.rounds = [[w[n] for w in per_key.values() if len(w) > n] for n in range(depth)]
    plan.patients = [
        SourcePatient(w[-1].id, w[-1].version_id, orjson.loads(w[-1].content))
        for (rtype, _), w in per_key.items()
        if rtype == "Patient" and w[-1].content is not None
    ]
    return plan, written


@dataclass(slots=True)
class Preplanned:
    """A batch planned before its write transaction (:mod:`sharedcare.ingest.preplan`).

    ``assumed`` is the version (0: absent) each resource the batch touches must have when
    the transaction starts for ``plan`` to be the one :func:`_plan` would make there.
    """

    items: list[ToWrite]
    plan: _Plan
    assumed: dict[tuple[str, str], int]


def _still_current(
    connection: Connection, store: SqlStore, assumed: dict[Any, int], lead: _Lead | None
) -> bool:
    """Whether every resource is at the version ``assumed`` (read in the write transaction;
    on PostgreSQL the read went with the identity version's bump, :class:`_Lead`)."""
    keys = list(assumed)
    found: dict[tuple[str, str], int] = {}
    if lead is not None and keys:
        found.update(((t, i), v) for t, i, v in _Lead.fetch(lead.versions))
    else:
        found.update((key, s.version_id) for key, s in store.read_many(connection, keys).items())
    return all(found.get(key, 0) == version for key, version in assumed.items())


def _merge_payload(merge: PatientMerge) -> bytes:
    return orjson.dumps(
        {
            "surviving": merge.surviving,
            "survivingIdentifiers": merge.surviving_identifiers,
            "priorPatientId": merge.prior_patient_id,
            "priorIdentifiers": merge.prior_identifiers,
        }
    )


def finish_messages(
    connection: Connection, outcomes: Sequence[Outcome], feeds: dict[int, int]
) -> None:
    """Record each message's outcome (its stage, or its failure and reason) in ``connection``.

    Args:
        connection: The caller's write transaction.
        outcomes: One per message.
        feeds: Feed id of each message id, for the feeds' error counters.
    """
    now = now_us()
    done = [o for o in outcomes if o.stage != Stage.FAILED.value]
    failed = [o for o in outcomes if o.stage == Stage.FAILED.value]
    if done and connection.dialect.name == "postgresql":
        # One statement for the batch: an executemany costs a round of SQLAlchemy and
        # psycopg work per row, in the writer process that is the pipeline's bottleneck.
        connection.exec_driver_sql(
            _PG_FINISH,
            {
                "now": now,
                "ids": sqlstore_pg.int_array([o.message_id for o in done]),
                "stages": sqlstore_pg.text_array([o.stage for o in done]),
                "counts": sqlstore_pg.int_array([o.resources for o in done]),
            },
        )
    elif done:
        connection.execute(
            update(STAGE)
            .where(STAGE.c.id == bindparam("b_id"))
            .values(
                stage=bindparam("b_stage"),
                resource_count=bindparam("b_count"),
                written_at=now,
                updated_at=now,
                error=None,
                error_stage=None,
            ),
            [{"b_id": o.message_id, "b_stage": o.stage, "b_count": o.resources} for o in done],
        )
    if failed:
        connection.execute(
            update(STAGE)
            .where(STAGE.c.id == bindparam("b_id"))
            .values(
                stage=Stage.FAILED.value,
                error_stage=Stage.WRITTEN.value,
                error=bindparam("b_error"),
                updated_at=now,
            ),
            [{"b_id": o.message_id, "b_error": (o.error or "")[:2000]} for o in failed],
        )
        errors = Counter(feeds[o.message_id] for o in failed)
        connection.execute(
            update(FEED)
            .where(FEED.c.id == bindparam("b_feed"))
            .values(error_count=FEED.c.error_count + bindparam("b_errors")),
            [{"b_feed": feed_id, "b_errors": n} for feed_id, n in sorted(errors.items())],
        )


def _merge_status(work: Work, merge: PatientMerge) -> str:
    surviving = merge.surviving.get("reference", "")
    surviving_id = surviving.split("/", 1)[1] if surviving.startswith("Patient/") else ""
    return work.apply_a40(surviving_id, merge.prior_patient_id)


def _claim(
    connection: Connection, items: Sequence[ToWrite], claimable: frozenset[str], lead: _Lead | None
) -> tuple[list[ToWrite], list[Outcome]]:
    """Lock the items' stage rows (``message_stage``); keep those still at a stage in
    ``claimable``.

    The write transaction has already queued behind every other identity writer (it bumped
    ``identity_state``), so a row another writer process finished is seen here as
    ``written`` and skipped: two writers given the same message (a writer process orphaned
    by a killed listener, and the recovery of its successor) write it once. A row already
    moved to ``failed`` is skipped too unless the caller is replaying failures: a batch
    retried after part of it committed neither writes a failed message again nor counts
    its failure twice in its feed's error counter. On PostgreSQL (``lead`` given) the
    locking read went with the bump (:class:`_Lead`).
    """
    ids = [item.message_id for item in items]
    stages: dict[int, str] = {}
    if lead is not None:
        stages.update((id_, stage) for id_, stage in _Lead.fetch(lead.claim))
    else:  # SQLite: the write transaction (BEGIN IMMEDIATE) holds the database already
        for start in range(0, len(ids), 500):
            query = select(STAGE.c.id, STAGE.c.stage).where(
                STAGE.c.id.in_(ids[start : start + 500])
            )
            stages.update((row.id, row.stage) for row in connection.execute(query))
    live: list[ToWrite] = []
    done: list[Outcome] = []
    for item in items:
        stage = stages.get(item.message_id)
        if stage not in claimable:
            error = None if stage else "the message row no longer exists"
            done.append(
                Outcome(item.message_id, stage or Stage.FAILED.value, error=error, skipped=True)
            )
        else:
            live.append(item)
    return live, done


class _Lead:
    """The write transaction's first reads on PostgreSQL, sent with the identity version's
    bump in one round trip (:func:`~sharedcare.identity.store.bump_with`): the claim's
    locking read of the messages' stage rows and, for a batch planned ahead, the version
    check. Both run after the bump holds its lock, as when sent one by one after it."""

    def __init__(self, items: Sequence[ToWrite], preplanned: Preplanned | None) -> None:
        self.ids = sqlstore_pg.int_array([item.message_id for item in items])
        self.keys = list(preplanned.assumed) if preplanned is not None else []
        self.claim: Any = None
        self.versions: Any = None

    def __call__(self, raw: Any) -> None:
        self.claim = raw.cursor()
        self.claim.execute(_PG_CLAIM, {"ids": self.ids})
        if self.keys:
            self.versions = raw.cursor()
            self.versions.execute(_PG_VERSIONS, sqlstore_pg.key_arrays(self.keys))

    @staticmethod
    def fetch(cursor: Any) -> list[Any]:
        """The rows of a read this sent (the pipeline has synced: the bump has returned)."""
        with cursor:
            return list(cursor.fetchall())

    def close(self) -> None:
        """Close the cursors left unread (the version check of a batch re-planned)."""
        for cursor in (self.claim, self.versions):
            if cursor is not None:
                cursor.close()


def _write_once(
    engine: Engine,
    store: SqlStore,
    items: Sequence[ToWrite],
    claimable: frozenset[str],
    preplanned: Preplanned | None = None,
) -> tuple[list[Outcome], bool]:
    postgresql = engine.dialect.name == "postgresql"
    lead = _Lead(items, preplanned) if postgresql else None
    try:
        return _write_in(engine, store, items, claimable, preplanned, lead)
    finally:
        if lead is not None:
            lead.close()


def _write_in(
    engine: Engine,
    store: SqlStore,
    items: Sequence[ToWrite],
    claimable: frozenset[str],
    preplanned: Preplanned | None,
    lead: _Lead | None,
) -> tuple[list[Outcome], bool]:
    with identity_service(engine).transaction(engine, store, lead=lead) as work:
        connection = work.connection
        items, skipped = _claim(connection, items, claimable, lead)
        # A plan made before the transaction stands only if every message is still the
        # caller's and every resource it touches is at the version it was planned on;
        # otherwise the batch is planned again here, on what this transaction sees.
        used = (
            preplanned is not None
            and not skipped
            and _still_current(connection, store, preplanned.assumed, lead)
        )
        if used and preplanned is not None:
            plan = preplanned.plan
        else:
            plan = _plan(connection, store, items, work.now)
        plan.outcomes.extend(skipped)
        postgresql = connection.dialect.name == "postgresql"
        for round_writes in plan.rounds:
            store.apply(connection, round_writes)
        work.place(plan.patients)  # the identity stage: match every Patient written
        statuses = [_merge_status(work, merge) for _, merge in plan.merges]
        if plan.merges:
            connection.execute(
                insert(ACTION),
                [
                    {
                        "message_id": message_id,
                        "kind": "merge",
                        "status": status,
                        "payload": _merge_payload(merge),
                        "created_at": work.now,
                    }
                    for (message_id, merge), status in zip(plan.merges, statuses, strict=True)
                ],
            )
        # Statements that return nothing, sent together on PostgreSQL (one wait at the
        # end of the block; an error in any is raised there and rolls the batch back).
        # Nothing in the block may read a result through SQLAlchemy: in pipeline mode its
        # result would come back empty.
        with sqlstore_pg.pipeline(connection) if postgresql else nullcontext():
            for context, entries in plan.audits.values():
                write_audit(connection, context, entries)
            finish_messages(
                connection,
                [o for o in plan.outcomes if not o.skipped],
                {i.message_id: i.feed.id for i in items},
            )
    return plan.outcomes, used


def apply_pending_merges(engine: Engine, store: SqlStore) -> int:
    """Apply A40 merges stored ``pending`` (by a version without the identity service).

    Each goes through the identity service's merge; its message moves from
    ``identity-pending`` to ``written``. Returns how many were applied or rejected.
    """
    with identity_service(engine).transaction(engine, store) as work:
        pending = work.connection.execute(
            select(ACTION.c.id, ACTION.c.message_id, ACTION.c.payload)
            .where(ACTION.c.kind == "merge", ACTION.c.status == "pending")
            .order_by(ACTION.c.id)
        ).all()
        for row in pending:
            payload = orjson.loads(row.payload)
            merge = PatientMerge(
                payload["surviving"],
                payload.get("survivingIdentifiers") or [],
                payload["priorPatientId"],
                payload.get("priorIdentifiers") or [],
            )
            status = _merge_status(work, merge)
            work.connection.execute(
                update(ACTION).where(ACTION.c.id == row.id).values(status=status)
            )
            work.connection.execute(
                update(STAGE)
                .where(
                    STAGE.c.id == row.message_id,
                    STAGE.c.stage == Stage.IDENTITY_PENDING.value,
                )
                .values(stage=Stage.WRITTEN.value, updated_at=work.now)
            )
    return len(pending)


def write_preplanned(
    engine: Engine, store: SqlStore, preplanned: Preplanned
) -> tuple[list[Outcome], bool]:
    """Write a batch planned ahead (:class:`Preplanned`), as :func:`write_messages` would.

    Returns:
        One :class:`Outcome` per message, and whether the batch was committed exactly as
        planned (not planned again in its transaction, retried, or split).
    """
    try:
        return _write_once(engine, store, preplanned.items, _WAITING, preplanned)
    except IntegrityError:  # another writer changed a resource first: as write_messages
        return write_messages(engine, store, preplanned.items), False
    except DBAPIError as error:
        if len(preplanned.items) == 1:
            item = preplanned.items[0]
            return _fail_alone(engine, item, type(error).__name__, False), False
    outcomes: list[Outcome] = []
    for item in preplanned.items:
        outcomes.extend(write_messages(engine, store, [item]))
    return outcomes, False


def write_messages(
    engine: Engine, store: SqlStore, items: Sequence[ToWrite], *, replaying: bool = False
) -> list[Outcome]:
    """Write mapped messages to the record and mark them written (or failed), atomically.

    Only messages still waiting (``stored``, ``parsed``, ``mapped``) are taken; with
    ``replaying``, only messages in the error queue (``failed``). Any other is left as it
    is and reported ``skipped`` at the stage it has (another writer, or an earlier attempt
    at the same batch, finished it).

    A concurrent writer changing the same resource makes the batch retry on fresh
    versions. If the batch still cannot be committed, each message is tried on its own,
    so one bad message fails alone, with its reason, in the error queue.

    Returns:
        One :class:`Outcome` per message.
    """
    if not items:
        return []
    claimable = _REPLAYABLE if replaying else _WAITING
    for _ in range(_RETRIES):
        try:
            return _write_once(engine, store, items, claimable)[0]
        except IntegrityError:
            continue  # another writer changed a resource first; re-read and retry
        except DBAPIError as error:
            if len(items) == 1:
                return _fail_alone(engine, items[0], type(error).__name__, replaying)
            break
    if len(items) == 1:
        return _fail_alone(engine, items[0], "IntegrityError", replaying)
    outcomes: list[Outcome] = []
    for item in items:
        outcomes.extend(write_messages(engine, store, [item], replaying=replaying))
    return outcomes


def _write_failure(cause: str, message_id: int) -> str:
    """The error-queue reason of a message the record could not take: the cause (an
    exception type, never data) and how to replay it."""
    return (
        f"the record could not be written ({cause}); it is kept, and can be replayed with "
        f"`sharedcare ingest replay --id {message_id}` once the cause is fixed"
    )


def park_failed(engine: Engine, message_id: int, cause: str, *, replaying: bool = False) -> bool:
    """Move a message that could not be written to the error queue (stage ``failed``).

    Only a message still waiting is moved (with ``replaying``, one still in the error
    queue, whose reason is renewed); one another writer finished is left as it is. Its
    feed's error counter goes up with it. The reason names the cause (an exception type,
    never data) and how to replay the message.

    Returns:
        True if the message was moved.
    """
    reason = _write_failure(cause, message_id)
    stages = _REPLAYABLE if replaying else _WAITING
    with write_connection(engine) as connection:
        moved = connection.execute(
            update(STAGE)
            .where(STAGE.c.id == message_id, STAGE.c.stage.in_(sorted(stages)))
            .values(
                stage=Stage.FAILED.value,
                error_stage=Stage.WRITTEN.value,
                error=reason,
                updated_at=now_us(),
            )
            .returning(STAGE.c.id)
        ).scalar()
        if moved is None:
            return False
        feed_id = connection.scalar(select(MESSAGE.c.feed_id).where(MESSAGE.c.id == message_id))
        connection.execute(
            update(FEED).where(FEED.c.id == feed_id).values(error_count=FEED.c.error_count + 1)
        )
    return True


def _fail_alone(engine: Engine, item: ToWrite, cause: str, replaying: bool) -> list[Outcome]:
    """Queue one message whose write the database refused (if it is still the caller's:
    one another writer finished meanwhile is left as it is and reported skipped)."""
    logger.error("message %s could not be written to the record: %s", item.message_id, cause)
    moved = park_failed(engine, item.message_id, cause, replaying=replaying)
    reason = _write_failure(cause, item.message_id)
    return [Outcome(item.message_id, Stage.FAILED.value, error=reason, skipped=not moved)]
