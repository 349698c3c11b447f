"""HL7 v2 ingest over MLLP: throughput to FHIR resources on PostgreSQL, and a crash run.

Figures printed:

* **Throughput**: ``sharedcare mllp`` in a subprocess on a throwaway PostgreSQL 15 cluster;
  an MLLP client (this process, ``BENCH_INGEST_CONNECTIONS`` connections served by one thread,
  :func:`send_lean`; ``BENCH_INGEST_CLIENT=threads`` uses the tests' client, a python-hl7
  ``MLLPClient`` thread per connection, as before session 5) sends
  ``BENCH_INGEST_MESSAGES`` messages (ADT^A01/A08, ORU^R01 with three results). Reported:
  messages/s acknowledged, messages/s end to end (first byte sent to the last message's
  resources committed in the record), and p50/p99 time to ACK. Target: ≥ 2,000 msg/s on
  2 cores. Client, listener and PostgreSQL share this machine's two cores.

  End to end is the writer's rate: it lags the ACKs, so the run ends with the writer alone
  finishing the backlog. Printed too: its rate while ACKs were sent, the messages not yet
  committed at the last ACK and how long the writer took over them (decision 0025), and
  how busy the whole machine was (other processes' CPU shows there, not in the
  per-process figures).

  Also printed: the CPU each process spent per message (the listener, its writer process,
  PostgreSQL, and this client), read from /proc. Their sum is the cost of a message on this
  machine, and 2 cores divided by it is the ceiling no scheduling can beat; these figures
  are also far less disturbed than msg/s when other work shares the machine (the load
  average is printed with them). Then the system-time part of each, and PostgreSQL's
  CPU split by whose connection each backend serves (the listener's group commits, the
  writer's transactions, this benchmark's polling; matched by client TCP port) and
  background work (WAL writer, checkpointer, autovacuum, connections closed meanwhile).

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
* **Writer halves** (``BENCH_INGEST_WRITER_MESSAGES``, default 0: skipped): the ingest
  writer's planning and its write transaction timed one after the other in this process;
  the writer process overlaps them (decision 0025), so the longer half bounds its rate.
* **Crash run**: ``BENCH_INGEST_CRASH_MESSAGES`` (default 10,000; 0 skips it) messages,
  every 50th resent on purpose; the listener is killed with SIGKILL a third of the way through and
  restarted; clients resend whatever was not acknowledged. Reported: whether every message
  is stored exactly once and written to the record.

The cluster keeps PostgreSQL's durability defaults (fsync, synchronous commit): every ACK
follows a commit that would survive a power cut, as in production.
"""

from __future__ import annotations

import contextlib
import os
import resource
import selectors
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, text

from sharedcare.db.engine import create_engine
from sharedcare.db.migrate import upgrade
from sharedcare.ingest.hl7v2.mllp import END_BLOCK, frame
from tests.support.hl7_traffic import (
    Listener,
    Traffic,
    exactly_once_problems,
    message,
    msa,
    percentile,
    population,
    send_all,
    stored_for_writer,
    wait_until_written,
)
from tests.support.postgres import Cluster, start_cluster

MESSAGES = int(os.environ.get("BENCH_INGEST_MESSAGES", "10000"))
CONNECTIONS = int(os.environ.get("BENCH_INGEST_CONNECTIONS", "16"))
CRASH_MESSAGES = int(os.environ.get("BENCH_INGEST_CRASH_MESSAGES", "10000"))
CLIENT = os.environ.get("BENCH_INGEST_CLIENT", "lean")  # or "threads" (before session 5)
WRITER_MESSAGES = int(os.environ.get("BENCH_INGEST_WRITER_MESSAGES", "0"))


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


