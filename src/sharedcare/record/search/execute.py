"""Running a compiled search: one page of keys, the paging cursors and the total.

``_total`` (https://hl7.org/fhir/R4/search.html#total): ``none`` skips counting;
``accurate`` counts (by intersecting index scans where every condition is one, so the
resource table is not read); ``estimate`` asks PostgreSQL's planner (on SQLite it counts).
When the first page holds every match, its length is the total and no count runs.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from sqlalchemy import Connection, Select, Text, cast
from sqlalchemy.util import await_only

from sharedcare.db.engine import driver_connection, driver_errors
from sharedcare.record.search import CompiledSearch
from sharedcare.record.search.clauses import RESOURCE
from sharedcare.record.search.model import SearchRequest
from sharedcare.record.search.paging import decode_cursor, encode_cursor
from sharedcare.record.sqlstore import StoredResource


@dataclass(slots=True)
class PageResult:
    """Keys of one page of matches, in order, with the total and the paging cursors."""

    pks: list[int]
    total: int | None
    resources: list[StoredResource] = field(default_factory=list)
    next_cursor: str | None = None
    previous_cursor: str | None = None
    first: bool = True


def run_search(
    connection: Connection, request: SearchRequest, compiled: CompiledSearch
) -> PageResult:
    """Run ``compiled`` for ``request``: the page, the total (as asked) and the cursors."""
    if request.summary == "count":
        return PageResult([], _total(connection, compiled, "accurate"))
    anchor: list[Any] | None = None
    before = False
    if request.cursor is not None:
        direction, anchor = decode_cursor(request.cursor, compiled.keys)
        before = direction == "prev"
    size = request.count
    width = len(compiled.keys)
    query, params = compiled.page(
        size + 1,
        offset=request.offset,
        anchor=anchor,
        before=before,
        columns=page_columns(connection),
    )
    rows = fetch_rows(connection, query, params, kept=compiled.plan.kept)
    more = len(rows) > size
    rows = rows[:size]
    if before:
        rows.reverse()
    positions = [[*row[1:width], row[0]] for row in rows]
    result = PageResult([row[0] for row in rows], None, [stored_of(row) for row in rows])
    result.first = anchor is None and request.offset == 0
    if positions:
        if more or before:
            result.next_cursor = encode_cursor("next", positions[-1])
        if (before and more) or (not before and not result.first):
            result.previous_cursor = encode_cursor("prev", positions[0])
    if request.total != "none":
        if result.first and not more:
            result.total = len(rows)
        else:
            result.total = _total(connection, compiled, request.total)
    return result


def _total(connection: Connection, compiled: CompiledSearch, mode: str) -> int:
    plan = compiled.plan
    if mode == "estimate" and connection.dialect.name == "postgresql":
        # The planner's row estimate for each index scan (its statistics on the index
        # columns are good); the matches are at most the smallest of them.
        scans = plan.index_scans or [plan.matches()]
        return min(_planned_rows(connection, scan, compiled.params) for scan in scans)
    return int(connection.scalar(plan.count(), compiled.params) or 0)


def _planned_rows(connection: Connection, query: Any, params: dict[str, Any]) -> int:
    statement = query.compile(dialect=connection.dialect)
    plan = connection.exec_driver_sql(
        "EXPLAIN (FORMAT JSON) " + str(statement), statement.construct_params(params)
    ).scalar()
    if isinstance(plan, list) and plan:
        return int(plan[0]["Plan"]["Plan Rows"])
    return 0


def fetch_rows(
    connection: Connection, query: Select[Any], params: dict[str, Any], *, kept: bool = True
) -> list[Any]:
    """The rows of a page or include-step statement.

    On PostgreSQL a statement that is kept (per search shape, or per include step) is
    compiled once and then run on the psycopg connection itself (in the SQLAlchemy
    connection's transaction, or in autocommit as searches are): SQLAlchemy's ``execute``
    walks the whole statement to find its cache key and sets up a result on every call,
    which cost more Python than the driver's own execution
    (``docs/decisions/0022-search-cpu-per-request.md``). A statement built for one request
    (``kept=False``: a compartment search) or one the driver cannot take as it is
    (expanding ``IN`` lists, bind processors) goes through SQLAlchemy.
    """
    if kept and connection.dialect.name == "postgresql":
        text = _driver_text(connection, query)
        if text is not None:
            sql, constants = text
            values = {**constants, **params} if constants else params
            raw = driver_connection(connection)
            if isinstance(raw, psycopg.AsyncConnection):
                # A search in the API server's event loop (``api.fhir``): the statement
                # is awaited there, from the greenlet the search runs in.
                with driver_errors():
                    rows: list[Any] = await_only(_fetch_async(raw, sql, values))
                return rows
            with driver_errors(), raw.cursor() as cursor:
                cursor.execute(sql, values)
                rows = cursor.fetchall()
                return rows
    return list(connection.execute(query, params).all())


async def _fetch_async(raw: psycopg.AsyncConnection[Any], sql: bytes, values: Any) -> list[Any]:
    async with raw.cursor() as cursor:
        await cursor.execute(sql, values)
        return await cursor.fetchall()


def _driver_text(connection: Connection, query: Select[Any]) -> tuple[bytes, dict[str, Any]] | None:
    """``query`` compiled for psycopg: its text and the values of the parameters it binds
    itself (a resource type...); ``None`` if it needs SQLAlchemy to run it.

    The text is kept encoded: psycopg encodes a ``str`` query on every execution and then
    finds its converted form by the bytes' hash, which a new ``bytes`` object computes
    again over the whole text; one kept ``bytes`` object computes it once."""
    try:
        return _TEXTS[query]
    except KeyError:
        pass
    compiled = query.compile(dialect=connection.dialect)
    text: tuple[bytes, dict[str, Any]] | None = None
    sql = str(compiled)
    plain = not compiled._bind_processors and not compiled.escaped_bind_names
    if plain and "POSTCOMPILE" not in sql:
        constants = {
            compiled.bind_names[bind]: bind.effective_value
            for bind in compiled.binds.values()
            if not bind.required
        }
        text = (sql.encode(), constants)
    _TEXTS[query] = text
    return text


#: Compiled texts by statement, for as long as the statement is kept (by its plan, or the
#: include steps' cache, both bounded).
_TEXTS: weakref.WeakKeyDictionary[Select[Any], tuple[bytes, dict[str, Any]] | None] = (
    weakref.WeakKeyDictionary()
)


def page_columns(connection: Connection) -> list[Any]:
    """The resource columns a page (or an include step) returns, so resources come back in
    the same query that finds them."""
    dialect = connection.dialect.name
    columns = _COLUMNS.get(dialect)
    if columns is None:
        content = RESOURCE.c.content
        if dialect == "postgresql":
            content = cast(content, Text)  # jsonb as text: handed to the client as it is
        columns = _COLUMNS[dialect] = [
            RESOURCE.c.resource_type,
            RESOURCE.c.id,
            RESOURCE.c.version_id,
            RESOURCE.c.last_updated,
            content.label("content"),
        ]
    return columns


_COLUMNS: dict[str, list[Any]] = {}


def stored_of(row: Sequence[Any]) -> StoredResource:
    """The resource in a row ending with the :func:`page_columns`."""
    resource_type, id, version_id, last_updated, content = row[-5:]
    if isinstance(content, str):
        content = content.encode()
    return StoredResource(resource_type, id, version_id, last_updated, False, content)


_BYTEWISE = frozenset({"c", "posix", "c.utf-8", "c.utf8", "ucs_basic"})
_collations: dict[Any, bool] = {}
_engine_collations: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


def bytewise_collation(connection: Connection) -> bool:
    """Whether the database compares text in byte order (SQLite always; PostgreSQL when
    its collation is C). Asked once per database, remembered per engine (a URL's hash
    renders its text: 8 µs a search)."""
    if connection.dialect.name != "postgresql":
        return True
    engine = connection.engine
    found = _engine_collations.get(engine)
    if found is not None:
        return found
    key = engine.url
    if key not in _collations:
        collation = connection.exec_driver_sql(
            "SELECT datcollate FROM pg_database WHERE datname = current_database()"
        ).scalar()
        _collations[key] = str(collation).lower() in _BYTEWISE
    _engine_collations[engine] = _collations[key]
    return _collations[key]
