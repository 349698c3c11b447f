"""``sharedcare analytics``: population analytics over the shared record.

Commands are added to ``analytics_app``; the logic lives in ``sharedcare.analytics`` and
these functions only parse options and print.

- ``export`` (helper B): write views to Parquet, opt-outs applied, optionally pseudonymised.
- ``run`` (helper A): run indicators.
"""

from __future__ import annotations

import typer

__all__ = ["analytics_app", "register"]

analytics_app = typer.Typer(
    help="Population analytics: SQL-on-FHIR views, indicators and extracts.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add the ``analytics`` sub-app to ``app``."""
    from sharedcare.cli import (
        analytics_export,  # noqa: F401  (defines ``analytics export``)
        analytics_run,  # noqa: F401  (defines ``analytics run``)
    )

    app.add_typer(analytics_app, name="analytics")