def _cpu_seconds(pid: int, *, kernel: bool | None = None) -> float:
    """CPU time of a process and its reaped children, from /proc (Linux).

    ``kernel``: ``None`` for user and system time, ``False`` user only, ``True`` system only.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    ticks = [int(f) for f in fields[11:15]]  # utime, stime, cutime, cstime
    if kernel is None:
        return sum(ticks) / _TICK
    return (ticks[1] + ticks[3] if kernel else ticks[0] + ticks[2]) / _TICK


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def _cpu(listener: Listener, cluster: Cluster, *, kernel: bool | None = None) -> dict[str, float]:
    """CPU seconds so far of the listener, its writer process, PostgreSQL and this client
    (``kernel`` as in :func:`_cpu_seconds`)."""
    assert listener.process is not None
    pid = listener.process.pid
    postmaster = int((cluster.root / "data" / "postmaster.pid").read_text().split()[0])
    usage = resource.getrusage(resource.RUSAGE_SELF)
    client = {None: usage.ru_utime + usage.ru_stime, False: usage.ru_utime, True: usage.ru_stime}
    return {
        "listener": _cpu_seconds(pid, kernel=kernel),
        "writer process": sum(_cpu_seconds(c, kernel=kernel) for c in _children(pid)),
        "PostgreSQL": _cpu_seconds(postmaster, kernel=kernel)
        + sum(_cpu_seconds(c, kernel=kernel) for c in _children(postmaster)),
        "client": client[kernel],
    }


@dataclass(slots=True)
class _InFlight:
    """The message a connection is waiting on: its index, when it was sent, reply so far."""

    index: int
    sent: float
    buffer: bytes = b""


def framed(total: int) -> list[bytes]:
    """Messages ``0..total-1`` (:func:`tests.support.hl7_traffic.message`), MLLP-framed."""
    return [frame(message(i).encode()) for i in range(total)]


def send_lean(port: int, payloads: list[bytes], connections: int) -> Traffic:
    """Send framed messages (``framed``) over ``connections`` MLLP connections, one thread.

    The throughput run's sender: each connection has one message in flight and sends the
    next when its ACK arrives (as :func:`tests.support.hl7_traffic.send_all` does), but
    one thread waits on every socket with ``selectors``, and the messages are framed
    before the clock starts. Sixteen threads contending for the GIL cost more CPU than the
    listener spent on some stages, on the same two cores. A message answered with
    anything but AA is recorded and sent again. The crash run keeps ``send_all``, which
    reconnects and resends after the listener is killed.
    """
    total = len(payloads)
    traffic = Traffic()
    selector = selectors.DefaultSelector()
    pending = iter(range(total))
    in_flight: dict[socket.socket, _InFlight] = {}
    attempts: dict[int, int] = {}

    def send(sock: socket.socket, i: int) -> None:
        in_flight[sock] = _InFlight(i, time.perf_counter())
        sock.sendall(payloads[i])
        traffic.sends += 1

    for _ in range(min(connections, total)):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        selector.register(sock, selectors.EVENT_READ)
        send(sock, next(pending))
    deadline = time.monotonic() + 600
    while in_flight and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=30):
            sock = _socket_of(key.fileobj)
            current = in_flight[sock]
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("the listener closed a connection")
            current.buffer += data
            if END_BLOCK not in current.buffer:
                continue
            traffic.latencies.append(time.perf_counter() - current.sent)
            code, control = msa(current.buffer)
            if control != f"M{current.index}":
                raise ConnectionError("ACK for another message")
            if code != "AA":  # e.g. AR while the database is busy: send it again
                traffic.non_aa.append(f"M{current.index}: {code}")
                attempts[current.index] = attempts.get(current.index, 0) + 1
                if attempts[current.index] > 100:
                    raise RuntimeError(f"M{current.index} was never accepted")
                send(sock, current.index)
                continue
            traffic.acked.add(current.index)
            following = next(pending, None)
            if following is None:
                del in_flight[sock]
                selector.unregister(sock)
                sock.close()
            else:
                send(sock, following)
    selector.close()
    if in_flight:
        raise TimeoutError(f"{len(in_flight)} messages were not acknowledged")
    return traffic


def _socket_of(fileobj: object) -> socket.socket:
    if not isinstance(fileobj, socket.socket):  # pragma: no cover - only sockets registered
        raise TypeError("not a socket")
    return fileobj


def _local_ports(pids: list[int]) -> set[int]:
    """The local TCP ports of the sockets the processes ``pids`` hold open (Linux /proc)."""
    inodes: set[str] = set()
    for pid in pids:
        with contextlib.suppress(FileNotFoundError, PermissionError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(FileNotFoundError):
                    target = str(fd.readlink())
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[9] in inodes:
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _backends(engine: Engine, listener: Listener) -> dict[int, tuple[str, float]]:
    """Each PostgreSQL client backend: whose connection it serves (``listener``, ``writer``
    or ``benchmark``, matched by the client's TCP port) and its CPU seconds so far."""
    assert listener.process is not None
    pid = listener.process.pid
    listener_ports = _local_ports([pid])
    writer_ports = _local_ports(_children(pid))
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT pid, client_port FROM pg_stat_activity "
                "WHERE backend_type = 'client backend'"
            )
        ).all()
    out: dict[int, tuple[str, float]] = {}
    for backend, port in rows:
        whose = (
            "listener"
            if port in listener_ports
            else "writer"
            if port in writer_ports
            else "benchmark"
        )
        out[int(backend)] = (whose, _cpu_seconds(int(backend)))
    return out


