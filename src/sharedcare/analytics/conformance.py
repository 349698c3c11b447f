"""SQL-on-FHIR v2 conformance runner.

Runs the official test suite (https://github.com/FHIR/sql-on-fhir-v2/tree/master/tests) against
one engine and writes the standard test report
(https://sql-on-fhir.org/ig/test-report, ``test-report.schema.json``).

Usage::

    python -m sharedcare.analytics.conformance TESTS_DIR --engine duckdb|postgres|spark \
        [--postgres-url URL] --report test_report.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sharedcare.analytics.views.dialects import Source
from sharedcare.analytics.views.errors import ViewDefinitionError, ViewEvaluationError
from sharedcare.analytics.views.runner import (
    ViewResult,
    load_duckdb_table,
    load_postgres_table,
    run_duckdb,
    run_postgres,
)

ENGINES = ("duckdb", "postgres", "spark")


@dataclass(frozen=True)
class Outcome:
    """Result of one conformance test."""

    passed: bool
    error: str | None = None


def canonical(value: Any) -> Any:
    """A comparable, type-strict form of a cell (JS ``===`` semantics: true is not 1)."""
    if value is None:
        return ("null",)
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, (int, float)):
        return ("num", float(value))
    if isinstance(value, (list, tuple)):
        return ("list", tuple(canonical(v) for v in value))
    if isinstance(value, dict):
        return ("obj", tuple(sorted((k, canonical(v)) for k, v in value.items())))
    return ("str", str(value))


def _row_key(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(sorted((k, repr(canonical(v))) for k, v in row.items()))


def judge(test: dict[str, Any], run: Callable[[dict[str, Any]], ViewResult]) -> Outcome:
    """Evaluate one test case with ``run`` and compare it with the expectation."""
    expect_error = bool(test.get("expectError"))
    try:
        result = run(test["view"])
    except (ViewDefinitionError, ViewEvaluationError) as exc:
        if expect_error:
            return Outcome(True)
        return Outcome(False, f"{type(exc).__name__}: {exc}")
    if expect_error:
        return Outcome(False, "expected an error but the view evaluated")
    rows = result.as_dicts()
    if "expectColumns" in test and list(result.columns) != list(test["expectColumns"]):
        return Outcome(False, f"columns {list(result.columns)} != {test['expectColumns']}")
    if "expectCount" in test:
        if len(rows) != test["expectCount"]:
            return Outcome(False, f"expected {test['expectCount']} rows, got {len(rows)}")
        return Outcome(True)
    expected = test.get("expect", [])
    if len(rows) != len(expected):
        return Outcome(False, f"expected {len(expected)} rows, got {len(rows)}")
    got = sorted(_row_key(r) for r in rows)
    want = sorted(_row_key(r) for r in expected)
    if got != want:
        return Outcome(False, f"rows differ: got {rows!r}, expected {expected!r}")
    return Outcome(True)


@contextmanager
def engine_session(
    engine: str, resources: list[dict[str, Any]], postgres_url: str | None = None
) -> Iterator[Callable[[dict[str, Any]], ViewResult]]:
    """Load ``resources`` into a fresh table of ``engine``; yield a view-running function."""
    if engine == "duckdb":
        import duckdb

        con = duckdb.connect()
        try:
            source = load_duckdb_table(con, "sof_resources", resources)
            yield lambda view: run_duckdb(con, view, source)
        finally:
            con.close()
    elif engine == "postgres":
        import psycopg

        if not postgres_url:
            raise ValueError(
                "the postgres engine needs a database: pass --postgres-url or set "
                "SHAREDCARE_POSTGRES_URL (e.g. postgresql://postgres@127.0.0.1:5432/postgres)"
            )
        url = postgres_url.replace("postgresql+psycopg://", "postgresql://", 1)
        with psycopg.connect(url, autocommit=False) as conn:
            pg_source: Source = load_postgres_table(conn, "sof_resources", resources)
            yield lambda view: run_postgres(conn, view, pg_source)
            conn.rollback()
    elif engine == "spark":
        from sharedcare.analytics.views.spark import load_spark_view, run_spark

        spark = spark_session()
        spark_source = load_spark_view(spark, "sof_resources", resources)
        yield lambda view: run_spark(spark, view, spark_source)
    else:
        raise ValueError(f"unknown engine '{engine}'; choose one of: {', '.join(ENGINES)}")


def spark_session() -> Any:
    """A local 2-core Spark session (needs the ``spark`` extra: pyspark and Java 17)."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise ValueError(
            "the spark engine needs PySpark: install the optional extra (uv sync --extra spark)"
        ) from None
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("sharedcare-sql-on-fhir")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def load_suite(tests_dir: Path) -> list[tuple[str, dict[str, Any]]]:
    """All ``*.json`` test-case files of the suite, sorted by name."""
    files = sorted(tests_dir.glob("*.json"))
    if not files:
        raise FileNotFoundError(f"no *.json test files in {tests_dir}; pass the suite's tests/ dir")
    return [(f.name, json.loads(f.read_text(encoding="utf-8"))) for f in files]


def run_suite(
    tests_dir: Path, engine: str, postgres_url: str | None = None
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Run every test of the suite on ``engine`` and return the standard report object."""
    report: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for file_name, case in load_suite(tests_dir):
        results = []
        with engine_session(engine, case.get("resources", []), postgres_url) as run:
            for test in case.get("tests", []):
                outcome = judge(test, run)
                result: dict[str, Any] = {"passed": outcome.passed}
                if outcome.error:
                    result["error"] = outcome.error
                results.append({"name": test["title"], "result": result})
        report[file_name] = {"tests": results}
    return report


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns 0 when every test passed, 1 otherwise."""
    parser = argparse.ArgumentParser(
        prog="python -m sharedcare.analytics.conformance",
        description="Run the SQL-on-FHIR v2 conformance suite and write test_report.json.",
    )
    parser.add_argument("tests_dir", type=Path, help="the suite's tests/ directory")
    parser.add_argument("--engine", choices=ENGINES, default="duckdb")
    parser.add_argument("--report", type=Path, default=Path("test_report.json"))
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("SHAREDCARE_POSTGRES_URL"),
        help="PostgreSQL URL for --engine postgres (default: $SHAREDCARE_POSTGRES_URL)",
    )
    args = parser.parse_args(argv)
    try:
        report = run_suite(args.tests_dir, args.engine, args.postgres_url)
    except (FileNotFoundError, ValueError, OSError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    args.report.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    total = sum(len(v["tests"]) for v in report.values())
    passed = sum(t["result"]["passed"] for v in report.values() for t in v["tests"])
    sys.stdout.write(f"{args.engine}: {passed}/{total} passed; report: {args.report}\n")
    sys.stdout.write(f"{passed} passed, {total - passed} failed\n")
    return 0 if passed == total else 1


if __name__ == "__main__":
    raise SystemExit(main())
