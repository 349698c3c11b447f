"""Rows of the persisted master patient index (``db/tables/identity.py``).

Small functions, each one statement or a few, run in the caller's transaction. The
service (:mod:`sharedcare.identity.service`) decides what to write; this module only knows
the tables. Evidence is stored as JSON naming levels and weights, never values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, and_, bindparam, cast, func, insert, or_, select, update
from sqlalchemy import Text as SqlText
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from sharedcare.db.engine import driver_connection, driver_errors
from sharedcare.db.tables import (
    IdentityGolden,
    IdentityLink,
    IdentityMerge,
    IdentityReview,
    IdentityState,
    IdentityTrail,
    Resource,
)
from sharedcare.record import sqlstore_pg

__all__ = [
    "GOLDEN",
    "LINK",
    "MERGE",
    "REVIEW",
    "TRAIL",
    "LinkRow",
    "OpenMerge",
    "PatientState",
    "SourceRow",
    "TrailEntry",
    "bump_version",
    "bump_with",
    "current_version",
    "golden_rows",
    "insert_merge",
    "insert_reviews",
    "insert_trail",
    "last_trail_id",
    "link_rows",
    "open_merges",
    "pair_queued_or_rejected",
    "patient_states",
    "refresh_links",
    "removed_since",
    "source_rows",
    "upsert",
]

STATE: Any = IdentityState.__table__
GOLDEN: Any = IdentityGolden.__table__
LINK: Any = IdentityLink.__table__
REVIEW: Any = IdentityReview.__table__
MERGE: Any = IdentityMerge.__table__
TRAIL: Any = IdentityTrail.__table__
RESOURCE: Any = Resource.__table__
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class TrailEntry:
    """One line of the identity audit trail."""

    action: str
    source_id: str | None = None
    golden_id: str | None = None
    other_golden_id: str | None = None
    detail: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class SourceRow:
    """A linked source Patient as stored: its link row and its current content.

    ``matched`` says whether the current version is the one its link was decided on (a
    Patient changed since, whose match did not run, is not).
    """

    source_id: str
    source_system: str
    golden_id: str
    content: bytes | None
    matched: bool = True


@dataclass(frozen=True, slots=True)
class LinkRow:
    """The link columns needed to decide whether a Patient must be matched again."""

    source_id: str
    source_system: str
    source_version: int
    golden_id: str


@dataclass(frozen=True, slots=True)
class OpenMerge:
    """A merge not undone: which golden records, and which sources it moved."""

    id: int
    kept: str
    retired: str
    moved: tuple[str, ...]


_BUMP = (
    update(STATE)
    .where(STATE.c.id == 1)
    .values(version=STATE.c.version + 1)
    .returning(STATE.c.version)
)


def current_version(connection: Connection) -> int:
    """The index version as last committed (read only: takes no lock)."""
    return int(connection.scalar(select(STATE.c.version).where(STATE.c.id == 1)) or 0)


def bump_version(connection: Connection) -> int:
    """Increment the index version in this transaction and return the new value.

    The update takes the row's lock, so identity writes in several processes queue here.
    One round trip: the new value comes back from the ``UPDATE … RETURNING``.
    """
    return int(connection.scalar(_BUMP) or 0)


_UPSERTS: dict[tuple[str, str, str, tuple[str, ...]], Any] = {}


def _upsert_statement(dialect: str, table: Any, key: str, columns: tuple[str, ...]) -> Any:
    """The ``INSERT … ON CONFLICT DO UPDATE`` for these columns, built once and reused.

    Building it costs more than running it for one row (a real-time match writes one link
    row and one golden row per transaction), and a reused statement is also compiled once.
    """
    cache_key = (dialect, table.name, key, columns)
    statement = _UPSERTS.get(cache_key)
    if statement is None:
        factory = pg_insert if dialect == "postgresql" else sqlite_insert
        base = factory(table)
        statement = _UPSERTS[cache_key] = base.on_conflict_do_update(
            index_elements=[key], set_={c: base.excluded[c] for c in columns}
        )
    return statement


def upsert(connection: Connection, table: Any, rows: Sequence[dict[str, Any]], key: str) -> None:
    """Insert ``rows``, replacing the non-key columns of any row whose ``key`` exists."""
    if not rows:
        return
    columns = tuple(c for c in rows[0] if c != key)
    statement = _upsert_statement(connection.dialect.name, table, key, columns)
    for start in range(0, len(rows), _CHUNK):
        connection.execute(statement, list(rows[start : start + _CHUNK]))


_SOURCES: dict[tuple[str, bool], Any] = {}


def _sources_statement(dialect: str, changed: bool) -> Any:
    """The linked-sources query: all (streamed, for a rebuild), or changed after a version.

    Built once per dialect. A catch-up reads the few links another process changed since
    this one's last transaction, before nearly every identity transaction when two workers
    take turns: it is not streamed, as a server-side cursor costs PostgreSQL round trips.
    """
    statement = _SOURCES.get((dialect, changed))
    if statement is None:
        content = RESOURCE.c.content
        if dialect == "postgresql":
            content = cast(content, SqlText)
        statement = (
            select(
                LINK.c.source_id,
                LINK.c.source_system,
                LINK.c.golden_id,
                content.label("content"),
                RESOURCE.c.deleted,
                RESOURCE.c.version_id,
                LINK.c.source_version,
            )
            .select_from(LINK)
            .outerjoin(
                RESOURCE,
                and_(RESOURCE.c.resource_type == "Patient", RESOURCE.c.id == LINK.c.source_id),
            )
        )
        if changed:
            statement = statement.where(LINK.c.changed > bindparam("changed_after"))
        else:
            statement = statement.execution_options(yield_per=2000)
        _SOURCES[(dialect, changed)] = statement
    return statement


def source_rows(connection: Connection, changed_after: int | None = None) -> Iterator[SourceRow]:
    """Linked sources with their current Patient content (``None`` if deleted).

    Every one, or only those whose link changed after index version ``changed_after``.
    """
    statement = _sources_statement(connection.dialect.name, changed_after is not None)
    params = {} if changed_after is None else {"changed_after": changed_after}
    for row in connection.execute(statement, params):
        raw = row.content
        if isinstance(raw, str):
            raw = raw.encode()
        yield SourceRow(
            row.source_id,
            row.source_system,
            row.golden_id,
            None if row.deleted else raw,
            row.version_id == row.source_version,
        )


# Built once: building a statement costs more than running it for the handful of ids of
# a real-time match. ``ids`` is an expanding parameter, so each length is compiled once.
_LINKS = select(
    LINK.c.source_id, LINK.c.source_system, LINK.c.source_version, LINK.c.golden_id
).where(LINK.c.source_id.in_(bindparam("ids", expanding=True)))
# A Patient's current version beside its link's, in one statement (a real-time match
# reads both for the Patient or two of a request, where each statement is most of the cost).
_STATES = (
    select(RESOURCE.c.id, RESOURCE.c.version_id, RESOURCE.c.deleted, LINK.c.source_version)
    .select_from(RESOURCE.outerjoin(LINK, LINK.c.source_id == RESOURCE.c.id))
    .where(
        RESOURCE.c.resource_type == "Patient",
        RESOURCE.c.id.in_(bindparam("ids", expanding=True)),
    )
)
_REFRESH = (
    update(LINK)
    .where(LINK.c.source_id == bindparam("b_source_id"))
    .values(source_version=bindparam("b_version"), changed=bindparam("b_changed"))
)


@dataclass(frozen=True, slots=True)
class PatientState:
    """A Patient's current version, whether it is deleted, and the version it is linked at."""

    version: int
    deleted: bool
    linked_version: int | None  # None: not linked


