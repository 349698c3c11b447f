"""Benchmark Synthetic Dorset: people per second and peak memory, streamed to disk.

Target (issue "Synthetic Dorset"): 800,000 people with 5 years of events in under 20 minutes
on 2 cores, peak memory under 4 GB. Run::

    .venv/bin/python benchmarks/bench_synthetic.py --people 20000 --workers 2
    .venv/bin/python benchmarks/bench_synthetic.py --people 800000 --workers 2   # full target

Prints people/s, the projected time for 800,000 people, the peak resident memory of the parent
and of the largest worker, and the output size. No assertions: figures only.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import orjson

from sharedcare.synthetic.generate import SynthConfig, run

TARGET_PEOPLE = 800_000
TARGET_SECONDS = 20 * 60
TARGET_MEMORY_MB = 4096


def _dir_size(folder: Path) -> tuple[int, int]:
    files = [p for p in folder.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def _cpu_seconds() -> float:
    """User + system CPU of this process and its finished workers (load-independent cost)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    workers = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + workers.ru_utime + workers.ru_stime


def main(argv: Sequence[str] = ()) -> None:
    """Run once; ``python -m benchmarks synthetic`` uses the defaults (20,000 people)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--people", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="keep the output here")
    parser.add_argument("--compress", action="store_true", help="gzip the output files")
    args = parser.parse_args(list(argv))

    out = args.out or Path(tempfile.mkdtemp(prefix="bench-synth-"))
    config = SynthConfig(
        people=args.people,
        seed=args.seed,
        out=out,
        workers=args.workers,
        compress=args.compress,
    )
    start = time.perf_counter()
    cpu_before = _cpu_seconds()
    run(config)
    elapsed = time.perf_counter() - start
    cpu = _cpu_seconds() - cpu_before

    manifest = orjson.loads((out / "manifest.json").read_bytes())
    total = int(manifest["people_total"])
    rate = total / elapsed
    projected = TARGET_PEOPLE * (total / args.people) / rate
    parent_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    files, size = _dir_size(out)
    orgs = manifest["organisations"]
    events = sum(sum(v.values()) for k, v in orgs.items() if k != "population")

    print(f"people at census      {args.people:,} (+{total - args.people:,} who die in the window)")
    print(f"workers               {args.workers}{' (gzip output)' if args.compress else ''}")
    print(f"elapsed               {elapsed:,.1f} s")
    print(f"people/s              {rate:,.0f}")
    print(f"records written       {events:,} ({events / elapsed:,.0f}/s)")
    print(f"output                {files:,} files, {size / 1e6:,.1f} MB")
    print(
        f"projected 800k        {projected / 60:,.1f} min "
        f"(target {TARGET_SECONDS / 60:.0f} min, ratio {projected / TARGET_SECONDS:.2f})"
    )
    cpu_per_person = cpu / total
    dedicated = TARGET_PEOPLE * (total / args.people) * cpu_per_person / max(args.workers, 1)
    print(
        f"CPU per person        {cpu_per_person * 1000:.2f} ms "
        f"(800k on {args.workers} dedicated core(s): {dedicated / 60:,.1f} min of CPU each)"
    )
    print(
        f"peak RSS              parent {parent_mb:,.0f} MB, largest worker {child_mb:,.0f} MB "
        f"(target < {TARGET_MEMORY_MB} MB in total)"
    )
    if args.out is None:
        shutil.rmtree(out)


if __name__ == "__main__":
    main(sys.argv[1:])
