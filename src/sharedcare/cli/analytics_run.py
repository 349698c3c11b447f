"""``sharedcare analytics run INDICATOR``: compute a disclosure-protected indicator to a file."""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from sharedcare.cli.analytics import analytics_app
from sharedcare.cli.common import console, fail, friendly_errors

__all__ = ["INDICATOR_NAMES", "run"]

_ENGINES = ("duckdb", "postgres", "spark")
#: The indicator names, for --help without importing the analytics code at CLI start-up
#: (a test checks they match ``sharedcare.analytics.indicators.INDICATORS``).
INDICATOR_NAMES = (
    "prevalence",
    "prevalence-by-practice",
    "emergency-admissions",
    "core20",
    "efi",
    "bridges-to-health",
    "rtt-waiting-list",
    "stroke",
    "pathology-turnaround",
)


def _write(rows: list[dict[str, Any]], out: Path) -> None:
    columns: list[str] = []
    for row in rows:
        columns.extend(c for c in row if c not in columns)
    if out.suffix == ".csv":
        with out.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        return
    import duckdb

    def sql_type(column: str) -> str:
        values = [r.get(column) for r in rows if r.get(column) is not None]
        if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            return "BIGINT"
        if values and all(isinstance(v, (int, float)) for v in values):
            return "DOUBLE"
        return "VARCHAR"

    con = duckdb.connect()
    defs = ", ".join(f'"{c}" {sql_type(c)}' for c in columns)
    con.execute(f"CREATE TABLE out ({defs})")
    if rows:
        marks = ", ".join("?" for _ in columns)
        con.executemany(
            f"INSERT INTO out VALUES ({marks})", [[r.get(c) for c in columns] for r in rows]
        )
    target = str(out).replace("'", "''")
    con.execute(f"COPY out TO '{target}' (FORMAT parquet)")
    con.close()


def _engine(engine: str, source: Path | None, database: str | None, stack: list[Any]) -> Any:
    from sharedcare.analytics.indicators import PostgresEngine
    from sharedcare.analytics.indicators.engines import duckdb_directory_engine

    if (source is None) == (database is None):
        fail("give exactly one of --source DIR (exported views or NDJSON) or --database URL")
    if engine == "duckdb":
        import duckdb

        con = duckdb.connect()
        stack.append(con)
        if source is not None:
            return duckdb_directory_engine(con, source)
        if database is None or not database.startswith("sqlite:///"):
            fail("--engine duckdb reads --source DIR or a SQLite record (--database sqlite:///...)")
        from sharedcare.analytics.export import ExportError, load_sqlite_store
        from sharedcare.analytics.indicators import DuckDBEngine

        try:
            resources, _ = load_sqlite_store(con, database)
        except ExportError as exc:
            fail(str(exc))
        return DuckDBEngine(con, resources)
    if engine == "postgres":
        if database is None or not database.startswith(("postgresql://", "postgresql+psycopg://")):
            fail("--engine postgres needs --database postgresql://user@host:5432/db (the record)")
        import psycopg

        try:
            conn = psycopg.connect(database.replace("postgresql+psycopg://", "postgresql://", 1))
        except psycopg.Error as exc:
            fail(
                f"could not connect to PostgreSQL ({type(exc).__name__}); check the URL, that the "
                "server is running and that the user may connect"
            )
        stack.append(conn)
        return PostgresEngine(conn)
    if source is None:
        fail("--engine spark reads --source DIR holding FHIR NDJSON files")
    try:
        from sharedcare.analytics.conformance import spark_session
        from sharedcare.analytics.indicators.engines import spark_directory_engine

        spark = spark_session()
    except (ImportError, ValueError):
        fail("Spark is not installed; run: uv sync --extra spark (and install a Java runtime)")
    return spark_directory_engine(spark, source)


@analytics_app.command("run")
def run(
    indicator: Annotated[
        str,
        typer.Argument(help="Indicator: " + ", ".join(INDICATOR_NAMES), show_default=False),
    ],
    out: Annotated[Path, typer.Option("--out", help="Output file: .csv or .parquet")],
    engine: Annotated[str, typer.Option("--engine", help="duckdb, postgres or spark")] = "duckdb",
    source: Annotated[
        Path | None,
        typer.Option("--source", help="Folder of exported views (VIEW.parquet) and/or NDJSON"),
    ] = None,
    database: Annotated[
        str | None,
        typer.Option(
            "--database",
            help="The record: postgresql://... (--engine postgres, live) or sqlite:///... "
            "(--engine duckdb reads a copy of its current resources)",
        ),
    ] = None,
    census: Annotated[
        str | None, typer.Option("--census", help="Census date YYYY-MM-DD [default: today]")
    ] = None,
    period_start: Annotated[
        str | None,
        typer.Option("--period-start", help="Activity period start [default: census - 1 year]"),
    ] = None,
) -> None:
    """Compute a disclosure-protected indicator and write its aggregate rows."""
    from sharedcare.analytics.disclosure import DisclosureError
    from sharedcare.analytics.indicators import INDICATORS, IndicatorError, Params, steps
    from sharedcare.analytics.indicators import run_indicator as compute
    from sharedcare.analytics.views import ViewDefinitionError, ViewEvaluationError

    if indicator not in INDICATORS:
        fail(f"unknown indicator '{indicator}'; choose one of: {', '.join(INDICATORS)}")
    if engine not in _ENGINES:
        fail(f"unknown engine '{engine}'; choose one of: {', '.join(_ENGINES)}")
    if out.suffix not in (".csv", ".parquet"):
        fail("--out must end in .csv or .parquet")
    if not out.parent.is_dir():
        fail(f"the folder of --out ({out.parent}) does not exist; create it first")
    try:
        when = date.fromisoformat(census) if census else date.today()
        start = date.fromisoformat(period_start) if period_start else None
        params = Params(census=when, period_start=start)
        params.substitutions()
    except ValueError:
        fail("--census and --period-start must be dates YYYY-MM-DD, the start before the census")
    stack: list[Any] = []
    try:
        with friendly_errors():
            chosen = _engine(engine, source, database, stack)
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        ) as progress:
            task = progress.add_task(indicator, total=steps(indicator))

            def step(what: str) -> None:
                progress.update(task, advance=1, description=f"{indicator}: {what}")

            rows = compute(indicator, chosen, params, step)
        if not rows and out.suffix == ".parquet":
            fail(
                f"'{indicator}' found no data in this source and period, so there are no "
                "columns to write as Parquet; check --source/--census, or write .csv"
            )
        _write(rows, out)
    except (IndicatorError, ViewDefinitionError, ViewEvaluationError, DisclosureError) as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"could not write {out} ({type(exc).__name__}); check the path and permissions")
    finally:
        for item in stack:
            item.close()
    console.print(f"wrote {len(rows)} protected rows to {out}", highlight=False)
