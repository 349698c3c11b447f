"""``sharedcare load`` as a user runs it: NDJSON, Bundles, reloads and bad lines."""

from __future__ import annotations

from pathlib import Path

import orjson
from sqlalchemy import text
from typer.testing import CliRunner

from sharedcare.cli.main import app
from sharedcare.db.engine import create_engine

runner = CliRunner()


def _patients(n: int) -> list[dict[str, object]]:
    return [
        {"resourceType": "Patient", "id": f"p{i}", "gender": "female", "birthDate": "1980-02-01"}
        for i in range(n)
    ]


def _count(url: str) -> int:
    engine = create_engine(url)
    with engine.connect() as connection:
        # Golden records (written by identity as Patients are matched) are not counted.
        count = connection.execute(
            text(
                "SELECT count(*) FROM resource WHERE id NOT IN "
                "(SELECT golden_id FROM identity_golden)"
            )
        ).scalar()
    engine.dispose()
    return int(count or 0)


def test_load_ndjson_and_bundles_then_reload_adds_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "patients.ndjson").write_bytes(b"\n".join(orjson.dumps(p) for p in _patients(600)))
    transaction = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:0d2a9f3e-3f4c-4f5e-9a1b-2c3d4e5f6a7b",
                "resource": {"resourceType": "Patient", "gender": "male"},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "pulse"},
                    "subject": {"reference": "urn:uuid:0d2a9f3e-3f4c-4f5e-9a1b-2c3d4e5f6a7b"},
                },
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    (data / "tx.json").write_bytes(orjson.dumps(transaction))
    url = f"sqlite:///{tmp_path}/load.db"
    first = runner.invoke(app, ["load", str(data), "--database", url, "--organisation", "Y01"])
    assert first.exit_code == 0, first.output
    assert "loaded 602 resources" in first.output
    assert _count(url) == 602
    again = runner.invoke(app, ["load", str(data / "patients.ndjson"), "--database", url])
    assert again.exit_code == 0
    assert "600 unchanged" in again.output


def test_bad_lines_are_reported_and_the_rest_loaded(tmp_path: Path) -> None:
    path = tmp_path / "mixed.ndjson"
    lines = [orjson.dumps(p) for p in _patients(3)]
    lines.insert(1, b"{broken")
    lines.append(orjson.dumps({"resourceType": "Patient", "gender": "dragon"}))
    path.write_bytes(b"\n".join(lines))
    url = f"sqlite:///{tmp_path}/mixed.db"
    result = runner.invoke(app, ["load", str(path), "--database", url])
    assert result.exit_code == 1
    assert "loaded 3 resources" in result.output
    assert "mixed.ndjson:2: not valid JSON" in result.output
    assert "mixed.ndjson:5:" in result.output and "Patient.gender" in result.output
    assert "dragon" not in result.output
    assert "Traceback" not in result.output


def test_no_files_is_a_one_line_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["load", str(tmp_path), "--database", f"sqlite:///{tmp_path}/x.db"])
    assert result.exit_code == 2
    assert "no .json, .ndjson or .jsonl files" in result.output
