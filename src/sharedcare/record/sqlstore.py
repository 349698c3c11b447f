"""The SQL store: resources, versions and search-index rows on SQLite and PostgreSQL.

The store knows tables and rows, not FHIR rules: the repository prepares each write
(validated JSON bytes and extracted index values) and the store applies a whole batch in a
handful of round trips, whatever its size:

1. one ``SELECT`` finds the current versions of the resources being updated (``FOR UPDATE``
   on PostgreSQL); first versions skip it, the unique key refusing a racing create;
2. their current rows are copied to ``resource_history`` in one ``INSERT … SELECT``;
3. new resources are inserted in one ``INSERT … RETURNING pk``; existing ones are updated
   in one statement;
4. old index rows are deleted from every index table, and the new ones inserted
   with one ``INSERT … SELECT`` of arrays (PostgreSQL) or ``executemany`` (SQLite) per
   index table. A batch on PostgreSQL first reads its updated resources' stored index rows
   and rewrites a resource's rows only in the tables where they changed
   (``sqlstore_pg.index_changes``, ``docs/decisions/0034-ingest-writer-rows-and-parameters.md``).

On PostgreSQL steps 1–3 are statements of fixed text taking arrays (``unnest``, ``= ANY``;
passed as text that orjson builds, see ``sqlstore_pg.text_array``);
step 4's deletes are in the statement that updates: a text that changed with the batch
size was never in psycopg's cache, and converting its placeholders cost the writer as much
CPU as PostgreSQL's own work. A batch's statements after the locked read go in two
round trips of psycopg's pipeline mode (``sqlstore_pg.write_batch``); its index rows are
arrays built by orjson, not ``COPY`` (two round trips a table, outside any pipeline:
``docs/decisions/0025-ingest-writer-plans-ahead.md``, session-9 addendum).
A write of one resource on PostgreSQL (a REST interaction) takes plain parameters instead
and runs in psycopg's pipeline mode (:meth:`SqlStore.pipelined`), so it waits for the
database only for the version check (an update's locked read) and once at the end of the
block, which also carries its ``COMMIT``; its statements use generic plans
(``docs/decisions/0021-single-write-pipeline.md``, ``0027-crud-on-postgresql.md``).

Index rows are kept small (``docs/decisions/0011-record-footprint.md``): token and quantity
systems and composite combinations are stored as 64-bit keys; a parameter that is
exactly the union of others (``Observation.combo-code``) or narrows another to one target
type (``Observation.patient``) stores no rows of its own, nor does ``_source``
(``meta.source``, read from the resource row through an expression index).

One database round trip per entry is the known trap for FHIR servers; this avoids it.

Each database's statements live beside this module (``sqlstore_pg``, ``sqlstore_sqlite``;
index rows in ``store_rows``) and run through the driver on the caller's connection
(``docs/decisions/0016-crud-write-path.md``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import (
    Connection,
    Engine,
    Table,
    and_,
    cast,
    func,
    or_,
    select,
    tuple_,
    union_all,
)
from sqlalchemy import Text as SqlText
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement

from sharedcare.db.engine import driver_connection, driver_errors, key_reader, write_connection
from sharedcare.db.tables import Resource, ResourceHistory, SearchParamId
from sharedcare.fhir.definitions import resource_types, search_parameters
from sharedcare.fhir.search_index import IndexValue
from sharedcare.record import sqlstore_pg, sqlstore_sqlite
from sharedcare.record.derived import stored_codes
from sharedcare.record.errors import ConcurrentUpdate
from sharedcare.record.sqlstore_pg import json_array
from sharedcare.record.store_rows import INDEX_TABLES, ROW_BUILDERS

__all__ = ["INDEX_TABLES", "PendingWrite", "SqlStore", "StoredResource", "json_array"]

RESOURCE: Any = Resource.__table__
HISTORY: Any = ResourceHistory.__table__
#: The unique key on (type, id): ``(id, resource_type)`` on PostgreSQL (migration 0014).
RESOURCE_KEYS = frozenset({"uq_resource_resource_type_id", "uq_resource_id_resource_type"})
_CHUNK = 500  # rows per IN-list, within every database's parameter limits
# Served by the resource row itself (its columns; ``_source`` by an index on meta.source in
# its JSON, ``docs/decisions/0011-record-footprint.md``), so they need no index rows.
_COLUMN_PARAMS = frozenset({"_id", "_lastUpdated", "_source"})
#: A version's place in history order: ``(last_updated, resource_type, id, version_id)``.
HistoryPosition = tuple[int, str, str, int]


@dataclass(slots=True)
class StoredResource:
    """One version of a resource as stored. ``content`` is JSON bytes (``None`` if deleted)."""

    resource_type: str
    id: str
    version_id: int
    last_updated: int
    deleted: bool
    content: bytes | None

    def json(self) -> dict[str, Any]:
        """The resource parsed (an empty dict for a deletion)."""
        return orjson.loads(self.content) if self.content else {}


@dataclass(slots=True)
class PendingWrite:
    """One resource version the repository has prepared for the store."""

    resource_type: str
    id: str
    version_id: int
    last_updated: int
    deleted: bool
    content: bytes | None
    index: list[IndexValue] = field(default_factory=list)
    existed: bool = False
    #: The index rows built ahead, ``res`` 0, per table (:meth:`SqlStore.index_templates`),
    #: or ``None``.
    rows: dict[Table, dict[tuple[Any, ...], None]] | None = None


class SqlStore:
    """Rows for one database. Thread-safe; share one per engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._param_ids: dict[tuple[str, str], int] = {}
        self._param_names: dict[int, tuple[str, str]] = {}
        # (type, code) -> the id its index rows are stored under, or None: see _stored_param.
        self._stored_params: dict[tuple[str, str], int | None] = {}

    def refresh_statistics(self) -> None:
        """PostgreSQL: ``ANALYZE`` the record tables, as after any bulk load
        (https://www.postgresql.org/docs/15/populate.html#POPULATE-ANALYZE).

        Tables never analysed are planned from guesses until autovacuum's next round (up to
        a minute): on a fresh store just loaded, a composite pair's semi-join was planned as
        a nested loop that took 2.1-9.9 s, against 4-6 ms once analysed
        (``docs/decisions/0011-record-footprint.md``, addendum of session 11). SQLite plans
        these statements well without statistics, so there it does nothing.
        """
        if self.dialect != "postgresql":
            return
        names = ["resource", "resource_history", *(t.name for t in INDEX_TABLES.values())]
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql(f"ANALYZE {', '.join(names)}")

    # -- search parameter ids -------------------------------------------------------------

    def ensure_params(self) -> None:
        """Give every R4 search parameter a small integer id (once per database)."""
        if self._param_ids:
            return
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(SearchParamId.id, SearchParamId.resource_type, SearchParamId.code)
            ).all()
        known = {(t, c) for _, t, c in rows}
        wanted = [
            {"resource_type": rtype, "code": code}
            for rtype in resource_types()
            for code in search_parameters(rtype)
            if (rtype, code) not in known
        ]
        wanted += [
            {"resource_type": rtype, "code": f"{code}:identifier"}
            for rtype in resource_types()
            for code, param in search_parameters(rtype).items()
            if param.type == "reference" and (rtype, f"{code}:identifier") not in known
        ]
        if wanted:
            table: Any = SearchParamId.__table__
            statement = (
                pg_insert(table).on_conflict_do_nothing()
                if self.dialect == "postgresql"
                else sqlite_insert(table).on_conflict_do_nothing()
            )
            with write_connection(self.engine) as connection:
                connection.execute(statement, wanted)
            with self.engine.connect() as connection:
                rows = connection.execute(
                    select(SearchParamId.id, SearchParamId.resource_type, SearchParamId.code)
                ).all()
        self._param_ids = {(t, c): i for i, t, c in rows}
        self._param_names = {i: (t, c) for i, t, c in rows}

    def param_id(self, resource_type: str, code: str) -> int | None:
        """The integer id of a search parameter, or ``None`` if it is not known."""
        self.ensure_params()
        return self._param_ids.get((resource_type, code))

    # -- reads --------------------------------------------------------------------------

    def _content(self, column: Any) -> ColumnElement[Any]:
        # PostgreSQL hands back jsonb as text, so it goes to the client without re-encoding.
        return cast(column, SqlText) if self.dialect == "postgresql" else column

    def _version_columns(self, table: Any) -> list[Any]:
        """The columns that make a :class:`StoredResource`, from ``resource`` or history."""
        return [
            table.c.resource_type,
            table.c.id,
            table.c.version_id,
            table.c.last_updated,
            table.c.deleted,
            self._content(table.c.content).label("content"),
        ]

    def _row(self, row: Any) -> StoredResource:
        content = row.content
        if isinstance(content, str):
            content = content.encode()
        return StoredResource(
            row.resource_type, row.id, row.version_id, row.last_updated, row.deleted, content
        )

    def read(self, connection: Connection, resource_type: str, id: str) -> StoredResource | None:
        """The current version of a resource (possibly a deletion), or ``None``.

        One fixed statement through the driver, in ``connection``'s transaction when it has
        one: through SQLAlchemy, executing it and building its result cost more Python than
        the rest of a read by id (py-spy of ``GET /fhir/{type}/{id}`` on PostgreSQL).
        """
        raw = driver_connection(connection)
        statement = (
            sqlstore_pg.READ_ONE if self.dialect == "postgresql" else sqlstore_sqlite.READ_ONE
        )
        with driver_errors():
            cursor = raw.cursor()
            try:
                row = cursor.execute(statement, (resource_type, id)).fetchone()
            finally:
                cursor.close()
        if row is None:
            return None
        t, i, version, updated, deleted, content = row
        if isinstance(content, str):
            content = content.encode()
        return StoredResource(t, i, version, updated, bool(deleted), content)

    def read_current(self, resource_type: str, id: str) -> StoredResource | None:
        """:meth:`read` outside any transaction, on a connection of its own: a read by id.

        On PostgreSQL the statement runs on :func:`~sharedcare.db.engine.key_reader`'s
        pool (autocommit, one generic plan per connection, no SQLAlchemy ``Connection``:
        ``docs/decisions/0030-crud-request-path.md``); on SQLite on a connection of the
        engine's pool.
        """
        if self.dialect != "postgresql":
            with self.engine.connect() as connection:
                return self.read(connection, resource_type, id)
        with driver_errors(), key_reader(self.engine) as raw, raw.cursor() as cursor:
            row = cursor.execute(sqlstore_pg.READ_ONE, (resource_type, id)).fetchone()
        if row is None:
            return None
        t, i, version, updated, deleted, content = row
        data = None if content is None else content.encode()
        return StoredResource(t, i, version, updated, deleted, data)

    def read_locked(
        self, connection: Connection, resource_type: str, id: str
    ) -> tuple[StoredResource | None, tuple[int, int, bool] | None]:
        """PostgreSQL: the current version of a resource, as :meth:`read`, with its row
        locked (``FOR UPDATE``) until ``connection``'s transaction ends, and what
        :meth:`apply` needs to know of it, as ``locked`` (``(pk, version_id, deleted)``, or
        ``None`` if there is no row). One round trip instead of a read and then a lock."""
        raw = driver_connection(connection)
        with driver_errors(), raw.cursor() as cursor:
            row = cursor.execute(sqlstore_pg.READ_ONE_LOCKED, (resource_type, id)).fetchone()
        if row is None:
            return None, None
        t, i, version, updated, deleted, content, pk = row
        data = None if content is None else content.encode()
        stored = StoredResource(t, i, version, updated, deleted, data)
        return stored, (pk, version, deleted)

    def read_many(
        self, connection: Connection, keys: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], StoredResource]:
        """Current versions of several resources, keyed by (type, id)."""
        keys = list(dict.fromkeys(keys))
        found: dict[tuple[str, str], StoredResource] = {}
        if self.dialect == "postgresql" and keys:
            for row in connection.exec_driver_sql(
                sqlstore_pg.READ_MANY, sqlstore_pg.key_arrays(keys)
            ):
                found[(row.resource_type, row.id)] = self._row(row)
            return found
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            rows = connection.execute(
                select(
                    *self._version_columns(RESOURCE),
                ).where(_keys_in(chunk))
            )
            for row in rows:
                found[(row.resource_type, row.id)] = self._row(row)
        return found

    def read_by_pks(self, connection: Connection, pks: Sequence[int]) -> list[StoredResource]:
        """Current versions for resource keys, in the order given."""
        by_pk: dict[int, StoredResource] = {}
        for start in range(0, len(pks), _CHUNK):
            rows = connection.execute(
                select(
                    RESOURCE.c.pk,
                    *self._version_columns(RESOURCE),
                ).where(RESOURCE.c.pk.in_(pks[start : start + _CHUNK]))
            )
            for row in rows:
                by_pk[row.pk] = self._row(row)
        return [by_pk[pk] for pk in pks if pk in by_pk]

    def vread(
        self, connection: Connection, resource_type: str, id: str, version_id: int
    ) -> StoredResource | None:
        """One version of a resource, current or historical."""
        current = self.read(connection, resource_type, id)
        if current is None or current.version_id == version_id:
            return current if current and current.version_id == version_id else None
        row = connection.execute(
            select(
                *self._version_columns(HISTORY),
            ).where(
                HISTORY.c.resource_type == resource_type,
                HISTORY.c.id == id,
                HISTORY.c.version_id == version_id,
            )
        ).first()
        return None if row is None else self._row(row)

    def history(
        self,
        connection: Connection,
        *,
        resource_type: str | None = None,
        id: str | None = None,
        since: int | None = None,
        position: HistoryPosition | None = None,
        backwards: bool = False,
        limit: int = 100,
        offset: int = 0,
    ) -> list[tuple[HistoryPosition, StoredResource]]:
        """One page of versions, newest first, each with its position in that order.

        The order is ``(last_updated, resource_type, id, version_id)`` descending: total,
        since a version is unique by type, id and version, and it never changes (an update
        moves the old current row to ``resource_history`` unchanged). Paging is by keyset
        (https://hl7.org/fhir/R4/http.html#paging): ``position`` is the last row of the
        previous page, and the page holds the versions strictly after it, so versions
        written meanwhile (all newer) never shift a later page. With ``backwards`` the page
        holds the versions strictly before ``position`` (a ``previous`` page), still
        returned newest first. Each table is read in that order and cut at ``limit`` (plus
        ``offset``) rows before the two are merged, so a page of a type's or a resource's
        history costs the same at any depth (system history reads every ``resource`` row:
        no index has ``last_updated`` first).

        Args:
            resource_type: Limit to one type (type and instance history).
            id: Limit to one resource (instance history).
            since: Only versions updated at or after this instant (epoch µs).
            position: The keyset anchor, a version's ``(last_updated, type, id, version)``.
            backwards: Page towards newer versions from ``position``.
            limit: Page size.
            offset: Versions to skip first (``_offset``, without ``position``).
        """
        branches = []
        for table in (RESOURCE, HISTORY):
            keys = (table.c.last_updated, table.c.resource_type, table.c.id, table.c.version_id)
            query = select(*self._version_columns(table))
            query = query.where(*self._history_filters(table, resource_type, id, since))
            if position is not None:
                row, anchor = tuple_(*keys), tuple_(*position)
                # The plain bound on the first key lets SQLite start its index scan at the
                # anchor (PostgreSQL also derives one from the row value).
                if backwards:
                    query = query.where(keys[0] >= position[0], row > anchor)
                else:
                    query = query.where(keys[0] <= position[0], row < anchor)
            order = [k.asc() if backwards else k.desc() for k in keys]
            branches.append(query.order_by(*order).limit(limit + offset).subquery())
        union = union_all(*(select(b) for b in branches)).subquery()
        keys = (union.c.last_updated, union.c.resource_type, union.c.id, union.c.version_id)
        order = [k.asc() if backwards else k.desc() for k in keys]
        rows = list(connection.execute(select(union).order_by(*order).limit(limit).offset(offset)))
        if backwards:
            rows.reverse()
        return [((r.last_updated, r.resource_type, r.id, r.version_id), self._row(r)) for r in rows]

    def history_total(
        self,
        connection: Connection,
        *,
        resource_type: str | None = None,
        id: str | None = None,
        since: int | None = None,
    ) -> int:
        """How many versions :meth:`history` pages through (``Bundle.total``)."""
        total = 0
        for table in (RESOURCE, HISTORY):
            query = select(_count()).select_from(table)
            query = query.where(*self._history_filters(table, resource_type, id, since))
            total += connection.scalar(query) or 0
        return total

    @staticmethod
    def _history_filters(
        table: Any, resource_type: str | None, id: str | None, since: int | None
    ) -> list[ColumnElement[bool]]:
        filters = []
        if resource_type is not None:
            filters.append(table.c.resource_type == resource_type)
        if id is not None:
            filters.append(table.c.id == id)
        if since is not None:
            filters.append(table.c.last_updated >= since)
        return filters

    def counts_by_type(self, connection: Connection) -> dict[str, int]:
        """Current (not deleted) resources per type."""
        rows = connection.execute(
            select(RESOURCE.c.resource_type, _count())
            .where(RESOURCE.c.deleted.is_(False))
            .group_by(RESOURCE.c.resource_type)
        )
        return {t: n for t, n in rows}

    # -- writes -------------------------------------------------------------------------

    def existing(
        self, connection: Connection, keys: Sequence[tuple[str, str]], *, lock: bool = False
    ) -> dict[tuple[str, str], tuple[int, int, bool]]:
        """(pk, version_id, deleted) for those of ``keys`` that exist.

        With ``lock`` the rows are locked until the transaction ends (``FOR UPDATE`` on
        PostgreSQL; SQLite's write transaction already holds the whole database).
        """
        if not keys:
            return {}
        if self.dialect != "postgresql":
            return sqlstore_sqlite.existing(connection, keys)
        found: dict[tuple[str, str], tuple[int, int, bool]] = {}
        if len(keys) == 1:  # one REST write: one fixed statement through the driver
            statement = sqlstore_pg.EXISTING_ONE_LOCKED if lock else sqlstore_pg.EXISTING_ONE
            raw = driver_connection(connection)
            with raw.cursor() as cursor:
                for t, i, pk, version, deleted in cursor.execute(statement, keys[0]).fetchall():
                    found[(t, i)] = (pk, version, deleted)
            return found
        # Sorted, so concurrent batches take their row locks in one order.
        statement = sqlstore_pg.EXISTING_LOCKED if lock else sqlstore_pg.EXISTING
        rows = connection.exec_driver_sql(statement, sqlstore_pg.key_arrays(sorted(set(keys))))
        for t, i, pk, version, deleted in rows:
            found[(t, i)] = (pk, version, deleted)
        return found

    @contextmanager
    def pipelined(
        self, connection: Connection, writes: Sequence[PendingWrite], *, commit: bool = False
    ) -> Iterator[None]:
        """Around :meth:`apply` and the writes' AuditEvents: for one resource on PostgreSQL,
        send the statements in pipeline mode, so that a REST write waits for the database
        only where it needs an answer (the version check) and once at the
        end, instead of once per statement (``docs/decisions/0021-single-write-pipeline.md``).
        Errors are raised as SQLAlchemy's classes, at the latest when the block ends.

        With ``commit`` the transaction is the write's own, begun for this block: on
        PostgreSQL its ``COMMIT`` goes in the same pipeline (the block's last round trip
        carries it; the commit has happened when the block ends), and its statements run
        with generic plans (:func:`sqlstore_pg.own_transaction`). Elsewhere the caller's
        transaction commits as usual.
        """
        if self.dialect != "postgresql" or len(writes) != 1:
            yield
            return
        with (
            _racing_create_refused(),
            sqlstore_pg.own_transaction(connection) if commit else sqlstore_pg.pipeline(connection),
        ):
            yield

    @contextmanager
    def own_write(self, connection: Connection) -> Iterator[None]:
        """Around the whole of a transaction begun for one resource's write (read, write,
        AuditEvent): on PostgreSQL, :meth:`pipelined` with ``commit``; the transaction has
        committed when the block ends. Elsewhere nothing: the caller commits."""
        if self.dialect != "postgresql":
            yield
            return
        with _racing_create_refused(), sqlstore_pg.own_transaction(connection):
            yield

    def apply(
        self,
        connection: Connection,
        writes: Sequence[PendingWrite],
        *,
        locked: dict[tuple[str, str], tuple[int, int, bool]] | None = None,
    ) -> None:
        """Apply prepared writes in the caller's transaction (see the module docstring).

        Each write names the version it creates, decided when it was prepared, possibly
        before this transaction began. The versions found now are checked against that, under
        a lock, so two requests racing on one resource cannot both write the same version.
        ``locked`` says the caller has already read and locked the rows in this transaction
        (:meth:`read_locked`): what it found, by ``(type, id)``; nothing is looked up again.

        Raises:
            ConcurrentUpdate: Another transaction changed one of the resources since it was
                read; the caller's transaction must roll back (nothing is half-written).
        """
        if not writes:
            return
        self.ensure_params()
        # A first version (a new server-assigned id, or a create at a client's id that was
        # absent when read) is an insert: if the row appeared since, the unique key on
        # (type, id) refuses it, so it needs no lookup. Later versions are checked here.
        if locked is None:
            keys = [(w.resource_type, w.id) for w in writes if w.version_id > 1]
            with driver_errors():
                existing = self.existing(connection, keys, lock=True)
        else:
            existing = locked
        for w in writes:
            found = existing.get((w.resource_type, w.id))
            if w.version_id > 1 and (found[1] if found else 0) != w.version_id - 1:
                raise ConcurrentUpdate()
        try:
            with driver_errors():
                self._apply_checked(connection, writes, existing)
        except IntegrityError as error:  # a concurrent create of the same id
            raise ConcurrentUpdate() from error

    def _apply_checked(
        self,
        connection: Connection,
        writes: Sequence[PendingWrite],
        existing: dict[tuple[str, str], tuple[int, int, bool]],
    ) -> None:
        updates = [w for w in writes if (w.resource_type, w.id) in existing]
        creates = [w for w in writes if (w.resource_type, w.id) not in existing]
        pks: dict[tuple[str, str], int] = {}
        for w in updates:
            pks[(w.resource_type, w.id)] = existing[(w.resource_type, w.id)][0]
        if self.dialect == "postgresql" and len(writes) == 1:
            (write,) = writes
            key = (write.resource_type, write.id)
            pk = sqlstore_pg.write_one(connection, write, pks.get(key))
            rows = self._index_rows(writes, {key: 0 if pk is None else pk})
            sqlstore_pg.insert_index_one(connection, rows, new=pk is None)
            return
        if self.dialect == "postgresql":
            # An update rewrites only the index rows of parameters whose values changed.
            sqlstore_pg.write_batch(connection, updates, creates, pks, self._index_rows)
            return
        sqlstore_sqlite.write_resources(connection, updates, creates, pks)
        for table, values in self._index_rows(writes, pks).items():
            sqlstore_sqlite.insert_rows(connection, table, values)

    def _index_rows(
        self, writes: Sequence[PendingWrite], pks: dict[tuple[str, str], int]
    ) -> dict[Table, dict[tuple[Any, ...], None]]:
        """The batch's index rows per table, in ascending resource key order.

        Rows go in that order (a dict keeps it while it drops duplicates): inserts then
        append to the right edge of every ``res`` index, whose pages PostgreSQL leaves 90%
        full instead of splitting them in half (``docs/decisions/0011-record-footprint.md``).
        """
        rows: dict[Table, dict[tuple[Any, ...], None]] = defaultdict(dict)
        ordered = sorted(
            ((pks[(w.resource_type, w.id)], w) for w in writes if not w.deleted),
            key=lambda pair: pair[0],
        )
        for res, w in ordered:
            if w.rows is not None:  # built ahead: only the key goes in
                for table, ahead in w.rows.items():
                    at, into = sqlstore_pg.RES_COLUMN[table], rows[table]
                    for row in ahead:
                        into[(*row[:at], res, *row[at + 1 :])] = None
                continue
            self._add_rows(w, res, rows)
        return rows

    def _add_rows(
        self, write: PendingWrite, res: int, rows: dict[Table, dict[tuple[Any, ...], None]]
    ) -> None:
        """Add ``write``'s index rows, with resource key ``res``, to ``rows`` (per table)."""
        stored = self._stored_params
        for value in write.index:
            key = (write.resource_type, value[0])
            param = stored.get(key, -1)
            if param == -1:
                param = stored[key] = self._stored_param(*key)
            if param is None:
                continue
            kind = type(value)
            build = ROW_BUILDERS.get(kind)
            if build is not None:
                rows[INDEX_TABLES[kind]][build(value, param, res)] = None

    def index_templates(self, write: PendingWrite) -> dict[Table, dict[tuple[Any, ...], None]]:
        """``write``'s index rows before its resource key is known: per table, the rows
        with ``res`` 0, in :meth:`_index_rows`' order (the store puts the key in).

        The ingest writer builds them while it plans a batch ahead, off its serial write
        transaction (``docs/decisions/0034-ingest-writer-rows-and-parameters.md``).
        """
        self.ensure_params()  # before any parameter is found storing no rows
        templates: dict[Table, dict[tuple[Any, ...], None]] = defaultdict(dict)
        self._add_rows(write, 0, templates)
        return dict(templates)

    def _stored_param(self, resource_type: str, code: str) -> int | None:
        """The id a parameter's index rows are stored under, or ``None`` if it stores none
        (served by the resource table's columns, derived from others, or unknown)."""
        if code in _COLUMN_PARAMS or stored_codes(resource_type, code) != (code,):
            return None
        return self._param_ids.get((resource_type, code))


