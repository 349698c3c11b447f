"""Fixtures for the Bulk Data export tests: a client on a fresh database, and helpers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sharedcare.api.app import create_app
from sharedcare.config import Settings

HEADERS = {
    "Content-Type": "application/fhir+json",
    "X-Sharedcare-User": "bulk-tests",
    "X-Sharedcare-Organisation": "RBD",
}


@pytest.fixture
def settings(database: str, tmp_path: Path) -> Settings:
    """Settings on a fresh database, with export files under ``tmp_path``."""
    return Settings(database_url=database, data_dir=tmp_path)


@pytest.fixture
def make_client(settings: Settings) -> Iterator[Callable[..., TestClient]]:
    """Start clients (and their apps, with export workers) that are closed after the test."""
    opened: list[TestClient] = []

    def make(**changes: Any) -> TestClient:
        client = TestClient(create_app(settings.model_copy(update=changes)))
        client.__enter__()
        client.headers.update(HEADERS)
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture
def bulk(make_client: Callable[..., TestClient]) -> TestClient:
    """A client for ``/fhir`` on a fresh SQLite or PostgreSQL database."""
    return make_client()
