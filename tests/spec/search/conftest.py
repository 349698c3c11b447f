"""A FHIR client per test module and database, loaded once with the module's ``DATA``."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from sharedcare.api.app import create_app
from sharedcare.config import Settings
from sharedcare.db.engine import create_engine
from tests.spec.search.cases import load
from tests.support.identity import without_realtime_matching

_made = [0]


def _database(request: pytest.FixtureRequest, kind: str) -> str:
    _made[0] += 1
    if kind == "sqlite":
        folder = request.getfixturevalue("tmp_path_factory").mktemp("search")
        path = folder / "search.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    cluster = request.getfixturevalue("postgres_cluster")
    template = request.getfixturevalue("postgres_template")
    name = f"search_{request.module.__name__.rsplit('.', 1)[-1]}_{_made[0]}"
    admin = create_engine(cluster.url)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    admin.dispose()
    return str(cluster.url_for(name))


def client_for(url: str) -> TestClient:
    """A client on ``url`` with the headers the spec tests use."""
    client = TestClient(create_app(Settings(database_url=url)))
    client.headers.update(
        {
            "Content-Type": "application/fhir+json",
            "X-Sharedcare-User": "search-spec",
            "X-Sharedcare-Organisation": "RBD",
        }
    )
    return client


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def searchable(request: pytest.FixtureRequest) -> Iterator[TestClient]:
    """A client on a fresh database of each kind holding the test module's ``DATA``."""
    data: list[dict[str, Any]] = request.module.DATA
    with client_for(_database(request, request.param)) as client:
        with without_realtime_matching():  # exactly DATA: no golden Patients
            load(client, data)
        yield client
