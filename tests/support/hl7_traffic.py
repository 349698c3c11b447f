"""HL7 v2 traffic for ingest tests and benchmarks: messages, an MLLP listener process, a
resending client (python-hl7's MLLPClient) and the exactly-once check.

Messages are synthetic. Index ``i`` is about patient ``p = i % patients``, and gives:

* ``i % 10`` in 0-5: ADT^A01 admission, a new visit ``V{i}`` for patient ``H{p}``;
* 6-7: ADT^A08 update of that patient: they have moved home (a new address each time);
* 8-9: ORU^R01 result (one report ``F{i}``, three observations).

Each patient looks like a member of a real population, so the master patient index sees
realistic blocking buckets: given and family names drawn from the synthetic data's Faker
en_GB tables (surnames weighted by frequency), a date of birth spread over 0-99 years, sex,
a unique NHS number from the 999 test range (beside the hospital number ``H{p}``) and a
Dorset address and postcode (:mod:`sharedcare.synthetic.people`). A patient's demographics
are the same in every message about them, except the address an A08 changes.
"""

from __future__ import annotations

import bisect
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from hl7.client import MLLPClient
from sqlalchemy import Engine, text

from sharedcare.synthetic.people import lsoa_for_index, name_tables, nhs_number_for, random_address

CLI = [sys.executable, "-c", "from sharedcare.cli.main import app; app()"]
"""The ``sharedcare`` command line (the installed console script runs the same app)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _segment(seg_id: str, fields: dict[int, str]) -> str:
    values = [""] * max(fields)
    for number, value in fields.items():
        values[number - 1] = value
    return "|".join([seg_id, *values])


@dataclass(frozen=True, slots=True)
class _Person:
    hospital_number: str
    nhs_number: str
    family: str
    given: str
    birth_date: str
    sex: str


@cache
def _person(p: int, patients: int) -> _Person:
    """Patient ``p`` of a synthetic population of ``patients`` (deterministic)."""
    tables = name_tables()
    rng = random.Random(p * 7919 + 17)
    male = rng.random() < 0.49
    given = rng.choice(tables.male if male else tables.female)
    family = tables.family[
        min(bisect.bisect_left(tables.family_cumulative, rng.random()), len(tables.family) - 1)
    ]
    born = date(2024, 3, 1) - timedelta(days=rng.randrange(100 * 365))
    return _Person(
        f"H{p}",
        nhs_number_for(p),
        family.upper(),
        given.upper(),
        born.strftime("%Y%m%d"),
        "M" if male else "F",
    )


@cache
def _address(p: int, patients: int, move: int) -> str:
    """PID-11 for patient ``p`` after ``move`` moves: street^^town^^postcode."""
    rng = random.Random((p * 7919 + 17) ^ (move << 24))
    home = random_address(rng, lsoa_for_index(p, patients), date(2020, 1, 1))
    return f"{home.line}^^{home.town}^^{home.postcode}"


def _pid(i: int, patients: int) -> str:
    p = i % patients
    who = _person(p, patients)
    moves = i // patients if i % 10 in (6, 7) else 0  # an A08: moved home again
    return (
        f"PID|1||{who.hospital_number}^^^RBD^MR~{who.nhs_number}^^^NHS^NH||"
        f"{who.family}^{who.given}||{who.birth_date}|{who.sex}|||{_address(p, patients, moves)}"
    )


def population(total: int, patients: int = 2000) -> str:
    """How varied the patients in messages ``0..total-1`` are (for benchmark output)."""
    people = [_person(p, patients) for p in range(min(total, patients))]
    postcodes = {
        _address(i % patients, patients, i // patients if i % 10 in (6, 7) else 0).rsplit("^", 1)[1]
        for i in range(total)
    }
    return (
        f"{len(people):,} patients: {len({w.family for w in people}):,} family names, "
        f"{len({w.given for w in people}):,} given names, "
        f"{len({w.birth_date for w in people}):,} birth dates, "
        f"{len({w.nhs_number for w in people}):,} NHS numbers, {len(postcodes):,} postcodes"
    )


def stored_for_writer(engine: Engine, texts: Sequence[str], registry: Any = None) -> list[Any]:
    """Store ``texts`` as the listener does (stage ``mapped``) and return what the writer
    takes for each: :class:`~sharedcare.ingest.writer.ToWrite` with its mapped resources."""
    from sharedcare.ingest.hl7v2.mapping import map_message
    from sharedcare.ingest.hl7v2.parse import parse_message
    from sharedcare.ingest.stages import Stage
    from sharedcare.ingest.store import FeedRegistry, Incoming, store_messages
    from sharedcare.ingest.writer import ToWrite

    parsed = [parse_message(t) for t in texts]
    items = [
        Incoming(
            "hl7v2",
            p.header.sending_application,
            p.header.sending_facility,
            p.header.control_id,
            p.header.message_type,
            t.encode(),
            Stage.MAPPED,
        )
        for p, t in zip(parsed, texts, strict=True)
    ]
    stored = store_messages(engine, items, registry or FeedRegistry())
    return [
        ToWrite(s.message_id, s.feed, map_message(p)) for s, p in zip(stored, parsed, strict=True)
    ]


def message(i: int, patients: int = 2000) -> str:
    """The i-th synthetic message (see the module docstring); MSH-10 is ``M{i}``."""
    kind = i % 10
    pid = _pid(i, patients)
    when = f"202403{1 + i % 28:02d}1015{i % 60:02d}"
    if kind <= 7:
        event = "A01" if kind <= 5 else "A08"
        pv1 = f"PV1|1|I|W{i % 9}^B^{i % 20}^RBD||||||||||||||||V{i}^^^RBD^VN"
        if event == "A08":
            pv1 = "PV1|1|N"
        return "\r".join(
            [
                f"MSH|^~\\&|PAS|RBD|SC|ICS|{when}||ADT^{event}|M{i}|P|2.4",
                f"EVN|{event}|{when}",
                pid,
                pv1,
            ]
        )
    return "\r".join(
        [
            f"MSH|^~\\&|WINPATH|RBD|SC|ICS|{when}||ORU^R01^ORU_R01|M{i}|P|2.5.1",
            pid,
            _segment(
                "OBR",
                {
                    1: "1",
                    2: f"P{i}^ICE",
                    3: f"F{i}^WINPATH",
                    4: "UE^Urea and electrolytes^WINPATH",
                    7: when,
                    22: when,
                    25: "F",
                },
            ),
            f"OBX|1|NM|2951-2^Sodium^LN||{130 + i % 15}|mmol/L^mmol/L^UCUM|133-146|N|||F",
            f"OBX|2|NM|2823-3^Potassium^LN||4.{i % 9}|mmol/L^mmol/L^UCUM|3.5-5.3|N|||F",
            f"OBX|3|NM|3094-0^Urea^LN||{3 + i % 6}.1|mmol/L^mmol/L^UCUM|2.5-7.8|N|||F",
        ]
    )


def expected_resources(total: int) -> dict[str, int]:
    """Resources of each kind that ``total`` messages must leave (each written once)."""
    kinds = [i % 10 for i in range(total)]
    return {
        "Encounter": sum(1 for k in kinds if k <= 5),
        "DiagnosticReport": sum(1 for k in kinds if k >= 8),
    }


class Listener:
    """``sharedcare mllp`` in a subprocess, restartable on the same port."""

    def __init__(self, database_url: str, port: int | None = None, log: Path | None = None):
        self.url = database_url
        self.port = port or free_port()
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        env = {**os.environ, "SHAREDCARE_LOG_LEVEL": "WARNING"}
        out = self.log.open("ab") if self.log else subprocess.DEVNULL
        command = [*CLI, "mllp", "--port", str(self.port), "--database", self.url]
        self.process = subprocess.Popen(command, env=env, stdout=out, stderr=out)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the listener exited with {self.process.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the listener did not start listening")

    def kill(self) -> None:
        """SIGKILL: no chance to finish anything in flight."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        """SIGTERM, letting it finish what is in flight."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=60)


