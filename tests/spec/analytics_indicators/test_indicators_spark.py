"""The same indicators on Spark SQL give the same protected rows as on DuckDB.

Few cases, because a local Spark is slow to start: the indicators chosen cover every SQL
macro (``@days``, ``@minutes``, ``@median``, ``@float``) and the standardised-rate machinery;
the other indicators use the same macros and derived tables.
Skipped when the optional ``spark`` extra is not installed.
"""

from __future__ import annotations

from typing import Any

import duckdb
import pytest

from sharedcare.analytics.indicators import DuckDBEngine, SparkEngine, run_indicator
from sharedcare.analytics.views import load_duckdb_table
from tests.spec.analytics_indicators.indicator_record import PARAMS, RECORD

CASES = ["prevalence", "rtt-waiting-list", "pathology-turnaround"]


def _normalise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: round(v, 6) if isinstance(v, float) else v for k, v in row.items()} for row in rows]


@pytest.mark.slow
def test_spark_matches_duckdb() -> None:
    pytest.importorskip("pyspark", reason="the optional 'spark' extra is not installed")
    from sharedcare.analytics.conformance import spark_session
    from sharedcare.analytics.views.spark import load_spark_view

    spark = spark_session()
    spark_engine = SparkEngine(spark, load_spark_view(spark, "indicator_record", RECORD))
    con = duckdb.connect()
    duck_engine = DuckDBEngine(con, load_duckdb_table(con, "res", RECORD))
    for name in CASES:
        expected = _normalise(run_indicator(name, duck_engine, PARAMS))
        got = _normalise(run_indicator(name, spark_engine, PARAMS))
        assert got == expected, name
        assert expected, name
