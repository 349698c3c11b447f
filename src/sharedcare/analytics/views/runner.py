"""Run compiled views inside DuckDB or PostgreSQL.

Evaluation happens in the engine; Python only hands over the SQL and collects the rows.
Engine errors are translated into ``ViewEvaluationError`` without echoing resource data.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from sharedcare.analytics.views.compiler import CompiledView, compile_view
from sharedcare.analytics.views.dialects import DIALECTS, Dialect, Source
from sharedcare.analytics.views.errors import RUNTIME_ERROR_PREFIX, ViewEvaluationError
from sharedcare.analytics.views.model import ViewDefinition, parse_view

_OUR_MESSAGE = re.compile(
    re.escape(RUNTIME_ERROR_PREFIX) + r'([^"\n]*?)(?:\s+SQLSTATE:.*)?(?:["\n]|$)'
)


@dataclass(frozen=True)
class ViewResult:
    """Rows of an evaluated view."""

    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]

    def as_dicts(self) -> list[dict[str, Any]]:
        """Rows as ``{column: value}`` dicts."""
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


def as_view(view: ViewDefinition | dict[str, Any]) -> ViewDefinition:
    """Validate raw ViewDefinition JSON, or pass a validated view through."""
    return view if isinstance(view, ViewDefinition) else parse_view(view)


def compile_for(view: ViewDefinition | dict[str, Any], engine: str, source: Source) -> CompiledView:
    """Compile a view for an engine name (``duckdb`` or ``postgres``)."""
    try:
        dialect: Dialect = DIALECTS[engine]()
    except KeyError:
        raise ValueError(
            f"unknown engine '{engine}'; choose one of: {', '.join(sorted(DIALECTS))}"
        ) from None
    return compile_view(as_view(view), dialect, source)


def _table_name(view: ViewDefinition, name: str | None) -> str:
    chosen = name or view.name
    if not chosen or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", chosen):
        raise ValueError(
            "give the table/view a name of letters, digits and '_' (the ViewDefinition's "
            "name is missing or not usable as one)"
        )
    return '"' + chosen + '"'


def create_view_sql(
    view: ViewDefinition | dict[str, Any], engine: str, source: Source, name: str | None = None
) -> str:
    """``CREATE OR REPLACE VIEW`` statement: a live SQL view over ``source``.

    Args:
        view: ViewDefinition JSON or a validated view.
        engine: ``duckdb`` or ``postgres``.
        source: relation holding the resources (e.g. the record store's jsonb table).
        name: SQL view name; defaults to the ViewDefinition's ``name``.
    """
    parsed = as_view(view)
    compiled = compile_for(parsed, engine, source)
    return f"CREATE OR REPLACE VIEW {_table_name(parsed, name)} AS {compiled.sql}"


def translate_error(engine: str, exc: BaseException) -> ViewEvaluationError:
    """Turn an engine exception into a data-free ``ViewEvaluationError``."""
    match = _OUR_MESSAGE.search(str(exc))
    if match:
        return ViewEvaluationError(match.group(1).strip())
    return ViewEvaluationError(
        f"the {engine} engine failed to evaluate the view ({type(exc).__name__}); check that "
        "the column types in the view match the data"
    )


# --- DuckDB -----------------------------------------------------------------------------------
def ndjson_source(paths: str | Path | Sequence[str | Path]) -> Source:
    """DuckDB source reading NDJSON file(s), one resource per line."""
    items = [paths] if isinstance(paths, (str, Path)) else list(paths)
    quoted = ", ".join("'" + str(p).replace("'", "''") + "'" for p in items)
    return Source(f"read_ndjson_objects([{quoted}])", "json")


def parquet_source(
    paths: str | Path | Sequence[str | Path], json_column: str = "resource"
) -> Source:
    """DuckDB source over Parquet file(s) whose ``json_column`` holds resource JSON text."""
    items = [paths] if isinstance(paths, (str, Path)) else list(paths)
    quoted = ", ".join("'" + str(p).replace("'", "''") + "'" for p in items)
    col = '"' + json_column.replace('"', '""') + '"'
    return Source(
        f"(SELECT CAST({col} AS JSON) AS resource FROM read_parquet([{quoted}]))", "resource"
    )


def load_duckdb_table(con: Any, table: str, resources: Iterable[dict[str, Any]]) -> Source:
    """Create (or replace) a DuckDB table ``table(resource JSON)`` from in-memory resources."""
    texts = [orjson.dumps(r).decode() for r in resources]
    ident = '"' + table.replace('"', '""') + '"'
    con.execute(f"CREATE OR REPLACE TABLE {ident} (resource JSON)")
    if texts:
        con.execute(
            f"INSERT INTO {ident} SELECT CAST(j AS JSON) FROM (SELECT unnest(?) AS j)", [texts]
        )
    return Source(ident, "resource")


def run_duckdb(con: Any, view: ViewDefinition | dict[str, Any], source: Source) -> ViewResult:
    """Evaluate a view in DuckDB.

    Args:
        con: a ``duckdb.DuckDBPyConnection``.
        view: ViewDefinition JSON or a validated view.
        source: where the resources are (see ``ndjson_source``, ``load_duckdb_table``).

    Raises:
        ViewDefinitionError: invalid view.
        ViewEvaluationError: the engine failed while evaluating.
    """
    import duckdb

    compiled = compile_for(view, "duckdb", source)
    try:
        rows = con.execute(compiled.sql).fetchall()
    except duckdb.Error as exc:
        raise translate_error("duckdb", exc) from exc
    return ViewResult(tuple(c.name for c in compiled.columns), rows)


def materialise_duckdb(
    con: Any, view: ViewDefinition | dict[str, Any], source: Source, table: str | None = None
) -> int:
    """Evaluate a view into a DuckDB table (``CREATE OR REPLACE TABLE ... AS``).

    Returns:
        The number of rows written.
    """
    import duckdb

    parsed = as_view(view)
    compiled = compile_for(parsed, "duckdb", source)
    ident = _table_name(parsed, table)
    try:
        con.execute(f"CREATE OR REPLACE TABLE {ident} AS {compiled.sql}")
        count = con.execute(f"SELECT count(*) FROM {ident}").fetchone()
    except duckdb.Error as exc:
        raise translate_error("duckdb", exc) from exc
    return int(count[0]) if count else 0


# --- PostgreSQL -------------------------------------------------------------------------------
def record_store_source(table: str = "resource") -> Source:
    """PostgreSQL source over the record store's current resources (deleted ones excluded).

    The record store keeps one row per resource in ``resource(resource_type, id, content json,
    deleted, ...)`` (``sharedcare.db.tables.record``); views over this source are live. The
    views read ``jsonb``, so each row's text is converted as it is read (the store keeps the
    smaller ``json``: ``docs/decisions/0011-record-footprint.md``, addendum of session 11).
    """
    ident = '"' + table.replace('"', '""') + '"'
    return Source(
        f"(SELECT resource_type, content::jsonb AS content FROM {ident} WHERE NOT deleted)",
        "content",
        "resource_type",
    )


def load_postgres_table(conn: Any, table: str, resources: Iterable[dict[str, Any]]) -> Source:
    """Create a temporary table ``(resource_type text, id text, content jsonb)`` and fill it."""
    ident = '"' + table.replace('"', '""') + '"'
    with conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {ident}")
        cur.execute(f"CREATE TEMPORARY TABLE {ident} (resource_type text, id text, content jsonb)")
        rows = [(r.get("resourceType"), r.get("id"), orjson.dumps(r).decode()) for r in resources]
        if rows:
            cur.executemany(
                f"INSERT INTO {ident} (resource_type, id, content) VALUES (%s, %s, %s::jsonb)",
                rows,
            )
    return Source(ident, "content", "resource_type")


def run_postgres(conn: Any, view: ViewDefinition | dict[str, Any], source: Source) -> ViewResult:
    """Evaluate a view in PostgreSQL (psycopg 3 connection).

    Runs inside a savepoint so a failing view leaves the caller's transaction usable.
    """
    import psycopg

    compiled = compile_for(view, "postgres", source)
    try:
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(compiled.sql)
            rows = cur.fetchall()
    except psycopg.Error as exc:
        raise translate_error("postgres", exc) from exc
    return ViewResult(tuple(c.name for c in compiled.columns), [tuple(r) for r in rows])
