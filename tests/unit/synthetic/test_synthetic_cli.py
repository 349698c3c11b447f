"""The ``synth`` command, mounted on a throwaway typer app (the lead wires it into main)."""

from __future__ import annotations

from pathlib import Path

import orjson
import typer
from typer.testing import CliRunner

from sharedcare.cli.synth import register


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.command("noop")
    def noop() -> None:  # a second command keeps typer in multi-command mode
        """Do nothing."""

    return app


def test_synth_writes_a_run(tmp_path: Path) -> None:
    out = tmp_path / "dorset"
    result = CliRunner().invoke(
        _app(), ["synth", "--people", "150", "--seed", "3", "--out", str(out), "--workers", "1"]
    )
    assert result.exit_code == 0, result.output
    manifest = orjson.loads((out / "manifest.json").read_bytes())
    assert manifest["people_at_census"] == 150 and manifest["seed"] == 3
    assert (out / "truth.csv").exists()
    assert "Wrote" in result.output


def test_synth_refuses_a_non_empty_directory_then_overwrites(tmp_path: Path) -> None:
    out = tmp_path / "dorset"
    args = ["synth", "--people", "50", "--out", str(out), "--workers", "1"]
    assert CliRunner().invoke(_app(), args).exit_code == 0
    refused = CliRunner().invoke(_app(), args)
    assert refused.exit_code == 2
    assert "--overwrite" in refused.output and "Traceback" not in refused.output
    replaced = CliRunner().invoke(_app(), [*args, "--overwrite", "--seed", "9"])
    assert replaced.exit_code == 0, replaced.output
    assert orjson.loads((out / "manifest.json").read_bytes())["seed"] == 9


def test_bad_options_give_one_line_errors(tmp_path: Path) -> None:
    cases = [
        (["--dq", "name_typo=2"], "between 0 and 1"),
        (["--dq", "nonsense=0.1"], "NAME=RATE"),
        (["--end", "31/12/2025"], "YYYY-MM-DD"),
        (["--people", "0"], "people must be"),
    ]
    for extra, message in cases:
        result = CliRunner().invoke(
            _app(), ["synth", "--out", str(tmp_path / "x"), "--workers", "1", *extra]
        )
        assert result.exit_code == 2, extra
        assert message in result.output, (extra, result.output)
        assert "Traceback" not in result.output


def test_data_quality_overrides_reach_the_manifest(tmp_path: Path) -> None:
    out = tmp_path / "dq"
    result = CliRunner().invoke(
        _app(),
        [
            "synth",
            "--people",
            "60",
            "--out",
            str(out),
            "--workers",
            "1",
            "--clean",
            "--dq",
            "name_typo=0.2",
        ],
    )
    assert result.exit_code == 0, result.output
    dq = orjson.loads((out / "manifest.json").read_bytes())["data_quality"]
    assert dq["name_typo"] == 0.2 and dq["missing_nhs_number"] == 0.0
