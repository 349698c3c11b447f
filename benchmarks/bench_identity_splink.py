"""Compare sharedcare's two-file linker with Splink (DuckDB backend) on the same files.

Generates a GP list and an acute trust file with known truth (``identity_synth``), then:

* sharedcare: ``link_files`` at default thresholds (default model; and with ``--train``
  estimating m and u on the files first);
* Splink: a conventional model - NameComparison on first name and surname with term
  frequencies, DateOfBirthComparison, PostcodeComparison, Levenshtein on address,
  exact sex and NHS number - with the prior from a deterministic rule, u from random
  sampling and m by EM on two blocking rules, predicting with five blocking rules.

Both get the same cleaned values (through ``PersonRecord``). Prints precision, recall,
F1 and wall time; for Splink also the best F1 over a grid of probability thresholds,
which flatters it (the threshold is chosen with the truth in hand).

Needs the optional extra: ``uv sync --extra splink``.

    .venv/bin/python benchmarks/bench_identity_splink.py --people 20000
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent))  # run as a script, too

from benchmarks.identity_synth import write_link_files
from sharedcare.identity.compare import features
from sharedcare.identity.linkfiles import (
    link_records,
    parse_field_map,
    read_records,
)
from sharedcare.identity.person import PersonRecord
from sharedcare.identity.training import train

FIELD_MAP = [
    "given_name=forename:first",
    "family_name=surname:last",
    "birth_date=dob:birth",
    "sex=gender:sex",
    "postcode=pcode:postcode",
    "address=addr:address",
    "nhs_number=nhs:nhsno",
]


def scores(pred: set[tuple[str, str]], truth: set[tuple[str, str]]) -> tuple[float, float, float]:
    tp = len(pred & truth)
    p = tp / max(1, len(pred))
    r = tp / max(1, len(truth))
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def load(folder: Path) -> tuple[list[PersonRecord], list[PersonRecord], set[tuple[str, str]]]:
    fm = parse_field_map(FIELD_MAP)
    left = read_records(
        folder / "left.csv",
        id_column="gp_id",
        columns={k: v[0] for k, v in fm.items()},
        source="l",
    )
    right = read_records(
        folder / "right.csv",
        id_column="mrn",
        columns={k: v[1] for k, v in fm.items()},
        source="r",
    )
    with (folder / "truth.csv").open() as fh:
        truth = {(r["left_id"], r["right_id"]) for r in csv.DictReader(fh)}
    return left, right, truth


def splink_table(records: list[PersonRecord]) -> list[dict[str, str | None]]:
    rows = []
    for r in records:
        f = features(r)
        rows.append(
            {
                "unique_id": r.local_id,
                "first_name": f.given or None,
                "surname": f.family or None,
                "dob": r.birth_date.isoformat() if r.birth_date else None,
                "sex": f.sex or None,
                "postcode": r.postcode,
                "address": f.address or None,
                "nhs_number": r.nhs_number,
            }
        )
    return rows


def run_splink(
    left: list[PersonRecord], right: list[PersonRecord], truth: set[tuple[str, str]]
) -> None:
    import splink.comparison_library as cl
    from splink import Linker, SettingsCreator, block_on
    from splink.backends.duckdb import DuckDBAPI

    logging.getLogger("splink").setLevel(logging.ERROR)
    logging.getLogger("splink").propagate = False
    start = time.perf_counter()
    db = DuckDBAPI()
    sdf_left = db.register(splink_table(left), table_name="left_records")
    sdf_right = db.register(splink_table(right), table_name="right_records")
    settings = SettingsCreator(
        link_type="link_only",
        comparisons=[
            cl.NameComparison("first_name").configure(term_frequency_adjustments=True),
            cl.NameComparison("surname").configure(term_frequency_adjustments=True),
            cl.DateOfBirthComparison("dob", input_is_string=True),
            cl.PostcodeComparison("postcode"),
            cl.LevenshteinAtThresholds("address", [2, 5]),
            cl.ExactMatch("sex"),
            cl.ExactMatch("nhs_number"),
        ],
        blocking_rules_to_generate_predictions=[
            block_on("nhs_number"),
            block_on("dob"),
            block_on("first_name", "surname"),
            block_on("postcode", "substr(first_name, 1, 1)"),
            block_on("surname", "substr(dob, 6, 5)"),
        ],
        retain_intermediate_calculation_columns=False,
    )
    linker = Linker([sdf_left, sdf_right], settings)
    linker.training.estimate_probability_two_random_records_match(
        [block_on("nhs_number", "dob")], recall=0.7
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6)
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("dob"))
    linker.training.estimate_parameters_using_expectation_maximisation(
        block_on("first_name", "surname")
    )
    trained = time.perf_counter() - start
    predictions = linker.inference.predict(threshold_match_probability=0.01)
    rows = predictions.as_record_list()
    elapsed = time.perf_counter() - start
    scored = [(float(r["match_probability"]), r["unique_id_l"], r["unique_id_r"]) for r in rows]
    at_half = {(lid, rid) for p, lid, rid in scored if p >= 0.5}
    p, r, f1 = scores(at_half, truth)
    print(
        f"splink (duckdb), threshold 0.5: precision {p:.4f} recall {r:.4f} F1 {f1:.4f}  "
        f"time {elapsed:.1f}s (training {trained:.1f}s)"
    )
    best = (0.0, 0.0, 0.0, 0.0)
    for threshold in (0.5, 0.8, 0.9, 0.95, 0.99, 0.999):
        pred = {(lid, rid) for prob, lid, rid in scored if prob >= threshold}
        p, r, f1 = scores(pred, truth)
        if f1 > best[0]:
            best = (f1, threshold, p, r)
    print(
        f"splink best F1 over thresholds (chosen with the truth): F1 {best[0]:.4f} at "
        f"{best[1]} (precision {best[2]:.4f} recall {best[3]:.4f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--people", type=int, default=20000)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/sharedcare-identity-bench"))
    parser.add_argument("--skip-splink", action="store_true")
    args = parser.parse_args()
    folder = args.folder / str(args.people)
    if not (folder / "truth.csv").exists():
        write_link_files(folder, args.people)
    left, right, truth = load(folder)
    print(f"{len(left):,} left records, {len(right):,} right records, {len(truth):,} true pairs")

    start = time.perf_counter()
    result = link_records(left, right)
    ours = time.perf_counter() - start
    compared = result.compared
    p, r, f1 = scores({(x.left_id, x.right_id) for x in result.pairs}, truth)
    print(
        f"sharedcare default model: precision {p:.4f} recall {r:.4f} F1 {f1:.4f}  "
        f"time {ours:.1f}s ({compared:,} pairs compared)"
    )
    start = time.perf_counter()
    model, _ = train([features(x) for x in left], [features(x) for x in right])
    pairs = link_records(left, right, model).pairs
    ours_trained = time.perf_counter() - start
    p, r, f1 = scores({(x.left_id, x.right_id) for x in pairs}, truth)
    print(
        f"sharedcare trained on the files: precision {p:.4f} recall {r:.4f} F1 {f1:.4f}  "
        f"time {ours_trained:.1f}s"
    )
    if args.skip_splink:
        return
    try:
        import splink  # noqa: F401
    except ImportError:
        print("splink is not installed (uv sync --extra splink); skipping the comparison")
        return
    run_splink(left, right, truth)
    print("(sharedcare times exclude CSV reading; Splink's exclude building its input rows)")


if __name__ == "__main__":
    main()
