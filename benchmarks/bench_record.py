"""The record store: transaction-bundle import, a CRUD mix, and disk per resource.

Figures printed:

* **Import**: synthetic patient bundles of ~100 resources each POSTed as transactions over
  HTTP with concurrent clients, in resources/s, on PostgreSQL (2 server workers) and on
  SQLite (1 worker). Published anchors (8 vCPU + an 8-CPU database): Aidbox 2,678 res/s,
  HAPI 2,214, Medplum 764. Target: ≥ 3,000 res/s on PostgreSQL on this 2-core machine.
* **SQLite ratio**: the same import in-process against a raw ``sqlite3`` ``executemany`` of
  the same JSON, one transaction per bundle, measured in the same run. Target ≥ 50%.
* **CRUD mix**: read, create, update and delete over 9 resource types with 8 concurrent HTTP
  clients against 2 server workers, on both databases, in requests/s and server CPU per
  request (PostgreSQL's included), then reads by id alone (the floor under it). Target ≥
  1,500 req/s. See ``docs/decisions/0016-crud-write-path.md``.
* **Disk per resource** after the import, with a breakdown per table, TOAST and index
  (PostgreSQL: ``pg_relation_size`` after ``VACUUM``; SQLite: the ``dbstat`` table after
  ``VACUUM``). Target ≤ 2 KB (anchors: Microsoft 2.1 KB, Aidbox 3.4 KB, HAPI 11.3 KB). The
  figure counts the record store's tables (resources, history, search indexes and the
  parameter ids); the SQLite file size, audit trail included, is printed beside it. See
  ``docs/decisions/0011-record-footprint.md``.

Client and server share this machine's two cores, so HTTP figures include the client's cost.
Set ``BENCH_BUNDLES`` to change the import size (default 120 bundles ≈ 12,000 resources).
"""

from __future__ import annotations

import os
import random
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import text

from benchmarks.common import cpu_seconds, load, percentile, served, server_roots
from benchmarks.fhir_bundles import patient_bundle
from sharedcare.db.engine import create_engine
from sharedcare.db.migrate import upgrade
from sharedcare.record.bundles import process_bundle
from sharedcare.record.context import RequestContext
from sharedcare.record.repository import Repository
from sharedcare.record.sqlstore import SqlStore
from tests.support.postgres import start_cluster

BUNDLES = int(os.environ.get("BENCH_BUNDLES", "120"))
CRUD_CLIENTS = 8
TABLES = (
    "resource",
    "resource_history",
    "idx_string",
    "idx_token",
    "idx_reference",
    "idx_date",
    "idx_number",
    "idx_quantity",
    "idx_uri",
    "idx_composite",
    "search_param",
)
TARGET_BYTES = 2048


