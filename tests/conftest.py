"""Shared fixtures.

* ``postgres_cluster`` / ``postgres_url``: one throwaway PostgreSQL 15 cluster per session.
* ``database``: parametrised over ``sqlite`` and ``postgresql``; every test that takes it
  runs on both, each time against a fresh, fully migrated database.
* ``engine``: a SQLAlchemy engine on ``database``.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from sharedcare.db.engine import create_engine
from sharedcare.db.migrate import upgrade
from sharedcare.record.sqlstore import SqlStore
from tests.support.postgres import Cluster, start_cluster

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DIR = Path(os.environ.get("SHAREDCARE_SHARED_DIR", REPO_ROOT.parent / "shared"))
_counter = itertools.count()


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The read-only shared material (reference data, conformance suites, FHIR R4)."""
    if not SHARED_DIR.is_dir():
        pytest.fail(f"shared material not found at {SHARED_DIR}; set SHAREDCARE_SHARED_DIR")
    return SHARED_DIR


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[Cluster]:
    """A throwaway PostgreSQL 15 cluster for the whole session."""
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres_cluster: Cluster) -> str:
    """URL of the session cluster's ``postgres`` database."""
    return postgres_cluster.url


def _migrate(url: str) -> None:
    engine = create_engine(url)
    upgrade(engine)
    SqlStore(engine).ensure_params()
    engine.dispose()


@pytest.fixture(scope="session")
def postgres_template(postgres_cluster: Cluster) -> str:
    """A migrated database that fresh test databases are copied from."""
    name = "sharedcare_template"
    admin = create_engine(postgres_cluster.url)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    _migrate(postgres_cluster.url_for(name))
    return name


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file that fresh test databases are copied from."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    _migrate(f"sqlite:///{path}")
    return path


def _fresh_postgres_database(cluster: Cluster, template: str) -> str:
    name = f"sharedcare_test_{os.getpid()}_{next(_counter)}"
    admin = create_engine(cluster.url)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    admin.dispose()
    return cluster.url_for(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """URL of a fresh, migrated database: SQLite file or PostgreSQL database."""
    if request.param == "sqlite":
        path = tmp_path / "sharedcare.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    return _fresh_postgres_database(
        request.getfixturevalue("postgres_cluster"), request.getfixturevalue("postgres_template")
    )


@pytest.fixture
def engine(database: str) -> Iterator[Engine]:
    """An engine on the fresh ``database``."""
    engine = create_engine(database)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def pg_engine(postgres_cluster: Cluster, postgres_template: str) -> Iterator[Engine]:
    """An engine on a fresh, migrated PostgreSQL database, for tests of what only
    PostgreSQL has (heap order, pipelines, array statements, plan settings)."""
    engine = create_engine(_fresh_postgres_database(postgres_cluster, postgres_template))
    try:
        yield engine
    finally:
        engine.dispose()
