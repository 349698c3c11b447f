"""Benchmark: the same ViewDefinitions on DuckDB and on local-mode Spark, with the ratio.

Generates the synthetic Patient/Observation NDJSON of ``bench_views`` (no real data), loads it
once into each engine (DuckDB: a JSON table; Spark: a cached ``VARIANT`` temporary view), then
materialises the three views of ``bench_views`` in both and prints seconds, resources/s and
the Spark/DuckDB time ratio. DuckDB's materialisation figure is printed against the issue's
target of 50,000 resources/s. Spark runs ``local[2]`` (two cores, as the machine has); its
output is written to Spark's ``noop`` sink so every row is computed but nothing is collected.

Also printed: DuckDB with the National Data Opt-out anti-join applied (secondary use), and an
export from a SQLite record store (views do not compile for SQLite, so resources are streamed
out of the store into DuckDB; the stream rate is printed).

Needs the optional ``spark`` extra (PySpark 4 and Java 17); without it only DuckDB runs.

Usage: python -m benchmarks views_spark   or, with options,
       python -m benchmarks.bench_views_spark [--resources 100000] [--repeat 2]
           [--sqlite 10000] [--no-spark]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb
import orjson

from benchmarks.bench_views import NAMES_VIEW, OBSERVATION_VIEW, PATIENT_VIEW, generate
from sharedcare.analytics.views import Source, materialise_duckdb

VIEWS = (PATIENT_VIEW, OBSERVATION_VIEW, NAMES_VIEW)
TARGET = 50_000


def _duckdb(ndjson: Path, total: int, repeat: int, threads: int) -> dict[str, float]:
    con = duckdb.connect()
    con.execute(f"SET threads = {threads}")
    t0 = time.perf_counter()
    con.execute(
        f"CREATE TABLE resources AS SELECT json AS resource FROM read_ndjson_objects('{ndjson}')"
    )
    print(f"duckdb load: {time.perf_counter() - t0:.2f}s")
    source = Source("resources", "resource")
    out: dict[str, float] = {}
    for view in VIEWS:
        secs = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            rows = materialise_duckdb(con, view, source)
            secs = min(secs, time.perf_counter() - t0)
        out[str(view["name"])] = secs
        print(
            f"duckdb {view['name']:<22} {rows:>9,} rows {secs:7.2f}s "
            f"{total / secs:>11,.0f} res/s ({total / secs / TARGET:.2f}x target)"
        )
    con.close()
    return out


def _duckdb_optout(ndjson: Path, total: int, threads: int) -> None:
    """The same views for secondary use: opt-outs (1 person in 50) removed by the anti-join."""
    from sharedcare.analytics.optout import exclude_opted_out, optout_consent

    con = duckdb.connect()
    con.execute(f"SET threads = {threads}")
    con.execute(
        "CREATE TABLE resources AS SELECT json ->> 'resourceType' AS resource_type, json AS "
        f"resource FROM read_ndjson_objects('{ndjson}')"
    )
    patients = con.execute("SELECT count(*) FROM resources WHERE resource_type = 'Patient'")
    count = int(patients.fetchone()[0])  # type: ignore[index]
    consents = [
        orjson.dumps(optout_consent(f"c{i}", f"p{i}", "2024-01-01")).decode()
        for i in range(0, count, 50)
    ]
    con.execute(
        "INSERT INTO resources SELECT 'Consent', CAST(j AS JSON) FROM (SELECT unnest(?) AS j)",
        [consents],
    )
    source = Source("resources", "resource", "resource_type")
    for view in VIEWS:
        query = exclude_opted_out(view, "duckdb", source)
        t0 = time.perf_counter()
        con.execute(f"CREATE OR REPLACE TABLE out_view AS {query.sql}")
        secs = time.perf_counter() - t0
        rows = con.execute("SELECT count(*) FROM out_view").fetchone()[0]  # type: ignore[index]
        print(
            f"duckdb {view['name']:<22} {rows:>9,} rows {secs:7.2f}s "
            f"{total / secs:>11,.0f} res/s with opt-outs ({len(consents):,} excluded people)"
        )
    con.close()


def _sqlite(ndjson: Path, count: int) -> None:
    """Export from a SQLite record store: resources streamed out into DuckDB (no SQLite SQL)."""
    from sharedcare.analytics.export import ViewSpec, export_views, load_sqlite_store
    from sharedcare.cli.main import app

    with tempfile.TemporaryDirectory() as tmp:
        subset = Path(tmp) / "subset.ndjson"
        total = sum(1 for _ in ndjson.open("rb"))
        step = max(1, total // count)
        with ndjson.open("rb") as src, subset.open("wb") as out:
            for n, line in enumerate(src):
                if n % step == 0 and n // step < count:
                    out.write(line)
        url = f"sqlite:///{tmp}/store.db"
        t0 = time.perf_counter()
        app(["load", str(subset), "--database", url], standalone_mode=False)
        print(f"sqlite store: loaded {count:,} resources in {time.perf_counter() - t0:.1f}s")
        con = duckdb.connect()
        t0 = time.perf_counter()
        _, streamed = load_sqlite_store(con, url)
        secs = time.perf_counter() - t0
        print(
            f"sqlite -> duckdb stream: {streamed:,} resources {secs:.2f}s = "
            f"{streamed / secs:,.0f} res/s"
        )
        con.close()
        t0 = time.perf_counter()
        views = [ViewSpec(str(v["name"]), v) for v in VIEWS]
        export_views(views, Path(tmp) / "out", database_url=url)
        secs = time.perf_counter() - t0
        print(f"sqlite export (stream + 3 views to Parquet, opt-outs applied): {secs:.2f}s")


def _spark(ndjson: Path, total: int, repeat: int) -> dict[str, float] | None:
    try:
        import pyspark  # noqa: F401
    except ImportError:
        print("spark: PySpark is not installed (uv sync --extra spark); DuckDB only")
        return None
    from pyspark.sql import SparkSession

    from sharedcare.analytics.views.runner import as_view
    from sharedcare.analytics.views.spark import compile_view_spark

    t0 = time.perf_counter()
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("sharedcare-bench-views")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    print(f"spark session start: {time.perf_counter() - t0:.1f}s")
    t0 = time.perf_counter()
    frame = spark.read.text(str(ndjson)).where("trim(value) <> ''")
    frame = frame.selectExpr("parse_json(value) AS resource").cache()
    loaded = frame.count()
    frame.createOrReplaceTempView("resources")
    print(f"spark load (parse + cache {loaded:,} rows): {time.perf_counter() - t0:.2f}s")
    source = Source("resources", "resource")
    out: dict[str, float] = {}
    try:
        for view in VIEWS:
            sql = compile_view_spark(as_view(view), source).sql
            secs = float("inf")
            for _ in range(repeat):
                t0 = time.perf_counter()
                spark.sql(sql).write.format("noop").mode("overwrite").save()
                secs = min(secs, time.perf_counter() - t0)
            out[str(view["name"])] = secs
            print(f"spark  {view['name']:<22} {'':>14} {secs:7.2f}s {total / secs:>11,.0f} res/s")
    finally:
        frame.unpersist()
        spark.stop()
    return out


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark; ``argv`` defaults to no options (as ``python -m benchmarks`` calls it)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--resources", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=2, help="runs per view; best is reported")
    parser.add_argument("--threads", type=int, default=2, help="DuckDB threads")
    parser.add_argument(
        "--sqlite", type=int, default=10_000, help="resources for the SQLite export (0: skip)"
    )
    parser.add_argument("--no-spark", action="store_true", help="DuckDB figures only")
    args = parser.parse_args(argv or [])
    with tempfile.TemporaryDirectory() as tmp:
        ndjson = Path(tmp) / "resources.ndjson"
        patients, observations = generate(ndjson, args.resources)
        print(f"{args.resources:,} resources ({patients:,} Patient, {observations:,} Observation)")
        duck = _duckdb(ndjson, args.resources, args.repeat, args.threads)
        _duckdb_optout(ndjson, args.resources, args.threads)
        if args.sqlite:
            _sqlite(ndjson, min(args.sqlite, args.resources))
        spark: Any = None if args.no_spark else _spark(ndjson, args.resources, args.repeat)
    if spark:
        print("\nview                    duckdb s   spark s   spark/duckdb")
        for name, secs in duck.items():
            print(f"{name:<22} {secs:9.2f} {spark[name]:9.2f} {spark[name] / secs:10.1f}x")
        total_d, total_s = sum(duck.values()), sum(spark.values())
        print(f"{'all three':<22} {total_d:9.2f} {total_s:9.2f} {total_s / total_d:10.1f}x")


if __name__ == "__main__":
    main(sys.argv[1:])
