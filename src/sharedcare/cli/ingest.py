"""``sharedcare mllp``, ``sharedcare load-synthetic`` and ``sharedcare ingest {status, errors,
replay, csv, mappings, watch}``."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Column, Table

from sharedcare.cli.common import DatabaseOption, console, fail, friendly_errors, settings_with

ingest_app = typer.Typer(
    help="Inspect the ingest pipeline: stages, the error queue, replay.", no_args_is_help=True
)


def _engine(database: str | None) -> Any:
    from sharedcare.db.engine import create_engine
    from sharedcare.db.migrate import upgrade

    settings = settings_with(database)
    engine = create_engine(settings.resolved_database_url)
    if settings.auto_migrate:
        upgrade(engine)
    return engine


def mllp(
    port: int = typer.Option(2575, "--port", "-p", min=0, max=65535, help="TCP port to listen on."),
    host: str = typer.Option("127.0.0.1", "--host", "-h", help="Address to bind."),
    database: str | None = DatabaseOption,
) -> None:
    """Receive HL7 v2 over MLLP: store each message, then ACK, then write it to the record.

    Each feed is identified by MSH-3/MSH-4 and registered on its first message. Resends
    (same sender and MSH-10) are acknowledged again without being stored twice. Messages
    that cannot be mapped get an AE and wait in the error queue (`sharedcare ingest errors`).
    Stop with Ctrl-C or SIGTERM; messages in flight are finished first.
    """
    from sharedcare.ingest.service import run_mllp
    from sharedcare.logs import configure_logging

    settings = settings_with(database)
    configure_logging(settings.log_level, json=settings.log_json)
    with friendly_errors():
        engine = _engine(database)

        def ready(bound: int) -> None:
            console.print(f"MLLP listener on [bold]{host}:{bound}[/] (Ctrl-C to stop)")

        try:
            run_mllp(engine, host, port, on_ready=ready)
        except OSError as exc:
            fail(f"could not listen on {host}:{port} ({exc.strerror}); choose another --port")
        finally:
            engine.dispose()


@ingest_app.command("status")
def status(database: str | None = DatabaseOption) -> None:
    """Feeds with their health, and how many messages are at each stage."""
    from sharedcare.ingest.health import feed_statuses, stage_counts

    with friendly_errors():
        engine = _engine(database)
        with engine.connect() as connection:
            feeds = feed_statuses(connection)
            stages = stage_counts(connection)
        engine.dispose()
    table = Table(
        "feed", "protocol", "last message", "messages", "rate/min", "queued errors", "lag s"
    )
    for feed in feeds:
        table.add_row(
            feed.name,
            feed.protocol,
            feed.last_message_at or "never",
            f"{feed.messages:,}",
            f"{feed.rate_per_minute:g}",
            f"{feed.errors_queued:,}",
            f"{feed.lag_seconds:g}",
        )
    console.print(table)
    console.print(
        "stages: " + (", ".join(f"{k} {v:,}" for k, v in sorted(stages.items())) or "no messages")
    )


@ingest_app.command("errors")
def errors(
    feed: str | None = typer.Option(None, "--feed", help="Only this feed (e.g. PAS@RBCH)."),
    limit: int = typer.Option(100, "--limit", min=1, help="Most rows to list."),
    database: str | None = DatabaseOption,
) -> None:
    """List the error queue: failed messages with the stage that failed and why."""
    from sharedcare.ingest.health import error_queue

    with friendly_errors():
        engine = _engine(database)
        with engine.connect() as connection:
            rows = error_queue(connection, feed=feed, limit=limit)
        engine.dispose()
    if not rows:
        console.print("the error queue is empty")
        return
    table = Table("id", "feed", "control id", "type", "received", "failed at", "tries", "reason")
    for row in rows:
        received = datetime.fromtimestamp(row.received_at / 1e6, UTC).isoformat(timespec="seconds")
        table.add_row(
            str(row.id),
            row.feed,
            row.control_id,
            row.message_type,
            received,
            row.error_stage or "",
            str(row.attempts),
            row.error or "",
        )
    console.print(table)
    console.print("fix the cause, then run `sharedcare ingest replay` (or --id N)")


@ingest_app.command("replay")
def replay(
    feed: str | None = typer.Option(None, "--feed", help="Only this feed (e.g. PAS@RBCH)."),
    ids: Annotated[
        list[int] | None, typer.Option("--id", help="Only this message id (repeatable).")
    ] = None,
    database: str | None = DatabaseOption,
) -> None:
    """Re-run failed messages from their stored raw bytes, after fixing the cause."""
    from sharedcare.ingest.pipeline import replay as run_replay

    with friendly_errors():
        engine = _engine(database)
        report = run_replay(engine, feed=feed, ids=ids or None)
        engine.dispose()
    if not report.tried:
        console.print("no failed messages matched; nothing to replay")
        return
    stages = ", ".join(f"{k} {v:,}" for k, v in sorted(report.stages.items()))
    console.print(f"replayed {report.tried:,} messages: {stages}")
    for message_id, reason in report.failures[:20]:
        console.print(f"  [yellow]still failing[/] {message_id}: {reason}", highlight=False)
    if report.failed:
        raise typer.Exit(1)


@ingest_app.command("mappings")
def mappings() -> None:
    """List the shipped CSV mappings: name, feed, file patterns and required columns."""
    from sharedcare.ingest.csvmap import available_mappings

    table = Table("feed", "files", "required columns", "makes")
    table.columns.insert(0, Column("mapping", no_wrap=True))
    for mapping in available_mappings().values():
        table.add_row(
            mapping.name,
            mapping.feed,
            ", ".join(mapping.files),
            ", ".join(mapping.required_columns),
            ", ".join(r.resource_type for r in mapping.resources if r.emit),
        )
    console.print(table)
    console.print("format and shapes: docs/reference/csv-mappings.md")


@ingest_app.command("csv")
def ingest_csv(
    files: Annotated[list[Path], typer.Argument(help="CSV files (.csv or .csv.gz).", exists=True)],
    organisation: str = typer.Option(
        ..., "--organisation", "-o", help="Code of the sending organisation (e.g. RBD)."
    ),
    mapping_name: str | None = typer.Option(
        None,
        "--mapping",
        "-m",
        help="Mapping name or .json path [default: chosen by file name]",
    ),
    database: str | None = DatabaseOption,
) -> None:
    """Load CSV files through a column mapping: each row a message, stored, mapped, written.

    Rows that cannot be mapped go to the error queue with a reason naming the column.
    Sending a file again stores nothing new.
    """
    from sharedcare.ingest.csvmap import MappingSpecError, get_mapping, mapping_for_file
    from sharedcare.ingest.csvmap.messages import CsvFileError, ingest_csv_file
    from sharedcare.ingest.store import FeedRegistry
    from sharedcare.record.sqlstore import SqlStore

    try:
        chosen = get_mapping(mapping_name) if mapping_name else None
    except MappingSpecError as error:
        fail(str(error))
    exit_code = 0
    with friendly_errors():
        engine = _engine(database)
        store = SqlStore(engine)
        store.ensure_params()
        registry = FeedRegistry()
        for path in files:
            mapping = chosen or mapping_for_file(path.name)
            if mapping is None:
                fail(f"{path.name}: no mapping matches this file name; give --mapping")
            try:
                report = ingest_csv_file(
                    engine, path, mapping, organisation.upper(), store=store, registry=registry
                )
            except CsvFileError as error:
                console.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
                exit_code = 1
                continue
            console.print(
                f"{path.name}: {report.rows:,} rows, {report.written:,} written, "
                f"{report.duplicates:,} already stored, {report.failed:,} in the error queue",
                highlight=False,
                soft_wrap=True,
            )
            for line, reason in report.failures[:20]:
                console.print(f"  [yellow]line {line}[/] {reason}", highlight=False, soft_wrap=True)
            if report.failed:
                exit_code = 1
        engine.dispose()
    if exit_code:
        raise typer.Exit(exit_code)


@ingest_app.command("watch")
def watch(
    root: Annotated[Path, typer.Argument(help="The drop folder: one sub-folder per organisation.")],
    once: bool = typer.Option(False, "--once", help="Take what is there now, then stop."),
    interval: float = typer.Option(2.0, "--interval", min=0.1, help="Seconds between scans."),
    database: str | None = DatabaseOption,
) -> None:
    """Watch a drop folder: FHIR (.json/.ndjson) and CSV files dropped in ROOT/<ORG>/.

    Each file is claimed by renaming it, stored message by message, processed, and moved
    to done/ (or failed/ with a .reason.txt). Stop with Ctrl-C.
    """
    import signal
    import threading

    from sharedcare.ingest.dropfolder import DropFolder, DroppedFile
    from sharedcare.logs import configure_logging

    settings = settings_with(database)
    configure_logging(settings.log_level, json=settings.log_json)

    def report(result: DroppedFile) -> None:
        if result.outcome == "failed":
            console.print(
                f"[red]failed[/] {result.feed}/{result.name}: {result.reason}", highlight=False
            )
        else:
            console.print(
                f"[green]done[/] {result.feed}/{result.name} ({result.kind}): "
                f"{result.items:,} items, {result.written:,} written, "
                f"{result.errors:,} in the error queue",
                highlight=False,
            )

    with friendly_errors():
        engine = _engine(database)
        folder = DropFolder(engine, root, on_file=report)
        if once:
            folder.scan()
        else:
            stop = threading.Event()
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: stop.set())
            console.print(f"watching [bold]{root}[/] (Ctrl-C to stop)")
            folder.watch(stop, interval)
        engine.dispose()


def register(app: typer.Typer) -> None:
    """Add ``mllp``, ``load-synthetic`` and the ``ingest`` group to the CLI."""
    from sharedcare.cli.load_synthetic import load_synthetic

    app.command()(mllp)
    app.command("load-synthetic")(load_synthetic)
    app.add_typer(ingest_app, name="ingest")
