"""``sharedcare ingest csv`` and ``ingest mappings`` as a user runs them."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from sharedcare.cli.main import app

runner = CliRunner()

VCS = (
    "referral_id,received_date,service,referrer_ods,given_name,family_name,date_of_birth,"
    "postcode,nhs_number\n"
    "VCS1-0,2024-07-03,Carers support,J81076,Alex,Tester,1974-04-24,DT8 8ZZ,\n"
    "VCS2-0,2024-07-04,Knitting circle,J81076,Sam,Tester,1944-04-24,DT8 8ZZ,\n"
)


def test_ingest_csv_reports_rows_reasons_and_resends(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    path = tmp_path / "referrals-2024-07.csv"
    path.write_text(VCS, encoding="utf-8")
    first = runner.invoke(app, ["ingest", "csv", str(path), "-o", "VCS", "--database", url])
    assert first.exit_code == 1, first.output
    assert "2 rows, 1 written, 0 already stored, 1 in the error queue" in first.output
    assert "line 3" in first.output and "column service: not one of the" in first.output
    assert "Knitting" not in first.output

    errors = runner.invoke(app, ["ingest", "errors", "--database", url])
    assert "fix the cause, then run" in errors.output  # the queue is not empty

    again = runner.invoke(app, ["ingest", "csv", str(path), "-o", "VCS", "--database", url])
    assert "2 rows, 0 written, 1 already stored, 1 in the error queue" in again.output

    wrong = tmp_path / "unknown.csv"
    wrong.write_text(VCS, encoding="utf-8")
    refused = runner.invoke(app, ["ingest", "csv", str(wrong), "-o", "VCS", "--database", url])
    assert refused.exit_code == 2
    assert "no mapping matches this file name; give --mapping" in refused.output


def test_ingest_mappings_lists_the_shipped_mappings() -> None:
    result = runner.invoke(app, ["ingest", "mappings"])
    assert result.exit_code == 0
    for name in (
        "rtt",
        "ssnap",
        "social-care-assessments",
        "social-care-packages",
        "vcs-referrals",
    ):
        assert name in result.output
