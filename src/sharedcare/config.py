"""Settings, read from the environment with the prefix ``SHAREDCARE_``.

Every setting is documented in ``docs/reference/settings.md``; a test fails when one
is not. Command-line flags override the environment for the command they are given to.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
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

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @property
    def resolved_database_url(self) -> str:
        """The database URL to use, defaulting to the embedded SQLite file."""
        return self.database_url or default_sqlite_url(self.data_dir)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
