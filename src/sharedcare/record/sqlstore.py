"""The SQL store: resources, versions and search-index rows on SQLite and PostgreSQL.

The store knows tables and rows, not FHIR rules: the repository prepares each write
(validated JSON bytes and extracted index values) and the store applies a whole batch in a
handful of round trips, whatever its size:

1. one ``SELECT`` finds which resources already exist (``FOR UPDATE`` on PostgreSQL);
2. their current rows are copied to ``resource_history`` in one ``INSERT … SELECT``;
3. new resources are inserted in one ``INSERT … RETURNING pk``; existing ones are updated
   in one statement;
4. old index rows are deleted from every index table, and the new ones inserted
   with one ``COPY`` (PostgreSQL) or ``executemany`` (SQLite) per index table.

On PostgreSQL steps 1–3 are statements of fixed text taking arrays (``unnest``, ``= ANY``);
step 4's deletes are in the statement that updates: a text that changed with the batch
size was never in psycopg's cache, and converting its placeholders cost the writer as much
CPU as PostgreSQL's own work. The index rows stay on ``COPY``: one ``INSERT … SELECT FROM
unnest(…)`` for every table cost 40–60% more client CPU (psycopg builds array parameters in
Python, ``COPY`` rows in C) for the same server CPU (measured at 10,000 rows per batch).

Index rows are kept small (``docs/decisions/0011-record-footprint.md``): token and quantity
systems and composite combinations are stored as 64-bit keys, and a parameter that is
exactly the union of others (``Observation.combo-code``) stores no rows of its own.

One database round trip per entry is the known trap for FHIR servers; this avoids it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import (
    Connection,
    Engine,
    Table,
    and_,
    bindparam,
    cast,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy import Text as SqlText
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement

from sharedcare.db.engine import write_connection
from sharedcare.db.tables import (
    IdxComposite,
    IdxDate,
    IdxNumber,
    IdxQuantity,
    IdxReference,
    IdxString,
    IdxToken,
    IdxUri,
    Resource,
    ResourceHistory,
    SearchParamId,
)
from sharedcare.fhir.definitions import resource_types, search_parameters
from sharedcare.fhir.search_index import (
    CompositeValue,
    DateValue,
    IndexValue,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    StringValue,
    TokenValue,
    UriValue,
)
from sharedcare.record.derived import derived_from
from sharedcare.record.errors import ConcurrentUpdate
from sharedcare.record.keys import combination_key, system_key
from sharedcare.record.search.composite import composite_columns

__all__ = ["INDEX_TABLES", "PendingWrite", "SqlStore", "StoredResource"]

RESOURCE: Any = Resource.__table__
HISTORY: Any = ResourceHistory.__table__
INDEX_TABLES: dict[type, Table] = {
    StringValue: IdxString.__table__,  # type: ignore[dict-item]
    TokenValue: IdxToken.__table__,  # type: ignore[dict-item]
    ReferenceValue: IdxReference.__table__,  # type: ignore[dict-item]
    DateValue: IdxDate.__table__,  # type: ignore[dict-item]
    NumberValue: IdxNumber.__table__,  # type: ignore[dict-item]
    QuantityValue: IdxQuantity.__table__,  # type: ignore[dict-item]
    UriValue: IdxUri.__table__,  # type: ignore[dict-item]
    CompositeValue: IdxComposite.__table__,  # type: ignore[dict-item]
}
_CHUNK = 500  # rows per IN-list, within every database's parameter limits
# Served by the resource table's own columns, so they need no index rows.
_COLUMN_PARAMS = frozenset({"_id", "_lastUpdated"})
# The write statements, built once (building them per call was most of their cost).
_PKS: Any = bindparam("b_pks", expanding=True)
_COPY_TO_HISTORY = insert(HISTORY).from_select(
    ["resource_type", "id", "version_id", "last_updated", "deleted", "content"],
    select(
        RESOURCE.c.resource_type,
        RESOURCE.c.id,
        RESOURCE.c.version_id,
        RESOURCE.c.last_updated,
        RESOURCE.c.deleted,
        RESOURCE.c.content,
    ).where(RESOURCE.c.pk.in_(_PKS)),
)
_DELETE_INDEX_ROWS = [delete(t).where(t.c.res.in_(_PKS)) for t in INDEX_TABLES.values()]
_UPDATE_CURRENT = (
    update(RESOURCE)
    .where(RESOURCE.c.pk == bindparam("b_pk"))
    .values(
        version_id=bindparam("b_version"),
        last_updated=bindparam("b_updated"),
        deleted=bindparam("b_deleted"),
        content=bindparam("b_content", type_=RESOURCE.c.content.type),
    )
)
_INSERT_CURRENT = insert(RESOURCE).returning(RESOURCE.c.pk, sort_by_parameter_order=True)
# PostgreSQL statements: fixed texts whatever the batch size, with arrays for the rows.
# A text that changed with the batch (a long ``IN (…)`` list, a multi-row ``VALUES``) was
# never in psycopg's cache, so every call paid for converting its placeholders, and
# PostgreSQL for parsing it; these are converted once and then prepared per connection.
# Documents travel as one JSON array (``jsonb_array_elements``): a ``jsonb[]`` parameter
# would be sent as array text, every quote in every document escaped.
_PG_EXISTING = (
    "SELECT r.resource_type, r.id, r.pk, r.version_id, r.deleted FROM resource r "
    "JOIN unnest(%(types)s::text[], %(ids)s::text[]) AS k(t, i) "
    "ON r.resource_type = k.t AND r.id = k.i"
)
_PG_EXISTING_LOCKED = _PG_EXISTING + " FOR UPDATE OF r"
_PG_READ_MANY = (
    "SELECT r.resource_type, r.id, r.version_id, r.last_updated, r.deleted, "
    "r.content::text AS content FROM resource r "
    "JOIN unnest(%(types)s::text[], %(ids)s::text[]) AS k(t, i) "
    "ON r.resource_type = k.t AND r.id = k.i"
)
# Updates in one statement: the current rows are copied to history, their index rows
# deleted from every table, and the new versions written. Every part sees the snapshot
# taken before the statement, so history receives the old versions.
_PG_UPDATE = (
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
    "unnest(%(deleted)s::boolean[]), jsonb_array_elements(%(docs)s::jsonb)) "
    "AS u(pk, version_id, last_updated, deleted, content)) "
    "UPDATE resource SET version_id = u.version_id, last_updated = u.last_updated, "
    "deleted = u.deleted, content = NULLIF(u.content, 'null'::jsonb) "
    "FROM u WHERE resource.pk = u.pk"
)
_PG_CREATE = (
    "INSERT INTO resource (resource_type, id, version_id, last_updated, deleted, content) "
    "SELECT t, i, v, lu, d, NULLIF(c, 'null'::jsonb) FROM ROWS FROM "
    "(unnest(%(types)s::text[]), unnest(%(ids)s::text[]), unnest(%(versions)s::integer[]), "
    "unnest(%(updated)s::bigint[]), unnest(%(deleted)s::boolean[]), "
    "jsonb_array_elements(%(docs)s::jsonb)) AS u(t, i, v, lu, d, c) "
    "RETURNING pk, resource_type, id"
)


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


def _blank(value: str | None) -> str:
    return "" if value is None else value


def _composite_row(param: int, components: Sequence[Any], res: int) -> tuple[Any, ...]:
    """The ``idx_composite`` row for one combination, in the table's column order."""
    code1, *rest = composite_columns(tuple(components))
    canonical = orjson.dumps([list(c) for c in components], default=str).decode()
    return (param, _blank(code1), combination_key(canonical), res, *rest)


