"""The persisted master patient index: batch linking, rebuild time, real-time latency.

1. Writes N source Patients (synthetic people, one GP record each) to a fresh database.
2. ``link_all`` (what ``sharedcare identity link`` runs): matches them all, writing golden
   Patients, link rows and the trail. Prints the rate.
3. Rebuilds the in-memory index from the database, as a restarted process does. Prints
   the time (the issue asks for it at 100k).
4. Real-time: Q corrupted copies (half of indexed people, half new), each written and
   matched in its own transaction through the persisted path (record write, match, golden
   Patient write, link row, trail, AuditEvents, commit). Prints p50/p95/p99.

    .venv/bin/python -m benchmarks identity_store            # 100,000 people on SQLite
    .venv/bin/python benchmarks/bench_identity_store.py --people 20000 --database URL
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from identity_synth import Generator
from sharedcare.db.engine import create_engine, write_connection
from sharedcare.db.migrate import upgrade
from sharedcare.identity.batch import link_all
from sharedcare.identity.nhs_number import NHS_NUMBER_SYSTEM
from sharedcare.identity.service import IdentityService, SourcePatient
from sharedcare.record.context import RequestContext
from sharedcare.record.instants import now_us
from sharedcare.record.repository import Repository
from sharedcare.record.sqlstore import SqlStore


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=400)
    parser.add_argument("--database", default=None, help="empty database URL (default: SQLite)")
    parser.add_argument("--seed", type=int, default=5)
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
    for start in range(0, len(indexed), 2000):
        now = now_us()
        writes = [
            gp.prepare(
                _patient(f"gp-{p.pid}", gen.copy(p, nhs_missing=0.05)),
                id=f"gp-{p.pid}",
                version_id=1,
                now=now,
                existed=False,
            )
            for p in indexed[start : start + 2000]
        ]
        with write_connection(engine) as connection:
            store.apply(connection, writes)
    print(f"wrote {len(indexed):,} source Patients in {time.perf_counter() - t0:.1f}s")

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
    for pid, person in queries:
        content = _patient(pid, gen.copy(person, nhs_missing=0.25))
        started = time.perf_counter()
        with service.transaction(engine, store) as work:
            write = acute.prepare(content, id=pid, version_id=1, now=work.now, existed=False)
            store.apply(work.connection, [write])
            work.place([SourcePatient(pid, 1, content)])
        latencies.append((time.perf_counter() - started) * 1000)
    print(
        f"real-time write + match + golden write, one Patient per transaction, "
        f"{len(latencies)} Patients against {len(indexed):,}: p50 {_pct(latencies, 0.5):.1f} ms  "
        f"p95 {_pct(latencies, 0.95):.1f} ms  p99 {_pct(latencies, 0.99):.1f} ms  "
        f"(target p95 < 20 ms matching: {_pct(latencies, 0.95) / 20:.2f} of budget)"
    )
    engine.dispose()
    folder.cleanup()


if __name__ == "__main__":
    main(sys.argv[1:])
