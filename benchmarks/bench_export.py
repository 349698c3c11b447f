"""Bulk Data ``$export`` of the whole store, in resources per second.

Builds a store of ``BENCH_EXPORT_RESOURCES`` resources (default 100,000; per synthetic patient
one Patient, six vital-sign Observations, two Encounters and one Condition, plus shared
Practitioners and Organizations) through the store's own batch write path
(:meth:`SqlStore.apply`: product index extraction, ``COPY`` on PostgreSQL), then measures:

* **Exporter alone**: :func:`sharedcare.record.bulk.run_export` into a temporary folder, at
  system level and at Patient level (every compartment, through the reference index):
  resources/s and MB/s written.
* **Served API end to end**: ``sharedcare serve`` in a subprocess; kick-off with
  ``Prefer: respond-async``, poll the status URL (every 0.2 s here, ignoring the server's
  ``Retry-After`` so the figure is not rounded up to it), then download every file with a
  streaming client. The clock runs from kick-off to the last byte of the last file.

On PostgreSQL 15 (a throwaway cluster) and on SQLite. Anchor: Blaze exports 80-150k
resources/s on 16+ cores; this machine has 2 cores, shared with the client and the database.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import orjson

from benchmarks.bench_search import _resources, _shared
from benchmarks.common import served
from sharedcare.db.engine import create_engine, write_connection
from sharedcare.db.migrate import upgrade
from sharedcare.fhir.search_index import extract_index
from sharedcare.record.bulk import ExportSpec, Level, run_export
from sharedcare.record.context import RequestContext
from sharedcare.record.instants import now_us, to_instant
from sharedcare.record.sqlstore import PendingWrite, SqlStore
from tests.support.postgres import start_cluster

RESOURCES = int(os.environ.get("BENCH_EXPORT_RESOURCES", "100000"))
#: Server processes for the PostgreSQL run (``serve --workers``).
WORKERS = int(os.environ.get("BENCH_EXPORT_WORKERS", "1"))
BLAZE = (80_000, 150_000)


def prepare(resources: Iterable[dict[str, Any]]) -> list[PendingWrite]:
    """Writes for ``resources`` as the repository prepares them (meta, JSON, index values)."""
    writes = []
    for resource in resources:
        now = now_us()
        resource = {**resource, "meta": {"versionId": "1", "lastUpdated": to_instant(now)}}
        writes.append(
            PendingWrite(
                resource["resourceType"],
                resource["id"],
                1,
                now,
                False,
                orjson.dumps(resource),
                extract_index(resource),
            )
        )
    return writes


def write(store: SqlStore, writes: list[PendingWrite], batch: int = 5000) -> None:
    """Apply prepared writes through :meth:`SqlStore.apply`, ``batch`` per transaction."""
    store.ensure_params()
    for start in range(0, len(writes), batch):
        with write_connection(store.engine) as connection:
            store.apply(connection, writes[start : start + batch])


def synthetic(patients: int, seed: int = 42) -> Iterable[dict[str, Any]]:
    """The benchmark population: shared resources, then ten resources per patient."""
    rng = random.Random(seed)
    yield from _shared()
    for i in range(patients):
        yield from _resources(i, rng)


def build(url: str, writes: list[PendingWrite]) -> SqlStore:
    """A migrated store at ``url`` holding ``writes``."""
    engine = create_engine(url)
    upgrade(engine)
    store = SqlStore(engine)
    started = time.perf_counter()
    write(store, writes)
    elapsed = time.perf_counter() - started
    print(
        f"  stored {len(writes):,} resources in {elapsed:.0f} s "
        f"({len(writes) / elapsed:,.0f} res/s)"
    )
    if store.dialect == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("VACUUM ANALYZE")
    return store


def _exporter(store: SqlStore, level: Level = "system") -> None:
    folder = Path(tempfile.mkdtemp(prefix="bench-export-"))
    try:
        times = []
        for _ in range(2):
            shutil.rmtree(folder, ignore_errors=True)
            started = time.perf_counter()
            result = run_export(
                store,
                RequestContext.system(),
                ExportSpec(level=level),
                folder,
                file_limit=100_000,
                heartbeat=lambda _: True,
            )
            times.append(time.perf_counter() - started)
        size = sum(p.stat().st_size for p in folder.iterdir())
        best = min(times)
        print(
            f"  exporter alone, {level} level: {result.total:,} resources in {best:.2f} s = "
            f"{result.total / best:,.0f} res/s, {size / best / 1e6:,.0f} MB/s "
            f"({size / 1e6:,.0f} MB, {len(result.manifest['output'])} files; best of 2) "
            f"[Blaze anchor {BLAZE[0]:,}-{BLAZE[1]:,} res/s on 16+ cores]"
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _served(url: str, workers: int) -> None:
    folder = tempfile.mkdtemp(prefix="bench-export-files-")
    os.environ["SHAREDCARE_BULK_EXPORT_DIR"] = folder  # inherited by the server
    try:
        _served_export(url, workers)
    finally:
        del os.environ["SHAREDCARE_BULK_EXPORT_DIR"]
        shutil.rmtree(folder, ignore_errors=True)


def _served_export(url: str, workers: int) -> None:
    with served(url, workers=workers) as base, httpx.Client(base_url=base, timeout=300) as client:
        for run in ("first (cold)", "second"):
            _one_served_export(client, workers, run)


def _one_served_export(client: httpx.Client, workers: int, run: str) -> None:
    headers = {"Prefer": "respond-async", "Accept": "application/fhir+json"}
    started = time.perf_counter()
    kick = client.get("/fhir/$export", headers=headers)
    assert kick.status_code == 202, kick.text
    status_url = kick.headers["content-location"]
    while True:
        status = client.get(status_url)
        if status.status_code != 202:
            break
        time.sleep(0.2)
    assert status.status_code == 200, status.text
    built = time.perf_counter() - started
    lines = 0
    size = 0
    for item in status.json()["output"]:
        with client.stream("GET", item["url"]) as response:
            for chunk in response.iter_bytes():
                lines += chunk.count(b"\n")
                size += len(chunk)
    elapsed = time.perf_counter() - started
    counted = sum(item["count"] for item in status.json()["output"])
    assert lines == counted, (lines, counted)
    print(
        f"  served API ({workers} worker{'s' if workers > 1 else ''}, {run} run), kick-off "
        f"to last file downloaded: {lines:,} resources in {elapsed:.2f} s = {lines / elapsed:,.0f} "
        f"res/s (files ready after {built:.2f} s; {size / 1e6:,.0f} MB downloaded)"
    )
    client.delete(status_url)


def main() -> None:
    started = time.perf_counter()
    writes = prepare(synthetic(max(1, RESOURCES // 10)))
    print(
        f"prepared {len(writes):,} resources (index extraction) in "
        f"{time.perf_counter() - started:.0f} s",
        flush=True,
    )
    print("PostgreSQL 15:", flush=True)
    cluster = start_cluster(durable=True)
    try:
        store = build(cluster.url, writes)
        _exporter(store)
        _exporter(store, "patient")
        store.engine.dispose()
        _served(cluster.url, workers=WORKERS)
    finally:
        cluster.stop()
    print("SQLite:", flush=True)
    folder = Path(tempfile.mkdtemp(prefix="bench-export-sqlite-"))
    try:
        url = f"sqlite:///{folder / 'bench.db'}"
        store = build(url, writes)
        _exporter(store)
        _exporter(store, "patient")
        store.engine.dispose()
        _served(url, workers=1)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