@contextmanager
def _racing_create_refused() -> Iterator[None]:
    """Raise :class:`ConcurrentUpdate` for a create refused by the unique key on (type, id)
    when it is reported at the end of a pipeline (a pipelined create does not wait for its
    own answer): another request created the same resource first, as when :meth:`SqlStore.
    apply` sees it at once."""
    try:
        yield
    except IntegrityError as error:
        constraint = getattr(getattr(error.orig, "diag", None), "constraint_name", None)
        if constraint in RESOURCE_KEYS:
            raise ConcurrentUpdate() from error
        raise


def _keys_in(keys: Sequence[tuple[str, str]]) -> ColumnElement[bool]:
    """``(type, id) IN keys`` written as ``type = ? AND id IN (…)`` per type, ORed.

    SQLite plans a row-value ``IN (VALUES …)`` as a scan of the whole unique index, so every
    write batch got slower as the record grew (23 ms per HL7 message at 150k resources);
    grouped by type it is an index search on both databases.
    """
    by_type: dict[str, list[str]] = {}
    for resource_type, resource_id in keys:
        by_type.setdefault(resource_type, []).append(resource_id)
    clauses = [
        and_(RESOURCE.c.resource_type == resource_type, RESOURCE.c.id.in_(ids))
        for resource_type, ids in by_type.items()
    ]
    return clauses[0] if len(clauses) == 1 else or_(*clauses)


def _count() -> Any:
    return func.count()
