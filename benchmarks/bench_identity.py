"""Real-time matching latency of the identity matcher against a large golden index.

Builds an index of N golden records (one source record each, loaded without matching, as
from storage), then adds Q corrupted source records one at a time - half copies of
indexed people, half new people - timing each ``Matcher.add``. Prints p50/p95/p99
latency, placement accuracy and memory.

    .venv/bin/python benchmarks/bench_identity.py --golden 100000 --queries 2000
    .venv/bin/python benchmarks/bench_identity.py --golden 1000000
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent))  # run as a script, too

from benchmarks.identity_synth import Generator
from sharedcare.identity.matcher import DecisionKind, Matcher
from sharedcare.identity.person import PersonRecord


def _record(source: str, local_id: str, c: dict[str, str]) -> PersonRecord:
    return PersonRecord.create(
        source,
        local_id,
        given_name=c["given"],
        family_name=c["family"],
        birth_date=c["dob"] or None,
        sex=c["sex"] or None,
        postcode=c["postcode"],
        address=c["address"],
        nhs_number=c["nhs"] or None,
    )


def _rss_bytes() -> int:
    """This process's resident memory now (Linux ``/proc/self/statm``)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--golden", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--explain-errors", type=int, default=0, help="print the evidence of N wrong links"
    )
    args = parser.parse_args()

    gen = Generator(args.seed)
    t0 = time.perf_counter()
    people = gen.people(args.golden + args.queries // 2)
    indexed, fresh = people[: args.golden], people[args.golden :]
    print(f"generated {len(people):,} people in {time.perf_counter() - t0:.1f}s")

    gc.collect()
    rss_before = _rss_bytes()
    matcher = Matcher(id_factory=iter(f"G{i}" for i in range(1, 10**9)).__next__)
    t0 = time.perf_counter()
    gc.disable()
    for p in indexed:
        matcher.load(_record("gp", str(p.pid), gen.copy(p, nhs_missing=0.05)), f"P{p.pid}")
    gc.enable()
    gc.freeze()  # a long-lived service would do the same after loading its index
    load_s = time.perf_counter() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    held = (_rss_bytes() - rss_before) / len(indexed)
    print(
        f"loaded {len(indexed):,} golden records in {load_s:.1f}s "
        f"({len(indexed) / load_s:,.0f}/s); peak RSS {rss_mb:,.0f} MB; "
        f"index memory {held:,.0f} bytes a record (records and index, "
        f"{held * 1e6 / 2**30:.1f} GB a million)"
    )

    queries: list[tuple[str | None, PersonRecord]] = []
    for k, p in enumerate(gen.rng.sample(indexed, args.queries - len(fresh))):
        queries.append((f"P{p.pid}", _record("acute", f"A{k}", gen.copy(p, nhs_missing=0.25))))
    for k, p in enumerate(fresh):
        queries.append((None, _record("acute", f"N{k}", gen.copy(p, nhs_missing=0.25))))
    gen.rng.shuffle(queries)

    latencies = []
    right = wrong_link = missed = new_ok = 0
    candidates = []
    for expected, record in queries:
        t = time.perf_counter()
        decision = matcher.add(record)
        latencies.append((time.perf_counter() - t) * 1000)
        candidates.append(decision.candidates)
        linked = decision.kind in (DecisionKind.DETERMINISTIC, DecisionKind.PROBABILISTIC)
        if expected is None:
            new_ok += not linked
            wrong_link += linked
        elif linked and decision.golden_id == expected:
            right += 1
        elif linked:
            wrong_link += 1
        else:
            missed += 1
        wrong = linked and decision.golden_id != expected
        if wrong and args.explain_errors > 0 and decision.score is not None:
            args.explain_errors -= 1
            levels = ", ".join(f"{e.field}={e.level}" for e in decision.score.evidence)
            print(
                f"  wrong link ({decision.kind.value}, {decision.score.match_weight:.1f}): {levels}"
            )
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))]

    n_existing = args.queries - len(fresh)
    print(
        f"real-time add against {len(indexed):,} golden records, {len(queries):,} queries: "
        f"p50 {pct(0.50):.2f} ms  p95 {pct(0.95):.2f} ms  p99 {pct(0.99):.2f} ms  "
        f"max {latencies[-1]:.1f} ms  (target p95 < 20 ms: {pct(0.95) / 20:.2f} of budget)"
    )
    print(
        f"candidates per query: mean {statistics.mean(candidates):.0f}, "
        f"max {max(candidates)}; reviews queued {len(matcher.reviews())}"
    )
    print(
        f"placement: existing people linked correctly {right}/{n_existing} "
        f"({right / max(1, n_existing):.4f}), missed {missed}; new people kept apart "
        f"{new_ok}/{len(fresh)}; wrong links {wrong_link}"
    )


if __name__ == "__main__":
    main()