def _load_average() -> str:
    """The machine's load, printed beside HTTP figures (other work steals the two cores)."""
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def _bundles(seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [patient_bundle(rng) for _ in range(BUNDLES)]


def _http_import(base: str, bundles: list[dict[str, Any]], concurrency: int) -> float:
    bodies = [orjson.dumps(b) for b in bundles]
    headers = {"Content-Type": "application/fhir+json"}
    resources = sum(len(b["entry"]) for b in bundles)
    started = time.perf_counter()
    _, latencies, errors = load(
        base,
        lambda i: ("POST", "/fhir", {"content": bodies[i], "headers": headers}),
        total=len(bodies),
        concurrency=concurrency,
    )
    elapsed = time.perf_counter() - started
    if errors:
        print(f"  ! {errors} bundles failed")
    print(
        f"  bundle latency p50 {percentile(latencies, 50):.0f} ms, "
        f"p99 {percentile(latencies, 99):.0f} ms"
    )
    return resources / elapsed


def _in_process_import(url: str, bundles: list[dict[str, Any]]) -> float:
    engine = create_engine(url)
    upgrade(engine)
    store = SqlStore(engine)
    store.ensure_params()
    repo = Repository(store, RequestContext.system())
    copies = orjson.loads(orjson.dumps(bundles))
    resources = sum(len(b["entry"]) for b in copies)
    started = time.perf_counter()
    for bundle in copies:
        process_bundle(repo, bundle)
    elapsed = time.perf_counter() - started
    engine.dispose()
    return resources / elapsed


def _raw_sqlite(path: Path, bundles: list[dict[str, Any]]) -> float:
    """A raw executemany of each bundle's resource JSON, one transaction per bundle."""
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("CREATE TABLE raw (id INTEGER PRIMARY KEY, type TEXT, content TEXT)")
    rows_per_bundle = [
        [(e["resource"]["resourceType"], orjson.dumps(e["resource"]).decode()) for e in b["entry"]]
        for b in bundles
    ]
    resources = sum(len(r) for r in rows_per_bundle)
    started = time.perf_counter()
    for rows in rows_per_bundle:
        connection.execute("BEGIN")
        connection.executemany("INSERT INTO raw (type, content) VALUES (?, ?)", rows)
        connection.execute("COMMIT")
    elapsed = time.perf_counter() - started
    connection.close()
    return resources / elapsed


def _print_breakdown(parts: list[tuple[str, int]], count: int, label: str) -> None:
    total = sum(size for _, size in parts)
    print(f"  disk   {total / count:8.0f} bytes/resource over {count:,} resources, {label}")
    print(f"         target ≤ {TARGET_BYTES:,}: {total / count / TARGET_BYTES:.0%} of it")
    for name, size in sorted(parts, key=lambda p: -p[1]):
        if size / count >= 1:
            print(f"           {name:34s} {size / count:7.0f}")


def _disk_postgres(url: str) -> tuple[int, int]:
    """Bytes of the record tables (heap, TOAST, every index) and the resource count."""
    engine = create_engine(url)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM"))
        connection.execute(text("CHECKPOINT"))
        parts: list[tuple[str, int]] = []
        for table in TABLES:
            heap, toast = connection.execute(
                text(
                    "SELECT pg_relation_size(c.oid), "
                    "coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0) "
                    "FROM pg_class c WHERE c.relname = :t"
                ),
                {"t": table},
            ).one()
            parts.append((table, heap))
            if toast:
                parts.append((f"{table} (TOAST)", toast))
            for index, size in connection.execute(
                text(
                    "SELECT indexrelid::regclass::text, pg_relation_size(indexrelid) "
                    "FROM pg_index WHERE indrelid = :t ::regclass"
                ),
                {"t": table},
            ):
                parts.append((f"  {index}", size))
        count = connection.execute(text("SELECT count(*) FROM resource")).scalar() or 0
    engine.dispose()
    _print_breakdown(parts, count, "record tables with their TOAST and indexes")
    return sum(size for _, size in parts), count


def _disk_sqlite(path: Path) -> tuple[int, int]:
    """Bytes of the record tables and their indexes (``dbstat``) and the resource count."""
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.execute("VACUUM")
    count = connection.execute("SELECT count(*) FROM resource").fetchone()[0]
    owners = dict(
        connection.execute(
            "SELECT name, tbl_name FROM sqlite_schema WHERE type IN ('table', 'index')"
        )
    )
    parts = [
        (name if owners.get(name) == name else f"  {name}", size)
        for name, size in connection.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name")
        if owners.get(name) in TABLES
    ]
    connection.close()
    _print_breakdown(parts, count, "record tables with their indexes")
    whole = path.stat().st_size / count
    print(f"         whole file (audit trail and the rest included): {whole:.0f}")
    return sum(size for _, size in parts), count


def _crud_mix(
    base: str, total: int = 3000, concurrency: int = 8, roots: list[int] | None = None
) -> None:
    """The CRUD mix, then reads by id alone; with ``roots``, the CPU per request the server
    (and PostgreSQL) used, which other work on the machine distorts far less than req/s."""
    types: list[dict[str, Any]] = [
        {"resourceType": "Patient", "gender": "female", "birthDate": "1970-01-01"},
        {"resourceType": "Practitioner", "name": [{"family": "Khan"}]},
        {"resourceType": "Organization", "name": "Dorset County Hospital"},
        {"resourceType": "Observation", "status": "final", "code": {"text": "pulse"}},
        {"resourceType": "Condition", "subject": {"reference": "Patient/p"}},
        {
            "resourceType": "Encounter",
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        },
        {
            "resourceType": "MedicationRequest",
            "status": "active",
            "intent": "order",
            "subject": {"reference": "Patient/p"},
            "medicationCodeableConcept": {"text": "x"},
        },
        {"resourceType": "AllergyIntolerance", "patient": {"reference": "Patient/p"}},
        {
            "resourceType": "ServiceRequest",
            "status": "active",
            "intent": "order",
            "subject": {"reference": "Patient/p"},
        },
    ]
    headers = {"Content-Type": "application/fhir+json"}
    # Seed 50 of each type with known ids so reads, updates and deletes have targets.
    seeds = [dict(t, id=f"crud-{i}-{n}") for i, t in enumerate(types) for n in range(50)]
    load(
        base,
        lambda i: (
            "PUT",
            f"/fhir/{seeds[i]['resourceType']}/{seeds[i]['id']}",
            {"content": orjson.dumps(seeds[i]), "headers": headers},
        ),
        total=len(seeds),
        concurrency=concurrency,
    )
    rng = random.Random(7)
    plan: list[tuple[str, str, dict[str, object]]] = []
    for i in range(total):
        seed = rng.choice(seeds)
        kind = rng.random()
        path = f"/fhir/{seed['resourceType']}"
        if kind < 0.5:
            plan.append(("GET", f"{path}/{seed['id']}", {}))
        elif kind < 0.7:
            body = {k: v for k, v in seed.items() if k != "id"}
            plan.append(("POST", path, {"content": orjson.dumps(body), "headers": headers}))
        elif kind < 0.9:
            body = dict(
                seed,
                language=rng.choice(["en-GB", "cy", "en"]),
                meta={"tag": [{"system": "urn:bench", "code": str(i)}]},
            )
            plan.append(
                ("PUT", f"{path}/{seed['id']}", {"content": orjson.dumps(body), "headers": headers})
            )
        else:
            plan.append(("DELETE", f"{path}/crud-del-{i}", {}))
    cpu_before = cpu_seconds(roots) if roots else 0.0
    rate, latencies, errors = load(base, lambda i: plan[i], total=total, concurrency=concurrency)
    print(
        f"  CRUD mix {rate:8.0f} req/s   p50 {percentile(latencies, 50):.1f} ms   "
        f"p99 {percentile(latencies, 99):.1f} ms   non-2xx {errors}  (target ≥ 1,500 req/s)"
    )
    if roots:
        cpu = (cpu_seconds(roots) - cpu_before) * 1000 / total
        print(f"           server CPU {cpu:.2f} ms/request ({_load_average()})")
    # The floor under the mix: reads by id pay the same HTTP, gate and audit costs.
    reads = [f"/fhir/{s['resourceType']}/{s['id']}" for s in (rng.choice(seeds) for _ in plan)]
    rate, latencies, errors = load(
        base, lambda i: ("GET", reads[i], {}), total=total, concurrency=concurrency
    )
    print(
        f"  reads by id {rate:8.0f} req/s   p50 {percentile(latencies, 50):.1f} ms   "
        f"p99 {percentile(latencies, 99):.1f} ms   non-2xx {errors}"
    )


def main() -> None:
    bundles = _bundles(1)
    resources = sum(len(b["entry"]) for b in bundles)
    print(f"{len(bundles)} transaction bundles, {resources:,} resources")
    cluster = start_cluster(durable=True)
    try:
        url = cluster.url
        print("PostgreSQL 15 (2 server workers, 4 clients over HTTP):")
        with served(url, workers=2) as base:
            rate = _http_import(base, bundles, concurrency=4)
            print(f"  import {rate:8.0f} res/s   (target ≥ 3,000; Aidbox 2,678 on 8 vCPU)")
            _disk_postgres(url)
            print(f"  CRUD, 2 server workers, {CRUD_CLIENTS} clients ({_load_average()}):")
            _crud_mix(base, concurrency=CRUD_CLIENTS, roots=server_roots(base, cluster.root))
        pg2 = cluster.url_for("inprocess")
        admin = create_engine(url)
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("CREATE DATABASE inprocess"))
        admin.dispose()
        rate = _in_process_import(pg2, bundles)
        print(f"  import in-process, one core: {rate:8.0f} res/s")
    finally:
        cluster.stop()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        print("SQLite (1 server worker, 2 clients over HTTP):")
        with served(f"sqlite:///{db}") as base:
            rate = _http_import(base, bundles, concurrency=2)
            print(f"  import {rate:8.0f} res/s")
            _disk_sqlite(db)
        with served(f"sqlite:///{db}", workers=2) as base:
            print(f"  CRUD, 2 server workers, {CRUD_CLIENTS} clients ({_load_average()}):")
            _crud_mix(base, concurrency=CRUD_CLIENTS, roots=server_roots(base))
        ours = _in_process_import(f"sqlite:///{Path(tmp) / 'inprocess.db'}", bundles)
        raw = _raw_sqlite(Path(tmp) / "raw.db", bundles)
        print(
            f"  in-process import {ours:8.0f} res/s vs raw executemany {raw:8.0f} res/s: "
            f"{ours / raw:.0%} (target ≥ 50%)"
        )
