"""SQL-on-FHIR v2 view engine: ViewDefinitions compiled to SQL for DuckDB and PostgreSQL.

Spec: https://sql-on-fhir.org/ig/StructureDefinition-ViewDefinition.html (v2.1.0-pre).

Typical use::

    import duckdb
    from sharedcare.analytics.views import ndjson_source, run_duckdb

    con = duckdb.connect()
    result = run_duckdb(con, view_json, ndjson_source("Patient.ndjson"))

``compile_for(view, "postgres", record_store_source())`` returns SQL that runs over the record
store's jsonb table; ``create_view_sql`` wraps it in a live ``CREATE VIEW``. Spark SQL lives in
``sharedcare.analytics.views.spark`` (optional ``spark`` extra).
"""

from __future__ import annotations

from sharedcare.analytics.views.compiler import CompiledView, OutputColumn, compile_view
from sharedcare.analytics.views.dialects import (
    DIALECTS,
    Dialect,
    DuckDBDialect,
    PostgresDialect,
    Source,
)
from sharedcare.analytics.views.errors import ViewDefinitionError, ViewEvaluationError
from sharedcare.analytics.views.model import ViewDefinition, parse_view
from sharedcare.analytics.views.runner import (
    ViewResult,
    compile_for,
    create_view_sql,
    load_duckdb_table,
    load_postgres_table,
    materialise_duckdb,
    ndjson_source,
    parquet_source,
    record_store_source,
    run_duckdb,
    run_postgres,
)

__all__ = [
    "DIALECTS",
    "CompiledView",
    "Dialect",
    "DuckDBDialect",
    "OutputColumn",
    "PostgresDialect",
    "Source",
    "ViewDefinition",
    "ViewDefinitionError",
    "ViewEvaluationError",
    "ViewResult",
    "compile_for",
    "compile_view",
    "create_view_sql",
    "load_duckdb_table",
    "load_postgres_table",
    "materialise_duckdb",
    "ndjson_source",
    "parquet_source",
    "parse_view",
    "record_store_source",
    "run_duckdb",
    "run_postgres",
]
