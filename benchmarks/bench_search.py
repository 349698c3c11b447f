"""FHIR search at scale on PostgreSQL: a search mix with concurrent clients, and totals.

Builds a store of ``BENCH_SEARCH_RESOURCES`` resources (default 1,000,000: per synthetic
patient one Patient, six vital-sign Observations, two Encounters and one Condition, plus
shared Practitioners and Organizations) on a throwaway PostgreSQL 15 cluster. Index rows
come from the product's own extraction (``extract_index``) and row format
(``store_rows.index_row``); rows are loaded with ``COPY`` so a million resources load in
minutes rather than the hours one HTTP request each would take.

``BENCH_SEARCH_KEEP=dir`` keeps the built cluster in ``dir`` (stopped at the end) and later
runs with the same directory and size start it again instead of rebuilding; delete the
directory to rebuild. ``BENCH_SEARCH_REQUESTS`` and ``BENCH_SEARCH_CLIENTS`` size the mix;
``BENCH_SEARCH_WORKERS`` (default 2) sets the server's workers.

Figures printed:

* **Build**: resources/s and index rows per resource.
* **Baseline**: reads by id with the same clients, which pay the same per-request costs
  (HTTP, access check, audit insert), so the ratio shows what search itself adds.
* **Search mix** over HTTP (2 server workers by default, concurrent clients on the same 2 cores):
  token (identifier), token + reference, string, date, reference, chained, ``_include``,
  ``_revinclude``, a broad token search and deep keyset paging. Requests/s and p50/p99
  latency overall and per kind. Target ≥ 1,000 req/s on 2 cores.
* **CPU per request** of the API server and PostgreSQL (from ``/proc``, not counting the
  load generator), for the mix and for reads by id: unlike req/s this barely moves when
  other work shares the machine, so it is the figure to compare between runs. Per kind
  too (``BENCH_SEARCH_PER_KIND`` serial requests of each; a serial request also pays its
  own audit commit, which concurrent requests share).
* **Totals at scale**: serial latency of ``_total=accurate``, ``_total=estimate`` and
  ``_summary=count`` for searches matching ~10% to 100% of a type.

Every search request is audited (one AuditEvent insert per request), as in production.
"""

from __future__ import annotations

import os
import random
import subprocess
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg

from benchmarks.common import cpu_seconds, load, percentile, served, server_roots
from sharedcare.db.engine import create_engine
from sharedcare.db.migrate import upgrade
from sharedcare.fhir.search_index import extract_index
from sharedcare.record.sqlstore import INDEX_TABLES, SqlStore
from sharedcare.record.store_rows import index_row
from tests.support.postgres import Cluster, _bindir, _free_port, start_cluster

RESOURCES = int(os.environ.get("BENCH_SEARCH_RESOURCES", "1000000"))
REQUESTS = int(os.environ.get("BENCH_SEARCH_REQUESTS", "6000"))
CONCURRENCY = int(os.environ.get("BENCH_SEARCH_CLIENTS", "16"))
WORKERS = int(os.environ.get("BENCH_SEARCH_WORKERS", "2"))
# Requests of each kind run serially after the mix (latency and CPU per kind).
PER_KIND = int(os.environ.get("BENCH_SEARCH_PER_KIND", "150"))
# A directory to keep the built cluster in: the first run builds into it and stops the
# server (leaving the files); later runs with the same directory and size start it again
# and skip the build. Delete the directory to rebuild.
KEEP = os.environ.get("BENCH_SEARCH_KEEP")
PER_PATIENT = 10
NHS = "https://fhir.nhs.uk/Id/nhs-number"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
VITALS = [
    ("8480-6", "Systolic blood pressure", "mm[Hg]", 90, 180),
    ("8462-4", "Diastolic blood pressure", "mm[Hg]", 50, 110),
    ("8867-4", "Heart rate", "/min", 45, 140),
    ("8310-5", "Body temperature", "Cel", 35, 40),
    ("29463-7", "Body weight", "kg", 40, 140),
    ("9279-1", "Respiratory rate", "/min", 10, 30),
]
FAMILIES = [
    "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Robinson",
    "Wright", "Thompson", "Evans", "Walker", "White", "Roberts", "Green", "Hall", "Wood",
    "Jackson", "Clarke", "Patel", "Khan", "Lewis", "James", "Phillips", "Mason", "Mitchell",
    "Rose", "Davis", "Rodriguez", "Cox", "Alexander", "Morgan", "Moore", "Martin", "Price",
]  # fmt: skip
GIVEN = [
    "Oliver", "George", "Harry", "Jack", "Jacob", "Noah", "Charlie", "Muhammad", "Thomas",
    "Olivia", "Amelia", "Isla", "Ava", "Emily", "Sophia", "Grace", "Mia", "Poppy", "Ella",
]  # fmt: skip
TOWNS = ["Dorchester", "Poole", "Bournemouth", "Weymouth", "Bridport", "Wimborne", "Sherborne"]
CONDITIONS = ["44054006", "38341003", "195967001", "13645005", "49436004", "73211009"]
BASE_US = 1_700_000_000_000_000


