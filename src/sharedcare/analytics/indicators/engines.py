"""Where indicators run: one small adapter per engine (DuckDB, PostgreSQL, Spark).

An adapter makes the library views available as tables named ``v_<view>`` (evaluated from
FHIR resources by the view engine, or read from view tables exported as Parquet), creates the
lookup tables, creates derived tables and runs queries. All evaluation happens in the engine.
Engine messages are never passed on: they can quote data.

Indicators are secondary use, so every view an engine evaluates from FHIR resources is compiled
over ``optout_source`` (``sharedcare.analytics.optout``): people with an active National Data
Opt-out are removed by the engine before the view sees their resources. View tables read from
Parquet come from ``sharedcare analytics export``, which has already excluded them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sharedcare.analytics.indicators.reference import LookupTable
from sharedcare.analytics.indicators.sql import expand
from sharedcare.analytics.library import parsed_view
from sharedcare.analytics.optout import optout_source
from sharedcare.analytics.resource_files import (
    ResourceFileError,
    load_resource_files,
    resource_files,
)
from sharedcare.analytics.views import Source, compile_for

__all__ = [
    "DuckDBEngine",
    "Engine",
    "IndicatorError",
    "PostgresEngine",
    "SparkEngine",
    "duckdb_directory_engine",
    "spark_directory_engine",
]


#: Views that may be missing from a folder of exported view tables: read as empty.
#: (``patient_links`` only exists once the master patient index has made golden records.)
OPTIONAL_VIEWS = frozenset({"patient_links"})


class IndicatorError(RuntimeError):
    """An indicator could not be computed; the message says why and how to fix it."""


Rows = tuple[tuple[str, ...], list[tuple[Any, ...]]]


class Engine(ABC):
    """What an indicator needs from an engine."""

    name = "base"

    def __init__(self) -> None:
        self._views: set[str] = set()
        #: Lookup tables and derived tables already built, with the parameters they were
        #: built for; ``prepare`` reuses them when the next indicator needs the same.
        self.built: dict[str, object] = {}

    def ensure_view(self, view: str) -> None:
        """Make library view ``view`` available as table ``v_<view>``."""
        if view not in self._views:
            self._materialise_view(view)
            self._views.add(view)

    @abstractmethod
    def _materialise_view(self, view: str) -> None:
        """Evaluate (or attach) a library view as table ``v_<view>``."""

    @abstractmethod
    def load_lookup(self, table: LookupTable) -> None:
        """Create (or replace) a lookup table."""

    @abstractmethod
    def create_table(self, name: str, sql: str) -> None:
        """Create (or replace) a derived table from engine-neutral SQL (macros allowed)."""

    @abstractmethod
    def query(self, sql: str) -> Rows:
        """Run engine-neutral SQL (macros allowed) and return (columns, rows)."""

    def _fail(self, what: str, exc: BaseException) -> IndicatorError:
        return IndicatorError(
            f"the {self.name} engine failed while {what} ({type(exc).__name__}); check that "
            "the source holds FHIR R4 resources or view tables with the library's columns"
        )


_SQL_TYPES = {
    "duckdb": {"text": "VARCHAR", "int": "BIGINT", "float": "DOUBLE"},
    "postgres": {"text": "TEXT", "int": "BIGINT", "float": "DOUBLE PRECISION"},
    "spark": {"text": "STRING", "int": "BIGINT", "float": "DOUBLE"},
}


def _create_sql(engine: str, table: LookupTable) -> str:
    cols = ", ".join(f"{n} {_SQL_TYPES[engine][t]}" for n, t in table.columns)
    return f"CREATE TEMPORARY TABLE {table.name} ({cols})"


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


# --- DuckDB -----------------------------------------------------------------------------------
class DuckDBEngine(Engine):
    """DuckDB over a resource ``Source`` and/or view tables stored as Parquet.

    Args:
        con: a ``duckdb.DuckDBPyConnection``.
        source: relation of FHIR resources (see ``sharedcare.analytics.views``), if any.
        view_files: Parquet file (or glob) per view name, read as the view's table.

    The connection's ``preserve_insertion_order`` is turned off (indicator queries order
    their results explicitly; derived tables are built faster without it).
    """

    name = "duckdb"

    def __init__(
        self, con: Any, source: Source | None = None, view_files: dict[str, str] | None = None
    ) -> None:
        super().__init__()
        self.con = con
        self.source = source
        con.execute("SET preserve_insertion_order = false")
        self.view_files = dict(view_files or {})

    def _run(self, sql: str, what: str) -> Any:
        import duckdb

        try:
            return self.con.execute(sql)
        except duckdb.Error as exc:
            raise self._fail(what, exc) from exc

    def _materialise_view(self, view: str) -> None:
        if view in self.view_files:
            path = self.view_files[view].replace("'", "''")
            self._run(
                f"CREATE OR REPLACE TEMPORARY VIEW v_{view} AS "
                f"SELECT * FROM read_parquet('{path}')",
                f"reading the exported '{view}' table",
            )
            return
        if self.source is None and view in OPTIONAL_VIEWS:
            cols = ", ".join(f"{c} VARCHAR" for c in parsed_view(view).column_names())
            self._run(f"CREATE OR REPLACE TEMPORARY TABLE v_{view} ({cols})", "creating a view")
            return
        if self.source is None:
            raise IndicatorError(
                f"the source has neither FHIR resources nor an exported '{view}' table; "
                f"export the '{view}' view or point --source at NDJSON resources"
            )
        parsed = parsed_view(view)
        source = optout_source(parsed.resource, "duckdb", self.source)
        compiled = compile_for(parsed, "duckdb", source)
        self._run(
            f"CREATE OR REPLACE TEMPORARY TABLE v_{view} AS {compiled.sql}",
            f"evaluating the '{view}' view",
        )

    def load_lookup(self, table: LookupTable) -> None:
        self._run(f"DROP TABLE IF EXISTS {table.name}", "creating a lookup table")
        self._run(_create_sql("duckdb", table), "creating a lookup table")
        if table.rows:
            # One statement of literals: executemany costs a round trip per row.
            values = ", ".join(
                "(" + ", ".join(_literal(v) for v in row) + ")" for row in table.rows
            )
            self._run(f"INSERT INTO {table.name} VALUES {values}", "creating a lookup table")

    def create_table(self, name: str, sql: str) -> None:
        self._run(
            f"CREATE OR REPLACE TEMPORARY TABLE {name} AS {expand(sql, 'duckdb')}",
            f"building '{name}'",
        )

    def query(self, sql: str) -> Rows:
        cursor = self._run(expand(sql, "duckdb"), "computing the indicator")
        return tuple(d[0] for d in cursor.description), cursor.fetchall()


def duckdb_directory_engine(con: Any, directory: Path) -> DuckDBEngine:
    """A DuckDB engine over a directory of exported views and/or FHIR NDJSON.

    ``VIEW.parquet`` (or ``VIEW/*.parquet``) files are read as the library view ``VIEW``'s
    table (e.g. ``sharedcare analytics export`` output). Every ``*.ndjson[.gz]`` file below the
    directory is read as FHIR resources, one per line; ``Bundle`` lines (e.g. ``sharedcare
    synth`` GP files) are unpacked into their entries' resources
    (``sharedcare.analytics.resource_files``, shared with ``analytics export``).

    Raises:
        IndicatorError: the directory is missing or holds neither.
    """
    from sharedcare.analytics.library import view_names

    if not directory.is_dir():
        raise IndicatorError(f"--source {directory} is not a directory; give a folder of exports")
    view_files: dict[str, str] = {}
    for view in view_names():
        single = directory / f"{view}.parquet"
        if single.is_file():
            view_files[view] = str(single)
        elif (directory / view).is_dir() and any((directory / view).glob("*.parquet")):
            view_files[view] = str(directory / view / "*.parquet")
    ndjson = resource_files(directory)
    if not view_files and not ndjson:
        raise IndicatorError(
            f"--source {directory} holds no view Parquet files (VIEW.parquet) and no FHIR "
            "NDJSON (*.ndjson); export the views first or point at an NDJSON folder"
        )
    engine = DuckDBEngine(con, None, view_files)
    if ndjson:
        try:
            engine.source, _ = load_resource_files(con, ndjson, "fhir_resources")
        except ResourceFileError as exc:
            raise IndicatorError(str(exc)) from None
    return engine


# --- PostgreSQL -------------------------------------------------------------------------------
class PostgresEngine(Engine):
    """PostgreSQL 15 over the record store (live) or any jsonb resource ``Source``.

    Views and derived tables are temporary tables of the connection's session.

    Args:
        conn: a psycopg 3 connection.
        source: defaults to the record store's current resources.
    """

    name = "postgres"

    def __init__(self, conn: Any, source: Source | None = None) -> None:
        super().__init__()
        from sharedcare.analytics.views import record_store_source

        self.conn = conn
        self.source = source or record_store_source()

    def _run(self, sql: str, what: str, params: Sequence[Any] | None = None) -> Any:
        import psycopg

        try:
            with self.conn.transaction(), self.conn.cursor() as cur:
                cur.execute(sql, params)
                if cur.description is None:
                    return (), []
                return tuple(d.name for d in cur.description), [tuple(r) for r in cur.fetchall()]
        except psycopg.Error as exc:
            raise self._fail(what, exc) from exc

    def _materialise_view(self, view: str) -> None:
        parsed = parsed_view(view)
        source = optout_source(parsed.resource, "postgres", self.source)
        compiled = compile_for(parsed, "postgres", source)
        self._run(f"DROP TABLE IF EXISTS v_{view}", f"evaluating the '{view}' view")
        self._run(f"CREATE TEMPORARY TABLE v_{view} AS {compiled.sql}", f"evaluating '{view}'")

    def load_lookup(self, table: LookupTable) -> None:
        import psycopg

        self._run(f"DROP TABLE IF EXISTS {table.name}", "creating a lookup table")
        self._run(_create_sql("postgres", table), "creating a lookup table")
        marks = ", ".join("%s" for _ in table.columns)
        try:
            with self.conn.transaction(), self.conn.cursor() as cur:
                cur.executemany(f"INSERT INTO {table.name} VALUES ({marks})", table.rows)
        except psycopg.Error as exc:
            raise self._fail("creating a lookup table", exc) from exc

    def create_table(self, name: str, sql: str) -> None:
        self._run(f"DROP TABLE IF EXISTS {name}", f"building '{name}'")
        self._run(f"CREATE TEMPORARY TABLE {name} AS {expand(sql, 'postgres')}", f"building {name}")

    def query(self, sql: str) -> Rows:
        result: Rows = self._run(expand(sql, "postgres"), "computing the indicator")
        return result


# --- Spark ------------------------------------------------------------------------------------
class SparkEngine(Engine):
    """Spark SQL 4 over a temporary view of ``VARIANT`` resources (optional ``spark`` extra).

    Args:
        spark: a ``SparkSession``.
        source: see ``sharedcare.analytics.views.spark.load_spark_view`` / ``ndjson_spark_view``.
    """

    name = "spark"

    def __init__(self, spark: Any, source: Source) -> None:
        super().__init__()
        self.spark = spark
        self.source = source
        self._cached: dict[str, Any] = {}

    def _register(self, name: str, frame: Any) -> None:
        """Cache ``frame`` as temp view ``name``, releasing what was cached under it before."""
        old = self._cached.pop(name, None)
        if old is not None:
            old.unpersist()
        cached = frame.cache()
        cached.createOrReplaceTempView(name)
        self._cached[name] = cached

    def _frame(self, sql: str, what: str) -> Any:
        try:
            return self.spark.sql(sql)
        except Exception as exc:  # pyspark raises many unrelated exception classes
            raise self._fail(what, exc) from exc

    def _materialise_view(self, view: str) -> None:
        from sharedcare.analytics.views.spark import compile_view_spark

        parsed = parsed_view(view)
        compiled = compile_view_spark(parsed, optout_source(parsed.resource, "spark", self.source))
        frame = self._frame(compiled.sql, f"evaluating the '{view}' view")
        self._register(f"v_{view}", frame)

    def load_lookup(self, table: LookupTable) -> None:
        schema = ", ".join(f"{n} {_SQL_TYPES['spark'][t]}" for n, t in table.columns)
        frame = self.spark.createDataFrame(list(table.rows), schema)
        frame.createOrReplaceTempView(table.name)

    def create_table(self, name: str, sql: str) -> None:
        frame = self._frame(expand(sql, "spark"), f"building '{name}'")
        self._register(name, frame)

    def query(self, sql: str) -> Rows:
        frame = self._frame(expand(sql, "spark"), "computing the indicator")
        try:
            rows = frame.collect()
        except Exception as exc:  # evaluation errors surface at collect()
            raise self._fail("computing the indicator", exc) from exc
        return tuple(frame.columns), [tuple(r) for r in rows]


def spark_directory_engine(spark: Any, directory: Path) -> SparkEngine:
    """A Spark engine over every ``*.ndjson`` file below ``directory`` (Bundles unpacked).

    Raises:
        IndicatorError: the directory is missing or Spark cannot read it.
    """
    if not directory.is_dir():
        raise IndicatorError(f"--source {directory} is not a directory; give a folder of NDJSON")
    try:
        frame = (
            spark.read.option("recursiveFileLookup", "true")
            .option("pathGlobFilter", "*.ndjson")
            .text(str(directory))
        )
        frame.where("trim(value) <> ''").selectExpr(
            "parse_json(value) AS doc"
        ).createOrReplaceTempView("fhir_docs")
        spark.sql(
            "SELECT doc AS resource FROM fhir_docs "
            "WHERE variant_get(doc, '$.resourceType', 'string') <> 'Bundle' "
            "UNION ALL SELECT variant_get(e, '$.resource') AS resource FROM ("
            "SELECT explode(variant_get(doc, '$.entry', 'array<variant>')) AS e FROM fhir_docs "
            "WHERE variant_get(doc, '$.resourceType', 'string') = 'Bundle')"
        ).createOrReplaceTempView("fhir_resources")
    except Exception as exc:  # pyspark raises many unrelated exception classes
        raise IndicatorError(
            f"Spark could not read NDJSON under {directory} ({type(exc).__name__}); check that "
            "the folder holds *.ndjson files of FHIR resources or Bundles"
        ) from exc
    return SparkEngine(spark, Source("fhir_resources", "resource"))
