"""HL7 v2 ingest over MLLP: throughput to FHIR resources on PostgreSQL, and a crash run.

Figures printed:

* **Throughput**: ``sharedcare mllp`` in a subprocess on a throwaway PostgreSQL 15 cluster;
  python-hl7 MLLP clients (another process, ``BENCH_INGEST_CONNECTIONS`` connections) send
  ``BENCH_INGEST_MESSAGES`` messages (ADT^A01/A08, ORU^R01 with three results). Reported:
  messages/s acknowledged, messages/s end to end (first byte sent to the last message's
  resources committed in the record), and p50/p99 time to ACK. Target: ≥ 2,000 msg/s on
  2 cores. Client, listener and PostgreSQL share this machine's two cores.

  Also printed: the CPU each process spent per message (the listener, its writer process,
  PostgreSQL, and this client), read from /proc. Their sum is the cost of a message on this
  machine, and 2 cores divided by it is the ceiling no scheduling can beat; these figures
  are also far less disturbed than msg/s when other work shares the machine (the load
  average is printed with them).

  The traffic is a realistic population (since issue 7's identity stage): 2,000 patients
  with varied names (Faker en_GB tables, surnames weighted by frequency), birth dates over
  a century, their own NHS numbers and Dorset postcodes; an A08 moves the patient home.
  Earlier versions sent one family name and twelve birth dates, which put every patient in
  one master patient index blocking bucket and made matching cost quadratic, so figures
  from before and after that change are not comparable (the old traffic also changed the
  given name in every message, so every message re-matched its patient; now later messages
  repeat a patient's demographics, as a real PAS does, and only A08s change them). Every
  message still becomes FHIR resources, and every new or changed Patient is matched and
  its golden record written.
* **Crash run**: ``BENCH_INGEST_CRASH_MESSAGES`` (default 10,000; 0 skips it) messages,
  every 50th resent on purpose; the listener is killed with SIGKILL a third of the way through and
  restarted; clients resend whatever was not acknowledged. Reported: whether every message
  is stored exactly once and written to the record.

The cluster keeps PostgreSQL's durability defaults (fsync, synchronous commit): every ACK
follows a commit that would survive a power cut, as in production.
"""

from __future__ import annotations

import os
import resource
import tempfile
import threading
import time
from pathlib import Path

from sqlalchemy import text

from sharedcare.db.engine import create_engine
from sharedcare.db.migrate import upgrade
from tests.support.hl7_traffic import (
    Listener,
    exactly_once_problems,
    percentile,
    population,
    send_all,
    wait_until_written,
)
from tests.support.postgres import Cluster, start_cluster

MESSAGES = int(os.environ.get("BENCH_INGEST_MESSAGES", "10000"))
CONNECTIONS = int(os.environ.get("BENCH_INGEST_CONNECTIONS", "16"))
CRASH_MESSAGES = int(os.environ.get("BENCH_INGEST_CRASH_MESSAGES", "10000"))


def _database(cluster_url: str, name: str) -> str:
    admin = create_engine(cluster_url)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = cluster_url.rsplit("/", 1)[0] + f"/{name}"
    engine = create_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    """CPU time of a process and its reaped children, from /proc (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return sum(int(f) for f in fields[11:15]) / _TICK


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def _cpu(listener: Listener, cluster: Cluster) -> dict[str, float]:
    """CPU seconds so far of the listener, its writer process, PostgreSQL and this client."""
    assert listener.process is not None
    pid = listener.process.pid
    postmaster = int((cluster.root / "data" / "postmaster.pid").read_text().split()[0])
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "listener": _cpu_seconds(pid),
        "writer process": sum(_cpu_seconds(c) for c in _children(pid)),
        "PostgreSQL": _cpu_seconds(postmaster)
        + sum(_cpu_seconds(c) for c in _children(postmaster)),
        "client": usage.ru_utime + usage.ru_stime,
    }


def throughput(url: str, log: Path, cluster: Cluster) -> None:
    listener = Listener(url, log=log)
    listener.start()
    engine = create_engine(url)
    try:
        before = _cpu(listener, cluster)
        started = time.perf_counter()
        traffic = send_all(listener.port, MESSAGES, connections=CONNECTIONS, resend_every=0)
        acked = time.perf_counter() - started
        client_after = _cpu(listener, cluster)["client"]
        wait_until_written(engine, MESSAGES)
        written = time.perf_counter() - started
        after = {**_cpu(listener, cluster), "client": client_after}
        with engine.connect() as connection:
            resources = connection.scalar(text("SELECT count(*) FROM resource"))
    finally:
        listener.stop()
        engine.dispose()
    cpu = {name: (after[name] - before[name]) * 1000 / MESSAGES for name in after}
    ms = [s * 1000 for s in traffic.latencies]
    print(f"messages            {MESSAGES:,} over {CONNECTIONS} connections")
    print(f"traffic             realistic population: {population(MESSAGES)}")
    print(f"acknowledged        {MESSAGES / acked:,.0f} msg/s")
    print(f"end to end          {MESSAGES / written:,.0f} msg/s (to resources committed)")
    print(f"  target            2,000 msg/s  ratio {MESSAGES / written / 2000:.2f}")
    print(f"time to ACK         p50 {percentile(ms, 50):.1f} ms  p99 {percentile(ms, 99):.1f} ms")
    print(f"resources in record {resources:,}")
    print(
        "CPU per message     "
        + ", ".join(f"{name} {ms:.2f} ms" for name, ms in cpu.items())
        + f"; total {sum(cpu.values()):.2f} ms"
    )
    print(
        f"  2-core ceiling    {2000 / sum(cpu.values()):,.0f} msg/s if every process kept a "
        f"core busy (load average at the end: {os.getloadavg()[0]:.1f})"
    )
    if traffic.non_aa:
        print(f"not AA              {len(traffic.non_aa)} (first: {traffic.non_aa[0]})")


def crash_run(url: str, log: Path) -> None:
    listener = Listener(url, log=log)
    listener.start()
    engine = create_engine(url)
    kill_now = threading.Event()
    kills: list[float] = []

    def killer() -> None:
        if kill_now.wait(timeout=600):
            listener.kill()
            kills.append(time.perf_counter())
            time.sleep(0.5)
            listener.start()

    thread = threading.Thread(target=killer)
    thread.start()
    try:
        traffic = send_all(
            listener.port,
            CRASH_MESSAGES,
            connections=CONNECTIONS,
            resend_every=50,
            on_ack=kill_now,
            kill_after=CRASH_MESSAGES // 3,
        )
        thread.join()
        stages = wait_until_written(engine, CRASH_MESSAGES)
        problems = exactly_once_problems(engine, CRASH_MESSAGES)
    finally:
        kill_now.set()
        listener.stop()
        engine.dispose()
    print(f"messages            {CRASH_MESSAGES:,}; SIGKILLs {len(kills)}")
    print(f"resent deliberately {traffic.deliberate_resends:,}")
    print(f"resent after kill   {traffic.resends_after_failure:,}")
    print(f"stages              {stages}")
    print("exactly once        " + ("yes" if not problems else "NO: " + "; ".join(problems)))


def main() -> None:
    cluster = start_cluster(durable=True)
    work = Path(tempfile.mkdtemp(prefix="bench_ingest_"))
    try:
        print("-- throughput --")
        throughput(_database(cluster.url, "bench_ingest"), work / "throughput.log", cluster)
        if CRASH_MESSAGES > 0:  # BENCH_INGEST_CRASH_MESSAGES=0 skips the crash run
            print("-- crash run --")
            crash_run(_database(cluster.url, "bench_ingest_crash"), work / "crash.log")
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