def patient_states(connection: Connection, ids: Sequence[str]) -> dict[str, PatientState]:
    """The :class:`PatientState` of each Patient in ``ids`` that exists."""
    found: dict[str, PatientState] = {}
    for start in range(0, len(ids), _CHUNK):
        for row in connection.execute(_STATES, {"ids": list(ids[start : start + _CHUNK])}):
            found[row.id] = PatientState(row.version_id, bool(row.deleted), row.source_version)
    return found


_PG_BUMP = "UPDATE identity_state SET version = version + 1 WHERE id = 1 RETURNING version"
_PG_STATES = (
    "SELECT resource.id, resource.version_id, resource.deleted, identity_link.source_version "
    "FROM resource LEFT OUTER JOIN identity_link ON identity_link.source_id = resource.id "
    "WHERE resource.resource_type = 'Patient' AND resource.id = ANY(%s::text[])"
)


def bump_with_states(
    connection: Connection, ids: Sequence[str]
) -> tuple[int, dict[str, PatientState]]:
    """:func:`bump_version`, then :func:`patient_states` of ``ids``, in one round trip.

    PostgreSQL only (pipeline mode; at most ``_CHUNK`` ids). The ``SELECT`` runs after the
    ``UPDATE`` has its row lock, with a snapshot of its own (read committed): it sees what
    :func:`patient_states` called next would.
    """
    raw = driver_connection(connection)
    with driver_errors(), raw.pipeline():
        bump = raw.execute(_PG_BUMP)
        read = raw.execute(_PG_STATES, (list(ids),))
    row = bump.fetchone()
    found = {r[0]: PatientState(r[1], bool(r[2]), r[3]) for r in read.fetchall()}
    return (int(row[0]) if row and row[0] is not None else 0), found


