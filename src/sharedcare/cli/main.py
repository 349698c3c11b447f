"""The ``sharedcare`` command line."""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

import typer

from sharedcare import __version__
from sharedcare.cli import analytics as analytics_command
from sharedcare.cli import identity as identity_command
from sharedcare.cli import ingest as ingest_command
from sharedcare.cli import load as load_command
from sharedcare.cli import synth as synth_command
from sharedcare.cli.common import DatabaseOption, console, fail, friendly_errors, settings_with
from sharedcare.config import Settings
from sharedcare.plugins import plugin_manager

if TYPE_CHECKING:
    from sharedcare.ingest.service import MllpThread

app = typer.Typer(
    name="sharedcare",
    help="sharedcare: one shared care record for an Integrated Care System.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(help="Manage the database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@app.command()
def version() -> None:
    """Print the sharedcare version."""
    typer.echo(__version__)


@app.command()
def serve(
    database: str | None = DatabaseOption,
    host: str | None = typer.Option(
        None, "--host", "-h", help="Address to bind [default: SHAREDCARE_HOST or 127.0.0.1]"
    ),
    port: int | None = typer.Option(
        None, "--port", "-p", min=1, max=65535, help="Port [default: SHAREDCARE_PORT or 8000]"
    ),
    workers: int = typer.Option(
        1, "--workers", min=1, help="Worker processes, each with its own listening socket."
    ),
    mllp_port: int | None = typer.Option(
        None,
        "--mllp-port",
        min=0,
        max=65535,
        help="Also receive HL7 v2 over MLLP on this port [default: SHAREDCARE_MLLP_PORT, else off]",
    ),
) -> None:
    """Serve the web portal, dashboards and FHIR API (and HL7 v2 over MLLP when configured).

    The database schema is brought up to date first, so a new SQLite file just works. With
    SHAREDCARE_MLLP_PORT set, the MLLP listener runs in this process beside the web server
    (one listener however many --workers).
    """
    from sharedcare.logs import configure_logging

    settings = settings_with(database, host=host, port=port, mllp_port=mllp_port)
    configure_logging(settings.log_level, json=settings.log_json)
    with friendly_errors():
        from sharedcare.db.engine import normalise_url

        normalise_url(settings.resolved_database_url)
    base = f"http://{settings.host}:{settings.port}"
    console.print(f"sharedcare {__version__} serving on [bold]{base}/[/]")
    console.print(f"  status page  {base}/")
    console.print(f"  API docs     {base}/docs")
    listener = None
    if workers > 1 or settings.mllp_port is not None:
        from sharedcare.db.engine import create_engine
        from sharedcare.db.migrate import upgrade

        if settings.auto_migrate:
            # Migrate once here rather than racing in every worker (or the MLLP listener).
            with friendly_errors():
                engine = create_engine(settings.resolved_database_url)
                upgrade(engine)
                engine.dispose()
    if settings.mllp_port is not None:
        listener = _start_mllp(settings)
        console.print(f"  HL7 v2 MLLP  {settings.mllp_host}:{listener.port}")
    try:
        _run_uvicorn(settings, workers)
    finally:
        if listener is not None:
            listener.stop()
            listener.engine.dispose()


def _start_mllp(settings: Settings) -> MllpThread:
    """Start the one MLLP listener of this ``serve`` (in this process, never in a worker)."""
    from sharedcare.db.engine import create_engine
    from sharedcare.ingest.service import MllpThread

    port = settings.mllp_port or 0
    with friendly_errors():
        engine = create_engine(settings.resolved_database_url, pool_size=settings.db_pool_size)
    listener = MllpThread(engine, settings.mllp_host, port)
    try:
        listener.start()
    except OSError as exc:
        engine.dispose()
        fail(
            f"could not listen for MLLP on {settings.mllp_host}:{port} ({exc.strerror}); "
            "choose another SHAREDCARE_MLLP_PORT"
        )
    return listener


def _run_uvicorn(settings: Settings, workers: int) -> None:
    import uvicorn

    from sharedcare.api.app import create_app
    from sharedcare.api.http_protocol import http_protocol

    if workers > 1:
        import os

        from sharedcare.cli.workers import WorkerFailed, run_workers

        os.environ["SHAREDCARE_DATABASE_URL"] = settings.resolved_database_url
        config = {
            "app": "sharedcare.api.app:create_app",
            "factory": True,
            "access_log": False,
            "log_config": None,
            "http": http_protocol(),
        }
        try:
            run_workers(config, workers, settings.host, settings.port)
        except OSError as exc:
            fail(f"could not listen on {settings.host}:{settings.port} ({exc.strerror})")
        except WorkerFailed as exc:
            fail(f"{exc}; run with --workers 1 to see why")
    else:
        application = create_app(settings)
        # Once it has shut down, uvicorn raises again the signal that stopped it, so that
        # with the default handlers the process dies of it (exit status -15, or a
        # KeyboardInterrupt traceback for Ctrl-C). By then the shutdown has completed in
        # order (AuditEvents committed, connections closed): exit 0, as the multi-worker
        # supervisor does. uvicorn's own handlers are in place while it serves.
        previous = {sig: signal.signal(sig, _shut_down) for sig in _STOP_SIGNALS}
        try:
            uvicorn.run(
                application,
                host=settings.host,
                port=settings.port,
                access_log=False,
                log_config=None,
                http=http_protocol(),
            )
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _shut_down(signum: int, frame: object) -> None:
    """The signal uvicorn raises again after its orderly shutdown: nothing left to do."""


@db_app.command("upgrade")
def db_upgrade(database: str | None = DatabaseOption) -> None:
    """Create or upgrade the database schema to the latest version (idempotent)."""
    from sharedcare.db.engine import create_engine
    from sharedcare.db.migrate import current_revision, upgrade

    settings = settings_with(database)
    with friendly_errors():
        engine = create_engine(settings.resolved_database_url)
        before = current_revision(engine)
        upgrade(engine)
        after = current_revision(engine)
        engine.dispose()
    if before == after:
        console.print(f"database already at the latest schema ({after})")
    else:
        console.print(f"database upgraded from {before or 'empty'} to {after}")


load_command.register(app)
synth_command.register(app)
identity_command.register(app)
ingest_command.register(app)
analytics_command.register(app)
plugin_manager().hook.register_commands(cli=app)
