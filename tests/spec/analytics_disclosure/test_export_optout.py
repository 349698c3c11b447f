"""Export with opt-outs excluded (SQL anti-join) and pseudonymisation, on every engine."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest
from typer.testing import CliRunner

from sharedcare.analytics.export import ViewSpec, export_views
from sharedcare.analytics.optout import exclude_opted_out, optout_consent, patient_keys_path
from sharedcare.analytics.pseudonymise import Pseudonymiser, PseudonymKeyError, rule_for
from sharedcare.analytics.views import load_duckdb_table
from sharedcare.cli.main import app
from sharedcare.fhir.definitions.search import patient_compartment

KEY = "an-example-master-key-for-tests-only-0123456789"

PATIENT_VIEW: dict[str, Any] = {
    "resourceType": "ViewDefinition",
    "name": "pv",
    "resource": "Patient",
    "select": [
        {
            "column": [
                {"name": "patient_key", "path": "getResourceKey()", "type": "string"},
                {
                    "name": "nhs",
                    "path": "identifier.where(system = 'https://fhir.nhs.uk/Id/nhs-number')"
                    ".value.first()",
                    "type": "string",
                },
                {"name": "family", "path": "name.first().family", "type": "string"},
                {"name": "birth", "path": "birthDate", "type": "date"},
                {"name": "postcode", "path": "address.first().postalCode", "type": "string"},
                {"name": "sex", "path": "gender", "type": "code"},
                {"name": "ids", "path": "identifier.value", "collection": True},
                {"name": "givens", "path": "name.given", "collection": True},
            ]
        }
    ],
}
OBS_VIEW: dict[str, Any] = {
    "resourceType": "ViewDefinition",
    "name": "ov",
    "resource": "Observation",
    "select": [
        {
            "column": [
                {"name": "id", "path": "id", "type": "id"},
                {"name": "patient_key", "path": "subject.getReferenceKey(Patient)"},
            ]
        }
    ],
}


def _resources() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(1, 6):
        out.append(
            {
                "resourceType": "Patient",
                "id": f"p{i}",
                "gender": "female",
                "birthDate": "1980-05-12",
                "name": [{"family": "Example", "given": ["Ann"]}],
                "address": [{"postalCode": "BH1 1AA"}],
                "identifier": [
                    {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": f"99900000{i}0"}
                ],
            }
        )
        out.append(
            {
                "resourceType": "Observation",
                "id": f"o{i}",
                "status": "final",
                "code": {"text": "x"},
                "subject": {"reference": f"Patient/p{i}"},
            }
        )
    out.append(optout_consent("c1", "p2", "2024-01-01T00:00:00Z"))
    # Not opt-outs: withdrawn (inactive) and a permit.
    inactive = optout_consent("c2", "p3", "2024-01-01T00:00:00Z")
    inactive["status"] = "inactive"
    permit = optout_consent("c3", "p4", "2024-01-01T00:00:00Z")
    permit["provision"] = {"type": "permit"}
    out += [inactive, permit]
    return out


def test_every_compartment_type_compiles_with_the_optout_column() -> None:
    con = duckdb.connect()
    source = load_duckdb_table(con, "r", [])
    for resource_type in patient_compartment():
        if patient_keys_path(resource_type) is None:
            continue
        view = {"resource": resource_type, "select": [{"column": [{"name": "x", "path": "id"}]}]}
        exclude_opted_out(view, "duckdb", source)
        exclude_opted_out(view, "postgres", source)


def test_optout_is_an_anti_join_in_duckdb() -> None:
    con = duckdb.connect()
    source = load_duckdb_table(con, "r", _resources())
    query = exclude_opted_out(OBS_VIEW, "duckdb", source)
    assert "NOT EXISTS" in query.sql
    rows = con.execute(query.sql).fetchall()
    assert sorted(r[0] for r in rows) == ["o1", "o3", "o4", "o5"]
    direct = exclude_opted_out(OBS_VIEW, "duckdb", source, apply=False)
    assert len(con.execute(direct.sql).fetchall()) == 5


def test_rules_for_direct_identifiers() -> None:
    assert rule_for("getResourceKey()") == "hash"
    assert rule_for("subject.getReferenceKey(Patient)") == "hash"
    assert rule_for("generalPractitioner.first().getReferenceKey(Organization)") == "keep"
    assert rule_for("name.first().family") == "drop"
    assert rule_for("telecom.value") == "drop"
    assert rule_for("birthDate", system="date") == "month"
    assert rule_for("deceased.ofType(boolean)", system="boolean") == "keep"
    assert rule_for("address.first().postalCode") == "district"
    assert rule_for("code.coding.display") == "keep"
    ods = "identifier.where(system = 'https://fhir.nhs.uk/Id/ods-organization-code').value"
    assert rule_for(f"serviceProvider.{ods}.first()") == "keep"
    assert rule_for(f"requester.{ods}") == "keep"
    assert rule_for("identifier.assigner.display.first()") == "keep"
    assert rule_for("identifier.where(type.coding.code = 'FILL').system.first()") == "keep"
    assert rule_for("performer.identifier.value.first()") == "hash"
    assert rule_for("performer.display.first()") == "drop"
    # Literals do not count: the URL mentions "text" but the column is an ethnic category code.
    assert rule_for("extension('https://example.org/x.text').value.ofType(code)") == "keep"


def test_key_must_be_long_and_project_named() -> None:
    with pytest.raises(PseudonymKeyError, match="at least 32"):
        Pseudonymiser.for_project("short", "p")
    with pytest.raises(PseudonymKeyError, match="project"):
        Pseudonymiser.for_project(KEY, " ")
    assert KEY not in repr(Pseudonymiser.for_project(KEY, "p"))
    with pytest.raises(PseudonymKeyError, match="for_project"):
        Pseudonymiser("p")


def _read(path: Path) -> list[dict[str, Any]]:
    con = duckdb.connect()
    cur = con.execute(f"SELECT * FROM '{path}' ORDER BY ALL")
    names = [d[0] for d in cur.description or []]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def _check_extract(out: Path, project: str) -> None:
    pseudo = Pseudonymiser.for_project(KEY, project)
    people = _read(out / "pv.parquet")
    assert set(people[0]) == {"patient_key", "nhs", "birth", "postcode", "sex", "ids"}
    assert {p["birth"] for p in people} == {"1980-05"}
    assert {p["postcode"] for p in people} == {"BH1"}
    expected = {pseudo.pseudonym(f"Patient/p{i}") for i in (1, 3, 4, 5)}
    assert {p["patient_key"] for p in people} == expected
    # Links across views of one project.
    obs = _read(out / "ov.parquet")
    assert {o["patient_key"] for o in obs} == expected
    # HMAC-SHA256 with the derived project key, as documented.
    project_key = hmac.new(
        KEY.encode(), b"sharedcare-pseudonym-v1\0" + project.encode(), hashlib.sha256
    ).digest()
    nhs = hmac.new(project_key, b"9990000010", hashlib.sha256).hexdigest()
    assert nhs in {p["nhs"] for p in people}
    assert [nhs] in [p["ids"] for p in people]


def test_export_from_ndjson_is_pseudonymised_and_links_only_within_a_project(
    tmp_path: Path,
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "all.ndjson").write_bytes(b"\n".join(orjson.dumps(r) for r in _resources()))
    views = [ViewSpec("pv", PATIENT_VIEW), ViewSpec("ov", OBS_VIEW)]
    a = export_views(
        views, tmp_path / "a", source_dir=src, pseudonymiser=Pseudonymiser.for_project(KEY, "a")
    )
    assert [r.rows for r in a] == [4, 4]
    _check_extract(tmp_path / "a", "a")
    export_views(
        views, tmp_path / "b", source_dir=src, pseudonymiser=Pseudonymiser.for_project(KEY, "b")
    )
    manifest = orjson.loads((tmp_path / "a" / "manifest.json").read_bytes())
    assert manifest["project"] == "a" and manifest["national_data_opt_outs_excluded"]
    assert manifest["views"]["pv"]["rows"] == 4
    assert manifest["views"]["pv"]["columns"]["family"] == "drop"
    assert manifest["views"]["pv"]["columns"]["patient_key"] == "hash"
    assert KEY not in (tmp_path / "a" / "manifest.json").read_text()
    keys_a = {p["patient_key"] for p in _read(tmp_path / "a" / "pv.parquet")}
    keys_b = {p["patient_key"] for p in _read(tmp_path / "b" / "pv.parquet")}
    assert keys_a.isdisjoint(keys_b)


def test_export_from_the_record_store(database: str, tmp_path: Path) -> None:
    data = tmp_path / "data.ndjson"
    data.write_bytes(b"\n".join(orjson.dumps(r) for r in _resources()))
    runner = CliRunner()
    loaded = runner.invoke(app, ["load", str(data), "--database", database])
    assert loaded.exit_code == 0, loaded.output
    (tmp_path / "pv.json").write_bytes(orjson.dumps(PATIENT_VIEW))
    (tmp_path / "ov.json").write_bytes(orjson.dumps(OBS_VIEW))
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    result = runner.invoke(
        app,
        [
            "analytics",
            "export",
            "--database",
            database,
            "--out",
            str(tmp_path / "out"),
            "--view",
            str(tmp_path / "pv.json"),
            "--view",
            str(tmp_path / "ov.json"),
            "--pseudonymise",
            "--project",
            "p",
            "--key-file",
            str(key_file),
        ],
    )
    assert result.exit_code == 0, result.output
    assert KEY not in result.output
    _check_extract(tmp_path / "out", "p")


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "analytics",
            "export",
            "--source",
            str(tmp_path),
            "--out",
            str(tmp_path / "o"),
            "--pseudonymise",
        ],
    )
    assert result.exit_code == 2
    assert "--project" in result.output and "Traceback" not in result.output
    result = runner.invoke(
        app, ["analytics", "export", "--source", str(tmp_path), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2 and "no .ndjson files" in result.output
    missing = f"sqlite:///{tmp_path / 'missing.db'}"
    result = runner.invoke(
        app, ["analytics", "export", "--database", missing, "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2 and "does not exist" in result.output
    assert not (tmp_path / "missing.db").exists()


def test_type1_snomed_optout_is_recognised_and_withdrawal_is_not() -> None:
    con = duckdb.connect()
    consent = optout_consent("c9", "p5", "2024-01-01T00:00:00Z")
    consent["category"] = [
        {"coding": [{"system": "http://snomed.info/sct", "code": "827241000000103"}]}
    ]
    source = load_duckdb_table(con, "r", [*_resources(), consent])
    rows = con.execute(exclude_opted_out(OBS_VIEW, "duckdb", source).sql).fetchall()
    assert sorted(r[0] for r in rows) == ["o1", "o3", "o4"]


def test_the_key_never_appears_in_sql(tmp_path: Path) -> None:
    from sharedcare.analytics.pseudonymise import pseudonymised_sql

    pseudo = Pseudonymiser.for_project(KEY, "p")
    con = duckdb.connect()
    source = load_duckdb_table(con, "r", _resources())
    sql, names = pseudonymised_sql(
        exclude_opted_out(PATIENT_VIEW, "duckdb", source), "duckdb", pseudo
    )
    ipad, opad = pseudo.pads()
    for secret in (KEY, ipad.hex(), opad.hex(), pseudo._key.hex()):
        assert secret not in sql
    assert "family" not in names and "givens" not in names


def test_bad_view_file_is_one_line_error(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.ndjson").write_bytes(orjson.dumps(_resources()[0]))
    bad = tmp_path / "bad.json"
    bad.write_text(
        '{"resource": "Patient", "select": [{"column": [{"name": "x", "path": "id."}]}]}'
    )
    result = CliRunner().invoke(
        app,
        [
            "analytics",
            "export",
            "--source",
            str(src),
            "--out",
            str(tmp_path / "o"),
            "--view",
            str(bad),
        ],
    )
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and "Traceback" not in result.output


@pytest.mark.slow
def test_optout_anti_join_on_spark() -> None:
    pytest.importorskip("pyspark", reason="the optional 'spark' extra is not installed")
    from sharedcare.analytics.conformance import spark_session
    from sharedcare.analytics.views.spark import load_spark_view

    spark = spark_session()
    source = load_spark_view(spark, "optout_resources", _resources())
    for view, expected in ((OBS_VIEW, ["o1", "o3", "o4", "o5"]), (PATIENT_VIEW, None)):
        query = exclude_opted_out(view, "spark", source)
        rows = spark.sql(query.sql).collect()
        keys = sorted(str(r[0]) for r in rows)
        assert keys == (expected or [f"Patient/p{i}" for i in (1, 3, 4, 5)])


def test_protect_accepts_an_arrow_table() -> None:
    pa = pytest.importorskip("pyarrow")
    from sharedcare.analytics.disclosure import protect

    table = pa.table({"g": ["a", "a", "b"], "n": [3, 20, 40]})
    out = protect(table, count_columns=["n"], group_by=["g"])
    assert [r["n"] for r in out] == [None, None, 40]


def test_postcode_district_in_sql_matches_python() -> None:
    from sharedcare.analytics.pseudonymise import column_sql, postcode_district

    con = duckdb.connect()
    sql = column_sql("district", "pc", "duckdb")
    for code in ("BH1 1AA", "dt11 9ab", "SW1A 1AA", "M1 1AE", "W1A0AX", "not a postcode", ""):
        got = con.execute(f"SELECT {sql} FROM (SELECT ? AS pc)", [code]).fetchone()
        assert got is not None and got[0] == postcode_district(code), code


def test_export_unpacks_bundle_lines_like_analytics_run(tmp_path: Path) -> None:
    """Synthetic Dorset GP files hold one transaction Bundle per line: export their entries."""
    resources = _resources()
    src = tmp_path / "gp"
    src.mkdir()
    bundles = [
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/x"}}
                for r in resources[i : i + 2]
            ],
        }
        for i in range(0, 10, 2)
    ]
    bundles.append(
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [{"request": {"method": "DELETE", "url": "Patient/gone"}}],
        }
    )
    lines = [orjson.dumps(b) for b in bundles] + [orjson.dumps(r) for r in resources[10:]]
    (src / "J81006.ndjson").write_bytes(b"\n".join(lines))
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        ["analytics", "export", "--source", str(src), "--out", str(out), "--view", "people"],
    )
    assert result.exit_code == 0, result.output
    people = _read(out / "people.parquet")
    # Five Patients in the Bundles, one (p2) opted out by a Consent outside any Bundle.
    assert sorted(p["patient_key"] for p in people) == [f"Patient/p{i}" for i in (1, 3, 4, 5)]