def bump_with(connection: Connection, send: Callable[[Any], None]) -> int:
    """:func:`bump_version`, and the statements ``send`` sends, in one round trip.

    PostgreSQL only (pipeline mode): ``send`` is given the driver connection in the open
    pipeline and keeps the cursors of what it sends; their results are there once this
    returns. The transaction's ``BEGIN`` goes in the same round trip. What ``send`` sends
    runs after the ``UPDATE`` has the index version's row lock, each statement with a
    snapshot of its own (read committed): it sees what it would see sent after the bump.
    An error in any of them is raised here, as SQLAlchemy's class.
    """
    raw = driver_connection(connection)
    with driver_errors(), raw.pipeline():
        bump = raw.execute(_PG_BUMP)
        send(raw)
    row = bump.fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def refresh_links(connection: Connection, versions: dict[str, int], changed: int) -> None:
    """Move links to a newer source version, keeping their decision (index ``changed``)."""
    if versions:
        connection.execute(
            _REFRESH,
            [
                {"b_source_id": s, "b_version": v, "b_changed": changed}
                for s, v in sorted(versions.items())
            ],
        )


def link_rows(connection: Connection, source_ids: Sequence[str]) -> dict[str, LinkRow]:
    """Link rows of ``source_ids``, keyed by source id."""
    found: dict[str, LinkRow] = {}
    for start in range(0, len(source_ids), _CHUNK):
        chunk = list(source_ids[start : start + _CHUNK])
        for row in connection.execute(_LINKS, {"ids": chunk}):
            found[row.source_id] = LinkRow(
                row.source_id, row.source_system, row.source_version, row.golden_id
            )
    return found


_GOLDENS = select(GOLDEN.c.golden_id, GOLDEN.c.status, GOLDEN.c.replaced_by, GOLDEN.c.created_at)
_GOLDENS_CHANGED = _GOLDENS.where(GOLDEN.c.changed > bindparam("changed_after"))
_REMOVED = select(TRAIL.c.source_id).where(
    TRAIL.c.id > bindparam("trail_id"), TRAIL.c.action == "remove"
)


def golden_rows(
    connection: Connection, changed_after: int | None = None
) -> list[tuple[str, str, str | None, int]]:
    """Golden ids with status, replacement and creation time (all, or changed after)."""
    if changed_after is None:
        result = connection.execute(_GOLDENS)
    else:
        result = connection.execute(_GOLDENS_CHANGED, {"changed_after": changed_after})
    return [(r.golden_id, r.status, r.replaced_by, r.created_at) for r in result]


def last_trail_id(connection: Connection) -> int:
    """The newest identity trail row's id (0 when empty)."""
    return int(connection.scalar(select(func.max(TRAIL.c.id))) or 0)


def removed_since(connection: Connection, trail_id: int) -> list[str]:
    """Source ids removed from the index in trail rows after ``trail_id``."""
    return [str(r) for r in connection.scalars(_REMOVED, {"trail_id": trail_id})]


def open_merges(connection: Connection) -> list[OpenMerge]:
    """Merges not undone, oldest first."""
    return [
        OpenMerge(r.id, r.kept, r.retired, tuple(orjson.loads(r.moved)))
        for r in connection.execute(
            select(MERGE.c.id, MERGE.c.kept, MERGE.c.retired, MERGE.c.moved)
            .where(MERGE.c.status == "applied")
            .order_by(MERGE.c.id)
        )
    ]


def insert_merge(connection: Connection, row: dict[str, Any]) -> int:
    """Store a merge event and return its id."""
    result = connection.execute(insert(MERGE).returning(MERGE.c.id), [row])
    return int(result.scalar_one())


_PAIR = (
    select(REVIEW.c.id)
    .where(
        or_(
            and_(
                REVIEW.c.golden_id == bindparam("a"),
                REVIEW.c.candidate_golden_id == bindparam("b"),
            ),
            and_(
                REVIEW.c.golden_id == bindparam("b"),
                REVIEW.c.candidate_golden_id == bindparam("a"),
            ),
        ),
        REVIEW.c.status.in_(("open", "rejected")),
    )
    .limit(1)
)


def pair_queued_or_rejected(connection: Connection, a: str, b: str) -> bool:
    """Whether the pair of golden ids ``a``, ``b`` is open for review or was rejected."""
    return connection.scalar(_PAIR, {"a": a, "b": b}) is not None


