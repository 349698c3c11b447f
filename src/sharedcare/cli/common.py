"""Helpers shared by the CLI commands: settings from flags, and one-line errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer
from rich.console import Console

from sharedcare.config import Settings, get_settings
from sharedcare.db.engine import DatabaseUrlError

console = Console(stderr=True)

DatabaseOption = typer.Option(
    None,
    "--database",
    "-d",
    help="Database URL: sqlite:///path/to.db or postgresql://user@host:5432/db "
    "[default: SHAREDCARE_DATABASE_URL, else the embedded SQLite file var/sharedcare.db]",
    show_default=False,
)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print a one-line error and exit."""
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def settings_with(database: str | None = None, **overrides: object) -> Settings:
    """The environment's settings, with command-line flags applied on top."""
    base = get_settings()
    changes = {key: value for key, value in overrides.items() if value is not None}
    if database is not None:
        changes["database_url"] = database
    return base.model_copy(update=changes) if changes else base


@contextmanager
def friendly_errors() -> Iterator[None]:
    """Turn expected failures into one-line messages instead of tracebacks."""
    from sqlalchemy.exc import OperationalError

    try:
        yield
    except DatabaseUrlError as exc:
        fail(str(exc))
    except OperationalError as exc:
        fail(
            f"could not use the database ({type(exc.orig).__name__}); check the URL, that the "
            "server is running and that the user may connect"
        )
