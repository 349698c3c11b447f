"""Searching the audit trail through FHIR (decision 0024), on a trail of many events.

Fills ``audit_event`` with synthetic events (users, patients, interactions spread over 30
days) through the audit writer's own insert, then times the searches an auditor makes,
through :func:`~sharedcare.record.audit_search.run_trail_search` (the record layer: the
query, the count and rendering the events, without HTTP), with the indexes of migration
0010 and with the single-column indexes they replaced, interleaved (after, before, after).
Prints the median wall time and CPU per search.

    python -m benchmarks.bench_audit_trail [--events 100000] [--no-postgres]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine, text

from sharedcare.db.engine import create_engine, write_connection
from sharedcare.db.migrate import upgrade
from sharedcare.record.audit import AuditEntry, audit_rows, insert_audit_rows
from sharedcare.record.audit_search import parse_trail_search, run_trail_search
from sharedcare.record.context import RequestContext
from sharedcare.record.instants import now_us, to_instant

DAY_US = 86_400_000_000
INTERACTIONS = ["read"] * 6 + ["search-type"] * 3 + ["create", "update", "delete"]
NEW = [
    ("ix_audit_event_recorded_pk", "recorded, pk"),
    ("ix_audit_event_patient_recorded", "patient, recorded, pk"),
    ("ix_audit_event_agent_recorded", "agent, recorded, pk"),
]
OLD = [("ix_audit_event_recorded", "recorded"), ("ix_audit_event_patient", "patient")]


def fill(engine: Engine, events: int, *, seed: int = 1) -> int:
    """Insert ``events`` events over the 30 days before now; return the first day's start."""
    rng = random.Random(seed)
    start = now_us() - 30 * DAY_US
    users = [f"user{u:03d}" for u in range(200)]
    batch = 5000
    for first in range(0, events, batch):
        rows = []
        for n in range(first, min(events, first + batch)):
            user = users[min(int(rng.expovariate(1 / 30)), len(users) - 1)]
            context = RequestContext(user=user, organisation="RBD", role="clinician")
            interaction = rng.choice(INTERACTIONS)
            patient = f"Patient/p{rng.randrange(2_000)}" if rng.random() < 0.8 else None
            entry = AuditEntry(
                interaction,
                "0" if rng.random() < 0.97 else "4",
                "Observation",
                f"o{n}",
                1,
                patient=patient,
            )
            recorded = start + n * (30 * DAY_US // events)
            rows += audit_rows(context, [entry], recorded)
        with write_connection(engine) as connection:
            insert_audit_rows(connection, rows)
    with engine.begin() as connection:
        connection.execute(text("ANALYZE"))
    return start


def use_indexes(
    engine: Engine, wanted: list[tuple[str, str]], unwanted: list[tuple[str, str]]
) -> None:
    with engine.begin() as connection:
        for name, _ in unwanted:
            connection.execute(text(f"DROP INDEX IF EXISTS {name}"))
        for name, columns in wanted:
            connection.execute(
                text(f"CREATE INDEX IF NOT EXISTS {name} ON audit_event ({columns})")
            )
        connection.execute(text("ANALYZE audit_event"))


def searches(start: int) -> dict[str, list[tuple[str, str]]]:
    day10 = to_instant(start + 10 * DAY_US)[:10]
    return {
        "newest 50, _total=none": [("_total", "none")],
        "newest 50 + total": [],
        "patient (~40 of 100k events)": [("patient", "p123")],
        "busy user (~3% of trail), _total=none": [
            ("agent:identifier", "user000"),
            ("_total", "none"),
        ],
        "quiet user + total": [("agent:identifier", "user150")],
        "one day, failures": [("date", day10), ("outcome", "4"), ("_total", "none")],
        "patient, one day": [("patient", "p123"), ("date", f"ge{day10}")],
        "entity (document scan), one day": [
            ("entity", "Observation/o5"),
            ("date", day10),
            ("_total", "none"),
        ],
    }


def timed(engine: Engine, params: list[tuple[str, str]], repeat: int) -> tuple[float, float]:
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        with engine.connect() as connection:
            query = parse_trail_search(params, strict=True, dialect=connection.dialect.name)
            run_trail_search(connection, query)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls) * 1000, statistics.median(cpus) * 1000


def deep_page(engine: Engine, pages: int) -> float:
    """Milliseconds for the ``pages``-th page of the newest-first trail, by cursor."""
    params: list[tuple[str, str]] = [("_total", "none"), ("_count", "50")]
    cursor = None
    elapsed = 0.0
    for _ in range(pages):
        with engine.connect() as connection:
            query = parse_trail_search(
                params + ([("_cursor", cursor)] if cursor else []),
                strict=True,
                dialect=connection.dialect.name,
            )
            started = time.perf_counter()
            page = run_trail_search(connection, query)
            elapsed = time.perf_counter() - started
        cursor = page.next_cursor
    return elapsed * 1000


def run(label: str, url: str, events: int, repeat: int) -> None:
    engine = create_engine(url)
    upgrade(engine)
    started = time.perf_counter()
    start = fill(engine, events)
    print(f"{label}: {events:,} events stored in {time.perf_counter() - started:.1f}s")
    table: dict[str, dict[str, list[tuple[float, float]]]] = {}
    rounds: list[tuple[str, Callable[[], None]]] = [
        ("0010", lambda: use_indexes(engine, NEW, OLD)),
        ("0009", lambda: use_indexes(engine, OLD, NEW)),
        ("0010", lambda: use_indexes(engine, NEW, OLD)),
        ("0009", lambda: use_indexes(engine, OLD, NEW)),
    ]
    for which, prepare in rounds:
        prepare()
        for name, params in searches(start).items():
            table.setdefault(name, {}).setdefault(which, []).append(timed(engine, params, repeat))
        table.setdefault("page 20 by cursor", {}).setdefault(which, []).append(
            (deep_page(engine, 20), 0.0)
        )
    use_indexes(engine, NEW, OLD)
    print(f"{'search':<42} {'0009 indexes ms (cpu)':>24} {'0010 indexes ms (cpu)':>24}")
    for name, runs in table.items():
        cells = []
        for which in ("0009", "0010"):
            wall = statistics.median(w for w, _ in runs[which])
            cpu = statistics.median(c for _, c in runs[which])
            cells.append(f"{wall:8.1f} ({cpu:6.1f})")
        print(f"{name:<42} {cells[0]:>24} {cells[1]:>24}")
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args([])
    if __name__ == "__main__":
        args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run("SQLite", f"sqlite:///{Path(tmp) / 'trail.db'}", args.events, args.repeat)
    if args.no_postgres:
        return
    from tests.support.postgres import start_cluster

    cluster = start_cluster(durable=True)
    try:
        run("PostgreSQL", cluster.url, args.events, args.repeat)
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
