import csv
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from sharedcare.cli.identity import register
from sharedcare.identity.linkfiles import (
    LinkError,
    estimate_prior_from,
    link_files,
    parse_field_map,
)

LEFT = [
    ["gp_id", "forename", "surname", "dob", "gender", "pcode", "nhs"],
    ["L1", "Jonathan", "Whitfield", "1980-03-14", "M", "BH1 1AA", "943 476 5919"],
    ["L2", "Margaret", "Okafor", "1955-11-03", "F", "DT4 7QQ", ""],
    ["L3", "Priya", "Natarajan", "1972-08-19", "F", "SP7 8AA", ""],
    ["L4", "Samuel", "Whitfield", "1980-03-14", "M", "BH1 1AA", ""],
    ["L5", "Derek", "Underwood", "1949-02-27", "M", "BH23 4PL", ""],
]
RIGHT = [
    ["mrn", "first", "last", "birth", "sex", "postcode", "nhsno"],
    ["R1", "Jon", "Whitfield", "14/03/1980", "male", "BH11AA", "9434765919"],
    ["R2", "Peggy", "Okafor", "1955-03-11", "female", "DT4 7QQ", ""],  # nickname, day/month
    ["R3", "Priya", "Natarajan", "1972-08-19", "female", "BH2 5RT", ""],  # moved
    ["R9", "Olive", "Quist", "2001-05-05", "female", "DT11 0ZZ", ""],
]
Files = tuple[Path, Path, Path]

MAP = [
    "given_name=forename:first",
    "family_name=surname:last",
    "birth_date=dob:birth",
    "sex=gender:sex",
    "postcode=pcode:postcode",
    "nhs_number=nhs:nhsno",
]


def write(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return path


@pytest.fixture
def files(tmp_path: Path) -> Files:
    return write(tmp_path / "left.csv", LEFT), write(tmp_path / "right.csv", RIGHT), tmp_path


def read_pairs(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def test_link_files_end_to_end(files: Files) -> None:
    left, right, folder = files
    out = folder / "pairs.csv"
    summary = link_files(
        left, right, left_id="gp_id", right_id="mrn", field_map=parse_field_map(MAP), out=out
    )
    rows = read_pairs(out)
    assert list(rows[0]) == ["left_id", "right_id", "match_probability", "match_weight"]
    assert {(r["left_id"], r["right_id"]) for r in rows} == {
        ("L1", "R1"),
        ("L2", "R2"),
        ("L3", "R3"),
    }
    assert summary.linked_pairs == 3 and summary.left_records == 5
    for r in rows:
        assert 0.5 <= float(r["match_probability"]) <= 1.0


def test_cli_link_files(files: Files) -> None:
    left, right, folder = files
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """Test root."""

    register(app)
    out = folder / "cli_pairs.csv"
    args = [
        "identity",
        "link-files",
        str(left),
        str(right),
        "--left-id",
        "gp_id",
        "--right-id",
        "mrn",
        "--out",
        str(out),
    ]
    for spec in MAP:
        args += ["--map", spec]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "linked 3 pairs" in result.output
    assert len(read_pairs(out)) == 3

    result = CliRunner().invoke(app, [*args[:-2], "--out", str(out), "--map", "colour=a:b"])
    assert result.exit_code == 2
    assert "colour" in result.output and "Traceback" not in result.output


def test_bad_inputs_give_one_line_errors(files: Files, tmp_path: Path) -> None:
    left, right, folder = files
    fm = parse_field_map(MAP)
    with pytest.raises(LinkError, match="no column 'gp'"):
        link_files(left, right, left_id="gp", right_id="mrn", field_map=fm, out=folder / "o.csv")
    bad = write(tmp_path / "bad.csv", [LEFT[0], ["L1", "Ann", "Lee", "1980-02-30", "F", "", ""]])
    with pytest.raises(LinkError) as err:
        link_files(bad, right, left_id="gp_id", right_id="mrn", field_map=fm, out=folder / "o.csv")
    assert "line 2" in str(err.value) and "1980-02-30" not in str(err.value)
    dup = write(tmp_path / "dup.csv", [LEFT[0], LEFT[1], LEFT[1]])
    with pytest.raises(LinkError, match="repeated"):
        link_files(dup, right, left_id="gp_id", right_id="mrn", field_map=fm, out=folder / "o.csv")
    with pytest.raises(LinkError, match="cannot open"):
        link_files(
            tmp_path / "missing.csv",
            right,
            left_id="gp_id",
            right_id="mrn",
            field_map=fm,
            out=folder / "o.csv",
        )


@pytest.mark.parametrize(
    "spec", [["given_name"], ["given_name=a"], ["colour=a:b"], ["sex=a:b", "sex=c:d"], []]
)
def test_parse_field_map_errors(spec: list[str]) -> None:
    with pytest.raises(LinkError):
        parse_field_map(spec)


def test_prior_estimate_counts_expected_matches() -> None:
    # 10 clear matches among 100 x 100 records, plus many clear non-matches.
    evidence = [40.0] * 10 + [-20.0] * 1000
    prior = estimate_prior_from(evidence, 100, 100, 1e-6)
    assert prior == pytest.approx(10 / 10_000, rel=0.01)


def test_cli_train_and_model_files(files: Files) -> None:
    left, right, folder = files
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """Test root."""

    register(app)
    saved = folder / "model.json"
    out = folder / "trained.csv"
    base = [
        "identity",
        "link-files",
        str(left),
        str(right),
        "--left-id",
        "gp_id",
        "--right-id",
        "mrn",
    ]
    for spec in MAP:
        base += ["--map", spec]
    result = CliRunner().invoke(
        app, [*base, "--out", str(out), "--train", "--save-model", str(saved)]
    )
    assert result.exit_code == 0, result.output
    assert saved.exists()
    result = CliRunner().invoke(app, [*base, "--out", str(out), "--model", str(saved)])
    assert result.exit_code == 0, result.output
    bad = folder / "bad.json"
    bad.write_text("[]")
    result = CliRunner().invoke(app, [*base, "--out", str(out), "--model", str(bad)])
    assert result.exit_code == 2
    assert result.output.startswith("error: model parameters must be a JSON object")
    result = CliRunner().invoke(app, [*base, "--out", str(out), "--model", str(folder / "no")])
    assert result.exit_code == 2 and "cannot be read" in result.output


def test_parallel_scoring_gives_the_same_pairs(
    files: Files, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sharedcare.identity import linkfiles

    left, right, _ = files
    fm = parse_field_map(MAP)
    lrec = linkfiles.read_records(
        left, id_column="gp_id", columns={k: v[0] for k, v in fm.items()}, source="l"
    )
    rrec = linkfiles.read_records(
        right, id_column="mrn", columns={k: v[1] for k, v in fm.items()}, source="r"
    )
    single = linkfiles.link_records(lrec, rrec, workers=1)
    monkeypatch.setattr(linkfiles, "_MIN_PER_WORKER", 1)
    double = linkfiles.link_records(lrec, rrec, workers=2)
    assert double.pairs == single.pairs
    assert double.compared == single.compared and double.prior == single.prior


def test_non_utf8_file_is_a_clear_error(files: Files, tmp_path: Path) -> None:
    _, right, folder = files
    latin = tmp_path / "latin.csv"
    latin.write_bytes("gp_id,forename\nL1,Zo\xeb\n".encode("latin-1"))
    with pytest.raises(LinkError, match="not UTF-8"):
        link_files(
            latin,
            right,
            left_id="gp_id",
            right_id="mrn",
            field_map={"given_name": ("forename", "first")},
            out=folder / "o.csv",
        )