def _patient(i: int, rng: random.Random) -> dict[str, Any]:
    year = rng.randint(1930, 2020)
    return {
        "resourceType": "Patient",
        "id": f"p{i}",
        "identifier": [{"system": NHS, "value": f"9{i:09d}"}],
        "name": [{"family": rng.choice(FAMILIES) + str(i % 97), "given": [rng.choice(GIVEN)]}],
        "gender": rng.choice(["male", "female"]),
        "birthDate": f"{year}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        "address": [{"city": rng.choice(TOWNS), "postalCode": f"DT{rng.randint(1, 11)} 1AA"}],
        "generalPractitioner": [{"reference": f"Practitioner/gp{i % 200}"}],
        "managingOrganization": {"reference": f"Organization/org{i % 20}"},
    }


def _resources(i: int, rng: random.Random) -> list[dict[str, Any]]:
    subject = {"reference": f"Patient/p{i}"}
    out = [_patient(i, rng)]
    for e in range(2):
        day = f"202{rng.randint(0, 4)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        out.append(
            {
                "resourceType": "Encounter",
                "id": f"e{i}-{e}",
                "status": "finished",
                "class": {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                    "code": "AMB",
                },
                "subject": subject,
                "period": {"start": f"{day}T09:00:00Z", "end": f"{day}T09:30:00Z"},
                "serviceProvider": {"reference": f"Organization/org{i % 20}"},
            }
        )
    for code, display, unit, low, high in VITALS:
        out.append(
            {
                "resourceType": "Observation",
                "id": f"o{i}-{code}",
                "status": "final",
                "category": [
                    {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                "code": "vital-signs",
                            }
                        ]
                    }
                ],
                "code": {"coding": [{"system": LOINC, "code": code, "display": display}]},
                "subject": subject,
                "encounter": {"reference": f"Encounter/e{i}-0"},
                "effectiveDateTime": f"202{rng.randint(0, 4)}-{rng.randint(1, 12):02d}-"
                f"{rng.randint(1, 28):02d}T10:00:00Z",
                "performer": [{"reference": f"Practitioner/gp{i % 200}"}],
                "valueQuantity": {
                    "value": rng.randint(low, high),
                    "unit": unit,
                    "system": UCUM,
                    "code": unit,
                },
            }
        )
    out.append(
        {
            "resourceType": "Condition",
            "id": f"c{i}",
            "clinicalStatus": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                        "code": "active",
                    }
                ]
            },
            "code": {
                "coding": [{"system": "http://snomed.info/sct", "code": rng.choice(CONDITIONS)}]
            },
            "subject": subject,
        }
    )
    return out


def _shared() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"resourceType": "Organization", "id": f"org{k}", "name": f"Dorset Practice {k}"}
        for k in range(20)
    ]
    out += [
        {
            "resourceType": "Practitioner",
            "id": f"gp{k}",
            "name": [{"family": FAMILIES[k % len(FAMILIES)], "prefix": ["Dr"]}],
        }
        for k in range(200)
    ]
    return out


