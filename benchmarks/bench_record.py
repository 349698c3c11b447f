"""The record store: transaction-bundle import, a CRUD mix, and disk per resource.

Figures printed:

* **Import**: synthetic patient bundles of ~100 resources each POSTed as transactions over
  HTTP with concurrent clients, in resources/s, on PostgreSQL (2 server workers) and on
  SQLite (1 worker). Published anchors (8 vCPU + an 8-CPU database): Aidbox 2,678 res/s,
  HAPI 2,214, Medplum 764. Target: ≥ 3,000 res/s on PostgreSQL on this 2-core machine.
* **SQLite ratio**: the same import in-process against a raw ``sqlite3`` ``executemany`` of
  the same JSON, one transaction per bundle, measured in the same run. Target ≥ 50%. Beside
  it, the floor under that ratio: the rows the in-process import wrote (resources with the
  store's indexes on them, index rows, AuditEvents, identity rows) inserted again by raw
  ``executemany`` into an empty copy of the schema, per bundle; and the import as a share of
  that floor, which is what the Python above the database costs.
* **CRUD mix**: read, create, update and delete over 9 resource types with 8 concurrent HTTP
  clients against 2 server workers, on both databases, in requests/s and server CPU per
  request (on PostgreSQL split into the API server's and PostgreSQL's), then reads by id
  alone (the floor under it). Target ≥ 1,500 req/s. Its Patients are distinct synthetic
  people. See ``docs/decisions/0016-crud-write-path.md`` and ``0027-crud-on-postgresql.md``.
* **Disk per resource** after the import, with a breakdown per table, TOAST and index
  (PostgreSQL: ``pg_relation_size`` after ``VACUUM``; SQLite: the ``dbstat`` table after
  ``VACUUM``). Target ≤ 2 KB (anchors: Microsoft 2.1 KB, Aidbox 3.4 KB, HAPI 11.3 KB). The
  figure counts the record store's tables (resources, history, search indexes and the
  parameter ids); the SQLite file size, audit trail included, is printed beside it. See
  ``docs/decisions/0011-record-footprint.md``.

Client and server share this machine's two cores, so HTTP figures include the client's cost.
Set ``BENCH_BUNDLES`` to change the import size (default 120 bundles ≈ 12,000 resources).
``BENCH_RECORD_ONLY=crud`` runs only the CRUD part (no import, disk or in-process figures);
``BENCH_RECORD_DB=postgresql`` or ``sqlite`` runs one database only; ``BENCH_CRUD_KINDS=1``
adds each kind of the mix on its own (read, create, update, delete) with its CPU per request;
``BENCH_CRUD_WARMUP=N`` sends N requests of the mix before measuring it (default none).
"""

from __future__ import annotations

import os
import random
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import text

from benchmarks.common import cpu_seconds, load, percentile, served, server_roots
from benchmarks.fhir_bundles import patient_bundle
from benchmarks.identity_synth import Generator
from sharedcare.db.engine import create_engine
from sharedcare.db.migrate import upgrade
from sharedcare.identity.nhs_number import NHS_NUMBER_SYSTEM
from sharedcare.record.bundles import process_bundle
from sharedcare.record.context import RequestContext
from sharedcare.record.repository import Repository
from sharedcare.record.sqlstore import SqlStore
from sharedcare.record.store_rows import INDEX_TABLES
from tests.support.postgres import start_cluster