def _machine_cpu() -> float:
    """Busy CPU seconds of the whole machine so far, every core (/proc/stat: all but idle
    and iowait)."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / _TICK


def _finished(engine: Engine) -> int:
    """Messages no longer waiting for the writer (written, or failed)."""
    with engine.connect() as connection:
        return int(
            connection.scalar(
                text(
                    "SELECT count(*) FROM message_stage "
                    "WHERE stage NOT IN ('stored', 'parsed', 'mapped')"
                )
            )
            or 0
        )


def _until_written(engine: Engine, poll: float = 0.02) -> None:
    """Return once no message waits for the writer (call after every message is ACKed, so
    all are stored). One probe of the stage index every ``poll`` seconds: cheap enough to
    poll often, so end to end is not rounded up by up to a coarse poll's interval."""
    probe = text(
        "SELECT EXISTS (SELECT 1 FROM message_stage WHERE stage IN ('stored', 'parsed', 'mapped'))"
    )
    with engine.connect() as connection:
        while connection.scalar(probe):
            connection.rollback()
            time.sleep(poll)


def throughput(url: str, log: Path, cluster: Cluster) -> None:
    listener = Listener(url, log=log)
    listener.start()
    engine = create_engine(url)
    payloads = framed(MESSAGES) if CLIENT == "lean" else []
    try:
        backends_before = _backends(engine, listener)
        before = _cpu(listener, cluster)
        kernel_before = _cpu(listener, cluster, kernel=True)
        machine_before = _machine_cpu()
        started = time.perf_counter()
        if CLIENT == "lean":
            traffic = send_lean(listener.port, payloads, CONNECTIONS)
        else:  # the resending client of the tests and the crash run, a thread per connection
            traffic = send_all(listener.port, MESSAGES, connections=CONNECTIONS, resend_every=0)
        acked = time.perf_counter() - started
        client_after = _cpu(listener, cluster)["client"]
        client_kernel_after = _cpu(listener, cluster, kernel=True)["client"]
        finished_at_ack = _finished(engine)
        _until_written(engine)
        written = time.perf_counter() - started
        wait_until_written(engine, MESSAGES)  # every message there, none waiting
        machine_after = _machine_cpu()
        after = {**_cpu(listener, cluster), "client": client_after}
        kernel_after = {**_cpu(listener, cluster, kernel=True), "client": client_kernel_after}
        backends_after = _backends(engine, listener)
        with engine.connect() as connection:
            resources = connection.scalar(text("SELECT count(*) FROM resource"))
    finally:
        listener.stop()
        engine.dispose()
    cpu = {name: (after[name] - before[name]) * 1000 / MESSAGES for name in after}
    kernel = {name: (kernel_after[name] - kernel_before[name]) * 1000 / MESSAGES for name in after}
    backend_ms: dict[str, float] = {"listener": 0.0, "writer": 0.0, "benchmark": 0.0}
    for pid, (whose, cpu_s) in backends_after.items():
        earlier = backends_before.get(pid, (whose, 0.0))[1]
        backend_ms[whose] += (cpu_s - earlier) * 1000 / MESSAGES
    ms = [s * 1000 for s in traffic.latencies]
    print(f"messages            {MESSAGES:,} over {CONNECTIONS} connections ({CLIENT} client)")
    print(f"traffic             realistic population: {population(MESSAGES)}")
    print(f"acknowledged        {MESSAGES / acked:,.0f} msg/s")
    print(f"end to end          {MESSAGES / written:,.0f} msg/s (to resources committed)")
    print(f"  target            2,000 msg/s  ratio {MESSAGES / written / 2000:.2f}")
    tail = MESSAGES - finished_at_ack
    print(
        f"  writer            {finished_at_ack / acked:,.0f} msg/s while ACKs were sent; "
        f"{tail:,} not committed at the last ACK, committed {written - acked:.2f} s after "
        f"it ({tail / max(written - acked, 1e-9):,.0f} msg/s)"
    )
    print(f"time to ACK         p50 {percentile(ms, 50):.1f} ms  p99 {percentile(ms, 99):.1f} ms")
    print(f"resources in record {resources:,}")
    print(
        "CPU per message     "
        + ", ".join(f"{name} {ms:.2f} ms" for name, ms in cpu.items())
        + f"; total {sum(cpu.values()):.2f} ms"
    )
    print(
        "  PostgreSQL split  "
        + ", ".join(f"{name}'s connections {ms:.2f} ms" for name, ms in backend_ms.items())
        + f", background and closed connections {cpu['PostgreSQL'] - sum(backend_ms.values()):.2f}"
        " ms (WAL writer, checkpointer, autovacuum)"
    )
    print(
        "  of which kernel  "
        + ", ".join(f"{name} {ms:.2f} ms" for name, ms in kernel.items())
        + " (system time: sockets, pipe, WAL writes)"
    )
    machine = machine_after - machine_before
    print(
        f"  machine           {machine / written:.2f} of {os.cpu_count()} cores busy over the "
        f"run, {max(machine - sum(cpu.values()) * MESSAGES / 1000, 0) / written:.2f} of them "
        "other processes' (other work on the machine distorts msg/s)"
    )
    print(
        f"  2-core ceiling    {2000 / sum(cpu.values()):,.0f} msg/s if every process kept a "
        f"core busy (load average at the end: {os.getloadavg()[0]:.1f})"
    )
    if traffic.non_aa:
        print(f"not AA              {len(traffic.non_aa)} (first: {traffic.non_aa[0]})")


