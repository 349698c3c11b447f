"""``sharedcare load-synthetic DIR``: a synth output through the real ingest paths.

A real server is started in a subprocess (``sharedcare serve`` with its MLLP listener on a
free port), exactly as deployed: HL7 v2 goes to it over MLLP sockets, FHIR bundles over
HTTP to ``/fhir``, and CSV goes through the column mappings from this process. A separate
process keeps the server's work (mapping, writing) off the loader's core and works the
same on SQLite (both processes take the write lock in turn) and PostgreSQL.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from sharedcare.cli.common import DatabaseOption, console, fail, friendly_errors, settings_with

_CLI = [sys.executable, "-c", "from sharedcare.cli.main import app; app()"]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Server:
    """``sharedcare serve`` with MLLP, in a subprocess, on free ports."""

    def __init__(self, database_url: str, *, mllp: bool) -> None:
        self.http_port = _free_port()
        self.mllp_port = _free_port() if mllp else 0
        # Kept open for the server's lifetime (its stderr), closed in stop().
        self.log = tempfile.TemporaryFile()  # noqa: SIM115
        self.output = b""  # the server's log, read back when it stops
        env = {
            **os.environ,
            "SHAREDCARE_LOG_LEVEL": "WARNING",
            "SHAREDCARE_AUTO_MIGRATE": "false",
        }
        command = [
            *_CLI,
            "serve",
            "--database",
            database_url,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.http_port),
        ]
        if mllp:
            command += ["--mllp-port", str(self.mllp_port)]
        self.process = subprocess.Popen(  # noqa: S603 - our own CLI, fixed arguments
            command, env=env, stdout=subprocess.DEVNULL, stderr=self.log, stdin=subprocess.DEVNULL
        )

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.http_port}/readyz"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        self.stop()
        tail = self.output.decode("utf-8", "replace").strip().splitlines()[-3:]
        fail("the server did not start: " + (" / ".join(tail) or "no output"))

    def stop(self) -> Path | None:
        """Stop the server; keep its log in a file (and return the path) if it logged errors.

        The server's log never holds patient data (see docs/explanation/patient-data-in-logs.md),
        so it is safe to keep for diagnosing a failed load.
        """
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if not self.log.closed:
            self.log.seek(0)
            self.output = self.log.read()
            self.log.close()
        if b"ERROR" not in self.output and b"Traceback" not in self.output:
            return None
        kept = Path(tempfile.gettempdir()) / f"sharedcare-load-synthetic-{self.http_port}.log"
        kept.write_bytes(self.output)
        return kept


def load_synthetic(
    directory: Annotated[
        Path,
        typer.Argument(help="A `sharedcare synth --out` folder.", exists=True, file_okay=False),
    ],
    database: str | None = DatabaseOption,
    connections: int = typer.Option(
        12, "--connections", min=1, max=64, help="MLLP connections at once (one per file)."
    ),
    clients: int = typer.Option(
        4, "--clients", min=1, max=32, help="HTTP clients posting FHIR bundles at once."
    ),
    servers: int = typer.Option(
        2,
        "--servers",
        min=1,
        max=8,
        help="Server processes to start, each with an MLLP listener (the work is spread).",
    ),
) -> None:
    """Load Synthetic Dorset through the real ingest paths, with a progress bar per feed.

    Starts servers for the database (`sharedcare serve`, each with an MLLP listener), then
    at the same time sends HL7 v2 over MLLP and POSTs FHIR bundles to /fhir (both spread
    over the servers) and loads CSV through the column mappings; waits until every message is in
    the record and prints a summary checked against manifest.json. truth.csv is never
    loaded. Exit 1 if anything failed or a count differs.
    """
    from sharedcare.db.engine import create_engine
    from sharedcare.db.migrate import upgrade
    from sharedcare.ingest import synthetic_load as sl
    from sharedcare.record.sqlstore import SqlStore

    settings = settings_with(database)
    url = settings.resolved_database_url
    try:
        run = sl.discover(directory)
    except FileNotFoundError as error:
        fail(str(error))
    started = time.monotonic()
    with friendly_errors():
        engine = create_engine(url)
        upgrade(engine)
        SqlStore(engine).ensure_params()
    started_servers = [_Server(url, mllp=True) for _ in range(servers)]
    tallies: dict[str, Any] = {}
    try:
        for each in started_servers:
            each.wait_ready()
        console.print(
            f"{servers} server(s) ready: HTTP on port "
            f"{', '.join(str(s.http_port) for s in started_servers)}, MLLP on port "
            f"{', '.join(str(s.mllp_port) for s in started_servers)}",
            highlight=False,
        )
        columns = (
            TextColumn("[progress.description]{task.description:<30}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[unit]}"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console) as progress:
            tasks = {
                g.label: progress.add_task(
                    g.label, total=g.total, unit=_unit(g.protocol), start=False
                )
                for g in run.groups
            }

            def advancer(task: TaskID) -> Any:
                lock = threading.Lock()
                progress.start_task(task)

                def advance(n: int) -> None:
                    with lock:
                        progress.advance(task, n)

                return advance

            def guarded(work: Any, group: Any, advance: Any) -> None:
                try:
                    work(group, advance)
                except Exception as error:  # reported in the summary; the run exits 1
                    tally = sl.FeedTally()
                    tally.problems.append(f"stopped early: {type(error).__name__}: {error}")
                    tallies.setdefault(group.label, tally)

            def phase(protocol: str, work: Any) -> None:
                groups = [g for g in run.groups if g.protocol == protocol]
                threads = [
                    threading.Thread(target=guarded, args=(work, g, advancer(tasks[g.label])))
                    for g in groups
                ]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()

            def csv(group: Any, advance: Any) -> None:
                tallies[group.label] = sl.load_csv(engine, group, advance)

            def csv_phase() -> None:
                for group in (g for g in run.groups if g.protocol == "csv"):
                    guarded(csv, group, advancer(tasks[group.label]))

            mllp_ports = [s.mllp_port for s in started_servers]
            http_ports = [s.http_port for s in started_servers]

            def hl7(group: Any, advance: Any) -> None:
                tallies[group.label] = sl.send_hl7(
                    "127.0.0.1", mllp_ports, group, advance, connections=connections
                )

            def fhir(group: Any, advance: Any) -> None:
                tallies[group.label] = sl.post_fhir(
                    "127.0.0.1", http_ports, group, advance, clients=clients
                )

            # Three streams at once, as in a live system: each server process and this one
            # work on their own core; the database orders the writes.
            streams = [
                threading.Thread(target=phase, args=("hl7v2", hl7)),
                threading.Thread(target=phase, args=("fhir", fhir)),
                threading.Thread(target=csv_phase),
            ]
            for stream in streams:
                stream.start()
            for stream in streams:
                stream.join()
            writing = progress.add_task("writing to the record", total=None, unit="waiting")

            def polled(waiting: int) -> None:
                progress.update(writing, description=f"writing to the record ({waiting:,} left)")

            done = sl.wait_until_written(engine, on_poll=polled)
            progress.update(writing, total=1, completed=1)
    finally:
        logs = [kept for each in started_servers if (kept := each.stop()) is not None]
    linked = _link_identities(engine) if done else None
    elapsed = time.monotonic() - started
    ok = _summary(run, tallies, engine, elapsed) and done
    engine.dispose()
    if linked is not None:
        console.print(linked, highlight=False, soft_wrap=True)
    if not done:
        console.print("[red]some messages were still waiting to be written when it gave up[/]")
    for kept in logs:
        console.print(f"[yellow]a server logged errors; its log is kept in {kept}[/]")
    if not ok:
        raise typer.Exit(1)


def _link_identities(engine: Any) -> str:
    """Check that every Patient loaded is linked, and link any that are not (a safety net).

    Every feed is matched as it is written: HL7 v2 and CSV in the ingest writer's
    transaction, the FHIR Bundles POSTed to ``/fhir`` (the GP and community feeds) just
    after each commits (decision 0020). So this normally matches nothing; it catches a
    Patient left unmatched by a server killed between a write and its match. It is the same
    batch run as ``sharedcare identity link``: idempotent, and only new or changed Patients
    are matched. It also applies A40 merges left ``pending``.
    """
    from sharedcare.cli.identity_index import link_with_progress
    from sharedcare.record.context import RequestContext
    from sharedcare.record.sqlstore import SqlStore

    context = RequestContext(user="load-synthetic", role="system", purpose="HOPERAT", source="cli")
    summary = link_with_progress(engine, SqlStore(engine), context, label="linking identities")
    return f"identity: {summary}"


def _unit(protocol: str) -> str:
    return {"hl7v2": "messages", "fhir": "bundles", "csv": "rows"}.get(protocol, "")


def _summary(run: Any, tallies: dict[str, Any], engine: Any, elapsed: float) -> bool:
    from sharedcare.ingest import synthetic_load as sl

    table = Table("feed", "sent", "accepted", "failed", "resources", "manifest")
    ok = True
    totals: Counter[str] = Counter()
    for group in run.groups:
        tally = tallies.get(group.label)
        if tally is None:  # its stream recorded nothing
            ok = False
            table.add_row(group.label, "", "", "", "", "[red]not loaded[/]")
            continue
        expected = sl.manifest_expectations(run, group)
        differs = sorted(
            k for k in expected.keys() | tally.by_kind.keys() if expected[k] != tally.by_kind[k]
        )
        check = "[green]matches[/]" if not differs else f"[red]{len(differs)} counts differ[/]"
        if differs or tally.rejected or tally.problems:
            ok = False
        table.add_row(
            group.label,
            f"{tally.sent:,}",
            f"{tally.accepted:,}",
            f"{tally.rejected:,}",
            f"{tally.resources:,}" if group.protocol != "hl7v2" else "",
            check,
        )
        totals[group.protocol] += tally.sent
        for problem in tally.problems[:5]:
            console.print(f"  [yellow]{group.label}[/] {problem}", highlight=False, soft_wrap=True)
        for org, kind in differs[:5]:
            console.print(
                f"  [yellow]{group.label}[/] {org} {kind}: manifest {expected[(org, kind)]:,}, "
                f"loaded {tally.by_kind[(org, kind)]:,}",
                highlight=False,
            )
    console.print(table)
    stages = sl.stage_totals(engine)
    failed = stages.get("failed", 0)
    if failed:
        ok = False
    resources = _message_resources(engine)
    console.print(
        f"messages: {sum(stages.values()):,} in the message store "
        f"({', '.join(f'{k} {v:,}' for k, v in sorted(stages.items()))}); "
        f"{resources:,} resources from HL7 v2 and CSV, plus "
        f"{sum(t.resources for k, t in tallies.items() if k.startswith('FHIR')):,} from FHIR "
        f"bundles; errors {failed:,}; {elapsed:,.0f} s",
        highlight=False,
    )
    return ok


def _message_resources(engine: Any) -> int:
    from sqlalchemy import func, select

    from sharedcare.db.tables import MessageStage

    with engine.connect() as connection:
        return int(connection.scalar(select(func.sum(MessageStage.resource_count))) or 0)
