"""Fixtures for the record's spec tests: a FHIR client on a fresh database of each kind."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from sharedcare.api.app import create_app
from sharedcare.config import Settings


@pytest.fixture
def fhir(database: str) -> Iterator[TestClient]:
    """A client for ``/fhir`` on a fresh SQLite or PostgreSQL database."""
    with TestClient(create_app(Settings(database_url=database))) as client:
        client.headers.update(
            {
                "Content-Type": "application/fhir+json",
                "X-Sharedcare-User": "spec-tests",
                "X-Sharedcare-Organisation": "RBD",
            }
        )
        yield client
