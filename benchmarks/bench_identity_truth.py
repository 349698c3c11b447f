"""Identity matching scored against Synthetic Dorset's truth (issue 6 acceptance).

Reads every organisation's person records out of a ``sharedcare synth`` run (GP and Dorset
HealthCare FHIR Patients, acute HL7 v2 PIDs, council and voluntary-sector CSV rows), feeds
them one at a time through the real-time ``Matcher`` at the default model and thresholds,
in arrival order, and scores the clusters against ``truth.csv``:

* pairwise precision / recall / F1 and cluster precision / recall (targets: precision
  >= 0.995, recall >= 0.99);
* the review band separately: pairs queued for review and how many are true matches;
* per-record latency of ``Matcher.add`` (p50 / p95 / p99).

With ``--splink`` it also links the same records (the last version of each) with Splink 5
on DuckDB, deduplicating, and clusters at p >= 0.5, and links them with sharedcare's batch
linker (``link_records``: the real-time matcher's decisions, on every core), printing F1,
end-to-end time, CPU and memory for both (``--realtime-too`` also times the one-pass
real-time path, ``--no-splink`` skips Splink).

    .venv/bin/python benchmarks/bench_identity_truth.py --people 2000 --seed 1
    .venv/bin/python benchmarks/bench_identity_truth.py --dir var/synthetic
    .venv/bin/python benchmarks/bench_identity_truth.py --people 40000 --splink

A run is generated under ``build/bench/`` unless ``--dir`` names an existing one. Reading a
big run's feeds takes minutes; ``--cache`` keeps the parsed events in
``identity-events.pickle`` beside the run for the next time (do not use it on a run you may
not write to).
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import pickle
import resource
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from sharedcare.identity.batchlink import link_records
from sharedcare.identity.compare import features
from sharedcare.identity.evaluation import (
    SourceEvent,
    matcher_clusters,
    matcher_reviews,
    read_events,
    read_truth,
    run_matcher,
    score_clusters,
    snapshot,
)
from sharedcare.identity.matcher import Matcher
from sharedcare.identity.person import PersonRecord
from sharedcare.synthetic import SynthConfig
from sharedcare.synthetic import run as synth_run

ROOT = Path(__file__).resolve().parent.parent
TARGET_PRECISION = 0.995
TARGET_RECALL = 0.99


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def generate(people: int, seed: int, workers: int) -> Path:
    """Make (or reuse) a compressed synth run under build/bench/."""
    out = ROOT / "build" / "bench" / f"synth-{people}-s{seed}"
    if (out / "truth.csv").exists():
        print(f"reusing {out.relative_to(ROOT)}")
        return out
    if out.exists():
        shutil.rmtree(out)
    start = time.perf_counter()
    workers = workers or os.cpu_count() or 1
    synth_run(SynthConfig(people=people, seed=seed, out=out, compress=True, workers=workers))
    print(f"synth --people {people:,} --seed {seed}: {time.perf_counter() - start:.1f}s")
    return out


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def _verdict(precision: float, recall: float) -> str:
    ok = precision >= TARGET_PRECISION and recall >= TARGET_RECALL
    return "meets" if ok else "MISSES"


def explain(matcher: Matcher, truth: dict[tuple[str, str], str], limit: int) -> None:
    """Print the evidence behind split people and mixed clusters (levels, never values)."""
    by_person: dict[str, set[str]] = defaultdict(set)
    for key, person in truth.items():
        by_person[person].add(matcher.resolve(matcher.golden_id_of(key)))
    split = [p for p, golden in by_person.items() if len(golden) > 1]
    members: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for key in truth:
        members[matcher.resolve(matcher.golden_id_of(key))].append(key)
    for person in split[:limit]:
        print(f"  split person {person}:")
        for key in sorted(k for k, p in truth.items() if p == person):
            d = matcher.decision(key)
            levels = ", ".join(f"{e.field}={e.level}" for e in d.score.evidence) if d.score else "-"
            weight = f"{d.score.match_weight:.1f}" if d.score else "-"
            print(f"    {key[0]:>9} {d.kind.value:13} {d.band.value:8} w={weight:>6} {levels}")
    mixed = [g for g, keys in members.items() if len({truth[k] for k in keys}) > 1]
    for golden in mixed[:limit]:
        print(f"  mixed cluster {golden[:8]}:")
        for key in members[golden]:
            d = matcher.decision(key)
            levels = ", ".join(f"{e.field}={e.level}" for e in d.score.evidence) if d.score else "-"
            print(f"    {key[0]:>9} {truth[key]} {d.kind.value:13} {levels}")


def load(
    directory: Path, use_cache: bool
) -> tuple[list[SourceEvent], dict[tuple[str, str], str], float]:
    """Read a run's events and truth once (from or into a pickle beside it with --cache)."""
    start = time.perf_counter()
    cache = directory / "identity-events.pickle"
    if not use_cache:
        events = read_events(directory)
    elif cache.exists():  # written by an earlier run of this benchmark, from the same files
        with cache.open("rb") as handle:
            events = pickle.load(handle)
        print(f"events from {cache.name} (delete it to re-read the feeds)")
    else:
        events = read_events(directory)
        with cache.open("wb") as handle:
            pickle.dump(events, handle, protocol=pickle.HIGHEST_PROTOCOL)
    return events, read_truth(directory), time.perf_counter() - start


