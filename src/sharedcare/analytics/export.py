"""Export views to Parquet for secondary use: opt-outs excluded, optionally pseudonymised.

Where the SQL runs:

- ``--source DIR`` (NDJSON): DuckDB reads every ``*.ndjson[.gz]`` file once into a table
  (Bundle lines unpacked into their entries) and evaluates each view there.
- PostgreSQL record store: each view is compiled for PostgreSQL and evaluated live over the
  ``resource`` table (opt-out anti-join and pseudonymisation included), streamed out with a
  server-side cursor, and DuckDB writes the Parquet file.
- SQLite record store: the views do not compile for SQLite (there is no SQLite dialect: the
  compiler relies on list lambdas and lateral unnesting that SQLite's JSON1 lacks), so the
  current resources are streamed out of the store into DuckDB in batches (about 55,000
  resources/s measured on the shared 2-core machine) and the views run there.

The opt-out exclusion (``sharedcare.analytics.optout``) is always applied: this module is only
for secondary use.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from sharedcare.analytics.optout import OptOutQuery, exclude_opted_out
from sharedcare.analytics.pseudonymise import (
    Pseudonymiser,
    load_key_table,
    pseudonymised_sql,
    rule_for,
)
from sharedcare.analytics.resource_files import (
    ResourceFileError,
    load_resource_files,
    resource_files,
)
from sharedcare.analytics.views import Source, ViewDefinitionError, ViewEvaluationError
from sharedcare.analytics.views.runner import translate_error

__all__ = [
    "ExportError",
    "ExportResult",
    "ViewSpec",
    "column_rules",
    "export_views",
    "library_views",
    "view_file",
    "write_manifest",
]

Progress = Callable[[str, int], None]
_BATCH = 10_000


class ExportError(Exception):
    """The export cannot go ahead (bad view, unreadable source, unusable output folder)."""


@dataclass(frozen=True)
class ViewSpec:
    """A view to export: output name and ViewDefinition JSON."""

    name: str
    raw: dict[str, Any]


@dataclass(frozen=True)
class ExportResult:
    """One written Parquet file."""

    name: str
    path: Path
    rows: int


def column_rules(spec: ViewSpec, pseudonymiser: Pseudonymiser | None) -> dict[str, str]:
    """How each column of a view is published: ``keep`` or a pseudonymisation rule."""
    query = _query(spec, "duckdb", Source("resources", "resource"), apply=False)
    if pseudonymiser is None:
        return dict.fromkeys(query.columns, "keep")
    return {
        name: rule_for(path, dates=pseudonymiser.dates, system=system)
        for name, system, path in zip(query.columns, query.systems, query.paths, strict=True)
    }


def write_manifest(
    folder: Path,
    views: list[ViewSpec],
    results: list[ExportResult],
    source: str,
    pseudonymiser: Pseudonymiser | None,
) -> Path:
    """Write ``manifest.json``: what was exported, from where, and how each column was treated.

    Holds no key material and no patient data, so it can travel with the extract for review.
    """
    rows = {r.name: r.rows for r in results}
    manifest = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": source,
        "national_data_opt_outs_excluded": True,
        "pseudonymised": pseudonymiser is not None,
        "project": pseudonymiser.project if pseudonymiser else None,
        "dates": pseudonymiser.dates if pseudonymiser else "exact",
        "views": {
            spec.name: {
                "file": f"{spec.name}.parquet",
                "resource": spec.raw.get("resource"),
                "rows": rows.get(spec.name, 0),
                "columns": column_rules(spec, pseudonymiser),
            }
            for spec in views
        },
    }
    path = folder / "manifest.json"
    path.write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    return path


def library_views(names: Iterable[str] | None = None) -> list[ViewSpec]:
    """Views from the shipped library (all of them when ``names`` is None)."""
    from sharedcare.analytics.library import UnknownViewError, load_view, view_names

    chosen = list(names) if names else list(view_names())
    try:
        return [ViewSpec(n, load_view(n)) for n in chosen]
    except UnknownViewError as exc:
        raise ExportError(str(exc)) from None


def view_file(path: Path) -> ViewSpec:
    """A ViewDefinition JSON file; the output is named after its ``name`` (else the file)."""
    try:
        raw = orjson.loads(path.read_bytes())
    except OSError:
        raise ExportError(f"cannot read the view file {path}; check the path") from None
    except orjson.JSONDecodeError:
        raise ExportError(f"{path} is not valid JSON; give a ViewDefinition JSON file") from None
    if not isinstance(raw, dict):
        raise ExportError(f"{path} does not hold a ViewDefinition object")
    name = raw.get("name") if isinstance(raw.get("name"), str) else path.stem
    return ViewSpec(str(name), raw)


# --- DuckDB ----------------------------------------------------------------------------------
def _ndjson_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise ExportError(f"--source {folder} is not a folder; give a folder of .ndjson files")
    files = resource_files(folder)
    if not files:
        raise ExportError(f"no .ndjson files under {folder}; give a folder of NDJSON resources")
    return files


def load_ndjson(con: Any, files: list[Path]) -> tuple[Source, int]:
    """Read NDJSON files once into the DuckDB table ``resources(resource_type, resource)``.

    Bundle lines (e.g. Synthetic Dorset GP files) are unpacked into their entries' resources,
    exactly as ``sharedcare analytics run`` reads them (``sharedcare.analytics.resource_files``).
    """
    try:
        return load_resource_files(con, files, "resources")
    except ResourceFileError as exc:
        raise ExportError(str(exc)) from None


def load_sqlite_store(con: Any, database_url: str) -> tuple[Source, int]:
    """Stream the current resources of a SQLite record store into the DuckDB table
    ``resources(resource_type, resource)``, in batches."""
    from sqlalchemy import select
    from sqlalchemy.exc import SQLAlchemyError

    from sharedcare.db.engine import create_engine, normalise_url
    from sharedcare.db.tables.record import Resource

    path = normalise_url(database_url).database
    if not path or not Path(path).is_file():
        raise ExportError(
            "the SQLite record store does not exist; check --database (sqlite:///path/to.db)"
        )
    engine = create_engine(database_url)
    con.execute("CREATE OR REPLACE TABLE resources (resource_type VARCHAR, resource JSON)")
    count = 0
    batch: list[str] = []

    def flush() -> None:
        # Straight from the store into DuckDB: no copy of the record is written to disk.
        con.execute(
            "INSERT INTO resources SELECT j ->> 'resourceType', j FROM "
            "(SELECT CAST(unnest(?) AS JSON) AS j)",
            [batch],
        )
        batch.clear()

    try:
        with engine.connect() as conn:
            query = select(Resource.content).where(Resource.deleted.is_(False))
            result = conn.execution_options(stream_results=True, yield_per=_BATCH).execute(query)
            for (content,) in result:
                if content:
                    batch.append(content if isinstance(content, str) else bytes(content).decode())
                    count += 1
                    if len(batch) >= _BATCH:
                        flush()
        if batch:
            flush()
    except SQLAlchemyError as exc:
        raise ExportError(
            f"could not read the record store ({type(exc).__name__}); check that --database "
            "is a sharedcare database (sharedcare db upgrade)"
        ) from None
    finally:
        engine.dispose()
    return Source("resources", "resource", "resource_type"), count


def _duckdb_export(
    con: Any, spec: ViewSpec, source: Source, path: Path, pseudonymiser: Pseudonymiser | None
) -> int:
    import duckdb

    query = _query(spec, "duckdb", source)
    sql = query.sql
    if pseudonymiser is not None:
        sql, _ = pseudonymised_sql(query, "duckdb", pseudonymiser)
    target = str(path).replace("'", "''")
    try:
        row = con.execute(f"COPY ({sql}) TO '{target}' (FORMAT PARQUET)").fetchone()
    except duckdb.Error as exc:
        raise _evaluation(spec, translate_error("duckdb", exc)) from None
    return int(row[0]) if row else 0


# --- PostgreSQL ------------------------------------------------------------------------------
_DUCK_TYPES = {"boolean": "BOOLEAN", "integer": "BIGINT", "decimal": "DOUBLE"}


def _postgres_export(
    pg: Any, con: Any, spec: ViewSpec, path: Path, pseudonymiser: Pseudonymiser | None
) -> int:
    """Run one view in PostgreSQL and write its rows to Parquet with DuckDB.

    Rows go through a temporary NDJSON file in a private (mode 0700) folder that is removed
    as soon as the Parquet file is written.
    """
    import psycopg

    from sharedcare.analytics.views import record_store_source

    query = _query(spec, "postgres", record_store_source())
    sql, names = query.sql, query.columns
    types = {
        n: ("VARCHAR[]" if many else _DUCK_TYPES.get(s, "VARCHAR"))
        for n, s, many in zip(query.columns, query.systems, query.collections, strict=True)
    }
    if pseudonymiser is not None:
        sql, names = pseudonymised_sql(query, "postgres", pseudonymiser)
        for n, system, fhirpath in zip(query.columns, query.systems, query.paths, strict=True):
            rule = rule_for(fhirpath, dates=pseudonymiser.dates, system=system)
            if n in types and rule != "keep":
                types[n] = "VARCHAR[]" if types[n] == "VARCHAR[]" else "VARCHAR"
        types = {n: types[n] for n in names}
    rows = 0
    with tempfile.TemporaryDirectory(prefix="sharedcare-export-") as tmp:
        dump = Path(tmp) / "rows.ndjson"
        try:
            with pg.transaction(), pg.cursor(name="sharedcare_export") as cur, dump.open("wb") as f:
                cur.itersize = _BATCH
                cur.execute(sql)
                for record in cur:
                    f.write(orjson.dumps(dict(zip(names, record, strict=True)), default=str))
                    f.write(b"\n")
                    rows += 1
        except psycopg.Error as exc:
            raise _evaluation(spec, translate_error("postgres", exc)) from None
        columns = "{" + ", ".join(f"'{n}': '{t}'" for n, t in types.items()) + "}"
        target = str(path).replace("'", "''")
        relation = (
            f"read_json('{str(dump).replace(chr(39), chr(39) * 2)}', "
            f"format = 'newline_delimited', columns = {columns})"
            if rows
            else "(SELECT "
            + ", ".join(f'CAST(NULL AS {t}) AS "{n}"' for n, t in types.items())
            + " LIMIT 0)"
        )
        con.execute(f"COPY (SELECT * FROM {relation}) TO '{target}' (FORMAT PARQUET)")
    return rows


# --- shared ----------------------------------------------------------------------------------
def _query(spec: ViewSpec, engine: str, source: Source, *, apply: bool = True) -> OptOutQuery:
    try:
        return exclude_opted_out(spec.raw, engine, source, apply=apply)
    except ViewDefinitionError as exc:
        raise ExportError(f"view '{spec.name}' is not valid: {exc}") from None


def _evaluation(spec: ViewSpec, exc: ViewEvaluationError) -> ExportError:
    return ExportError(f"view '{spec.name}' failed: {exc}")


def _out_dir(out: Path) -> Path:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError:
        raise ExportError(f"cannot create the output folder {out}; check permissions") from None
    if not os.access(out, os.W_OK):
        raise ExportError(f"cannot write to {out}; choose a writable --out folder")
    return out


def export_views(
    views: list[ViewSpec],
    out: Path,
    *,
    source_dir: Path | None = None,
    database_url: str | None = None,
    pseudonymiser: Pseudonymiser | None = None,
    on_loaded: Callable[[str], None] | None = None,
    on_view: Progress | None = None,
) -> list[ExportResult]:
    """Write each view to ``out/NAME.parquet`` and a ``manifest.json`` describing them.

    Args:
        views: the views to export.
        out: output folder (created when missing).
        source_dir: folder of NDJSON resources; or
        database_url: a record store (``sqlite:///...`` or ``postgresql://...``).
        pseudonymiser: when given, identifiers are hashed and direct identifiers dropped.
        on_loaded: called with a one-line description once the resources are ready.
        on_view: called with (view name, rows) after each file is written.

    Raises:
        ExportError: with a one-line reason (never resource contents).
    """
    import duckdb

    if (source_dir is None) == (database_url is None):
        raise ExportError("give either --source DIR or --database URL, not both or neither")
    names = [v.name for v in views]
    if len(set(names)) != len(names):
        raise ExportError("two views have the same name; give each exported view its own name")
    folder = _out_dir(out)
    con = duckdb.connect()
    results: list[ExportResult] = []
    try:
        if pseudonymiser is not None:
            load_key_table(con, "duckdb", pseudonymiser)
        for spec in views:  # every view is checked before any file is written
            _query(spec, "duckdb", Source("resources", "resource"), apply=False)
        if database_url is not None and database_url.startswith(("postgresql", "postgres:")):
            if on_loaded:
                on_loaded("views run live in PostgreSQL")
            results = _export_postgres(views, folder, database_url, con, pseudonymiser, on_view)
            write_manifest(folder, views, results, "postgresql", pseudonymiser)
            return results
        if source_dir is not None:
            source, count = load_ndjson(con, _ndjson_files(source_dir))
            where = str(source_dir)
        else:
            assert database_url is not None
            source, count = load_sqlite_store(con, database_url)
            where = "record store"
        if on_loaded:
            on_loaded(f"loaded {count:,} resources from {where} into DuckDB")
        for spec in views:
            path = folder / f"{spec.name}.parquet"
            rows = _duckdb_export(con, spec, source, path, pseudonymiser)
            results.append(ExportResult(spec.name, path, rows))
            if on_view:
                on_view(spec.name, rows)
        write_manifest(folder, views, results, "ndjson" if source_dir else "sqlite", pseudonymiser)
        return results
    finally:
        con.close()


def _export_postgres(
    views: list[ViewSpec],
    folder: Path,
    database_url: str,
    con: Any,
    pseudonymiser: Pseudonymiser | None,
    on_view: Progress | None,
) -> list[ExportResult]:
    import psycopg
    from sqlalchemy.exc import SQLAlchemyError

    from sharedcare.db.engine import create_engine

    engine = create_engine(database_url)
    results: list[ExportResult] = []
    try:
        try:
            raw = engine.raw_connection()
        except (psycopg.Error, SQLAlchemyError) as exc:
            raise ExportError(
                f"could not connect to the database ({type(exc).__name__}); check the URL, "
                "that the server is running and that the user may connect"
            ) from None
        try:
            pg = raw.driver_connection
            if pg is None:
                raise ExportError("the PostgreSQL connection could not be opened; try again")
            if pseudonymiser is not None:
                load_key_table(pg, "postgres", pseudonymiser)
            for spec in views:
                path = folder / f"{spec.name}.parquet"
                rows = _postgres_export(pg, con, spec, path, pseudonymiser)
                results.append(ExportResult(spec.name, path, rows))
                if on_view:
                    on_view(spec.name, rows)
            if pseudonymiser is not None:
                with pg.cursor() as cur:
                    cur.execute("DROP TABLE IF EXISTS sharedcare_pseudonym_key")
            pg.commit()
        finally:
            raw.close()
    finally:
        engine.dispose()
    return results
