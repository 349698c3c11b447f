"""The web application's baseline: probes and the status page, with concurrent clients."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from benchmarks.common import load, percentile, served


def _get(path: str) -> Callable[[int], tuple[str, str, dict[str, object]]]:
    return lambda _i: ("GET", path, {})


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, served(f"sqlite:///{Path(tmp) / 'b.db'}") as base:
        for label, path, total in (
            ("GET /healthz", "/healthz", 3000),
            ("GET / (status)", "/", 500),
        ):
            rate, latencies, errors = load(base, _get(path), total=total, concurrency=8)
            print(
                f"{label:<16} {rate:8.0f} req/s  p50 {percentile(latencies, 50):6.1f} ms"
                f"  p99 {percentile(latencies, 99):6.1f} ms  errors {errors}"
            )
