"""``sharedcare identity link / review / merge / unmerge`` as a reviewer runs them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
from typer.testing import CliRunner

from sharedcare.cli.main import app

runner = CliRunner()


def _patient(pid: str, given: str, birth: str, postcode: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "name": [{"family": "Tester", "given": [given]}],
        "gender": "female",
        "birthDate": birth,
        "address": [{"use": "home", "line": [f"{pid} Street"], "postalCode": postcode}],
    }


def _load(url: str, path: Path, organisation: str, *patients: dict[str, Any]) -> None:
    path.write_bytes(b"\n".join(orjson.dumps(p) for p in patients))
    result = runner.invoke(app, ["load", str(path), "--database", url, "-o", organisation])
    assert result.exit_code == 0, result.output


def test_link_review_decide_merge_unmerge(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sc.db'}"
    _load(url, tmp_path / "a.ndjson", "RBD", _patient("a1", "Alexandra", "1965-04-12", "BH1 1AA"))
    _load(
        url,
        tmp_path / "b.ndjson",
        "Y0001",
        _patient("b1", "Alexandra", "1965-04-13", "DT1 9ZZ"),
        _patient("c1", "Bernard", "1941-11-30", "SP1 1AB"),
    )
    # `sharedcare load` matched them as it wrote them: the batch run finds nothing to do.
    result = runner.invoke(app, ["identity", "link", "--database", url])
    assert result.exit_code == 0, result.output
    assert "3 source Patients: 0 matched" in result.output
    assert "3 golden records, 1 open reviews" in result.output

    again = runner.invoke(app, ["identity", "link", "--database", url])
    assert "0 matched, 3 unchanged" in again.output

    listing = runner.invoke(app, ["identity", "review", "--database", url])
    assert listing.exit_code == 0, listing.output
    assert "1 open review pairs" in listing.output
    assert "birth_date" in listing.output and "given_name" in listing.output
    review_id = re.search(r"│ (\d+)\s+│ possible", listing.output)
    assert review_id is not None, listing.output

    no_verdict = runner.invoke(
        app, ["identity", "review", "decide", review_id.group(1), "--reason", "x", "-d", url]
    )
    assert no_verdict.exit_code == 2 and "--same or --different" in no_verdict.output

    decided = runner.invoke(
        app,
        [
            *("identity", "review", "decide", review_id.group(1), "--same"),
            *("--reason", "phoned GP", "--database", url),
        ],
    )
    assert decided.exit_code == 0, decided.output
    assert "merged (merge 1)" in decided.output

    merges = runner.invoke(app, ["identity", "merges", "--database", url])
    assert "review" in merges.output

    undone = runner.invoke(
        app, ["identity", "unmerge", "1", "--reason", "wrong person", "--database", url]
    )
    assert undone.exit_code == 0, undone.output
    twice = runner.invoke(app, ["identity", "unmerge", "1", "--reason", "again", "-d", url])
    assert twice.exit_code == 2 and "undone already" in twice.output

    bad = runner.invoke(app, ["identity", "merge", "nope", "also-nope", "--reason", "x", "-d", url])
    assert bad.exit_code == 2 and "unknown golden id" in bad.output
    assert "Traceback" not in bad.output