@dataclass
class Traffic:
    """What the clients did."""

    acked: set[int] = field(default_factory=set)
    sends: int = 0
    resends_after_failure: int = 0
    deliberate_resends: int = 0
    latencies: list[float] = field(default_factory=list)
    non_aa: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def msa(reply: bytes) -> tuple[str, str]:
    """(MSA-1, MSA-2) of an acknowledgement: its code and the control id it answers."""
    for segment in reply.strip(b"\x0b\x1c\r\n").split(b"\r"):
        if segment.startswith(b"MSA|"):
            parts = segment.decode("utf-8", "replace").split("|")
            return parts[1], parts[2] if len(parts) > 2 else ""
    return "", ""


def send_all(
    port: int,
    total: int,
    *,
    connections: int = 8,
    resend_every: int = 50,
    on_ack: threading.Event | None = None,
    kill_after: int | None = None,
    deadline: float = 600.0,
) -> Traffic:
    """Send messages ``0..total-1`` over ``connections`` MLLP connections until each is AA.

    Every ``resend_every``-th message is sent a second time after its AA (a sender that
    lost the ACK). A message whose ACK does not arrive (connection lost) is resent, on a
    new connection, until it is acknowledged. ``on_ack`` is set once ``kill_after``
    messages are acknowledged (the moment to kill the listener).
    """
    traffic = Traffic()
    todo = list(range(total))
    position = 0
    cursor = threading.Lock()
    stop_at = time.monotonic() + deadline

    def next_index() -> int | None:
        nonlocal position
        with cursor:
            if position >= len(todo):
                return None
            position += 1
            return todo[position - 1]

    def connect() -> MLLPClient:
        while time.monotonic() < stop_at:
            try:
                client = MLLPClient("127.0.0.1", port)
                client.socket.settimeout(30)
                return client
            except OSError:
                time.sleep(0.05)
        raise TimeoutError("could not reconnect to the listener")

    def exchange(client: MLLPClient, i: int) -> bool:
        started = time.perf_counter()
        reply = client.send_message(message(i).encode())
        if not reply:
            raise ConnectionError("connection closed")
        code, control = msa(reply)
        with traffic.lock:
            traffic.sends += 1
            traffic.latencies.append(time.perf_counter() - started)
        if control != f"M{i}":
            raise ConnectionError("ACK for another message")
        if code != "AA":
            with traffic.lock:
                traffic.non_aa.append(f"M{i}: {code}")
            return False
        return True

    def worker() -> None:
        client = connect()
        while (i := next_index()) is not None:
            attempts = 0
            while True:
                try:
                    if exchange(client, i):
                        break
                except (OSError, ConnectionError):
                    client.close()
                    attempts += 1
                    with traffic.lock:
                        traffic.resends_after_failure += 1
                    client = connect()
                    continue
                time.sleep(0.05)  # AR (e.g. database busy): resend
                attempts += 1
                if attempts > 100:
                    raise RuntimeError(f"M{i} was never accepted")
            with traffic.lock:
                traffic.acked.add(i)
                if on_ack is not None and kill_after and len(traffic.acked) >= kill_after:
                    on_ack.set()
            if resend_every and i % resend_every == 0:
                try:
                    if exchange(client, i):
                        with traffic.lock:
                            traffic.deliberate_resends += 1
                except (OSError, ConnectionError):
                    client.close()
                    client = connect()
        client.close()

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return traffic


