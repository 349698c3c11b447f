"""Load a Synthetic Dorset output through the real ingest paths, feed by feed.

* **HL7 v2** (``RBD/``, ``R0D/``: ``adt``, ``oru-path``, ``orm-rad``, ``oru-rad``) is sent
  over MLLP sockets to a running listener, one connection per file (files hold different
  people, so order within a patient is kept), each message waiting for its ACK.
* **FHIR** (``J8…/`` GP practices, ``RDY/``) is POSTed to ``/fhir`` of a running server, one
  transaction Bundle per request, with the organisation named in the request headers.
* **CSV** (``rtt``, ``ssnap``, council ``assessments``/``packages``, ``VCS`` ``referrals``)
  goes through the shipped column mappings into the message store and the record.

``truth.csv`` (the generator's answer key for linkage) is never read. Counts of what was
sent are kept per organisation and compared with the run's ``manifest.json``.
"""

from __future__ import annotations

import asyncio
import gzip
import http.client
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, func, select

from sharedcare.db.tables import Feed, Message, MessageStage
from sharedcare.ingest.csvmap.messages import CsvFileError, ingest_csv_file
from sharedcare.ingest.csvmap.spec import CsvMapping, mapping_for_file
from sharedcare.ingest.hl7v2.mllp import END_BLOCK, frame
from sharedcare.ingest.stages import WAITING
from sharedcare.ingest.store import FeedRegistry
from sharedcare.record.sqlstore import SqlStore

__all__ = [
    "MANIFEST_KIND",
    "FeedGroup",
    "FeedTally",
    "SyntheticRun",
    "discover",
    "hl7_messages",
    "load_csv",
    "manifest_expectations",
    "post_fhir",
    "send_hl7",
    "stage_totals",
    "wait_until_written",
]

MESSAGE: Any = Message.__table__
STAGE: Any = MessageStage.__table__
FEED: Any = Feed.__table__
TRUTH_FILE = "truth.csv"
MANIFEST_KIND = {
    "rtt": "rtt",
    "ssnap": "ssnap",
    "social-care-assessments": "assessment",
    "social-care-packages": "package",
    "vcs-referrals": "referral",
}
"""The manifest's count name for each CSV mapping."""
_GP = re.compile(r"^[A-Z]\d{5}$")
_HL7_SUFFIXES = (".hl7", ".hl7.gz")
_FHIR_SUFFIXES = (".ndjson", ".ndjson.gz")


@dataclass(slots=True)
class FeedGroup:
    """Files of one kind from one organisation (GP practices are one group)."""

    label: str
    protocol: str
    files: list[tuple[str, Path]] = field(default_factory=list)
    """(organisation code, file)."""
    total: int = 0
    """Messages, bundles or rows in the files."""
    mapping: CsvMapping | None = None


@dataclass(slots=True)
class FeedTally:
    """What was sent for a group, and how it went."""

    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    resources: int = 0
    duplicates: int = 0
    by_kind: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(organisation, message type / resource type / manifest kind) → accepted count."""
    problems: list[str] = field(default_factory=list)


@dataclass(slots=True)
class SyntheticRun:
    """A synth output folder, its manifest and its feed groups in load order."""

    root: Path
    manifest: dict[str, Any]
    groups: list[FeedGroup]


def _read(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.name.endswith(".gz") else data


def hl7_messages(path: Path) -> Iterator[bytes]:
    """The messages of a synthetic HL7 file: one per line, segments ending in CR."""
    for line in _read(path).split(b"\n"):
        message = line.strip(b"\r\n")
        if message:
            yield message


def _count_lines(path: Path, *, header: bool) -> int:
    lines = sum(1 for line in _read(path).splitlines() if line.strip())
    return max(0, lines - 1) if header else lines


def discover(root: Path) -> SyntheticRun:
    """Find every feed file under a synth output folder (never ``truth.csv``).

    Raises:
        FileNotFoundError: If ``root`` has no ``manifest.json`` (not a synth output).
    """
    manifest_path = root / "manifest.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(
            f"{root} has no manifest.json; point at the folder `sharedcare synth --out` wrote"
        )
    manifest = orjson.loads(manifest_path.read_bytes())
    hl7: dict[str, FeedGroup] = {}
    fhir: dict[str, FeedGroup] = {}
    csv: dict[str, FeedGroup] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        org = folder.name
        for path in sorted(p for p in folder.iterdir() if p.is_file()):
            name = path.name
            if name == TRUTH_FILE:
                continue
            if name.endswith(_HL7_SUFFIXES):
                group = hl7.setdefault(org, FeedGroup(f"HL7 v2 {org}", "hl7v2"))
                group.total += sum(1 for _ in hl7_messages(path))
            elif name.endswith(_FHIR_SUFFIXES):
                label = "GP practices" if _GP.match(org) else org
                group = fhir.setdefault(label, FeedGroup(f"FHIR {label}", "fhir"))
                group.total += _count_lines(path, header=False)
            elif name.endswith((".csv", ".csv.gz")) and (mapping := mapping_for_file(name)):
                key = f"{org} {mapping.feed}"
                group = csv.setdefault(key, FeedGroup(f"CSV {key}", "csv", mapping=mapping))
                group.total += _count_lines(path, header=True)
            else:
                continue
            group.files.append((org, path))
    groups = [*hl7.values(), *fhir.values(), *sorted(csv.values(), key=_csv_order)]
    return SyntheticRun(root, manifest, groups)


def _csv_order(group: FeedGroup) -> tuple[int, str]:
    # A council's assessments (which carry the person) before its packages.
    order = {"social-care-assessments": 0, "social-care-packages": 1}
    return (order.get(group.mapping.name if group.mapping else "", 0), group.label)


def manifest_expectations(run: SyntheticRun, group: FeedGroup) -> Counter[tuple[str, str]]:
    """The manifest's counts for a group, keyed like :attr:`FeedTally.by_kind`."""
    organisations = run.manifest.get("organisations", {})
    expected: Counter[tuple[str, str]] = Counter()
    for org in sorted({org for org, _ in group.files}):
        counts = organisations.get(org, {})
        if group.protocol == "hl7v2":
            for kind, n in counts.items():
                if "^" in kind:
                    expected[(org, kind)] = int(n)
        elif group.protocol == "fhir":
            for kind, n in counts.items():
                if kind != "Bundle" and kind[:1].isupper():
                    expected[(org, kind)] = int(n)
        elif group.mapping is not None:
            kind = MANIFEST_KIND.get(group.mapping.name, group.mapping.name)
            if kind in counts:
                expected[(org, kind)] = int(counts[kind])
    return expected


