"""Settings, read from the environment with the prefix ``SHAREDCARE_``.

Every setting is documented in ``docs/reference/settings.md``; a test fails when one
is not. Command-line flags override the environment for the command they are given to.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATA_DIR = Path("var")


def default_sqlite_url(data_dir: Path) -> str:
    """The embedded SQLite database inside ``data_dir``."""
    return f"sqlite:///{data_dir / 'sharedcare.db'}"


class Settings(BaseSettings):
    """sharedcare settings.

    Each field maps to an environment variable: ``database_url`` is read from
    ``SHAREDCARE_DATABASE_URL``, and so on.
    """

    model_config = SettingsConfigDict(
        env_prefix="SHAREDCARE_", env_file=None, extra="ignore", frozen=True
    )

    data_dir: Path = Field(
        default=DEFAULT_DATA_DIR,
        description="Folder for the embedded database, exports and other local state.",
    )
    database_url: str | None = Field(
        default=None,
        description=(
            "SQLAlchemy-style database URL: sqlite:///path or postgresql://user@host/db. "
            "Empty means the embedded SQLite file data_dir/sharedcare.db."
        ),
    )
    host: str = Field(default="127.0.0.1", description="Address the web server binds to.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port the web server binds to.")
    mllp_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description=(
            "When set, `sharedcare serve` also runs the HL7 v2 MLLP listener on this port "
            "(one listener, however many web workers). Empty means no listener."
        ),
    )
    mllp_host: str = Field(
        default="127.0.0.1", description="Address the MLLP listener binds to (with mllp_port)."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Lowest level of log line written."
    )
    log_json: bool = Field(
        default=False, description="Write log lines as JSON objects, one per line."
    )
    db_pool_size: int = Field(
        default=10, ge=1, le=200, description="PostgreSQL connection pool size per process."
    )
    auto_migrate: bool = Field(
        default=True,
        description="Bring the database schema up to date when the server starts.",
    )
    sql_echo: bool = Field(
        default=False,
        description="Log SQL statements (without their parameters) at DEBUG level.",
    )
    bulk_export_dir: Path | None = Field(
        default=None,
        description=(
            "Folder for Bulk Data $export files. Empty means data_dir/exports. Shared by every "
            "server process (each may run export jobs)."
        ),
    )
    bulk_export_expiry_hours: float = Field(
        default=24.0,
        gt=0,
        le=24 * 30,
        description="Hours a finished $export's files stay available before they are removed.",
    )
    bulk_export_file_limit: int = Field(
        default=100_000,
        ge=1,
        description="Most resources in one $export NDJSON file; larger types are split.",
    )

    @field_validator("mllp_port", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    pseudonym_key: SecretStr | None = Field(
        default=None,
        description=(
            "Secret master key (32+ characters) for pseudonymised analytics extracts; each "
            "project's key is derived from it. Never logged."
        ),
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @property
    def resolved_database_url(self) -> str:
        """The database URL to use, defaulting to the embedded SQLite file."""
        return self.database_url or default_sqlite_url(self.data_dir)

    @property
    def resolved_bulk_export_dir(self) -> Path:
        """The folder for $export files, defaulting to ``data_dir/exports``."""
        return self.bulk_export_dir or self.data_dir / "exports"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