def build(url: str, store: SqlStore, patients: int) -> tuple[int, int]:
    """Load the store with COPY; return (resources, index rows)."""
    store.ensure_params()
    rng = random.Random(42)
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    pk = 0
    index_rows = 0
    with psycopg.connect(dsn) as conn:
        batch: list[dict[str, Any]] = _shared()
        for i in range(patients + 1):
            if i < patients:
                batch += _resources(i, rng)
            if len(batch) < 20_000 and i < patients:
                continue
            # Each table's rows in ascending resource key order, as the store writes them
            # (``SqlStore._index_rows``): a resource's rows then share a heap page, which
            # a probe through ``ix_idx_*_res`` reads (a set's hash order scattered them
            # over the batch, four pages per probe; ``docs/decisions/0019``).
            rows: dict[Any, dict[tuple[Any, ...], None]] = defaultdict(dict)
            resources = []
            for resource in batch:
                pk += 1
                doc = orjson.dumps(
                    {
                        **resource,
                        "meta": {
                            "versionId": "1",
                            "lastUpdated": time.strftime(
                                "%Y-%m-%dT%H:%M:%SZ", time.gmtime((BASE_US // 10**6) + pk)
                            ),
                        },
                    }
                ).decode()
                resources.append(
                    (pk, resource["resourceType"], resource["id"], 1, BASE_US + pk * 10**6, doc)
                )
                rtype = resource["resourceType"]
                for value in extract_index(resource):
                    # None where the store keeps no rows (derived, or read from columns)
                    param = store._stored_param(rtype, value[0])
                    if param is not None:
                        row = index_row(value, param, pk)
                        if row is not None:
                            rows[INDEX_TABLES[type(value)]][row] = None
            with conn.cursor() as cur:
                with cur.copy(
                    "COPY resource (pk, resource_type, id, version_id, last_updated, deleted, "
                    "content) FROM STDIN"
                ) as copy:
                    for p, t, rid, v, lu, doc in resources:
                        copy.write_row((p, t, rid, v, lu, False, doc))
                for table, values in rows.items():
                    names = ", ".join(c.name for c in table.columns)
                    with cur.copy(f"COPY {table.name} ({names}) FROM STDIN") as copy:
                        for row in values:
                            copy.write_row(row)
                    index_rows += len(values)
            conn.commit()
            batch = []
            if pk % 100_000 < 20_000:
                print(f"  loaded {pk:,} resources", flush=True)
        with conn.cursor() as cur:
            cur.execute("SELECT setval(pg_get_serial_sequence('resource', 'pk'), %s)", (pk,))
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
    return pk, index_rows


def _plan(base: str, patients: int) -> list[tuple[str, str, str]]:
    """(kind, method, path) for the mix, with paging cursors fetched up front."""
    rng = random.Random(7)
    cursors = []
    with httpx.Client(base_url=base, timeout=60) as client:
        for code, *_ in VITALS:
            url = f"/fhir/Observation?code={LOINC}|{code}&_total=none&_count=20"
            for _ in range(3):
                links = client.get(url).json()["link"]
                url = next(x["url"] for x in links if x["relation"] == "next")
                cursors.append(url.replace(base, ""))
    kinds = [
        "token",
        "token+reference",
        "string",
        "date",
        "reference",
        "chained",
        "_include",
        "_revinclude",
        "broad token",
        "paging",
    ]
    plan = []
    for n in range(REQUESTS):
        kind = kinds[n % len(kinds)]
        i = rng.randrange(patients)
        code = rng.choice(VITALS)[0]
        if kind == "token":
            path = f"/fhir/Patient?identifier={NHS}|9{i:09d}"
        elif kind == "token+reference":
            path = f"/fhir/Observation?subject=Patient/p{i}&code={LOINC}|{code}"
        elif kind == "string":
            path = f"/fhir/Patient?family={rng.choice(FAMILIES)}{i % 97}&given={rng.choice(GIVEN)}"
        elif kind == "date":
            path = f"/fhir/Observation?subject=Patient/p{i}&date=ge2022-01-01"
        elif kind == "reference":
            path = f"/fhir/Observation?subject=Patient/p{i}"
        elif kind == "chained":
            path = f"/fhir/Observation?subject:Patient.identifier={NHS}|9{i:09d}&code={code}"
        elif kind == "_include":
            path = f"/fhir/Observation?subject=Patient/p{i}&_include=Observation:subject"
        elif kind == "_revinclude":
            path = f"/fhir/Patient?_id=p{i}&_revinclude=Encounter:subject"
        elif kind == "broad token":
            path = f"/fhir/Observation?code={LOINC}|{code}&_total=none"
        else:
            path = rng.choice(cursors)
        plan.append((kind, "GET", path))
    return plan


def _cpu_ms(roots: list[int], before: list[float], requests: int) -> list[float]:
    """CPU ms per request of each tree under ``roots`` since ``before``."""
    now = [cpu_seconds([root]) for root in roots]
    return [(n - b) * 1000 / requests for n, b in zip(now, before, strict=True)]


def _mix(base: str, patients: int, roots: list[int]) -> None:
    plan = _plan(base, patients)
    # Warm up caches and connection pools.
    load(base, lambda i: (plan[i][1], plan[i][2], {}), total=min(400, len(plan)), concurrency=8)
    cpu = [cpu_seconds([root]) for root in roots]
    rate, latencies, errors = load(
        base, lambda i: (plan[i][1], plan[i][2], {}), total=len(plan), concurrency=CONCURRENCY
    )
    search_cpu = _cpu_ms(roots, cpu, len(plan))
    print(
        f"  search mix: {rate:,.0f} req/s with {CONCURRENCY} clients; "
        f"p50 {percentile(latencies, 50):.1f} ms, p99 {percentile(latencies, 99):.1f} ms; "
        f"{errors} errors (target >= 1,000 req/s)"
    )
    # The platform floor: plain reads pay the same HTTP, access-check and audit costs.
    rng = random.Random(3)
    reads = [f"/fhir/Patient/p{rng.randrange(patients)}" for _ in range(len(plan))]
    cpu = [cpu_seconds([root]) for root in roots]
    read_rate, read_latencies, _ = load(
        base, lambda i: ("GET", reads[i], {}), total=len(reads), concurrency=CONCURRENCY
    )
    read_cpu = _cpu_ms(roots, cpu, len(reads))
    print(
        f"  baseline, reads by id: {read_rate:,.0f} req/s, p99 "
        f"{percentile(read_latencies, 99):.1f} ms (search mix is {rate / read_rate:.0%} of it)"
    )
    # CPU per request of the server and PostgreSQL (not the load generator): unlike req/s,
    # this hardly moves when other work shares the machine.
    search_ms, read_ms = sum(search_cpu), sum(read_cpu)
    print(
        f"  CPU per request (API server + PostgreSQL): search mix {search_ms:.2f} ms "
        f"({sum(search_cpu[1:]):.2f} + {search_cpu[0]:.2f}), reads by id {read_ms:.2f} ms "
        f"({sum(read_cpu[1:]):.2f} + {read_cpu[0]:.2f}); ratio {search_ms / read_ms:.2f}"
    )
    # Per kind, serially, so each latency is the request's own cost; and the CPU per
    # request of each kind (API server + PostgreSQL), to see which kinds cost the most.
    paths: dict[str, list[str]] = defaultdict(list)
    for kind, _, path in plan:
        if len(paths[kind]) < PER_KIND:
            paths[kind].append(path)
    with httpx.Client(base_url=base, timeout=60) as client:
        for kind, kind_paths in paths.items():
            values = []
            cpu = [cpu_seconds([root]) for root in roots]
            for path in kind_paths:
                started = time.perf_counter()
                response = client.get(path)
                values.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200, (path, response.text[:200])
            kind_cpu = _cpu_ms(roots, cpu, len(kind_paths))
            print(
                f"    {kind:16s} p50 {percentile(values, 50):6.1f} ms  "
                f"p99 {percentile(values, 99):6.1f} ms  (serial, one client); CPU "
                f"{sum(kind_cpu):.2f} ms ({sum(kind_cpu[1:]):.2f} + {kind_cpu[0]:.2f})"
            )


def _totals(base: str) -> None:
    queries = [
        ("Observation?code=http://loinc.org|8480-6", "one code (~10% of resources)"),
        ("Observation?category=vital-signs", "every Observation (~60%)"),
        ("Patient?gender=female", "half the patients"),
        ("Observation?code=8480-6&value-quantity=gt150", "token AND quantity"),
        ("Observation", "a whole type, no parameters"),
    ]
    with httpx.Client(base_url=base, timeout=120) as client:
        for query, label in queries:
            figures = []
            for mode in ("&_total=accurate&_count=1", "&_total=estimate&_count=1"):
                sep = "&" if "?" in query else "?"
                path = f"/fhir/{query}{sep}{mode.lstrip('&')}"
                times = []
                total = None
                for _ in range(3):
                    started = time.perf_counter()
                    body = client.get(path).json()
                    times.append((time.perf_counter() - started) * 1000)
                    total = body.get("total")
                figures.append(
                    f"{mode.split('=')[1].split('&')[0]} {total:,} in {min(times):.0f} ms"
                )
            print(f"  {label:34s} " + "; ".join(figures))


def _kept_cluster(directory: str) -> tuple[Cluster, bool]:
    """The cluster kept in ``directory`` (started), and whether it already holds the store."""
    root = Path(directory).resolve()
    if not (root / "data").exists():
        fresh = start_cluster(durable=True)
        fresh._run("pg_ctl", "-D", str(fresh.root / "data"), "-m", "fast", "stop")
        root.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mv", str(fresh.root), str(root)], check=True)
    run_as = "postgres" if os.geteuid() == 0 else None
    cluster = Cluster(root=root, port=_free_port(), bindir=_bindir(), run_as=run_as)
    options = (
        f"-p {cluster.port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=200 "
        "-c shared_buffers=128MB"
    )
    cluster._run(
        "pg_ctl", "-D", f"{root}/data", "-o", options, "-l", f"{root}/log", "-w", "start"
    )  # fmt: skip
    return cluster, (root / f"built-{RESOURCES}").exists()


def main() -> None:
    patients = max(1, RESOURCES // PER_PATIENT)
    if KEEP:
        cluster, built = _kept_cluster(KEEP)
    else:
        cluster, built = start_cluster(durable=True), False
    try:
        url = cluster.url
        engine = create_engine(url)
        upgrade(engine)
        store = SqlStore(engine)
        if built:
            print(f"PostgreSQL 15: reusing the store kept in {KEEP}", flush=True)
        else:
            print(
                f"PostgreSQL 15: building {patients * PER_PATIENT + 220:,} resources ...",
                flush=True,
            )
            started = time.perf_counter()
            count, index_rows = build(url, store, patients)
            elapsed = time.perf_counter() - started
            print(
                f"  build: {count:,} resources, {index_rows:,} index rows "
                f"({index_rows / count:.1f} per resource) in {elapsed:.0f} s "
                f"({count / elapsed:,.0f} resources/s, COPY)"
            )
            if KEEP:
                (Path(KEEP).resolve() / f"built-{RESOURCES}").touch()
        engine.dispose()
        with served(url, workers=WORKERS) as base:
            _mix(base, patients, server_roots(base, cluster.root))
            print("  totals (serial, best of 3):")
            _totals(base)
    finally:
        if KEEP:
            cluster._run("pg_ctl", "-D", str(cluster.root / "data"), "-m", "fast", "stop")
        else:
            cluster.stop()


if __name__ == "__main__":
    main()
