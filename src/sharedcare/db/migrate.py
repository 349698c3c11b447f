"""Alembic migrations, run programmatically on SQLite and PostgreSQL alike."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

from sharedcare.db.engine import write_connection

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

__all__ = [
    "MIGRATIONS_DIR",
    "alembic_config",
    "current_revision",
    "head_revision",
    "include_object",
    "upgrade",
]


def alembic_config() -> Config:
    """An Alembic config pointing at sharedcare's migration scripts."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def include_object(dialect: str) -> Any:
    """An Alembic ``include_object`` hook for ``dialect``: it leaves out the models' indexes
    and constraints declared for other databases only (``.ddl_if(dialect=...)``, e.g. the
    PostgreSQL-only search indexes of ``idx_token``), which Alembic does not know about, so
    that comparing the models with a migrated database sees what that database should have.
    """

    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        rule = getattr(obj, "_ddl_if", None)
        if reflected or rule is None or rule.dialect is None:
            return True
        wanted = (rule.dialect,) if isinstance(rule.dialect, str) else tuple(rule.dialect)
        return dialect in wanted

    return include


def head_revision() -> str | None:
    """The newest migration revision shipped with this version of sharedcare."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or ``None`` if it has never been migrated."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


#: Key of the PostgreSQL advisory lock that serialises concurrent upgrades.
_UPGRADE_LOCK = 0x5C_A2E


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database schema up to ``revision`` (idempotent).

    Safe to call from several processes at once: on PostgreSQL an advisory lock makes the
    others wait and then find the schema already current; on SQLite the write lock does.
    """
    config = alembic_config()
    with write_connection(engine) as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _UPGRADE_LOCK})
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