def writer_halves(url: str) -> None:
    """The writer's two halves timed one after the other, in this process (decision 0025).

    ``BENCH_INGEST_WRITER_MESSAGES`` messages are stored (stage ``mapped``), then written in
    batches of 300: each planned (:class:`~sharedcare.ingest.preplan.Preplanner`: validation,
    index extraction, ``meta``) and then written in its transaction. The writer process runs
    the two in separate threads, so its rate is bounded by the longer half, not their sum.
    """
    from sharedcare.ingest.preplan import Preplanner
    from sharedcare.ingest.service import tune_collector
    from sharedcare.ingest.store import FeedRegistry
    from sharedcare.ingest.writer import ToWrite, write_preplanned
    from sharedcare.record.sqlstore import SqlStore

    total, batch, warm = WRITER_MESSAGES, 300, 3
    engine = create_engine(url, pool_size=2)
    registry = FeedRegistry()
    todo: list[ToWrite] = []
    for start in range(0, total, 500):
        texts = [message(i) for i in range(start, min(total, start + 500))]
        todo.extend(stored_for_writer(engine, texts, registry))
    store = SqlStore(engine)
    store.ensure_params()
    tune_collector()
    planner = Preplanner(engine, store)
    wall = [0.0, 0.0]
    cpu = [0.0, 0.0]
    as_planned = 0
    try:
        for n, start in enumerate(range(0, total, batch)):
            t0, c0 = time.perf_counter(), time.thread_time()
            ticket = planner.plan(todo[start : start + batch])
            t1, c1 = time.perf_counter(), time.thread_time()
            assert ticket.preplanned is not None
            _, used = write_preplanned(engine, store, ticket.preplanned)
            t2, c2 = time.perf_counter(), time.thread_time()
            planner.finished(ticket, used)
            as_planned += used
            if n >= warm:
                wall[0] += t1 - t0
                wall[1] += t2 - t1
                cpu[0] += c1 - c0
                cpu[1] += c2 - c1
    finally:
        engine.dispose()
    counted = total - warm * batch
    plan_ms, write_ms = (w * 1000 / counted for w in wall)
    print(f"messages            {total:,} in batches of {batch} ({as_planned} used as planned)")
    print(f"plan (ahead)        {plan_ms:.3f} ms/msg wall, {cpu[0] * 1000 / counted:.3f} CPU")
    print(f"write transaction   {write_ms:.3f} ms/msg wall, {cpu[1] * 1000 / counted:.3f} CPU")
    print(
        f"writer bound        {1000 / (plan_ms + write_ms):,.0f} msg/s one after the other, "
        f"{1000 / max(plan_ms, write_ms):,.0f} msg/s overlapped "
        f"(load average {os.getloadavg()[0]:.1f})"
    )


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
        if WRITER_MESSAGES > 0:
            print("-- writer halves --")
            writer_halves(_database(cluster.url, "bench_ingest_writer"))
        if CRASH_MESSAGES > 0:  # BENCH_INGEST_CRASH_MESSAGES=0 skips the crash run
            print("-- crash run --")
            crash_run(_database(cluster.url, "bench_ingest_crash"), work / "crash.log")
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