def wait_until_written(engine: Engine, total: int, timeout: float = 300.0) -> dict[str, int]:
    """Poll until no message is waiting; return the count of messages at each stage."""
    deadline = time.monotonic() + timeout
    while True:
        with engine.connect() as connection:
            stages: dict[str, int] = dict(
                connection.execute(
                    text("SELECT stage, count(*) FROM message_stage GROUP BY stage")
                ).all()
            )
        waiting = sum(n for s, n in stages.items() if s in ("stored", "parsed", "mapped"))
        if sum(stages.values()) >= total and not waiting:
            return {str(k): int(v) for k, v in stages.items()}
        if time.monotonic() > deadline:
            raise TimeoutError(f"messages still waiting: {stages}")
        time.sleep(0.2)


def exactly_once_problems(engine: Engine, total: int) -> list[str]:
    """Everything wrong with the claim "every message stored and written exactly once"."""
    problems: list[str] = []
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT control_id, count(*) FROM message GROUP BY control_id")
        ).all()
        stored = {str(cid): int(n) for cid, n in rows}
        missing = [i for i in range(total) if f"M{i}" not in stored]
        if missing:
            problems.append(f"{len(missing)} messages never stored (first: M{missing[0]})")
        twice = [cid for cid, n in stored.items() if n != 1]
        if twice:
            problems.append(f"{len(twice)} messages stored more than once")
        extra = set(stored) - {f"M{i}" for i in range(total)}
        if extra:
            problems.append(f"{len(extra)} unexpected messages stored")
        # A message row without its stage row would never be written nor recovered.
        not_written = connection.scalar(
            text(
                "SELECT count(*) FROM message m LEFT JOIN message_stage s ON s.id = m.id "
                "WHERE s.stage IS NULL OR s.stage <> 'written'"
            )
        )
        if not_written:
            problems.append(f"{not_written} messages not written to the record")
        counts: dict[str, int] = dict(
            connection.execute(
                text(
                    "SELECT resource_type, count(*) FROM resource WHERE resource_type "
                    "IN ('Encounter', 'DiagnosticReport') GROUP BY resource_type"
                )
            ).all()
        )
        for kind, expected in expected_resources(total).items():
            if counts.get(kind, 0) != expected:
                problems.append(f"{kind}: {counts.get(kind, 0)} in the record, {expected} expected")
    return problems


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]