class SqlStore:
    """Rows for one database. Thread-safe; share one per engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._param_ids: dict[tuple[str, str], int] = {}
        self._param_names: dict[int, tuple[str, str]] = {}
        # (type, code) -> the id its index rows are stored under, or None: see _stored_param.
        self._stored_params: dict[tuple[str, str], int | None] = {}
        # The one-resource statements, built once: building a SELECT and its cache key on
        # every call cost 60 of the 75 us of a read by id (SQLite, measured in-process).
        one = and_(
            RESOURCE.c.resource_type == bindparam("b_type"), RESOURCE.c.id == bindparam("b_id")
        )
        self._read_one = select(*self._version_columns(RESOURCE)).where(one)
        existing_one = select(
            RESOURCE.c.resource_type,
            RESOURCE.c.id,
            RESOURCE.c.pk,
            RESOURCE.c.version_id,
            RESOURCE.c.deleted,
        ).where(one)
        self._existing_one = existing_one
        self._existing_one_locked = (
            existing_one.with_for_update() if self.dialect == "postgresql" else existing_one
        )

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
        """The current version of a resource (possibly a deletion), or ``None``."""
        row = connection.execute(self._read_one, {"b_type": resource_type, "b_id": id}).first()
        return None if row is None else self._row(row)

    def read_many(
        self, connection: Connection, keys: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], StoredResource]:
        """Current versions of several resources, keyed by (type, id)."""
        keys = list(dict.fromkeys(keys))
        found: dict[tuple[str, str], StoredResource] = {}
        if self.dialect == "postgresql" and keys:
            for row in connection.exec_driver_sql(_PG_READ_MANY, _key_arrays(keys)):
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
        before: int | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[list[StoredResource], int]:
        """Versions newest first, and how many there are in all.

        Args:
            resource_type: Limit to one type (type and instance history).
            id: Limit to one resource (instance history).
            since: Only versions updated at or after this instant (epoch µs).
            before: Only versions updated before this instant (a stable page anchor).
            limit: Page size.
            offset: Versions to skip.
        """
        selects = []
        for table in (RESOURCE, HISTORY):
            query = select(
                *self._version_columns(table),
            )
            if resource_type is not None:
                query = query.where(table.c.resource_type == resource_type)
            if id is not None:
                query = query.where(table.c.id == id)
            if since is not None:
                query = query.where(table.c.last_updated >= since)
            if before is not None:
                query = query.where(table.c.last_updated < before)
            selects.append(query)
        union = selects[0].union_all(selects[1]).subquery()
        total = connection.scalar(select(_count()).select_from(union)) or 0
        rows = connection.execute(
            select(union)
            .order_by(union.c.last_updated.desc(), union.c.version_id.desc())
            .limit(limit)
            .offset(offset)
        )
        return [self._row(row) for row in rows], total

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
        found: dict[tuple[str, str], tuple[int, int, bool]] = {}
        if len(keys) == 1:  # one REST write: the prebuilt statement
            query = self._existing_one_locked if lock else self._existing_one
            ((resource_type, resource_id),) = keys
            params = {"b_type": resource_type, "b_id": resource_id}
            for t, i, pk, version, deleted in connection.execute(query, params):
                found[(t, i)] = (pk, version, deleted)
            return found
        if self.dialect == "postgresql":
            # Sorted, so concurrent batches take their row locks in one order.
            statement = _PG_EXISTING_LOCKED if lock else _PG_EXISTING
            rows = connection.exec_driver_sql(statement, _key_arrays(sorted(set(keys))))
            for t, i, pk, version, deleted in rows:
                found[(t, i)] = (pk, version, deleted)
            return found
        for start in range(0, len(keys), _CHUNK):
            query = select(
                RESOURCE.c.resource_type,
                RESOURCE.c.id,
                RESOURCE.c.pk,
                RESOURCE.c.version_id,
                RESOURCE.c.deleted,
            ).where(_keys_in(keys[start : start + _CHUNK]))
            rows = connection.execute(query)
            for t, i, pk, version, deleted in rows:
                found[(t, i)] = (pk, version, deleted)
        return found

    def apply(self, connection: Connection, writes: Sequence[PendingWrite]) -> None:
        """Apply prepared writes in the caller's transaction (see the module docstring).

        Each write names the version it creates, decided when it was prepared, possibly
        before this transaction began. The versions found now are checked against that, under
        a lock, so two requests racing on one resource cannot both write the same version.

        Raises:
            ConcurrentUpdate: Another transaction changed one of the resources since it was
                read; the caller's transaction must roll back (nothing is half-written).
        """
        if not writes:
            return
        self.ensure_params()
        keys = [(w.resource_type, w.id) for w in writes]
        existing = self.existing(connection, keys, lock=True)
        for w in writes:
            found = existing.get((w.resource_type, w.id))
            if (found[1] if found else 0) != w.version_id - 1:
                raise ConcurrentUpdate()
        try:
            self._apply_checked(connection, writes, existing)
        except IntegrityError as error:  # a concurrent create of the same id (PostgreSQL)
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
        if self.dialect == "postgresql":
            self._pg_write(connection, updates, creates, pks)
            self._insert_index(connection, writes, pks)
            return
        if updates:
            old_pks = [pks[(w.resource_type, w.id)] for w in updates]
            for start in range(0, len(old_pks), _CHUNK):
                chunk = old_pks[start : start + _CHUNK]
                connection.execute(_COPY_TO_HISTORY, {"b_pks": chunk})
                for statement in _DELETE_INDEX_ROWS:
                    connection.execute(statement, {"b_pks": chunk})
            connection.execute(
                _UPDATE_CURRENT,
                [
                    {
                        "b_pk": pks[(w.resource_type, w.id)],
                        "b_version": w.version_id,
                        "b_updated": w.last_updated,
                        "b_deleted": w.deleted,
                        "b_content": w.content,
                    }
                    for w in updates
                ],
            )
        if creates:
            result = connection.execute(
                _INSERT_CURRENT,
                [
                    {
                        "resource_type": w.resource_type,
                        "id": w.id,
                        "version_id": w.version_id,
                        "last_updated": w.last_updated,
                        "deleted": w.deleted,
                        "content": w.content,
                    }
                    for w in creates
                ],
            )
            for w, pk in zip(creates, result.scalars(), strict=True):
                pks[(w.resource_type, w.id)] = pk
        self._insert_index(connection, writes, pks)

    def _pg_write(
        self,
        connection: Connection,
        updates: Sequence[PendingWrite],
        creates: Sequence[PendingWrite],
        pks: dict[tuple[str, str], int],
    ) -> None:
        """Resource rows on PostgreSQL: one statement for all updates (history, old index
        rows, new versions) and one for all creates, adding the new keys to ``pks``."""
        if updates:
            connection.exec_driver_sql(
                _PG_UPDATE,
                {
                    "pks": [pks[(w.resource_type, w.id)] for w in updates],
                    "versions": [w.version_id for w in updates],
                    "updated": [w.last_updated for w in updates],
                    "deleted": [w.deleted for w in updates],
                    "docs": json_array([w.content for w in updates]),
                },
            )
        if creates:
            result = connection.exec_driver_sql(
                _PG_CREATE,
                {
                    "types": [w.resource_type for w in creates],
                    "ids": [w.id for w in creates],
                    "versions": [w.version_id for w in creates],
                    "updated": [w.last_updated for w in creates],
                    "deleted": [w.deleted for w in creates],
                    "docs": json_array([w.content for w in creates]),
                },
            )
            for pk, resource_type, resource_id in result:
                pks[(resource_type, resource_id)] = pk

    def _index_rows(
        self, writes: Sequence[PendingWrite], pks: dict[tuple[str, str], int]
    ) -> dict[Table, dict[tuple[Any, ...], None]]:
        """The batch's index rows per table, in ascending resource key order.

        Rows go in that order (a dict keeps it while it drops duplicates): inserts then
        append to the right edge of every ``res`` index, whose pages PostgreSQL leaves 90%
        full instead of splitting them in half (``docs/decisions/0011-record-footprint.md``).
        """
        rows: dict[Table, dict[tuple[Any, ...], None]] = defaultdict(dict)
        stored = self._stored_params
        ordered = sorted(
            ((pks[(w.resource_type, w.id)], w) for w in writes if not w.deleted),
            key=lambda pair: pair[0],
        )
        for res, w in ordered:
            for value in w.index:
                key = (w.resource_type, value[0])
                param = stored.get(key, -1)
                if param == -1:
                    param = stored[key] = self._stored_param(*key)
                if param is None:
                    continue
                kind = type(value)
                build = _ROW_BUILDERS.get(kind)
                if build is not None:
                    rows[INDEX_TABLES[kind]][build(value, param, res)] = None
        return rows

    def _stored_param(self, resource_type: str, code: str) -> int | None:
        """The id a parameter's index rows are stored under, or ``None`` if it stores none
        (served by the resource table's columns, derived from others, or unknown)."""
        if code in _COLUMN_PARAMS or derived_from(resource_type, code):
            return None
        return self._param_ids.get((resource_type, code))

    def _insert_index(
        self,
        connection: Connection,
        writes: Sequence[PendingWrite],
        pks: dict[tuple[str, str], int],
    ) -> None:
        for table, values in self._index_rows(writes, pks).items():
            self._bulk_insert(connection, table, values)

    def _bulk_insert(self, connection: Connection, table: Table, rows: Iterable[Any]) -> None:
        """Insert plain tuples through the driver: ``COPY`` on PostgreSQL, ``executemany`` on
        SQLite. Binding thousands of rows through SQLAlchemy's compiler costs more than the
        database's own work."""
        names = [c.name for c in table.columns]
        raw = connection.connection.driver_connection
        assert raw is not None
        if self.dialect == "postgresql":
            with (
                raw.cursor() as cursor,
                cursor.copy(f"COPY {table.name} ({', '.join(names)}) FROM STDIN") as copy,
            ):
                for row in rows:
                    copy.write_row(row)
        else:
            marks = ", ".join("?" * len(names))
            cursor = raw.cursor()
            cursor.executemany(
                f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({marks})", list(rows)
            )
            cursor.close()


def _token_row(value: TokenValue, param: int, res: int) -> tuple[Any, ...]:
    return (
        param,
        _blank(value.code)[:512],
        _system_key(value.system),
        res,
        _blank(value.text)[:512],
    )


def _string_row(value: StringValue, param: int, res: int) -> tuple[Any, ...]:
    return (param, value.normalized[:512], value.exact[:512], res)


def _reference_row(value: ReferenceValue, param: int, res: int) -> tuple[Any, ...]:
    return (
        param,
        _blank(value.target_id),
        _blank(value.target_type),
        res,
        _blank(value.version),
        _blank(value.url),
    )


def _date_row(value: DateValue, param: int, res: int) -> tuple[Any, ...]:
    return (param, value.low, value.high, res)


def _number_row(value: NumberValue, param: int, res: int) -> tuple[Any, ...]:
    return (param, value.value, res)


def _quantity_row(value: QuantityValue, param: int, res: int) -> tuple[Any, ...]:
    code, unit = _blank(value.code), _blank(value.unit)
    return (param, value.value, code, _system_key(value.system), unit, res)


def _uri_row(value: UriValue, param: int, res: int) -> tuple[Any, ...]:
    return (param, value.uri, res)


def _composite_value_row(value: CompositeValue, param: int, res: int) -> tuple[Any, ...]:
    return _composite_row(param, value.components, res)


# The index-table row for one value, in the table's column order, by the value's type.
_ROW_BUILDERS: dict[type, Callable[[Any, int, int], tuple[Any, ...]]] = {
    TokenValue: _token_row,
    StringValue: _string_row,
    ReferenceValue: _reference_row,
    DateValue: _date_row,
    NumberValue: _number_row,
    QuantityValue: _quantity_row,
    UriValue: _uri_row,
    CompositeValue: _composite_value_row,
}
# A record holds few distinct systems; their digests were a tenth of building index rows.
_system_key = lru_cache(maxsize=4096)(system_key)


def _index_row(value: IndexValue, param: int, res: int) -> tuple[Any, ...] | None:
    """The index-table row for one value, in the table's column order."""
    build = _ROW_BUILDERS.get(type(value))
    return None if build is None else build(value, param, res)


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


def _key_arrays(keys: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    """``(type, id)`` keys as the two arrays the PostgreSQL statements ``unnest``."""
    return {"types": [t for t, _ in keys], "ids": [i for _, i in keys]}


def json_array(documents: Sequence[bytes | None]) -> str:
    """JSON documents (bytes, ``None`` for none) as one JSON array, for
    ``jsonb_array_elements``: joined, not parsed; ``None`` becomes ``null``."""
    return (b"[" + b",".join(b"null" if d is None else d for d in documents) + b"]").decode()


def _count() -> Any:
    return func.count()
