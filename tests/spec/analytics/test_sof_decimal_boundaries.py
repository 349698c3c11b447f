"""Decimal ``lowBoundary()``/``highBoundary()`` where the engine's JSON drops trailing zeros.

The boundaries of a decimal depend on its written precision
(https://build.fhir.org/fhirpath.html#functions): ``1.50`` spans [1.495, 1.505] but ``1.5``
spans [1.45, 1.55]. Spark's VARIANT and DuckDB's JSON functions both re-print ``1.50`` as
``1.5``, so both read such inputs from a written twin of the resource JSON
(``Dialect.written_number_text``); these tests use literal NDJSON text so the trailing zeros
really are there, and run on DuckDB and (``slow``) Spark.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest

from sharedcare.analytics.views import (
    Source,
    ViewDefinitionError,
    compile_for,
    ndjson_source,
    run_duckdb,
)

NDJSON = "\n".join(
    [
        '{"resourceType": "Observation", "id": "a", "valueQuantity": {"value": 1.50},'
        ' "code": {"text": "ratio \\"2.50\\" \\\\"},'
        ' "component": [{"valueQuantity": {"value": -0.0100}}, {"valueString": "7.0"},'
        ' {"valueQuantity": {"value": 20}}]}',
        '{"resourceType": "Observation", "id": "b", "valueQuantity": {"value": 0.000}}',
        '{"resourceType": "Observation", "id": "c"}',
        '{"resourceType": "Patient", "id": "p", "birthDate": "1970"}',
    ]
)


def _view(select: list[dict[str, Any]], where: str | None = None) -> dict[str, Any]:
    view: dict[str, Any] = {"resource": "Observation", "select": select}
    if where is not None:
        view["where"] = [{"path": where}]
    return view


def _col(name: str, path: str, type_: str = "decimal") -> dict[str, str]:
    return {"name": name, "path": path, "type": type_}


ID = {"column": [_col("id", "id", "id")]}
VALUE = "value.ofType(Quantity).value"


@pytest.fixture(scope="module")
def ndjson(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("decimals") / "resources.ndjson"
    path.write_text(NDJSON + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module", params=["duckdb", pytest.param("spark", marks=pytest.mark.slow)])
def run(request: pytest.FixtureRequest, ndjson: Path) -> Any:
    if request.param == "duckdb":
        con = duckdb.connect()
        source = ndjson_source(ndjson)
        return lambda view: sorted(run_duckdb(con, view, source).rows, key=repr)
    pytest.importorskip("pyspark", reason="the optional 'spark' extra is not installed")
    from sharedcare.analytics.conformance import spark_session
    from sharedcare.analytics.views.spark import ndjson_spark_view, run_spark

    spark = spark_session()
    spark_source = ndjson_spark_view(spark, "decimal_boundaries", str(ndjson))
    return lambda view: sorted(run_spark(spark, view, spark_source).rows, key=repr)


def test_root_path_keeps_written_precision(run: Any) -> None:
    view = _view(
        [
            {
                "column": [
                    _col("id", "id", "id"),
                    _col("lo", f"{VALUE}.lowBoundary()"),
                    _col("hi", f"{VALUE}.highBoundary()"),
                ]
            }
        ]
    )
    assert run(view) == [("a", 1.495, 1.505), ("b", -0.0005, 0.0005), ("c", None, None)]


def test_inside_for_each_and_for_each_or_null(run: Any) -> None:
    each = _view([ID, {"forEach": "component", "column": [_col("lo", f"{VALUE}.lowBoundary()")]}])
    assert run(each) == [("a", -0.01005), ("a", 19.5), ("a", None)]
    or_null = _view(
        [
            ID,
            {
                "forEachOrNull": "component.value.ofType(Quantity)",
                "column": [_col("hi", "value.highBoundary()")],
            },
        ]
    )
    assert run(or_null) == [("a", -0.00995), ("a", 20.5), ("b", None), ("c", None)]


def test_in_where_and_strings_untouched(run: Any) -> None:
    view = _view(
        [{"column": [_col("id", "id", "id"), _col("text", "code.text", "string")]}],
        where=f"{VALUE}.lowBoundary() > 1.49",
    )
    assert run(view) == [("a", 'ratio "2.50" \\')]


def test_for_each_over_a_filter_is_refused(run: Any) -> None:
    view = _view(
        [
            ID,
            {
                "forEach": "component.where(value.exists())",
                "column": [_col("lo", f"{VALUE}.lowBoundary()")],
            },
        ]
    )
    with pytest.raises(ViewDefinitionError, match=r"forEach/forEachOrNull whose expression"):
        run(view)


def test_spark_source_without_text_is_refused_and_other_views_skip_the_twin() -> None:
    from sharedcare.analytics.views.runner import as_view
    from sharedcare.analytics.views.spark import compile_view_spark

    boundary = as_view(_view([{"column": [_col("lo", f"{VALUE}.lowBoundary()")]}]))
    with pytest.raises(ViewDefinitionError, match=r"text_column"):
        compile_view_spark(boundary, Source("t", "resource"))
    with_text = Source("t", "resource", text_column="resource_text")
    assert "resource_text" in compile_view_spark(boundary, with_text).sql
    plain = as_view(_view([{"column": [_col("v", VALUE)]}]))
    assert "resource_text" not in compile_view_spark(plain, with_text).sql


def test_date_boundaries_do_not_read_the_text() -> None:
    """Integers and dates need no twin: only decimal inputs read the JSON text."""
    from sharedcare.analytics.views.runner import as_view
    from sharedcare.analytics.views.spark import compile_view_spark

    view = as_view(
        {
            "resource": "Patient",
            "select": [{"column": [_col("d", "birthDate.lowBoundary()", "date")]}],
        }
    )
    sql = compile_view_spark(view, Source("t", "resource", text_column="resource_text")).sql
    assert "resource_text" not in sql


def test_duckdb_reads_the_twin_only_for_decimal_boundaries() -> None:
    boundary = _view([{"column": [_col("lo", f"{VALUE}.highBoundary()")]}])
    assert "_sof_wt" in compile_for(boundary, "duckdb", Source("t", "resource")).sql
    plain = _view([{"column": [_col("v", VALUE)]}], where=f"{VALUE} > 1")
    assert "_sof_wt" not in compile_for(plain, "duckdb", Source("t", "resource")).sql
