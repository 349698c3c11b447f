"""Cost of real-time identity matching per Patient written through the repository (0020).

Writes Patients with ``Repository.update`` (as ``PUT /fhir/Patient/{id}`` does, in process,
so that only the write path is measured), in interleaved blocks with the identity plugin's
``record_committed`` hook registered and unregistered, and prints CPU and wall time per
Patient write for each. Two kinds of Patient: corrupted copies of synthetic people (two
sources per person, as a GP and a hospital would send) and the CRUD benchmark's Patient
(gender and birth date only, every one alike). With ``threads`` > 1 the writes of a block
are made by that many threads at once, as a server's concurrent requests. Two runs time
second versions that change no matching value (a phone number, the language), which keep
their place without being scored again (decision 0020, 2026-11-22).

    python -m benchmarks.bench_identity_realtime [--people 600] [--postgres URL]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine

from benchmarks.identity_synth import Generator
from sharedcare.db.migrate import upgrade
from sharedcare.identity import realtime
from sharedcare.identity.nhs_number import NHS_NUMBER_SYSTEM
from sharedcare.identity.service import identity_service
from sharedcare.plugins import plugin_manager
from sharedcare.record.context import RequestContext
from sharedcare.record.repository import Repository
from sharedcare.record.sqlstore import SqlStore

BLOCK = 50
PHONE = [{"system": "phone", "value": "01202 000000"}]


def _patient(pid: str, copy: dict[str, str]) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Patient", "id": pid}
    name: dict[str, Any] = {"use": "official"}
    if copy["family"]:
        name["family"] = copy["family"]
    if copy["given"]:
        name["given"] = copy["given"].split()
    if len(name) > 1:
        resource["name"] = [name]
    if copy["dob"]:
        resource["birthDate"] = copy["dob"]
    if copy["sex"]:
        resource["gender"] = copy["sex"]
    if copy["postcode"]:
        address: dict[str, Any] = {"use": "home", "postalCode": copy["postcode"]}
        if copy["address"]:
            address["line"] = [copy["address"]]
        resource["address"] = [address]
    if copy["nhs"]:
        resource["identifier"] = [{"system": NHS_NUMBER_SYSTEM, "value": copy["nhs"]}]
    return resource


def _synthetic(people: int) -> list[dict[str, Any]]:
    generator = Generator(seed=20)
    persons = generator.people(people)
    out = []
    for source in ("gp", "pas"):
        for p in persons:
            out.append(_patient(f"{source}-{p.pid}", generator.copy(p, nhs_missing=0.1)))
    return out


def _crud(count: int) -> list[dict[str, Any]]:
    return [
        {
            "resourceType": "Patient",
            "id": f"crud-{i}",
            "gender": "female",
            "birthDate": "1970-01-01",
        }
        for i in range(count)
    ]


def _run(
    url: str,
    label: str,
    patients: list[dict[str, Any]],
    threads: int = 1,
    again: dict[str, Any] | None = None,
) -> None:
    """Time ``patients`` written in blocks, matching on and off alternately.

    With ``again``, every Patient is first written (untimed, matched), and the timed writes
    are second versions with ``again``'s elements added.
    """
    engine = create_engine(url)
    upgrade(engine)
    store = SqlStore(engine)
    store.ensure_params()
    repo = Repository(store, RequestContext(user="bench", organisation="Y01", role="system"))
    manager = plugin_manager()
    # Warm up: the first write of a process loads the index (and the statement caches).
    repo.update("Patient", "warm-up", {"resourceType": "Patient", "id": "warm-up"})
    rebuild = identity_service(engine).last_rebuild_seconds or 0.0
    if again is not None:
        for resource in patients:
            repo.update("Patient", resource["id"], dict(resource))
        patients = [dict(resource, **again) for resource in patients]
    totals = {True: [0.0, 0.0, 0], False: [0.0, 0.0, 0]}
    for start in range(0, len(patients), BLOCK):
        on = (start // BLOCK) % 2 == 0
        if not on:
            manager.unregister(realtime)
        try:
            cpu, wall = time.process_time(), time.perf_counter()
            block = patients[start : start + BLOCK]
            if threads == 1:
                for resource in block:
                    repo.update("Patient", resource["id"], dict(resource))
            else:
                with ThreadPoolExecutor(threads) as pool:
                    list(pool.map(lambda r: repo.update("Patient", r["id"], dict(r)), block))
            totals[on][0] += time.process_time() - cpu
            totals[on][1] += time.perf_counter() - wall
            totals[on][2] += len(patients[start : start + BLOCK])
        finally:
            if not on:
                manager.register(realtime, name="sharedcare.identity.realtime")
    engine.dispose()
    figures = {}
    for on, (cpu, wall, n) in totals.items():
        figures[on] = (cpu * 1000 / n, wall * 1000 / n)
        print(
            f"{label:<34} matching {'on ' if on else 'off'}  {n:5d} writes  "
            f"CPU {figures[on][0]:6.2f} ms/write  wall {figures[on][1]:6.2f} ms/write"
        )
    print(
        f"{label:<34} matching adds CPU {figures[True][0] - figures[False][0]:+.2f} ms "
        f"(x{figures[True][0] / figures[False][0]:.2f}), wall "
        f"{figures[True][1] - figures[False][1]:+.2f} ms per Patient write; "
        f"index load at first use {rebuild * 1000:.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=600)
    parser.add_argument("--postgres", help="URL of an empty PostgreSQL database to use too")
    args, _ = parser.parse_known_args()
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}")
    synthetic = _synthetic(args.people)
    with tempfile.TemporaryDirectory() as tmp:
        _run(f"sqlite:///{Path(tmp) / 'a.db'}", "SQLite, synthetic people", synthetic)
        _run(f"sqlite:///{Path(tmp) / 'b.db'}", "SQLite, CRUD benchmark's Patient", _crud(600))
        _run(f"sqlite:///{Path(tmp) / 'c.db'}", "SQLite, synthetic, 8 threads", synthetic, 8)
        # Second versions that change no matching value (a phone number, the language).
        _run(
            f"sqlite:///{Path(tmp) / 'd.db'}",
            "SQLite, update, same demographics",
            synthetic,
            again={"telecom": PHONE},
        )
        _run(
            f"sqlite:///{Path(tmp) / 'e.db'}",
            "SQLite, CRUD Patient update",
            _crud(600),
            again={"language": "cy"},
        )
    if args.postgres:
        _run(args.postgres, "PostgreSQL, synthetic people", synthetic)
        for resource in synthetic:  # the same people again, as second versions
            resource["telecom"] = PHONE
        _run(args.postgres, "PostgreSQL, synthetic, 8 threads", synthetic, 8)
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}")


if __name__ == "__main__":
    main()