def insert_reviews(connection: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Queue review items."""
    if rows:
        connection.execute(insert(REVIEW), list(rows))


_INSERT_TRAIL = insert(TRAIL).returning(TRAIL.c.id)
_TRAIL_COLUMNS = ("recorded", "actor", "action", "source_id", "golden_id", "other_golden_id")
_REVIEW_COLUMNS = (
    "kind",
    "source_id",
    "golden_id",
    "candidate_golden_id",
    "match_weight",
    "probability",
    "evidence",
    "status",
    "created_at",
)
# The driver's own statements, for an identity transaction sent in PostgreSQL's pipeline
# mode (``WorkWriter.flush`` with ``commit``): nothing is fetched until the pipeline ends.
PG_INSERT_TRAIL = (
    f"INSERT INTO identity_trail ({', '.join(_TRAIL_COLUMNS)}, detail) "
    f"VALUES ({', '.join(['%s'] * (len(_TRAIL_COLUMNS) + 1))})"
)
PG_INSERT_REVIEW = (
    f"INSERT INTO identity_review ({', '.join(_REVIEW_COLUMNS)}) "
    f"VALUES ({', '.join(['%s'] * len(_REVIEW_COLUMNS))})"
)
PG_LAST_TRAIL = "SELECT coalesce(max(id), 0) FROM identity_trail"
# A batch's trail in one statement of fixed text, its columns as JSON arrays (``detail`` in
# hex: bytes, whatever the database's encoding), returning the newest id. Rows get their
# ids in the arrays' order, as with one ``VALUES`` row each. An executemany through
# SQLAlchemy sent one ``VALUES`` list of seven parameters a row, which psycopg converted in
# Python on every batch (too long for its cache of converted statements).
_PG_INSERT_TRAIL_ARRAYS = (
    f"WITH t AS (INSERT INTO identity_trail ({', '.join(_TRAIL_COLUMNS)}, detail) "
    "SELECT %(recorded)s::bigint, %(actor)s, u.a, u.s, u.g, u.o, decode(u.d, 'hex') "
    "FROM ROWS FROM (json_array_elements_text(%(actions)s::json), "
    "json_array_elements_text(%(sources)s::json), json_array_elements_text(%(goldens)s::json), "
    "json_array_elements_text(%(others)s::json), json_array_elements_text(%(details)s::json)) "
    "AS u(a, s, g, o, d) RETURNING id) SELECT max(id) FROM t"
)


def trail_rows(actor: str, entries: Sequence[TrailEntry], recorded: int) -> list[dict[str, Any]]:
    """The ``identity_trail`` rows of ``entries`` (without their ids)."""
    return [
        {
            "recorded": recorded,
            "actor": actor[:200],
            "action": e.action,
            "source_id": e.source_id,
            "golden_id": e.golden_id,
            "other_golden_id": e.other_golden_id,
            "detail": orjson.dumps(e.detail) if e.detail is not None else None,
        }
        for e in entries
    ]


def pg_trail_params(
    actor: str, entries: Sequence[TrailEntry], recorded: int
) -> list[tuple[Any, ...]]:
    """Parameters of :data:`PG_INSERT_TRAIL` for ``entries``."""
    return [
        (*(row[c] for c in _TRAIL_COLUMNS), row["detail"])
        for row in trail_rows(actor, entries, recorded)
    ]


def pg_review_params(rows: Sequence[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Parameters of :data:`PG_INSERT_REVIEW` for review rows (as :func:`insert_reviews`)."""
    return [tuple(row[c] for c in _REVIEW_COLUMNS) for row in rows]


def insert_trail(
    connection: Connection, actor: str, entries: Sequence[TrailEntry], recorded: int
) -> int | None:
    """Append to the identity audit trail; return the newest id written (``None``: none).

    Identity writers queue on :func:`bump_version` and only they write the trail, so in
    their transaction the newest id written is also the table's newest.
    """
    if not entries:
        return None
    if connection.dialect.name == "postgresql":
        details = [None if e.detail is None else orjson.dumps(e.detail).hex() for e in entries]
        params = {
            "recorded": recorded,
            "actor": actor[:200],
            "actions": sqlstore_pg.text_array([e.action for e in entries]),
            "sources": sqlstore_pg.text_array([e.source_id for e in entries]),
            "goldens": sqlstore_pg.text_array([e.golden_id for e in entries]),
            "others": sqlstore_pg.text_array([e.other_golden_id for e in entries]),
            "details": sqlstore_pg.text_array(details),
        }
        with driver_errors(), driver_connection(connection).cursor() as cursor:
            cursor.execute(_PG_INSERT_TRAIL_ARRAYS, params)
            row = cursor.fetchone()
        return int(row[0])
    result = connection.execute(_INSERT_TRAIL, trail_rows(actor, entries, recorded))
    return max(int(r) for r in result.scalars())
