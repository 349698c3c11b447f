"""``sharedcare load``: load FHIR JSON, NDJSON and Bundle files into the record."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from sharedcare.cli.common import DatabaseOption, console, fail, friendly_errors, settings_with


def load(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Files or folders: .json (a resource or Bundle), .ndjson/.jsonl", exists=True
        ),
    ],
    database: str | None = DatabaseOption,
    organisation: str | None = typer.Option(
        None, "--organisation", "-o", help="ODS code of the sending organisation (meta.source)."
    ),
    feed: str | None = typer.Option(None, "--feed", help="Feed name recorded in meta.source."),
) -> None:
    """Load FHIR resources into the record, with a progress bar.

    Transaction and batch Bundles are processed as if POSTed to /fhir; other Bundles and
    NDJSON are loaded resource by resource (resources with ids are upserted, so reloading
    the same files adds no versions). Problems are listed at the end; nothing is skipped
    silently.
    """
    from sharedcare.db.engine import create_engine
    from sharedcare.db.migrate import upgrade
    from sharedcare.record.context import RequestContext
    from sharedcare.record.loader import load_paths, loadable_files
    from sharedcare.record.repository import Repository
    from sharedcare.record.sqlstore import SqlStore

    settings = settings_with(database)
    files = loadable_files(paths)
    if not files:
        fail("no .json, .ndjson or .jsonl files found in the paths given")
    with friendly_errors():
        engine = create_engine(settings.resolved_database_url)
        upgrade(engine)
        store = SqlStore(engine)
        store.ensure_params()
        context = RequestContext(
            user="sharedcare-load",
            organisation=organisation,
            role="system",
            purpose="HOPERAT",
            source="cli",
            feed=feed,
        )
        repo = Repository(store, context)
        columns = (
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("files · {task.fields[resources]:,} resources"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("loading", total=len(files), resources=0)
            handled = 0

            def advance(n: int) -> None:
                nonlocal handled
                handled += n
                progress.update(task, resources=handled)

            report = load_paths(
                repo, files, progress=advance, file_done=lambda _: progress.advance(task)
            )
        engine.dispose()
    console.print(
        f"loaded {report.written:,} resources ({report.unchanged:,} unchanged, "
        f"{report.failed:,} failed) from {report.files:,} files"
    )
    for problem in report.problems[:50]:
        console.print(f"  [yellow]problem[/] {problem}", highlight=False, soft_wrap=True)
    if len(report.problems) > 50:
        console.print(f"  … and {len(report.problems) - 50} more")
    if report.failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``load`` to the CLI."""
    app.command()(load)
