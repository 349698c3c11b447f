"""``sharedcare mllp`` and ``sharedcare ingest {status,errors,replay}``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.table import Table

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


def register(app: typer.Typer) -> None:
    """Add ``mllp`` and the ``ingest`` group to the CLI."""
    app.command()(mllp)
    app.add_typer(ingest_app, name="ingest")