def realtime(
    events: list[SourceEvent],
    truth_all: dict[tuple[str, str], str],
    read_s: float,
    explain_n: int,
    honour_merges: bool,
) -> None:
    """The acceptance run: every event through Matcher.add in arrival order."""
    sent = snapshot(events)
    truth = {k: v for k, v in truth_all.items() if k in sent}
    print(
        f"read {len(events):,} events ({len(sent):,} source records, "
        f"{len(set(truth.values())):,} people, "
        f"{len(sent) / max(1, len(set(truth.values()))):.2f} records/person) "
        f"in {read_s:.1f}s; {len(truth_all) - len(truth)} truth records never sent"
    )
    gc.collect()
    gc.freeze()
    start = time.perf_counter()
    run = run_matcher(events, honour_merges=honour_merges, timer=time.perf_counter)
    match_s = time.perf_counter() - start
    lat = run.latencies_ms
    print(
        f"real-time: {run.adds:,} adds + {run.updates:,} updates ({run.unchanged:,} unchanged "
        f"resends skipped, {run.merges_applied} A40 merges applied) in {match_s:.1f}s; "
        f"per add p50 {_pct(lat, 0.5):.2f} ms p95 {_pct(lat, 0.95):.2f} ms "
        f"p99 {_pct(lat, 0.99):.2f} ms max {max(lat, default=0):.1f} ms "
        f"(p95 target < 20 ms: {_pct(lat, 0.95) / 20:.2f} of budget); RSS {_rss_mb():,.0f} MB"
    )
    clusters = matcher_clusters(run.matcher, truth)
    scores = score_clusters(clusters, truth, matcher_reviews(run.matcher))
    print(
        f"pairwise precision {scores.precision:.5f} recall {scores.recall:.5f} "
        f"F1 {scores.f1:.5f}  ({scores.correct_pairs:,} of {scores.predicted_pairs:,} "
        f"predicted pairs right, {scores.true_pairs:,} true pairs) -> "
        f"{_verdict(scores.precision, scores.recall)} target P>={TARGET_PRECISION} "
        f"R>={TARGET_RECALL}"
    )
    print(
        f"clusters: precision {scores.cluster_precision:.5f} (pure {scores.pure_clusters:,} of "
        f"{scores.clusters:,}), recall {scores.cluster_recall:.5f} (people whole "
        f"{scores.whole_people:,} of {scores.people:,}), exact {scores.exact_clusters:,}"
    )
    print(
        f"review band: {scores.review_pairs} pairs queued, {scores.review_true} true matches "
        f"({scores.review_pairs - scores.review_true} different people)"
    )
    duplicates = [k for k, v in truth.items() if k[0].startswith("J")]
    people_gp: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for key in duplicates:
        people_gp[truth[key]].append(key)
    dup = [keys for keys in people_gp.values() if len(keys) > 1]
    together = sum(1 for keys in dup if len({clusters[k] for k in keys}) == 1)
    print(f"duplicate GP registrations clustered together: {together} of {len(dup)}")
    if explain_n:
        explain(run.matcher, truth, explain_n)


