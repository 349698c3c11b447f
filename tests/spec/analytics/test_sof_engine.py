"""View engine behaviour beyond the official suite: sources, live views, errors, FHIRPath extras.

Each behaviour test runs on DuckDB and on PostgreSQL (``engine`` parameter).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import fastjsonschema
import orjson
import psycopg
import pytest

from sharedcare.analytics import conformance
from sharedcare.analytics.views import (
    Source,
    ViewDefinitionError,
    ViewEvaluationError,
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
from sharedcare.db.engine import create_engine
from sharedcare.db.migrate import upgrade

SECRET_NHS = "9434765919"

RESOURCES: list[dict[str, Any]] = [
    {
        "resourceType": "Patient",
        "id": "a",
        "deceasedBoolean": True,
        "identifier": [
            {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": SECRET_NHS},
            {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765870"},
        ],
        "name": [{"use": "official", "family": "Ash", "given": ["Ann", "Bea"]}],
        "extension": [
            {"url": "http://example.org/eth", "valueCode": "A1"},
            {"url": "http://example.org/other", "valueString": "x"},
        ],
        "generalPractitioner": [{"reference": "Organization/gp1/_history/3"}],
        "futureElement": [{"code": "f1"}, {"code": "f2"}],
    },
    {
        "resourceType": "Patient",
        "id": "b",
        "deceasedDateTime": "2020-01-02",
        "name": [{"family": "Birch", "given": ["Cy"]}, {"family": "Beech"}],
        "generalPractitioner": [{"reference": "https://example.org/fhir/Organization/gp2"}],
    },
    {"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "x"}},
]


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def run(
    request: pytest.FixtureRequest,
) -> Iterator[Callable[[dict[str, Any]], list[dict[str, Any]]]]:
    if request.param == "duckdb":
        con = duckdb.connect()
        source = load_duckdb_table(con, "res", RESOURCES)
        yield lambda view: run_duckdb(con, view, source).as_dicts()
        con.close()
    else:
        url = request.getfixturevalue("postgres_url").replace("+psycopg", "", 1)
        with psycopg.connect(url) as conn:
            pg_source = load_postgres_table(conn, "res", RESOURCES)
            yield lambda view: run_postgres(conn, view, pg_source).as_dicts()
            conn.rollback()


def _view(*columns: tuple[Any, ...], **extra: Any) -> dict[str, Any]:
    cols = [{"name": "id", "path": "id", "type": "id"}]
    for name, path, *more in columns:
        cols.append(
            {"name": name, "path": path, **extra.get(name, {}), **(more[0] if more else {})}
        )
    return {"resource": "Patient", "select": [{"column": cols}]}


def _by_id(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in rows}


def test_choice_types_and_extensions(run: Callable[..., Any]) -> None:
    rows = _by_id(
        run(
            _view(
                ("dec_bool", "deceased.ofType(boolean)"),
                ("dec_dt", "deceased.ofType(dateTime)"),
                ("eth", "extension('http://example.org/eth').value.ofType(code)"),
                ("eth_list", "extension.where(url = 'http://example.org/eth').value.ofType(code)"),
                ("n_ext", "extension.count()"),
            )
        )
    )
    assert rows["a"]["dec_bool"] is True and rows["a"]["dec_dt"] is None
    assert rows["b"]["dec_dt"] == "2020-01-02" and rows["b"]["dec_bool"] is None
    assert rows["a"]["eth"] == "A1" and rows["a"]["eth_list"] == "A1"
    assert rows["b"]["eth"] is None
    assert rows["a"]["n_ext"] == 2 and rows["b"]["n_ext"] == 0


def test_operators_and_functions(run: Callable[..., Any]) -> None:
    rows = _by_id(
        run(
            _view(
                ("full", "name.first().given.first() & ' ' & name.first().family"),
                ("last_family", "name.last().family"),
                ("given_n", "name.given.count()"),
                ("ann", "name.given.where($this = 'Ann').exists()"),
                ("arith", "(2 + 3) * 4 - 10 / 4"),
                ("intdiv", "7 div 2"),
                ("modulo", "7 mod 3"),
                ("impl", "deceased.ofType(boolean) implies false"),
                ("families", "name.family | name.family", {"collection": True}),
                ("is_bool", "deceased is boolean"),
            )
        )
    )
    a, b = rows["a"], rows["b"]
    assert a["full"] == "Ann Ash" and b["full"] == "Cy Birch"
    assert a["last_family"] == "Ash" and b["last_family"] == "Beech"
    assert (a["given_n"], b["given_n"]) == (2, 1)
    assert a["ann"] is True and b["ann"] is False
    assert a["arith"] == pytest.approx(17.5)
    assert (a["intdiv"], a["modulo"]) == (3, 1)
    assert a["impl"] is False and b["impl"] is None
    assert sorted(b["families"]) == ["Beech", "Birch"]  # union: no order guaranteed
    assert a["is_bool"] is True and b["is_bool"] is False


def test_reference_keys(run: Callable[..., Any]) -> None:
    rows = _by_id(
        run(
            _view(
                ("key", "getResourceKey()"),
                ("gp", "generalPractitioner.getReferenceKey(Organization)"),
                ("gp_any", "generalPractitioner.first().getReferenceKey()"),
                ("gp_wrong", "generalPractitioner.getReferenceKey(Patient)"),
            )
        )
    )
    assert rows["a"]["key"] == "Patient/a"
    assert rows["a"]["gp"] == "Organization/gp1" and rows["a"]["gp_any"] == "Organization/gp1"
    assert rows["a"]["gp_wrong"] is None
    assert rows["b"]["gp"] is None  # absolute URLs do not produce keys


def test_empty_focus_gives_false_and_zero_not_null(run: Callable[..., Any]) -> None:
    view = {
        "resource": "Patient",
        "select": [
            {"column": [{"name": "id", "path": "id"}, {"name": "g", "path": "gender.count()"}]},
            {
                "forEachOrNull": "contact",
                "column": [
                    {"name": "has_tel", "path": "telecom.exists()"},
                    {"name": "n_tel", "path": "telecom.count()"},
                    {"name": "no_name", "path": "name.empty()"},
                ],
            },
        ],
    }
    rows = _by_id(run(view))
    assert rows["b"] == {"id": "b", "g": 0, "has_tel": False, "n_tel": 0, "no_name": True}


def test_unknown_elements_are_empty_not_errors(run: Callable[..., Any]) -> None:
    view = {
        "resource": "Patient",
        "select": [
            {"column": [{"name": "id", "path": "id"}]},
            {"forEach": "futureElement", "column": [{"name": "code", "path": "code"}]},
        ],
    }
    assert sorted(r["code"] for r in run(view)) == ["f1", "f2"]


def test_multiple_values_error_names_column_not_data(run: Callable[..., Any]) -> None:
    view = _view(("nhs", "identifier.where(system = 'https://fhir.nhs.uk/Id/nhs-number').value"))
    with pytest.raises(ViewEvaluationError) as info:
        run(view)
    message = str(info.value)
    assert "column 'nhs'" in message and "collection: true" in message
    assert SECRET_NHS not in message


def _col(path: str, name: str = "x", resource: str = "Patient", **extra: Any) -> dict[str, Any]:
    return {"resource": resource, "select": [{"column": [{"name": name, "path": path}]}], **extra}


@pytest.mark.parametrize(
    ("view", "fragment"),
    [
        (_col("name.foo("), "offset"),
        (_col("name.descendants()"), "not supported"),
        (_col("id", resource="Nope"), "not a FHIR R4"),
        (_col("id", name="x y"), "name must be"),
        (
            {
                "resource": "Patient",
                "select": [{"column": [{"name": "x", "path": "id", "type": "nope"}]}],
            },
            "FHIR type",
        ),
        (_col("id", where=[{"path": "birthDate"}]), "boolean"),
        (
            {
                "resource": "Patient",
                "select": [{"column": [_col("id")["select"][0]["column"][0]] * 2}],
            },
            "more than once",
        ),
        (
            {
                "resource": "Patient",
                "select": [
                    {"forEach": "name", "column": [{"name": "k", "path": "getResourceKey()"}]}
                ],
            },
            "resource",
        ),
    ],
)
def test_static_errors_name_the_problem(view: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ViewDefinitionError, match=fragment):
        compile_for(view, "duckdb", Source("t", "resource"))


def test_engine_failure_does_not_echo_data() -> None:
    con = duckdb.connect()
    source = load_duckdb_table(con, "res", RESOURCES)
    view = _view(("n", "name.first().family"), n={"type": "integer"})
    with pytest.raises(ViewEvaluationError) as info:
        run_duckdb(con, view, source)
    assert "Ash" not in str(info.value)


def test_ndjson_and_parquet_sources(tmp_path: Path) -> None:
    ndjson = tmp_path / "res.ndjson"
    ndjson.write_bytes(b"\n".join(orjson.dumps(r) for r in RESOURCES) + b"\n")
    con = duckdb.connect()
    view = _view(("family", "name.first().family"))
    from_ndjson = run_duckdb(con, view, ndjson_source(ndjson)).as_dicts()
    parquet = tmp_path / "res.parquet"
    con.execute(
        f"COPY (SELECT CAST(json AS VARCHAR) AS resource FROM read_ndjson_objects('{ndjson}')) "
        f"TO '{parquet}' (FORMAT parquet)"
    )
    from_parquet = run_duckdb(con, view, parquet_source(parquet)).as_dicts()
    expected = [{"id": "a", "family": "Ash"}, {"id": "b", "family": "Birch"}]
    assert sorted(from_ndjson, key=str) == sorted(from_parquet, key=str) == expected
    assert materialise_duckdb(con, view, ndjson_source(ndjson), "fam") == 2
    assert con.execute("SELECT count(*) FROM fam").fetchone() == (2,)


@pytest.mark.postgres
def test_postgres_live_view_follows_the_table(postgres_url: str) -> None:
    url = postgres_url.replace("+psycopg", "", 1)
    view = {
        "resource": "Patient",
        "name": "patient_flat",
        **_view(("family", "name.family.first()")),
    }
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE store (resource_type text, id text, content jsonb)")
        conn.execute(create_view_sql(view, "postgres", Source("store", "content", "resource_type")))
        assert conn.execute("SELECT * FROM patient_flat").fetchall() == []
        conn.execute(
            "INSERT INTO store VALUES ('Patient', 'a', %s::jsonb)", [json.dumps(RESOURCES[0])]
        )
        assert conn.execute("SELECT * FROM patient_flat").fetchall() == [("a", "Ash")]
        conn.rollback()


@pytest.mark.postgres
def test_views_over_the_record_store_are_live(postgres_url: str) -> None:
    admin = postgres_url.replace("+psycopg", "", 1)
    name = f"sof_store_{os.getpid()}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = admin.rsplit("/", 1)[0] + "/" + name
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    upgrade(engine)  # the record store's real schema
    engine.dispose()
    view = {
        "resource": "Patient",
        "name": "patient_flat",
        **_view(("family", "name.family.first()")),
    }
    insert = (
        "INSERT INTO resource (resource_type, id, version_id, last_updated, deleted, content) "
        "VALUES (%s, %s, 1, 0, %s, %s::jsonb)"
    )
    with psycopg.connect(url) as conn:
        conn.execute(create_view_sql(view, "postgres", record_store_source()))
        conn.execute(insert, ["Patient", "a", False, json.dumps(RESOURCES[0])])
        conn.execute(insert, ["Patient", "gone", True, None])
        conn.execute(insert, ["Observation", "o1", False, json.dumps(RESOURCES[2])])
        assert conn.execute("SELECT * FROM patient_flat").fetchall() == [("a", "Ash")]
        conn.execute("UPDATE resource SET deleted = TRUE, content = NULL WHERE id = 'a'")
        assert conn.execute("SELECT * FROM patient_flat").fetchall() == []


def test_conformance_cli_writes_valid_report(tmp_path: Path, shared_dir: Path) -> None:
    suite = shared_dir / "conformance" / "sql-on-fhir-v2"
    report = tmp_path / "test_report.json"
    code = conformance.main([str(suite / "tests"), "--engine", "duckdb", "--report", str(report)])
    data = json.loads(report.read_text())
    validate = fastjsonschema.compile(json.loads((suite / "test-report.schema.json").read_text()))
    validate(data)
    results = [t["result"]["passed"] for f in data.values() for t in f["tests"]]
    assert len(results) == 134 and all(results) and code == 0


@pytest.mark.postgres
def test_conformance_cli_on_postgres(tmp_path: Path, shared_dir: Path, postgres_url: str) -> None:
    tests = shared_dir / "conformance" / "sql-on-fhir-v2" / "tests"
    report = tmp_path / "test_report.json"
    args = [str(tests), "--engine", "postgres", "--postgres-url", postgres_url]
    assert conformance.main([*args, "--report", str(report)]) == 0
    data = json.loads(report.read_text())
    assert sum(len(f["tests"]) for f in data.values()) == 134


def test_conformance_cli_rejects_missing_postgres_url(
    tmp_path: Path, shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SHAREDCARE_POSTGRES_URL", raising=False)
    tests = shared_dir / "conformance" / "sql-on-fhir-v2" / "tests"
    assert (
        conformance.main([str(tests), "--engine", "postgres", "--report", str(tmp_path / "r.json")])
        == 2
    )