# -- HL7 v2 over MLLP ------------------------------------------------------------------------


def _message_type(message: bytes) -> str:
    fields = message.split(b"\r", 1)[0].split(b"|")
    if len(fields) <= 8:
        return ""
    parts = fields[8].decode("ascii", "replace").split("^")
    return "^".join(parts[:2])


def _ack_code(ack: bytes) -> str:
    for segment in ack.split(b"\r"):
        if segment.startswith(b"MSA|"):
            return segment[4:6].decode("ascii", "replace")
    return ""


async def _send_file(
    host: str, port: int, org: str, path: Path, tally: FeedTally, advance: Callable[[int], None]
) -> None:
    reader, writer = await asyncio.open_connection(host, port, limit=2**24)
    try:
        for message in hl7_messages(path):
            writer.write(frame(message))
            await writer.drain()
            ack = await reader.readuntil(END_BLOCK)
            tally.sent += 1
            code = _ack_code(ack)
            if code == "AA":
                tally.accepted += 1
                tally.by_kind[(org, _message_type(message))] += 1
            else:
                tally.rejected += 1
                if len(tally.problems) < 20:
                    tally.problems.append(
                        f"{org} {path.name}: a {_message_type(message)} message was answered "
                        f"{code or 'without MSA'}; see `sharedcare ingest errors`"
                    )
            advance(1)
    finally:
        writer.close()
        await writer.wait_closed()


def _chunk(path: Path) -> int:
    found = re.search(r"-(\d+)\.", path.name)
    return int(found.group(1)) if found else 0


def send_hl7(
    host: str,
    ports: list[int],
    group: FeedGroup,
    advance: Callable[[int], None],
    *,
    connections: int = 12,
) -> FeedTally:
    """Send a group's HL7 files over MLLP, one connection per file, ``connections`` at once.

    With several listeners (``ports``), a file goes to the listener of its chunk number, so
    one chunk's people (in its ADT, results and orders files) all reach the same listener.
    """
    tally = FeedTally()

    async def main() -> None:
        gate = asyncio.Semaphore(connections)

        async def one(org: str, path: Path) -> None:
            async with gate:
                port = ports[_chunk(path) % len(ports)]
                await _send_file(host, port, org, path, tally, advance)

        await asyncio.gather(*(one(org, path) for org, path in group.files))

    asyncio.run(main())
    return tally


# -- FHIR over HTTP -------------------------------------------------------------------------


_RETRIES = 3


