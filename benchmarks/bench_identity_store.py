"""The persisted master patient index: batch linking, rebuild time, real-time latency.

1. Writes N source Patients (synthetic people, one GP record each) to a fresh database.
2. ``link_all`` (what ``sharedcare identity link`` runs): matches them all, writing golden
   Patients, link rows and the trail. Prints the rate.
3. Rebuilds the in-memory index from the database, as a restarted process does. Prints
   the time (the issue asks for it at 100k).
4. Real-time: Q corrupted copies (half of indexed people, half new), each written and
   matched in its own transaction through the persisted path (record write, match, golden
   Patient write, link row, trail, AuditEvents, commit). Prints p50/p95/p99 of the whole
   transaction and, separately, of the in-memory match alone and of the rest (the writes
   and the commit).

With ``--bulk``, step 2 is replaced by a bulk load for building big stores (a million
golden records in minutes, not hours): the records are clustered in memory by
:func:`~sharedcare.identity.batchlink.link_records` (the real-time matcher's decisions,
on every core) and the golden Patients, link rows and golden rows are written in large
batches through the same record store. No trail or AuditEvent rows are written for the
load; the real-time step writes them as usual.

    .venv/bin/python -m benchmarks identity_store            # 100,000 people on SQLite
    .venv/bin/python benchmarks/bench_identity_store.py --people 20000 --database URL
    .venv/bin/python benchmarks/bench_identity_store.py --people 1000000 --bulk
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select

sys.path.insert(0, str(Path(__file__).parent.parent))  # run as a script, too

from benchmarks.identity_synth import Generator
from sharedcare.db.engine import create_engine, write_connection
from sharedcare.db.migrate import upgrade
from sharedcare.identity import store as rows
from sharedcare.identity.batch import link_all
from sharedcare.identity.batchlink import link_records
from sharedcare.identity.golden import golden_patient
from sharedcare.identity.matcher import Matcher
from sharedcare.identity.nhs_number import NHS_NUMBER_SYSTEM
from sharedcare.identity.person import PersonRecord
from sharedcare.identity.service import IDENTITY_CONTEXT, IdentityService, SourcePatient
from sharedcare.identity.survivorship import survive
from sharedcare.record.context import RequestContext
from sharedcare.record.instants import now_us
from sharedcare.record.repository import Repository, new_id
from sharedcare.record.sqlstore import SqlStore

_BULK = 5000


def _patient(pid: str, c: dict[str, str]) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Patient", "id": pid}
    name = {"use": "official", "family": c["family"], "given": c["given"].split()}
    resource["name"] = [{k: v for k, v in name.items() if v}]
    address = {
        "use": "home",
        "line": [c["address"]] if c["address"] else [],
        "postalCode": c["postcode"],
    }
    resource["address"] = [{k: v for k, v in address.items() if v}]
    if c["dob"]:
        resource["birthDate"] = c["dob"]
    if c["sex"]:
        resource["gender"] = c["sex"]
    if c["nhs"]:
        resource["identifier"] = [{"system": NHS_NUMBER_SYSTEM, "value": c["nhs"]}]
    return resource


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bulk_link(engine: Any, store: SqlStore, indexed: list[Any]) -> None:
    """Cluster the stored source Patients in memory and bulk-write the golden records."""
    t0 = time.perf_counter()
    sources: list[tuple[str, int, dict[str, Any]]] = []
    resource = rows.RESOURCE
    with engine.connect() as connection:
        found = connection.execute(
            select(resource.c.id, resource.c.version_id).where(
                resource.c.resource_type == "Patient"
            )
        ).all()
        ids = [r.id for r in found]
        versions = {r.id: r.version_id for r in found}
        for start in range(0, len(ids), _BULK):
            chunk = ids[start : start + _BULK]
            stored = store.read_many(connection, [("Patient", i) for i in chunk])
            for i in chunk:
                s = stored[("Patient", i)]
                sources.append((i, versions[i], s.json()))
    records = [
        PersonRecord.from_fhir(c, source=str(c["meta"]["source"]), local_id=i)
        for i, _, c in sources
    ]
    read_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    batch = link_records(records, id_factory=new_id)
    link_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    members: dict[int, list[int]] = {}
    for index, cluster in enumerate(batch.cluster):
        members.setdefault(cluster, []).append(index)
    repo = Repository(store, IDENTITY_CONTEXT)
    policy = Matcher().policy
    now = now_us()
    clusters = sorted(members.items())
    for start in range(0, len(clusters), _BULK):
        part = clusters[start : start + _BULK]
        writes, goldens, links = [], [], []
        for cluster, indexes in part:
            golden_id = batch.golden_ids[cluster]
            view = survive(golden_id, [records[i] for i in indexes], policy)
            content = golden_patient(view, [sources[i][0] for i in indexes])
            writes.append(repo.prepare(content, id=golden_id, version_id=1, now=now, existed=False))
            goldens.append(
                {
                    "golden_id": golden_id,
                    "status": "active",
                    "replaced_by": None,
                    "created_at": now + cluster,  # unique and increasing, as the service's
                    "updated_at": now,
                    "changed": 0,
                }
            )
            for i in indexes:
                kind, band = batch.kind(i)
                links.append(
                    {
                        "source_id": sources[i][0],
                        "source_system": records[i].source[:300],
                        "source_version": sources[i][1],
                        "golden_id": golden_id,
                        "kind": kind.value,
                        "band": band.value,
                        "match_weight": None,
                        "probability": None,
                        "matched_source_id": None,
                        "candidates": 0,
                        "evidence": None,
                        "decided_by": IDENTITY_CONTEXT.user,
                        "decided_at": now,
                        "changed": 0,
                    }
                )
        with write_connection(engine) as connection:
            store.apply(connection, writes)
            connection.execute(insert(rows.GOLDEN), goldens)
            connection.execute(insert(rows.LINK), links)
    write_s = time.perf_counter() - t0
    print(
        f"bulk link: read {len(records):,} source Patients in {read_s:.1f}s, clustered in "
        f"{link_s:.1f}s ({batch.workers} workers), wrote {len(clusters):,} golden Patients, "
        f"their rows and {len(records):,} link rows in {write_s:.1f}s "
        "(link rows keep kind and band, not the per-field evidence)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=400)
    parser.add_argument("--database", default=None, help="empty database URL (default: SQLite)")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument(
        "--bulk", action="store_true", help="bulk-load the golden records (big stores)"
    )
    args = parser.parse_args(argv or [])  # `python -m benchmarks identity_store`: defaults

    folder = tempfile.TemporaryDirectory()
    url = args.database or f"sqlite:///{folder.name}/identity.db"
    engine = create_engine(url)
    upgrade(engine)
    store = SqlStore(engine)
    store.ensure_params()
    gen = Generator(args.seed)
    people = gen.people(args.people + args.queries // 2)
    indexed, fresh = people[: args.people], people[args.people :]

    gp = Repository(store, RequestContext(user="bench", organisation="GP", feed="bench"))
    t0 = time.perf_counter()
    step = _BULK if args.bulk else 2000
    for start in range(0, len(indexed), step):
        now = now_us()
        writes = [
            gp.prepare(
                _patient(f"gp-{p.pid}", gen.copy(p, nhs_missing=0.05)),
                id=f"gp-{p.pid}",
                version_id=1,
                now=now,
                existed=False,
            )
            for p in indexed[start : start + step]
        ]
        with write_connection(engine) as connection:
            store.apply(connection, writes)
    print(f"wrote {len(indexed):,} source Patients in {time.perf_counter() - t0:.1f}s")

    if args.bulk:
        bulk_link(engine, store, indexed)
    else:
        t0 = time.perf_counter()
        report = link_all(engine, store)
        link_s = time.perf_counter() - t0
        print(
            f"identity link: {report.matched:,} Patients in {link_s:.1f}s "
            f"({report.matched / link_s:,.0f}/s); {report.goldens:,} golden records, "
            f"{report.open_reviews:,} open reviews"
        )

    service = IdentityService()
    gc.collect()
    with engine.connect() as connection:
        t0 = time.perf_counter()
        service.rebuild(connection)
        rebuild_s = time.perf_counter() - t0
    gc.freeze()
    print(
        f"rebuild of the in-memory index from the database: {rebuild_s:.1f}s for "
        f"{len(indexed):,} source records ({len(indexed) / rebuild_s:,.0f}/s)"
    )

    acute = Repository(store, RequestContext(user="bench", organisation="ACUTE", feed="bench"))
    queries = [(f"a-{k}", p) for k, p in enumerate(gen.rng.sample(indexed, len(fresh)))]
    queries += [(f"n-{k}", p) for k, p in enumerate(fresh)]
    gen.rng.shuffle(queries)
    latencies: list[float] = []
    matching: list[float] = []
    cpu: list[float] = []
    gc.collect()
    gc.freeze()
    for pid, person in queries:
        content = _patient(pid, gen.copy(person, nhs_missing=0.25))
        started, cpu_started = time.perf_counter(), time.thread_time()
        with service.transaction(engine, store) as work:
            write = acute.prepare(content, id=pid, version_id=1, now=work.now, existed=False)
            store.apply(work.connection, [write])
            matched = time.perf_counter()
            work.place([SourcePatient(pid, 1, content)])
            matching.append((time.perf_counter() - matched) * 1000)
        latencies.append((time.perf_counter() - started) * 1000)
        cpu.append((time.thread_time() - cpu_started) * 1000)
    rest = [t - m for t, m in zip(latencies, matching, strict=True)]
    print(
        f"real-time, one Patient per transaction, {len(latencies)} Patients against "
        f"{len(indexed):,} golden records:\n"
        f"  whole transaction (record write, match, golden write, link row, trail, audit, "
        f"commit): p50 {_pct(latencies, 0.5):.1f} ms  p95 {_pct(latencies, 0.95):.1f} ms  "
        f"p99 {_pct(latencies, 0.99):.1f} ms  (target p95 < 20 ms: "
        f"{_pct(latencies, 0.95) / 20:.2f} of budget)\n"
        f"  matching alone (Work.place, in memory): p50 {_pct(matching, 0.5):.2f} ms  "
        f"p95 {_pct(matching, 0.95):.2f} ms  p99 {_pct(matching, 0.99):.2f} ms\n"
        f"  the rest (writes and commit): p50 {_pct(rest, 0.5):.1f} ms  "
        f"p95 {_pct(rest, 0.95):.1f} ms  p99 {_pct(rest, 0.99):.1f} ms\n"
        f"  CPU of this thread per transaction (what other jobs' load cannot inflate; "
        f"excludes waiting for the disk and the database server): p50 {_pct(cpu, 0.5):.1f} ms  "
        f"p95 {_pct(cpu, 0.95):.1f} ms  p99 {_pct(cpu, 0.99):.1f} ms"
    )
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    engine.dispose()
    folder.cleanup()


if __name__ == "__main__":
    main(sys.argv[1:])
