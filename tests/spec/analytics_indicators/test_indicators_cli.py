"""``sharedcare analytics run``: files in and out, the live record, one-line errors."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import duckdb
import orjson
import psycopg
import pytest
from typer.testing import CliRunner

from sharedcare.cli.main import app
from sharedcare.db.engine import create_engine
from sharedcare.db.migrate import upgrade
from tests.spec.analytics_indicators.indicator_record import RECORD

CENSUS = ["--census", "2025-12-31"]


@pytest.fixture
def source(tmp_path: Path) -> Path:
    folder = tmp_path / "src"
    (folder / "nested").mkdir(parents=True)
    half = len(RECORD) // 2
    (folder / "a.ndjson").write_bytes(b"\n".join(orjson.dumps(r) for r in RECORD[:half]))
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": r} for r in RECORD[half:]
    ]}  # fmt: skip
    (folder / "nested" / "b.ndjson").write_bytes(orjson.dumps(bundle))
    return folder


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_run_writes_csv_from_ndjson_and_bundles(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "prev.csv"
    result = CliRunner().invoke(
        app, ["analytics", "run", "prevalence", "--source", str(source), "--out", str(out), *CENSUS]
    )
    assert result.exit_code == 0, result.output
    row = next(
        r
        for r in _csv(out)
        if (r["measure"], r["imd_quintile"], r["age_band"]) == ("HYP", "1", "all")
    )
    assert (row["numerator"], row["denominator"], row["standardised_rate"]) == ("10", "20", "2.5")


def test_run_writes_parquet_and_reads_exported_views(source: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    first = tmp_path / "rtt.parquet"
    args = ["analytics", "run", "rtt-waiting-list", "--out", str(first), *CENSUS]
    assert runner.invoke(app, [*args, "--source", str(source)]).exit_code == 0
    relation = duckdb.sql(f"SELECT * FROM '{first}'")
    assert relation is not None
    rows = relation.fetchall()
    assert rows == [("RBD", "130", "Ophthalmology", 20, 10, 10, 50.0)]
    # A folder of exported view tables (VIEW.parquet, as `analytics export` writes them).
    export = tmp_path / "export"
    export.mkdir()
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE rtt_pathways AS SELECT * FROM (VALUES "
        "('EpisodeOfCare/1', 'Patient/1', 'active', 'R0D', '110', 'Trauma', '2024-01-02', NULL)"
        ") t(pathway_key, patient_key, status, trust, treatment_function, "
        "treatment_function_name, clock_start, clock_stop)"
    )
    for _ in range(9):
        con.execute("INSERT INTO rtt_pathways SELECT * FROM rtt_pathways LIMIT 1")
    con.execute(f"COPY rtt_pathways TO '{export / 'rtt_pathways.parquet'}' (FORMAT parquet)")
    second = tmp_path / "rtt2.csv"
    result = runner.invoke(
        app,
        ["analytics", "run", "rtt-waiting-list", "--source", str(export), "--out", str(second),
         *CENSUS],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert _csv(second) == [
        {
            "trust": "R0D",
            "treatment_function": "110",
            "treatment_function_name": "Trauma",
            "waiting": "10",
            "within_18_weeks": "0",
            "over_52_weeks": "10",
            "percent_within_18_weeks": "0.0",
        }
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope"], "unknown indicator 'nope'"),
        (["efi", "--engine", "oracle"], "unknown engine 'oracle'"),
        (["efi", "--out-suffix", ".xlsx"], "--out must end in .csv or .parquet"),
        (["efi", "--census", "31/12/2025"], "must be dates YYYY-MM-DD"),
        (["efi", "--period-start", "2026-01-01"], "the start before the census"),
        (["efi", "--missing-source"], "is not a directory"),
        (["efi", "--engine", "postgres"], "give exactly one of --source"),
    ],
)
def test_bad_input_gives_one_line(
    args: list[str], message: str, source: Path, tmp_path: Path
) -> None:
    out = tmp_path / ("out.xlsx" if "--out-suffix" in args else "out.csv")
    src = tmp_path / "nowhere" if "--missing-source" in args else source
    args = [a for a in args if a not in ("--out-suffix", ".xlsx", "--missing-source")]
    if "postgres" in args:
        extra = ["--source", str(src), "--database", "postgresql://x@127.0.0.1:1/db"]
    else:
        extra = ["--source", str(src)]
    result = CliRunner().invoke(
        app,
        [
            "analytics",
            "run",
            *args,
            *extra,
            "--out",
            str(out),
            *CENSUS[: 0 if "--census" in args else 2],
        ],
    )
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not out.exists()


@pytest.mark.postgres
def test_run_over_the_live_postgres_record(postgres_url: str, tmp_path: Path) -> None:
    admin = postgres_url.replace("+psycopg", "", 1)
    name = f"indicators_store_{os.getpid()}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = admin.rsplit("/", 1)[0] + "/" + name
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    upgrade(engine)  # the record store's real schema
    engine.dispose()
    insert = (
        "INSERT INTO resource (resource_type, id, version_id, last_updated, deleted, content) "
        "VALUES (%s, %s, 1, 0, FALSE, %s::jsonb)"
    )
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.executemany(
            insert, [(r["resourceType"], r["id"], orjson.dumps(r).decode()) for r in RECORD]
        )
    out = tmp_path / "stroke.csv"
    result = CliRunner().invoke(
        app,
        ["analytics", "run", "stroke", "--engine", "postgres", "--database", url, "--out",
         str(out), *CENSUS],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    [row] = _csv(out)
    assert (row["trust"], row["site"], row["admissions"], row["percent_thrombolysed"]) == (
        "RBD",
        "RBH",
        "20",
        "50.0",
    )


def test_run_over_a_sqlite_record(sqlite_template: Path, tmp_path: Path) -> None:
    db = tmp_path / "record.db"
    db.write_bytes(sqlite_template.read_bytes())
    data = tmp_path / "record.ndjson"
    data.write_bytes(b"\n".join(orjson.dumps(r) for r in RECORD))
    runner = CliRunner()
    loaded = runner.invoke(app, ["load", str(data), "--database", f"sqlite:///{db}"])
    assert loaded.exit_code == 0, loaded.output
    out = tmp_path / "path.csv"
    result = runner.invoke(
        app,
        ["analytics", "run", "pathology-turnaround", "--database", f"sqlite:///{db}", "--out",
         str(out), *CENSUS],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    [row] = _csv(out)
    assert (row["site"], row["reports"], row["median_hours"]) == ("DCH", "20", "30.0")


def test_indicators_read_a_pseudonymised_export(tmp_path: Path) -> None:
    """`analytics export --pseudonymise` output joins up: keys are hashed consistently."""
    from sharedcare.analytics.export import export_views, library_views
    from sharedcare.analytics.pseudonymise import Pseudonymiser

    source = tmp_path / "resources"
    source.mkdir()
    (source / "all.ndjson").write_bytes(b"\n".join(orjson.dumps(r) for r in RECORD))
    plain = tmp_path / "plain.csv"
    runner = CliRunner()
    args = ["analytics", "run", "efi", *CENSUS]
    assert runner.invoke(app, [*args, "--source", str(source), "--out", str(plain)]).exit_code == 0
    export = tmp_path / "export"
    views = library_views(["people", "conditions", "medications", "patient_links"])
    key = "a-test-master-key-that-is-long-enough-0123456789"
    export_views(
        views, export, source_dir=source, pseudonymiser=Pseudonymiser.for_project(key, "p")
    )
    hashed = tmp_path / "hashed.csv"
    result = runner.invoke(app, [*args, "--source", str(export), "--out", str(hashed)])
    assert result.exit_code == 0, result.output
    assert _csv(hashed) == _csv(plain)
    assert any(r["people"] == "10" for r in _csv(plain))


def test_no_rows_is_written_as_csv_but_refused_as_parquet(source: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["analytics", "run", "stroke", "--source", str(source), "--census", "2001-01-01"]
    empty_csv = tmp_path / "none.csv"
    assert runner.invoke(app, [*args, "--out", str(empty_csv)]).exit_code == 0
    assert _csv(empty_csv) == []
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "none.parquet")])
    assert result.exit_code == 2 and "found no data" in result.output


def test_help_lists_every_indicator() -> None:
    from sharedcare.analytics.indicators import INDICATORS
    from sharedcare.cli.analytics_run import INDICATOR_NAMES

    assert tuple(INDICATORS) == INDICATOR_NAMES