BUNDLES = int(os.environ.get("BENCH_BUNDLES", "120"))
ONLY_CRUD = os.environ.get("BENCH_RECORD_ONLY", "") == "crud"
DATABASES = os.environ.get("BENCH_RECORD_DB", "postgresql,sqlite").split(",")
KINDS = os.environ.get("BENCH_CRUD_KINDS", "") == "1"
WARMUP = int(os.environ.get("BENCH_CRUD_WARMUP", "0"))
CRUD_CLIENTS = 8
TABLES = (
    "resource",
    "resource_history",
    *(table.name for table in INDEX_TABLES.values()),
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


def _raw_store_rows(written: Path, target: Path, sizes: list[int]) -> float:
    """The rows the in-process import wrote to ``written`` (resources, their index rows and
    whatever else it wrote, such as audit and identity rows), inserted again into an empty
    copy of its schema with raw ``executemany``s, one transaction per bundle of ``sizes``
    resources: the floor under any store that must write these rows in the resource's
    transaction, with no validation or indexing in Python."""
    source = sqlite3.connect(written)
    schema = [
        sql
        for (sql,) in source.execute(
            "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' "
            "ORDER BY type = 'index'"
        )
    ]
    names = [n for (n,) in source.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    rows: dict[str, list[Any]] = {}
    res_at: dict[str, int] = {}
    for name in names:
        cursor = source.execute(f'SELECT * FROM "{name}"')
        rows[name] = cursor.fetchall()
        columns = [d[0] for d in cursor.description]
        if "res" in columns:
            res_at[name] = columns.index("res")
    source.close()
    rows["resource"].sort(key=lambda r: r[0])  # by key, as written
    setup = {"search_param", "alembic_version"}
    rest = [n for n in names if n not in setup and n not in res_at and n != "resource"]

    plan: list[list[tuple[str, list[Any]]]] = []
    everyone = rows["resource"]  # the bundles' resources and the golden records made for them
    for n in range(len(sizes)):
        chunk = everyone[len(everyone) * n // len(sizes) : len(everyone) * (n + 1) // len(sizes)]
        low, high = chunk[0][0], chunk[-1][0]
        part = [("resource", chunk)]
        part += [(t, [r for r in rows[t] if low <= r[at] <= high]) for t, at in res_at.items()]
        for name in rest:  # an even share of everything else
            total = len(rows[name])
            part.append((name, rows[name][total * n // len(sizes) : total * (n + 1) // len(sizes)]))
        plan.append(part)

    connection = sqlite3.connect(target, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    for sql in schema:
        connection.execute(sql)

    def insert(table: str, batch: list[Any]) -> None:
        if batch:
            marks = ", ".join("?" * len(batch[0]))
            connection.executemany(f'INSERT INTO "{table}" VALUES ({marks})', batch)

    connection.execute("BEGIN")
    for name in setup & set(names):
        insert(name, rows[name])
    connection.execute("COMMIT")
    started = time.perf_counter()
    for part in plan:
        connection.execute("BEGIN")
        for table, batch in part:
            insert(table, batch)
        connection.execute("COMMIT")
    elapsed = time.perf_counter() - started
    connection.close()
    return sum(sizes) / elapsed


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
    base: str,
    total: int = 3000,
    concurrency: int = 8,
    roots: list[int] | None = None,
    postgres: bool = False,
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
    # Patients are distinct people (as new registrations are): identity matches each
    # Patient written, and copies of one demographic would all be possible matches of
    # each other, every create scoring a block that grows through the run and queueing a
    # review.
    people = _people(total * 2 + 500)
    # Seed 50 of each type with known ids so reads, updates and deletes have targets.
    seeds = [
        dict(next(people) if t["resourceType"] == "Patient" else t, id=f"crud-{i}-{n}")
        for i, t in enumerate(types)
        for n in range(50)
    ]
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
    kinds: dict[str, list[tuple[dict[str, Any], float]]] = {}
    for i in range(total):
        seed = rng.choice(seeds)
        kind = rng.random()
        request = _crud_request(seed, kind, i, rng, headers, people)
        plan.append(request)
        name = {"GET": "read", "POST": "create", "PUT": "update", "DELETE": "delete"}[request[0]]
        kinds.setdefault(name, []).append((seed, kind))
        if seed["resourceType"] == "Patient" and request[0] in ("POST", "PUT"):
            kinds.setdefault(f"{name} Patient", []).append((seed, kind))
    if WARMUP:  # the same mix, other requests: fills the connection pools and plan caches
        warm = random.Random(8)
        extra = [
            _crud_request(warm.choice(seeds), warm.random(), -1 - i, warm, headers, people)
            for i in range(WARMUP)
        ]
        load(base, lambda i: extra[i], total=WARMUP, concurrency=concurrency)
    before = _cpu(roots)
    rate, latencies, errors = load(base, lambda i: plan[i], total=total, concurrency=concurrency)
    print(
        f"  CRUD mix {rate:8.0f} req/s   p50 {percentile(latencies, 50):.1f} ms   "
        f"p99 {percentile(latencies, 99):.1f} ms   non-2xx {errors}  (target ≥ 1,500 req/s)"
    )
    if roots:
        print(f"           {_cpu_text(roots, before, total, postgres)} ({_load_average()})")
    # The floor under the mix: reads by id pay the same HTTP, gate and audit costs.
    reads = [f"/fhir/{s['resourceType']}/{s['id']}" for s in (rng.choice(seeds) for _ in plan)]
    before = _cpu(roots)
    rate, latencies, errors = load(
        base, lambda i: ("GET", reads[i], {}), total=total, concurrency=concurrency
    )
    print(
        f"  reads by id {rate:8.0f} req/s   p50 {percentile(latencies, 50):.1f} ms   "
        f"p99 {percentile(latencies, 99):.1f} ms   non-2xx {errors}"
    )
    if roots:
        print(f"           {_cpu_text(roots, before, total, postgres)}")
    if not (KINDS and roots):
        return
    # Each kind again on its own (new tags for updates, so each is a real write).
    for number, (name, chosen) in enumerate(sorted(kinds.items())):
        offset = total * (number + 1)
        requests = [
            _crud_request(seed, kind, offset + j, rng, headers, people)
            for j, (seed, kind) in enumerate(chosen)
        ]
        before = _cpu(roots)
        rate, _, errors = load(
            base, requests.__getitem__, total=len(requests), concurrency=concurrency
        )
        print(
            f"    {name:15s} {len(requests):5d} requests {rate:7.0f} req/s  non-2xx {errors}  "
            f"{_cpu_text(roots, before, len(requests), postgres)}"
        )


def _people(count: int) -> Iterator[dict[str, Any]]:
    """Patients of distinct synthetic people (names, birth date, address, NHS number)."""
    for person in Generator(seed=11).people(count):
        patient: dict[str, Any] = {
            "resourceType": "Patient",
            "name": [{"use": "official", "family": person.family, "given": [person.given]}],
            "gender": person.sex,
            "birthDate": person.dob.isoformat(),
            "address": [{"use": "home", "line": [person.address], "postalCode": person.postcode}],
        }
        if person.nhs:
            patient["identifier"] = [{"system": NHS_NUMBER_SYSTEM, "value": person.nhs}]
        yield patient


def _crud_request(
    seed: dict[str, Any],
    kind: float,
    i: int,
    rng: random.Random,
    headers: dict[str, str],
    people: Iterator[dict[str, Any]],
) -> tuple[str, str, dict[str, object]]:
    """One request of the mix: 50% read by id, 20% create, 20% update, 10% delete."""
    path = f"/fhir/{seed['resourceType']}"
    if kind < 0.5:
        return ("GET", f"{path}/{seed['id']}", {})
    if kind < 0.7:
        template = next(people) if seed["resourceType"] == "Patient" else seed
        body = {k: v for k, v in template.items() if k != "id"}
        return ("POST", path, {"content": orjson.dumps(body), "headers": headers})
    if kind < 0.9:
        body = dict(
            seed,
            language=rng.choice(["en-GB", "cy", "en"]),
            meta={"tag": [{"system": "urn:bench", "code": str(i)}]},
        )
        return ("PUT", f"{path}/{seed['id']}", {"content": orjson.dumps(body), "headers": headers})
    return ("DELETE", f"{path}/crud-del-{i}", {})


def _cpu(roots: list[int] | None) -> list[float]:
    """CPU seconds so far of each process tree under ``roots``."""
    return [cpu_seconds([root]) for root in roots or []]


def _cpu_text(roots: list[int], before: list[float], requests: int, postgres: bool) -> str:
    """Server CPU per request since ``before``, split into the API server's processes and
    PostgreSQL's (``roots`` from :func:`server_roots`: the postmaster first)."""
    ms = [(n - b) * 1000 / requests for n, b in zip(_cpu(roots), before, strict=True)]
    if not postgres:
        return f"server CPU {sum(ms):.2f} ms/request"
    return f"server CPU {sum(ms):.2f} ms/request (API {sum(ms[1:]):.2f} + PG {ms[0]:.2f})"


def main() -> None:
    bundles = _bundles(1)
    if not ONLY_CRUD:
        resources = sum(len(b["entry"]) for b in bundles)
        print(f"{len(bundles)} transaction bundles, {resources:,} resources")
    if "postgresql" in DATABASES:
        _postgres(bundles)
    if "sqlite" in DATABASES:
        _sqlite(bundles)


def _postgres(bundles: list[dict[str, Any]]) -> None:
    cluster = start_cluster(durable=True)
    try:
        url = cluster.url
        print("PostgreSQL 15 (2 server workers, 4 clients over HTTP):")
        with served(url, workers=2) as base:
            if not ONLY_CRUD:
                rate = _http_import(base, bundles, concurrency=4)
                print(f"  import {rate:8.0f} res/s   (target ≥ 3,000; Aidbox 2,678 on 8 vCPU)")
                _disk_postgres(url)
            print(f"  CRUD, 2 server workers, {CRUD_CLIENTS} clients ({_load_average()}):")
            roots = server_roots(base, cluster.root)
            _crud_mix(base, concurrency=CRUD_CLIENTS, roots=roots, postgres=True)
        if ONLY_CRUD:
            return
        pg2 = cluster.url_for("inprocess")
        admin = create_engine(url)
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("CREATE DATABASE inprocess"))
        admin.dispose()
        rate = _in_process_import(pg2, bundles)
        print(f"  import in-process, one core: {rate:8.0f} res/s")
    finally:
        cluster.stop()


def _sqlite(bundles: list[dict[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        if not ONLY_CRUD:
            print("SQLite (1 server worker, 2 clients over HTTP):")
            with served(f"sqlite:///{db}") as base:
                rate = _http_import(base, bundles, concurrency=2)
                print(f"  import {rate:8.0f} res/s")
                _disk_sqlite(db)
        with served(f"sqlite:///{db}", workers=2) as base:
            print(f"  SQLite CRUD, 2 server workers, {CRUD_CLIENTS} clients ({_load_average()}):")
            _crud_mix(base, concurrency=CRUD_CLIENTS, roots=server_roots(base))
        if ONLY_CRUD:
            return
        ours = _in_process_import(f"sqlite:///{Path(tmp) / 'inprocess.db'}", bundles)
        raw = _raw_sqlite(Path(tmp) / "raw.db", bundles)
        print(
            f"  in-process import {ours:8.0f} res/s vs raw executemany {raw:8.0f} res/s: "
            f"{ours / raw:.0%} (target ≥ 50%)"
        )
        sizes = [len(b["entry"]) for b in bundles]
        floor = _raw_store_rows(Path(tmp) / "inprocess.db", Path(tmp) / "floor.db", sizes)
        print(
            f"  the import's own rows (resources, index rows, audit, identity) by raw "
            f"executemany {floor:8.0f} res/s: {floor / raw:.0%} of the raw JSON insert; the "
            f"in-process import is {ours / floor:.0%} of it"
        )
