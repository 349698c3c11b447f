"""Benchmark: validate() and extract_index() cost per resource.

Run: ``.venv/bin/python benchmarks/bench_fhir_index.py``. Prints microseconds per resource
for typical Observation/Patient/Encounter resources, for the UK Core examples and for the
FHIR resources mapped from the HL7 v2 ingest benchmark's traffic (as the ingest writer sees
them, with ``meta``), and the share of the 150 us/resource budget they use. Then the whole
of ``Repository.prepare`` (access gate, validation, meta, JSON, index values) per resource,
for the ingest traffic and for the record benchmark's transaction bundles'
resources (``benchmarks/fhir_bundles.py``; their ``urn:uuid`` references left as they are).
"""

from __future__ import annotations

import functools
import importlib.util
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sharedcare.fhir.search_index import compile_stats, extract_index
from sharedcare.fhir.validation import validate
from sharedcare.fhir.xml_format import xml_to_json

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a file, `tests.support` (the ingest traffic) needs it
    sys.path.insert(0, str(ROOT))
EXAMPLES = Path("/work/shared/conformance/uk-core/examples")
BUDGET_US = 150.0  # the whole per-resource budget at 3,000 resources/s on 2 cores, store included


def _samples() -> dict[str, dict[str, Any]]:
    spec = importlib.util.spec_from_file_location(
        "fhir_samples", ROOT / "tests/unit/fhir/conftest.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return {"Observation": mod.OBSERVATION, "Patient": mod.PATIENT, "Encounter": mod.ENCOUNTER}


def _per_call_us(fn: Callable[[], object], repeats: int = 7, number: int = 500) -> float:
    """Best-of-``repeats`` mean CPU time per call (the machine is shared: CPU time, minimum)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        for _ in range(number):
            fn()
        best = min(best, (time.process_time() - start) / number)
    return best * 1e6


def main() -> None:
    start = time.process_time()
    stats = compile_stats()
    print(f"compile all R4 search parameters: {time.process_time() - start:.2f}s; {stats}")
    print(f"fast path: {stats['fast']} of {stats['total'] - stats['skipped']} with an expression")
    print(f"{'resource':<14}{'validate us':>13}{'index us':>11}{'total us':>11}{'values':>8}")
    for name, res in _samples().items():
        v = _per_call_us(functools.partial(validate, res))
        x = _per_call_us(functools.partial(extract_index, res))
        n = len(extract_index(res))
        print(
            f"{name:<14}{v:>13.1f}{x:>11.1f}{v + x:>11.1f}{n:>8}"
            f"  ({(v + x) / BUDGET_US:.0%} of {BUDGET_US:.0f} us)"
        )
    if EXAMPLES.is_dir():
        resources = [xml_to_json(p.read_bytes()) for p in sorted(EXAMPLES.glob("*.xml"))]
        start = time.process_time()
        for r in resources:
            validate(r)
        v = (time.process_time() - start) / len(resources) * 1e6
        start = time.process_time()
        for r in resources:
            extract_index(r)
        x = (time.process_time() - start) / len(resources) * 1e6
        print(
            f"{'UK Core x' + str(len(resources)):<14}{v:>13.1f}{x:>11.1f}{v + x:>11.1f}"
            "  (mean, one pass)"
        )
    _traffic_line()
    _prepare_lines()


def _ingest_traffic(messages: int = 2000) -> list[dict[str, Any]]:
    from sharedcare.ingest.hl7v2.mapping import map_message
    from tests.support.hl7_traffic import message

    meta = {"versionId": "1", "lastUpdated": "2024-03-01T10:15:00.123456Z", "source": "urn:x"}
    out = []
    for i in range(messages):
        for resource in map_message(message(i).encode()).resources:
            out.append({**resource, "meta": dict(meta)})
    return out


def _traffic_line() -> None:
    resources = _ingest_traffic()
    best_v = best_x = float("inf")
    for _ in range(5):  # best of five passes: the machine is shared
        start = time.process_time()
        for r in resources:
            validate(r)
        best_v = min(best_v, time.process_time() - start)
        start = time.process_time()
        for r in resources:
            extract_index(r)
        best_x = min(best_x, time.process_time() - start)
    v, x = best_v / len(resources) * 1e6, best_x / len(resources) * 1e6
    print(
        f"{'HL7 v2 x' + str(len(resources)):<14}{v:>13.1f}{x:>11.1f}{v + x:>11.1f}"
        "  (mean, best of 5; the ingest traffic's resources)"
    )


def _prepare_us(resources: list[dict[str, Any]]) -> float:
    """Best-of-five mean CPU microseconds of ``Repository.prepare`` per resource, as the
    ingest writer calls it (one repository per batch of 100, one ``now`` per batch)."""
    import copy

    from sharedcare.db.engine import create_engine
    from sharedcare.record.context import RequestContext
    from sharedcare.record.repository import Repository
    from sharedcare.record.sqlstore import SqlStore

    store = SqlStore(create_engine("sqlite://"))
    context = RequestContext(
        user="feed:bench", organisation="RBD", role="feed", purpose="TREAT", source="ingest"
    )
    best = float("inf")
    for _ in range(5):
        copies = copy.deepcopy(resources)
        start = time.process_time()
        repo = Repository(store, context)
        now = 1_709_288_100_000_000
        for i, r in enumerate(copies):
            if i % 100 == 0:
                repo, now = Repository(store, context), now + 5_000
            repo.prepare(r, id=r.get("id") or f"x{i}", version_id=1, now=now, existed=False)
        best = min(best, time.process_time() - start)
    return best / len(resources) * 1e6


def _prepare_lines() -> None:
    import random

    from benchmarks.fhir_bundles import patient_bundle

    traffic = [{k: v for k, v in r.items() if k != "meta"} for r in _ingest_traffic()]
    rng = random.Random(1)
    bundled = [e["resource"] for _ in range(40) for e in patient_bundle(rng)["entry"]]
    for name, resources in (("HL7 v2", traffic), ("bundles", bundled)):
        us = _prepare_us(resources)
        print(f"prepare {name + ' x' + str(len(resources)):<16}{us:>9.1f} us/resource (best of 5)")


if __name__ == "__main__":
    main()
