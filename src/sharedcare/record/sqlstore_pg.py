"""The store's PostgreSQL statements: fixed texts taking arrays, and index rows in bulk.

A statement text that changed with the batch size (a long ``IN (…)`` list, a multi-row
``VALUES``) was never in psycopg's cache, so every call paid for converting its
placeholders and PostgreSQL for parsing it; these texts are converted once and then
prepared per connection. Updates run in one statement (history, old index rows and the new
versions); index rows go in as one ``INSERT … SELECT`` of column arrays per table (a
batch's sent together in psycopg's pipeline mode, :func:`write_batch`; one write's
:func:`insert_index_one`), and a batch rewrites an updated resource's rows
only in the tables where they changed (:func:`index_changes`). Array parameters are text
built by orjson (:func:`text_array`, :func:`int_array`), not lists for psycopg to dump.
Statements run on the psycopg connection itself (in the SQLAlchemy connection's
transaction): see ``docs/decisions/0016-crud-write-path.md`` and
``0034-ingest-writer-rows-and-parameters.md``, ``0025-ingest-writer-plans-ahead.md``
(session-9 addendum).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import BigInteger, Connection, Integer, Numeric, SmallInteger, Table

from sharedcare.db.engine import driver_connection, driver_errors
from sharedcare.record.store_rows import INDEX_TABLES

if TYPE_CHECKING:
    from sharedcare.record.sqlstore import PendingWrite

__all__ = [
    "EXISTING",
    "EXISTING_LOCKED",
    "EXISTING_ONE",
    "EXISTING_ONE_LOCKED",
    "GENERIC_PLANS",
    "READ_MANY",
    "READ_ONE",
    "READ_ONE_LOCKED",
    "UPDATE_CHANGED",
    "index_changes",
    "int_array",
    "json_array",
    "key_arrays",
    "own_transaction",
    "pipeline",
    "text_array",
    "write_batch",
    "write_one",
]

# PostgreSQL statements: fixed texts whatever the batch size, with arrays for the rows.
# A text that changed with the batch (a long ``IN (…)`` list, a multi-row ``VALUES``) was
# never in psycopg's cache, so every call paid for converting its placeholders, and
# PostgreSQL for parsing it; these are converted once and then prepared per connection.
# Documents travel as one JSON array (``json_array_elements``, which hands each element on
# as the text it was sent as): a ``json[]`` parameter would be sent as array text, every
# quote in every document escaped. Keys travel as two JSON arrays of strings
# (:func:`key_arrays`), as rows ``k(t, i)``:
# A ``null`` element of the documents' array (a deleted version) as SQL ``NULL``; ``json``
# has no equality operator, so ``NULLIF`` cannot compare it.
_NOT_NULL = "CASE WHEN json_typeof({0}) = 'null' THEN NULL ELSE {0} END"
KEYS = (
    "ROWS FROM (json_array_elements_text(%(types)s::json), "
    "json_array_elements_text(%(ids)s::json)) AS k(t, i)"
)
READ_ONE = (
    "SELECT resource_type, id, version_id, last_updated, deleted, content::text FROM resource "
    "WHERE resource_type = %s AND id = %s"
)
# The current version of one resource and its key, its row locked until the transaction
# ends: a REST update reads what it replaces and locks it in one statement.
READ_ONE_LOCKED = (
    "SELECT resource_type, id, version_id, last_updated, deleted, content::text, pk "
    "FROM resource WHERE resource_type = %s AND id = %s FOR UPDATE"
)
EXISTING_ONE = (
    "SELECT resource_type, id, pk, version_id, deleted FROM resource "
    "WHERE resource_type = %s AND id = %s"
)
EXISTING_ONE_LOCKED = EXISTING_ONE + " FOR UPDATE"
EXISTING = (
    "SELECT r.resource_type, r.id, r.pk, r.version_id, r.deleted FROM resource r "
    "JOIN " + KEYS + " "
    "ON r.resource_type = k.t AND r.id = k.i"
)
EXISTING_LOCKED = EXISTING + " FOR UPDATE OF r"
READ_MANY = (
    "SELECT r.resource_type, r.id, r.version_id, r.last_updated, r.deleted, "
    "r.content::text AS content FROM resource r "
    "JOIN " + KEYS + " "
    "ON r.resource_type = k.t AND r.id = k.i"
)
# Updates in one statement: the current rows are copied to history, their index rows
# deleted from every table, and the new versions written. Every part sees the snapshot
# taken before the statement, so history receives the old versions.
UPDATE = (
    "WITH copied AS (INSERT INTO resource_history "
    "(resource_type, id, version_id, last_updated, deleted, content) "
    "SELECT resource_type, id, version_id, last_updated, deleted, content FROM resource "
    "WHERE pk = ANY(%(pks)s::bigint[])), "
    + "".join(
        f"d_{table.name} AS (DELETE FROM {table.name} WHERE res = ANY(%(pks)s::bigint[])), "
        for table in INDEX_TABLES.values()
    )
    + "u AS (SELECT * FROM ROWS FROM (unnest(%(pks)s::bigint[]), "
    "unnest(%(versions)s::integer[]), unnest(%(updated)s::bigint[]), "
    "unnest(%(deleted)s::boolean[]), json_array_elements(%(docs)s::json)) "
    "AS u(pk, version_id, last_updated, deleted, content)) "
    "UPDATE resource SET version_id = u.version_id, last_updated = u.last_updated, "
    "deleted = u.deleted, content = " + _NOT_NULL.format("u.content") + " "
    # The keys again as an array: the rows are found by the primary key, where the join
    # alone was planned as a scan of the whole table below some 100,000 rows.
    "FROM u WHERE resource.pk = u.pk AND resource.pk = ANY(%(pks)s::bigint[])"
)
# The same, for a batch whose index rows were compared with those stored
# (:func:`index_changes`): a resource's rows are deleted only from the tables where they
# changed, instead of from every table.
UPDATE_CHANGED = UPDATE.replace(
    "".join(
        f"d_{table.name} AS (DELETE FROM {table.name} WHERE res = ANY(%(pks)s::bigint[])), "
        for table in INDEX_TABLES.values()
    ),
    "".join(
        f"d_{table.name} AS (DELETE FROM {table.name} WHERE res = ANY(%(stale_{n})s::bigint[])), "
        for n, table in enumerate(INDEX_TABLES.values())
    ),
)
# The index rows stored for some resources, one statement per table (sent together).
# Each key is looked up on its own (``OFFSET 0`` keeps the subquery a lookup per key): a
# plain ``res = ANY(…)`` was planned as a scan of the whole table while it was small
# (a few hundred thousand rows), at 2 ms a batch and table.
STORED_INDEX = {
    table: "SELECT i.* FROM unnest(%s::bigint[]) AS k(res) CROSS JOIN LATERAL "
    f"(SELECT {', '.join(c.name for c in table.columns)} FROM {table.name} "
    "WHERE res = k.res OFFSET 0) AS i"
    for table in INDEX_TABLES.values()
}
CREATE = (
    "INSERT INTO resource (resource_type, id, version_id, last_updated, deleted, content) "
    "SELECT t, i, v, lu, d, " + _NOT_NULL.format("c") + " FROM ROWS FROM "
    "(json_array_elements_text(%(types)s::json), json_array_elements_text(%(ids)s::json), "
    "unnest(%(versions)s::integer[]), "
    "unnest(%(updated)s::bigint[]), unnest(%(deleted)s::boolean[]), "
    "json_array_elements(%(docs)s::json)) AS u(t, i, v, lu, d, c) "
    "RETURNING pk, resource_type, id"
)

# One resource (a REST write): plain parameters instead of arrays, which psycopg converts
# in Python element by element, and index rows as plain ``INSERT``s (``COPY`` cannot run in
# pipeline mode, and costs two round trips per table).
UPDATE_ONE = (
    "WITH copied AS (INSERT INTO resource_history "
    "(resource_type, id, version_id, last_updated, deleted, content) "
    "SELECT resource_type, id, version_id, last_updated, deleted, content FROM resource "
    "WHERE pk = %(pk)s::bigint), "
    + ", ".join(
        f"d_{table.name} AS (DELETE FROM {table.name} WHERE res = %(pk)s::bigint)"
        for table in INDEX_TABLES.values()
    )
    + " UPDATE resource SET version_id = %(version)s, last_updated = %(updated)s, "
    "deleted = %(deleted)s, content = %(doc)s::json WHERE pk = %(pk)s::bigint"
)
INSERT_INDEX_ONE = {
    table: f"INSERT INTO {table.name} ({', '.join(c.name for c in table.columns)}) "
    f"VALUES ({', '.join('%s' for _ in table.columns)})"
    for table in INDEX_TABLES.values()
}
# A new resource in pipeline mode: its row is inserted without waiting for its key, and its
# index rows take the key from the sequence the insert just drew from (``currval`` is this
# session's own value), so a create is sent in one go with its AuditEvent and ``COMMIT``.
CREATE_ONE = (
    "INSERT INTO resource (resource_type, id, version_id, last_updated, deleted, content) "
    "VALUES (%s, %s, %s, %s, %s, %s::json)"
)
NEW_KEY = "currval('resource_pk_seq')"
#: Where each index table's ``res`` column is in its rows (dropped for :data:`NEW_KEY`).
RES_COLUMN = {
    table: [c.name for c in table.columns].index("res") for table in INDEX_TABLES.values()
}
INSERT_INDEX_NEW = {
    table: f"INSERT INTO {table.name} ({', '.join(c.name for c in table.columns)}) "
    f"VALUES ({', '.join(NEW_KEY if c.name == 'res' else '%s' for c in table.columns)})"
    for table in INDEX_TABLES.values()
}


# One resource's index rows, one statement per table with each column as one array
# parameter (one Bind/Execute a table instead of one a row). Integers go as array text
# (:func:`int_array`), strings as a JSON array (:func:`text_array`), numerics as a JSON
# array of their text, cast in the select list (``Decimal`` is not JSON; NaN would become
# ``null``). ``ROWS FROM`` returns the rows in the arrays' order, so they are inserted in it.
def _array_insert(table: Table, *, new: bool) -> tuple[str, list[str]]:
    sources, names, kinds = [], [], []
    for column in table.columns:
        if new and column.name == "res":
            names.append(NEW_KEY)
            continue
        if isinstance(column.type, Integer):
            kind = (
                "bigint"
                if isinstance(column.type, BigInteger)
                else "smallint"
                if isinstance(column.type, SmallInteger)
                else "integer"
            )
            sources.append(f"unnest(%s::{kind}[])")
            names.append(column.name)
        else:
            kind = "numeric" if isinstance(column.type, Numeric) else "text"
            sources.append("json_array_elements_text(%s::json)")
            names.append(f"{column.name}::numeric" if kind == "numeric" else column.name)
        kinds.append(kind)
    aliases = [c.name for c in table.columns if not (new and c.name == "res")]
    return (
        f"INSERT INTO {table.name} ({', '.join(c.name for c in table.columns)}) "
        f"SELECT {', '.join(names)} FROM ROWS FROM ({', '.join(sources)}) "
        f"AS r({', '.join(aliases)})",
        kinds,
    )


#: From how many rows a table's rows go in as arrays rather than one ``VALUES`` row each.
ARRAY_ROWS = 3
INSERT_INDEX_ARRAYS = {t: _array_insert(t, new=False) for t in INDEX_TABLES.values()}
INSERT_INDEX_ARRAYS_NEW = {t: _array_insert(t, new=True) for t in INDEX_TABLES.values()}


# The plans of a single write's statements. The pool's connections use custom plans
# (``sharedcare.db.engine``: a search's best plan depends on its values), so PostgreSQL
# planned every statement of every write afresh, ten relations for an update's statement:
# a quarter of its CPU per REST write (perf of the backends under updates). A write's
# statements look rows up by key, so one generic plan per prepared statement serves every
# value; ``SET LOCAL`` keeps that to the write's own transaction.
GENERIC_PLANS = "SET LOCAL plan_cache_mode = force_generic_plan"


def key_arrays(keys: Sequence[tuple[str, str]]) -> dict[str, str]:
    """``(type, id)`` keys as the two JSON arrays of :data:`KEYS`."""
    return {"types": text_array([t for t, _ in keys]), "ids": text_array([i for _, i in keys])}


# Array parameters are passed as text that psycopg sends as it is: psycopg dumps a list
# element by element in Python (2.7 µs a string, 0.4 µs an integer: 7% of the ingest
# writer's CPU), where orjson writes the whole list in C (under 0.01 µs an element).
def text_array(values: Sequence[str | None]) -> str:
    """Strings (``None`` for NULL) as a JSON array, for ``json_array_elements_text``."""
    return orjson.dumps(values).decode()


def int_array(values: Sequence[int | bool | None]) -> str:
    """Integers or booleans (``None`` for NULL) as PostgreSQL array text, for a
    ``::bigint[]``, ``::integer[]`` or ``::boolean[]`` parameter (the JSON of such a list,
    between braces instead of brackets, is that text)."""
    return "{" + orjson.dumps(values).decode()[1:-1] + "}"


def _numeric_array(values: Sequence[Any]) -> str:
    return text_array([None if v is None else str(v) for v in values])


#: How :func:`insert_index_one` writes a column of each kind as one parameter.
_ARRAY_TEXT: dict[str, Callable[[Sequence[Any]], str]] = {
    "smallint": int_array,
    "integer": int_array,
    "bigint": int_array,
    "text": text_array,
    "numeric": _numeric_array,
}


def json_array(documents: Sequence[bytes | None]) -> str:
    """JSON documents (bytes, ``None`` for none) as one JSON array, for
    ``json_array_elements``: joined, not parsed; ``None`` becomes ``null``."""
    return (b"[" + b",".join(b"null" if d is None else d for d in documents) + b"]").decode()


_IndexRows = dict[Table, dict[tuple[Any, ...], None]]
#: Per index table (in :data:`INDEX_TABLES` order), the resources whose rows are replaced.
Stale = list[list[int]]


def _send_stored_index(raw: Any, pks: Sequence[int]) -> list[Any]:
    """Send the reads of the stored index rows of ``pks`` (one statement per table) in the
    open pipeline; returns their cursors, in :data:`INDEX_TABLES` order."""
    keys = int_array(pks)
    cursors = []
    for table in INDEX_TABLES.values():
        cursor = raw.cursor()
        cursor.execute(STORED_INDEX[table], (keys,))
        cursors.append(cursor)
    return cursors


def index_changes(cursors: Sequence[Any], rows: _IndexRows) -> tuple[_IndexRows, Stale]:
    """Compare the new index rows of updated resources with the rows stored for them.

    Rows are compared per resource and table: where a resource's rows in a table are
    exactly those stored, they stay; in any other table its stored rows are deleted and
    the new ones inserted. So the index holds exactly ``rows`` afterwards, as when every
    row is deleted and inserted again, while an update that changes a few values (an
    address: string rows) rewrites only the tables where they are. A resource's rows in a
    table are still written together, side by side in the heap (decision 0019). The stored
    rows are read in this transaction, after the resources' rows were locked (``FOR
    UPDATE``): every writer of a resource's index rows locks its resource row first, so
    they cannot change before the transaction ends.

    Args:
        cursors: The reads of the stored rows, one per table (:func:`_send_stored_index`).
        rows: The new index rows per table (tuples in the table's column order).

    Returns:
        The rows to insert, and per table the resources whose stored rows are deleted
        first (:data:`UPDATE_CHANGED`).
    """
    fresh: _IndexRows = {}
    stale: Stale = []
    for table, cursor in zip(INDEX_TABLES.values(), cursors, strict=True):
        at = RES_COLUMN[table]
        stored: dict[int, set[tuple[Any, ...]]] = {}
        with cursor:
            for row in cursor.fetchall():
                stored.setdefault(row[at], set()).add(row)
        new: dict[int, dict[tuple[Any, ...], None]] = {}
        for row in rows.get(table, {}):
            new.setdefault(row[at], {})[row] = None
        kept = {res for res, old in stored.items() if res in new and new[res].keys() == old}
        stale.append([res for res in stored if res not in kept])
        fresh[table] = {row: None for res, group in new.items() if res not in kept for row in group}
    return fresh, stale


def write_batch(
    connection: Connection,
    updates: Sequence[PendingWrite],
    creates: Sequence[PendingWrite],
    pks: dict[tuple[str, str], int],
    index_rows: Callable[[Sequence[PendingWrite], dict[tuple[str, str], int]], _IndexRows],
) -> None:
    """Write a batch of resource versions and their index rows in two round trips.

    In one pipeline: the stored index rows of the updated resources (``pks`` holds their
    keys; their rows are locked) and the creates' ``INSERT … RETURNING``; while PostgreSQL
    runs them, the updates' new index rows are built. One wait for both, then, sent
    together: the update statement (history, the index rows that changed per
    :func:`index_changes`, the new versions) and one ``INSERT … SELECT`` of arrays per
    index table (:data:`INSERT_INDEX_ARRAYS`), ended by the pipeline's one wait. ``COPY``
    (two round trips a table, and no pipeline) is not used: decision 0025's session-9
    addendum. Creates whose rows were built ahead (``PendingWrite.rows``: the ingest
    writer's plans) only get their keys put in (:func:`_columns_ahead`). Adds the creates'
    keys to ``pks``. Errors are psycopg's, raised at the
    first wait after the statement that failed (the caller wraps them in
    ``driver_errors``).

    Args:
        connection: The write transaction.
        updates: Writes of resources that exist (their keys in ``pks``, rows locked).
        creates: Writes of resources that do not.
        pks: Resource keys by ``(type, id)``.
        index_rows: Builds writes' index rows per table for the keys given
            (``SqlStore._index_rows``).
    """
    raw = driver_connection(connection)
    with raw.pipeline():
        stored = (
            _send_stored_index(raw, [pks[(w.resource_type, w.id)] for w in updates])
            if updates
            else None
        )
        created = _send_create(raw, creates) if creates else None
        fresh: _IndexRows = {}
        if stored is not None:  # the new rows are built while PostgreSQL reads
            fresh, stale = index_changes(stored, index_rows(updates, pks))
            _send_update(raw, updates, pks, stale)
        ahead: dict[Table, list[Any]] = {}
        if created is not None:
            with created:
                for pk, resource_type, resource_id in created.fetchall():
                    pks[(resource_type, resource_id)] = pk
            if all(w.rows is not None for w in creates if not w.deleted):
                ahead = _columns_ahead(creates, pks)
            else:
                for table, new in index_rows(creates, pks).items():
                    fresh.setdefault(table, {}).update(new)
        with raw.cursor() as cursor:
            for table in INDEX_TABLES.values():
                values = fresh.get(table)
                columns: list[Any] | None = list(zip(*values, strict=True)) if values else None
                more = ahead.get(table)
                if columns and more:  # the updates' rows first: their keys are lower
                    columns = [[*old, *new] for old, new in zip(columns, more, strict=True)]
                elif more:
                    columns = more
                if columns:
                    _insert_arrays(cursor, INSERT_INDEX_ARRAYS[table], columns)


def _columns_ahead(
    creates: Sequence[PendingWrite], pks: dict[tuple[str, str], int]
) -> dict[Table, list[Any]]:
    """The creates' index rows as each table's columns, from the rows built ahead without
    their key (``PendingWrite.rows``, ``res`` 0): the keys just returned are the ``res``
    column.

    The rows are those :meth:`~sharedcare.record.sqlstore.SqlStore._index_rows` builds, in
    its order (ascending key), without building a row at a time here: the serial write
    transaction only joins lists.
    """
    held: dict[Table, tuple[list[tuple[Any, ...]], list[int]]] = {}
    for res, w in sorted(
        ((pks[(w.resource_type, w.id)], w) for w in creates if not w.deleted),
        key=lambda pair: pair[0],
    ):
        for table, ahead in (w.rows or {}).items():
            found = held.get(table)
            if found is None:
                found = held[table] = ([], [])
            found[0].extend(ahead)
            found[1].extend([res] * len(ahead))
    columns: dict[Table, list[Any]] = {}
    for table, (built, keys) in held.items():
        if built:
            columns[table] = list(zip(*built, strict=True))
            columns[table][RES_COLUMN[table]] = keys
    return columns


def _send_update(
    raw: Any, updates: Sequence[PendingWrite], pks: dict[tuple[str, str], int], stale: Stale
) -> None:
    params: dict[str, Any] = {
        "pks": int_array([pks[(w.resource_type, w.id)] for w in updates]),
        "versions": int_array([w.version_id for w in updates]),
        "updated": int_array([w.last_updated for w in updates]),
        "deleted": int_array([w.deleted for w in updates]),
        "docs": json_array([w.content for w in updates]),
    }
    for n, replaced in enumerate(stale):
        params[f"stale_{n}"] = int_array(replaced)
    with raw.cursor() as cursor:
        cursor.execute(UPDATE_CHANGED, params)


def _send_create(raw: Any, creates: Sequence[PendingWrite]) -> Any:
    cursor = raw.cursor()
    cursor.execute(
        CREATE,
        {
            "types": text_array([w.resource_type for w in creates]),
            "ids": text_array([w.id for w in creates]),
            "versions": int_array([w.version_id for w in creates]),
            "updated": int_array([w.last_updated for w in creates]),
            "deleted": int_array([w.deleted for w in creates]),
            "docs": json_array([w.content for w in creates]),
        },
    )
    return cursor


@contextmanager
def pipeline(connection: Connection) -> Iterator[None]:
    """Run the block's statements in psycopg's pipeline mode: each is sent without waiting
    for the one before, and the block ends with one round trip for all of them (a
    statement whose rows are fetched, such as ``SELECT … FOR UPDATE``, waits for its own).
    An error in any of them is raised by the fetch or by the end of the block, as
    SQLAlchemy's class (``driver_errors``)."""
    with driver_errors(), driver_connection(connection).pipeline():
        yield


@contextmanager
def own_transaction(connection: Connection) -> Iterator[None]:
    """:func:`pipeline` for a block that is the whole of ``connection``'s transaction (begun
    for it, nothing after it): its statements run with generic plans (:data:`GENERIC_PLANS`),
    and its ``COMMIT`` goes in the pipeline, so the block's one wait at the end also carries
    the commit (one round trip fewer than committing after it). The transaction has
    committed when the block ends; the caller's own commit then finds nothing to do. If a
    statement fails, the ``COMMIT`` is not run and the error is raised."""
    with pipeline(connection):
        raw = driver_connection(connection)
        raw.execute(GENERIC_PLANS)
        yield
        raw.commit()


def write_one(connection: Connection, write: PendingWrite, pk: int | None) -> int | None:
    """Write one resource version (an update of the row ``pk``, or a create if ``None``)
    with plain parameters, without waiting for an answer (meant for :func:`pipeline`);
    returns ``pk``. A create's index rows then go in with ``new`` (:func:`insert_index_one`).
    """
    raw = driver_connection(connection)
    with raw.cursor() as cursor:
        content = None if write.content is None else write.content.decode()
        if pk is None:
            cursor.execute(
                CREATE_ONE,
                (
                    write.resource_type,
                    write.id,
                    write.version_id,
                    write.last_updated,
                    write.deleted,
                    content,
                ),
            )
        else:
            cursor.execute(
                UPDATE_ONE,
                {
                    "pk": pk,
                    "version": write.version_id,
                    "updated": write.last_updated,
                    "deleted": write.deleted,
                    "doc": content,
                },
            )
    return pk


def insert_index_one(
    connection: Connection, rows: dict[Table, dict[tuple[Any, ...], None]], *, new: bool = False
) -> None:
    """Insert one resource's index rows with one ``INSERT … SELECT`` per table taking its
    columns as arrays (:data:`INSERT_INDEX_ARRAYS`; see :func:`write_one`); with ``new``,
    for the resource this transaction has just inserted: the rows' ``res`` is left out and
    taken from the sequence (:data:`NEW_KEY`). A table with fewer than :data:`ARRAY_ROWS`
    rows takes one ``VALUES`` row each (one Bind/Execute a row): for one or two rows that
    costs PostgreSQL less than unpacking arrays. Rows go in in their given order (decision
    0019), either way; ``docs/decisions/0021-single-write-pipeline.md``."""
    raw = driver_connection(connection)
    with raw.cursor() as cursor:
        for table, values in rows.items():
            if not values:
                continue
            if len(values) < ARRAY_ROWS:
                if new:
                    at = RES_COLUMN[table]
                    cursor.executemany(
                        INSERT_INDEX_NEW[table], [row[:at] + row[at + 1 :] for row in values]
                    )
                else:
                    cursor.executemany(INSERT_INDEX_ONE[table], list(values))
                continue
            columns = list(zip(*values, strict=True))
            if new:
                del columns[RES_COLUMN[table]]
            spec = (INSERT_INDEX_ARRAYS_NEW if new else INSERT_INDEX_ARRAYS)[table]
            _insert_arrays(cursor, spec, columns)


def _insert_arrays(cursor: Any, spec: tuple[str, Sequence[str]], columns: list[Any]) -> None:
    """Run one ``INSERT … SELECT`` of :data:`INSERT_INDEX_ARRAYS` (or its ``NEW`` twin): each
    column of a table's rows (tuples, in the statement's order) as one array parameter."""
    statement, kinds = spec
    cursor.execute(
        statement, [_ARRAY_TEXT[kind](column) for kind, column in zip(kinds, columns, strict=True)]
    )