def splink_rows(records: list[PersonRecord]) -> list[dict[str, Any]]:
    """Splink input: the same tidied values the matcher compares."""
    rows = []
    for r in records:
        f = features(r)
        rows.append(
            {
                "unique_id": f"{r.source}|{r.local_id}",
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


def run_splink(records: list[PersonRecord], truth: dict[tuple[str, str], str]) -> None:
    """Splink 5 (DuckDB) dedupe of the records, clustered at p >= 0.5."""
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    logging.disable(logging.CRITICAL)  # Splink narrates every step at INFO and WARNING
    start, cpu = time.perf_counter(), time.process_time()
    rows = splink_rows(records)
    db = DuckDBAPI()
    table = db.register(rows, table_name="records")
    del rows
    # Blocking comparable to sharedcare's: NHS number; date of birth; names; postcode +
    # initial; surname + day and month of birth.
    settings = SettingsCreator(
        link_type="dedupe_only",
        comparisons=[
            cl.NameComparison("first_name").configure(term_frequency_adjustments=True),
            cl.NameComparison("surname").configure(term_frequency_adjustments=True),
            cl.DateOfBirthComparison("dob", input_is_string=True),
            cl.PostcodeComparison("postcode"),
            cl.LevenshteinAtThresholds("address", [2, 5]),
            cl.ExactMatch("sex"),
            cl.LevenshteinAtThresholds("nhs_number", [1]),
        ],
        blocking_rules_to_generate_predictions=[
            block_on("nhs_number"),
            block_on("dob"),
            block_on("first_name", "surname"),
            block_on("postcode", "substr(first_name, 1, 1)"),
            block_on("surname", "substr(dob, 6, 5)"),
        ],
        retain_intermediate_calculation_columns=False,
        retain_matching_columns=False,
    )
    linker = Linker(table, settings)
    linker.training.estimate_probability_two_random_records_match(
        [block_on("nhs_number", "dob")], recall=0.9
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=2e6)
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("dob"))
    linker.training.estimate_parameters_using_expectation_maximisation(
        block_on("first_name", "surname")
    )
    trained, trained_cpu = time.perf_counter() - start, time.process_time() - cpu
    predictions = linker.inference.predict(threshold_match_probability=0.5)
    predicted = time.perf_counter() - start
    clustered = linker.clustering.cluster_pairwise_predictions_at_threshold(
        predictions, threshold_match_probability=0.5
    )
    result = clustered.as_duckdbpyrelation().select("unique_id, cluster_id").fetchall()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    clusters = {}
    for uid, cluster in result:
        source, _, local = str(uid).partition("|")
        clusters[(source, local)] = str(cluster)
    scores = score_clusters(clusters, truth)
    print(
        f"splink (duckdb) clusters at p>=0.5: precision {scores.precision:.5f} "
        f"recall {scores.recall:.5f} F1 {scores.f1:.5f}  time {elapsed:.1f}s "
        f"(CPU {cpu:.1f}s, all threads; training {trained:.1f}s (CPU {trained_cpu:.1f}s), "
        f"predict {predicted - trained:.1f}s, "
        f"cluster {elapsed - predicted:.1f}s); RSS {_rss_mb():,.0f} MB"
    )
    print(
        f"  Splink without training (predict + cluster): {elapsed - trained:.1f}s "
        f"(CPU {cpu - trained_cpu:.1f}s); sharedcare's model was estimated beforehand"
    )


def _children_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def side_by_side(
    events: list[SourceEvent],
    truth_all: dict[tuple[str, str], str],
    with_splink: bool,
    workers: int,
    with_realtime: bool,
) -> None:
    """sharedcare and Splink on the same records (last version of each), end to end.

    Both clocks start from the same list of source records and stop once every record has
    a cluster id in a Python dict: Splink's includes tidying its input rows (with
    sharedcare's own ``features``), training, predicting and clustering; sharedcare's
    includes computing features, blocking, scoring and clustering, with the checked-in
    model (trained beforehand, so Splink's predict + cluster time is printed too).
    """
    records = list(snapshot(events).values())
    keys = {r.key for r in records}
    truth = {k: v for k, v in truth_all.items() if k in keys}
    print(f"side by side on {len(records):,} source records (the last version of each)")
    gc.collect()
    gc.freeze()  # what is alive now is not garbage; keep the collector (and forks) off it
    gc.disable()  # a batch pass: no cyclic garbage is made, so skip the collector's sweeps
    start, cpu = time.perf_counter(), time.process_time()
    batch = link_records(records, workers=workers)
    clusters = batch.clusters()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    child_cpu = children.ru_utime + children.ru_stime
    gc.enable()
    scores = score_clusters(clusters, truth)
    steps = ", ".join(f"{k} {v:.1f}s" for k, v in batch.seconds.items())
    print(
        f"sharedcare (batch, {batch.workers} worker processes): precision {scores.precision:.5f} "
        f"recall {scores.recall:.5f} F1 {scores.f1:.5f}  time {elapsed:.1f}s "
        f"(CPU {cpu:.1f}s here + {child_cpu:.1f}s in workers; {steps}; "
        f"{batch.compared:,} pairs scored); RSS {_rss_mb():,.0f} MB here, "
        f"largest worker {_children_rss_mb():,.0f} MB (pages shared with this process "
        "count in both)"
    )
    del batch, clusters
    gc.collect()
    if with_realtime:
        gc.disable()
        start, cpu = time.perf_counter(), time.process_time()
        matcher = Matcher()
        for record in records:
            matcher.add(record)
        clusters = matcher_clusters(matcher, truth)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        gc.enable()
        scores = score_clusters(clusters, truth)
        print(
            f"sharedcare (one pass, real-time path): precision {scores.precision:.5f} "
            f"recall {scores.recall:.5f} F1 {scores.f1:.5f}  time {elapsed:.1f}s "
            f"(CPU {cpu:.1f}s, one thread); RSS {_rss_mb():,.0f} MB"
        )
        del matcher, clusters
        gc.collect()
    if not with_splink:
        return
    try:
        import splink  # noqa: F401
    except ImportError:
        print("splink is not installed (uv sync --extra splink); skipping the comparison")
        return
    run_splink(records, truth)
    print("(both times exclude reading the run; Splink's include building its input rows)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", type=Path, help="an existing synth run")
    parser.add_argument("--people", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--workers", type=int, default=0, help="processes for synth and the batch (0: one per CPU)"
    )
    parser.add_argument(
        "--no-splink", action="store_true", help="side by side: run sharedcare only"
    )
    parser.add_argument(
        "--realtime-too",
        action="store_true",
        help="side by side: also time the one-pass real-time path on the same records",
    )
    parser.add_argument("--splink", action="store_true", help="also run the side by side")
    parser.add_argument("--side-by-side-only", action="store_true")
    parser.add_argument("--ignore-merges", action="store_true", help="do not apply ADT^A40")
    parser.add_argument(
        "--cache", action="store_true", help="keep the parsed events beside the run (pickle)"
    )
    parser.add_argument("--explain", type=int, default=0, help="print N errors' evidence")
    args = parser.parse_args(sys.argv[1:] if __name__ == "__main__" else [])
    directory = args.dir or generate(args.people, args.seed, args.workers)
    events, truth, read_s = load(directory, args.cache)
    if not args.side_by_side_only:
        realtime(events, truth, read_s, args.explain, not args.ignore_merges)
    if args.splink or args.side_by_side_only:
        side_by_side(
            events,
            truth,
            with_splink=not args.no_splink,
            workers=args.workers,
            with_realtime=args.realtime_too,
        )
    print(f"peak RSS {_rss_mb():,.0f} MB")


if __name__ == "__main__":
    main()
