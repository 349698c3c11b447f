"""``sharedcare analytics export``: views to Parquet for secondary use.

The work is in ``sharedcare.analytics.export``; this only reads options and shows progress.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from sharedcare.cli.analytics import analytics_app
from sharedcare.cli.common import console, fail, friendly_errors, settings_with

__all__ = ["export"]


def _master_key(key_file: Path | None) -> str:
    if key_file is not None:
        try:
            return key_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            fail(
                f"cannot read the key file {key_file}; check the path and permissions "
                "and that it holds text"
            )
    key = settings_with().pseudonym_key
    if key is None:
        fail(
            "--pseudonymise needs a key: set SHAREDCARE_PSEUDONYM_KEY or give --key-file "
            "(32+ characters)"
        )
    return key.get_secret_value()


@analytics_app.command("export")
def export(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for NAME.parquet files.")],
    views: Annotated[
        list[str] | None,
        typer.Option(
            "--view",
            help="Library view name or a ViewDefinition .json file (repeatable) "
            "[default: every library view].",
        ),
    ] = None,
    source: Annotated[
        Path | None, typer.Option("--source", help="Folder of NDJSON resources to read.")
    ] = None,
    database: Annotated[
        str | None,
        typer.Option(
            "--database",
            "-d",
            help="Record store URL (sqlite:///... or postgresql://...) "
            "[default: SHAREDCARE_DATABASE_URL, else var/sharedcare.db, unless --source].",
            show_default=False,
        ),
    ] = None,
    pseudonymise: Annotated[
        bool, typer.Option("--pseudonymise", help="Hash identifiers; drop direct identifiers.")
    ] = False,
    project: Annotated[
        str | None, typer.Option("--project", help="Project name (required to pseudonymise).")
    ] = None,
    key_file: Annotated[
        Path | None,
        typer.Option("--key-file", help="File holding the master key [default: the setting]."),
    ] = None,
    dates: Annotated[
        str, typer.Option("--dates", help="Dates of birth/death as 'month' or 'year'.")
    ] = "month",
) -> None:
    """Export views to Parquet with National Data Opt-outs excluded (secondary use)."""
    from sharedcare.analytics.export import ExportError, export_views, library_views, view_file
    from sharedcare.analytics.pseudonymise import Pseudonymiser, PseudonymKeyError

    if source is not None and database is not None:
        fail("give either --source DIR or --database URL, not both")
    if dates not in ("month", "year"):
        fail("--dates must be 'month' or 'year'")
    granularity: Literal["month", "year"] = "month" if dates == "month" else "year"
    pseudonymiser = None
    if pseudonymise:
        if not project:
            fail("--pseudonymise needs --project NAME (pseudonyms link only within a project)")
        try:
            pseudonymiser = Pseudonymiser.for_project(_master_key(key_file), project, granularity)
        except PseudonymKeyError as exc:
            fail(str(exc))
    elif project or key_file:
        fail("--project and --key-file only apply with --pseudonymise")
    url = None if source is not None else settings_with(database).resolved_database_url
    try:
        specs = []
        for item in views or []:
            if item.endswith(".json") or Path(item).is_file():
                specs.append(view_file(Path(item)))
            else:
                specs.extend(library_views([item]))
        if not views:
            specs = library_views()
        with (
            friendly_errors(),
            Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
                transient=False,
            ) as progress,
        ):
            loading = progress.add_task("loading resources", total=None)
            task = progress.add_task("exporting views", total=len(specs))

            def loaded(description: str) -> None:
                progress.update(loading, total=1, completed=1, description=description)

            def done(name: str, rows: int) -> None:
                progress.console.print(f"  {name}: {rows:,} rows", highlight=False)
                progress.advance(task)

            results = export_views(
                specs,
                out,
                source_dir=source,
                database_url=url,
                pseudonymiser=pseudonymiser,
                on_loaded=loaded,
                on_view=done,
            )
            progress.update(loading, total=1, completed=1)
    except ExportError as exc:
        fail(str(exc))
    note = f", pseudonymised for project '{pseudonymiser.project}'" if pseudonymiser else ""
    console.print(
        f"wrote {len(results)} Parquet files and manifest.json to {out} (opt-outs excluded{note})",
        highlight=False,
    )