class _Client:
    """One keep-alive HTTP connection that reconnects when the server has closed it."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.connection = http.client.HTTPConnection(host, port, timeout=600)

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        for attempt in range(_RETRIES):
            try:
                self.connection.request("POST", path, body=body, headers=headers)
                response = self.connection.getresponse()
                return response.status, response.read()
            except (ConnectionError, http.client.HTTPException):
                # The server closed an idle keep-alive connection; a transaction of PUTs
                # is safe to send again.
                self.connection.close()
                self.connection = http.client.HTTPConnection(self.host, self.port, timeout=600)
                if attempt == _RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.connection.close()


def _post_file(
    host: str,
    port: int,
    org: str,
    path: Path,
    tally: FeedTally,
    lock: threading.Lock,
    advance: Callable[[int], None],
) -> None:
    client = _Client(host, port)
    headers = {
        "Content-Type": "application/fhir+json",
        "Accept": "application/fhir+json",
        "X-Sharedcare-User": "load-synthetic",
        "X-Sharedcare-Organisation": org,
        "X-Sharedcare-Role": "feed",
        "X-Sharedcare-Feed": f"synthetic-{org}",
    }
    try:
        for line in _read(path).splitlines():
            if not line.strip():
                continue
            try:
                status, body = client.post("/fhir", line, headers)
            except (ConnectionError, http.client.HTTPException) as error:
                status, body = 0, b""
                reason = f"could not reach the server ({type(error).__name__})"
            else:
                reason = f"answered HTTP {status}"
            kinds: Counter[tuple[str, str]] = Counter()
            ok = status == 200
            if ok:
                bundle = orjson.loads(line)
                answer = orjson.loads(body)
                replies = answer.get("entry", [])
                for entry, reply in zip(bundle.get("entry", []), replies, strict=False):
                    code = str(reply.get("response", {}).get("status", ""))
                    if code.startswith("2"):
                        kinds[(org, entry.get("resource", {}).get("resourceType", ""))] += 1
                    else:
                        ok = False
                        reason = f"had an entry answered {code}"
            with lock:
                tally.sent += 1
                if ok:
                    tally.accepted += 1
                    tally.resources += sum(kinds.values())
                    tally.by_kind.update(kinds)
                else:
                    tally.rejected += 1
                    if len(tally.problems) < 20:
                        tally.problems.append(f"{org} {path.name}: a Bundle {reason}")
            advance(1)
    finally:
        client.close()


def post_fhir(
    host: str,
    ports: list[int],
    group: FeedGroup,
    advance: Callable[[int], None],
    *,
    clients: int = 4,
) -> FeedTally:
    """POST each Bundle of a group's NDJSON files to ``/fhir``, ``clients`` files at once.

    Files are spread over the servers listening on ``ports`` in turn.
    """
    tally = FeedTally()
    lock = threading.Lock()
    with ThreadPoolExecutor(clients) as pool:
        futures = [
            pool.submit(_post_file, host, ports[n % len(ports)], org, path, tally, lock, advance)
            for n, (org, path) in enumerate(group.files)
        ]
        for future in futures:
            future.result()
    return tally


# -- CSV through the mappings -----------------------------------------------------------------


def load_csv(engine: Engine, group: FeedGroup, advance: Callable[[int], None]) -> FeedTally:
    """Load a group's CSV files through its mapping into the pipeline."""
    if group.mapping is None:
        raise ValueError("a CSV group needs its mapping")
    tally = FeedTally()
    store = SqlStore(engine)
    registry = FeedRegistry()
    kind = MANIFEST_KIND.get(group.mapping.name, group.mapping.name)
    for org, path in group.files:
        try:
            report = ingest_csv_file(
                engine, path, group.mapping, org, store=store, registry=registry, progress=advance
            )
        except CsvFileError as error:
            tally.problems.append(str(error))
            continue
        tally.sent += report.rows
        tally.accepted += report.written
        tally.duplicates += report.duplicates
        tally.rejected += report.failed
        tally.resources += report.resources
        tally.by_kind[(org, kind)] += report.written + report.duplicates
        for line, reason in report.failures[:5]:
            tally.problems.append(f"{org} {path.name} line {line}: {reason}")
    return tally


# -- Waiting and counting ---------------------------------------------------------------------


def stage_totals(engine: Engine, protocol: str | None = None) -> Counter[str]:
    """Messages per stage (optionally for one protocol)."""
    query = (
        select(STAGE.c.stage, func.count())
        .select_from(STAGE)
        .join(MESSAGE, MESSAGE.c.id == STAGE.c.id)
        .join(FEED, FEED.c.id == MESSAGE.c.feed_id)
        .group_by(STAGE.c.stage)
    )
    if protocol is not None:
        query = query.where(FEED.c.protocol == protocol)
    with engine.connect() as connection:
        return Counter({stage: int(n) for stage, n in connection.execute(query)})


def wait_until_written(
    engine: Engine,
    *,
    timeout: float = 1800.0,
    poll: float = 0.5,
    on_poll: Callable[[int], None] | None = None,
) -> bool:
    """Wait until no message is left waiting to be written; False if ``timeout`` passed."""
    deadline = time.monotonic() + timeout
    while True:
        totals = stage_totals(engine)
        waiting = sum(totals.get(stage, 0) for stage in WAITING)
        if on_poll is not None:
            on_poll(waiting)
        if waiting == 0:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(poll)
