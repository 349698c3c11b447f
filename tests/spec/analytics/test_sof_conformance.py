"""The official SQL-on-FHIR v2 conformance suite, on DuckDB, PostgreSQL and Spark.

Every test case of ../shared/conformance/sql-on-fhir-v2/tests runs on each engine; ids are
``file::title``. Rows are compared as an unordered multiset with JS-like strict equality
(true is not 1), as the suite's reference runner does; ``expectColumns`` checks column order and
``expectError`` requires a ViewDefinitionError or ViewEvaluationError.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest

from sharedcare.analytics.views import (
    ViewDefinitionError,
    ViewEvaluationError,
    ViewResult,
    load_duckdb_table,
    load_postgres_table,
    run_duckdb,
    run_postgres,
)

_REPO = Path(__file__).resolve().parents[3]
SUITE = (
    Path(os.environ.get("SHAREDCARE_SHARED_DIR", _REPO.parent / "shared"))
    / "conformance"
    / "sql-on-fhir-v2"
    / "tests"
)


def _load() -> dict[str, dict[str, Any]]:
    if not SUITE.is_dir():
        return {}
    return {f.name: json.loads(f.read_text(encoding="utf-8")) for f in sorted(SUITE.glob("*.json"))}


FILES = _load()
CASES = [
    pytest.param(name, i, id=f"{name}::{test['title']}")
    for name, case in FILES.items()
    for i, test in enumerate(case["tests"])
]


def test_suite_is_present_and_complete() -> None:
    assert SUITE.is_dir(), f"conformance suite missing at {SUITE}; set SHAREDCARE_SHARED_DIR"
    assert len(CASES) == 134


def _cell(value: Any) -> Any:
    if value is None:
        return ("null",)
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, (int, float)):
        return ("num", round(float(value), 9))
    if isinstance(value, (list, tuple)):
        return ("list", tuple(_cell(v) for v in value))
    return ("str", value)


def _rows(rows: list[dict[str, Any]]) -> Counter[tuple[Any, ...]]:
    return Counter(tuple(sorted((k, _cell(v)) for k, v in row.items())) for row in rows)


def _check(test: dict[str, Any], run: Callable[[dict[str, Any]], ViewResult]) -> None:
    if test.get("expectError"):
        with pytest.raises((ViewDefinitionError, ViewEvaluationError)):
            run(test["view"])
        return
    result = run(test["view"])
    if "expectColumns" in test:
        assert list(result.columns) == test["expectColumns"]
    rows = result.as_dicts()
    if "expectCount" in test:
        assert len(rows) == test["expectCount"]
        return
    assert len(rows) == len(test["expect"])
    assert _rows(rows) == _rows(test["expect"])


@pytest.fixture(scope="module")
def duckdb_runner() -> Iterator[Callable[[str], Callable[[dict[str, Any]], ViewResult]]]:
    con = duckdb.connect()
    sources: dict[str, Any] = {}

    def runner(file_name: str) -> Callable[[dict[str, Any]], ViewResult]:
        if file_name not in sources:
            table = f"res_{len(sources)}"
            sources[file_name] = load_duckdb_table(con, table, FILES[file_name]["resources"])
        source = sources[file_name]
        return lambda view: run_duckdb(con, view, source)

    yield runner
    con.close()


@pytest.fixture(scope="module")
def postgres_runner(
    postgres_url: str,
) -> Iterator[Callable[[str], Callable[[dict[str, Any]], ViewResult]]]:
    url = postgres_url.replace("postgresql+psycopg://", "postgresql://", 1)
    conn = psycopg.connect(url)
    sources: dict[str, Any] = {}

    def runner(file_name: str) -> Callable[[dict[str, Any]], ViewResult]:
        if file_name not in sources:
            table = f"res_{len(sources)}"
            sources[file_name] = load_postgres_table(conn, table, FILES[file_name]["resources"])
        source = sources[file_name]
        return lambda view: run_postgres(conn, view, source)

    yield runner
    conn.rollback()
    conn.close()


@pytest.fixture(scope="module")
def spark_runner() -> Iterator[Callable[[str], Callable[[dict[str, Any]], ViewResult]]]:
    pytest.importorskip("pyspark", reason="the optional 'spark' extra is not installed")
    from sharedcare.analytics.conformance import spark_session
    from sharedcare.analytics.views.spark import load_spark_view, run_spark

    spark = spark_session()
    sources: dict[str, Any] = {}

    def runner(file_name: str) -> Callable[[dict[str, Any]], ViewResult]:
        if file_name not in sources:
            name = f"res_{len(sources)}"
            sources[file_name] = load_spark_view(spark, name, FILES[file_name]["resources"])
        source = sources[file_name]
        return lambda view: run_spark(spark, view, source)

    yield runner


@pytest.mark.parametrize(("file_name", "index"), CASES)
def test_duckdb(file_name: str, index: int, duckdb_runner: Any) -> None:
    _check(FILES[file_name]["tests"][index], duckdb_runner(file_name))


@pytest.mark.postgres
@pytest.mark.parametrize(("file_name", "index"), CASES)
def test_postgres(file_name: str, index: int, postgres_runner: Any) -> None:
    _check(FILES[file_name]["tests"][index], postgres_runner(file_name))


@pytest.mark.slow
@pytest.mark.parametrize(("file_name", "index"), CASES)
def test_spark(file_name: str, index: int, spark_runner: Any) -> None:
    _check(FILES[file_name]["tests"][index], spark_runner(file_name))


@pytest.mark.slow
def test_spark_reads_ndjson(tmp_path: Path, spark_runner: Any) -> None:
    from sharedcare.analytics.conformance import spark_session
    from sharedcare.analytics.views.spark import ndjson_spark_view, run_spark

    ndjson = tmp_path / "patients.ndjson"
    ndjson.write_text(
        '{"resourceType": "Patient", "id": "p1", "name": [{"family": "Ash"}]}\n\n'
        '{"resourceType": "Observation", "id": "o1", "status": "final"}\n'
    )
    source = ndjson_spark_view(spark_session(), "ndjson_patients", str(ndjson))
    view = {
        "resource": "Patient",
        "select": [
            {"column": [{"name": "id", "path": "id"}, {"name": "f", "path": "name.family"}]}
        ],
    }
    assert run_spark(spark_session(), view, source).as_dicts() == [{"id": "p1", "f": "Ash"}]
