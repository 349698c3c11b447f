"""The application on both databases: probes, home page status and error responses."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert

from sharedcare.api.app import create_app
from sharedcare.config import Settings
from sharedcare.db.engine import create_engine, write_connection
from sharedcare.db.tables import Feed, Organisation


@pytest.fixture
def client(database: str) -> Iterator[TestClient]:
    app = create_app(Settings(database_url=database))
    with TestClient(app) as client:
        yield client


def test_healthz(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_readyz_when_migrated(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["schema"] == body["expected_schema"]


def test_readyz_reports_an_unmigrated_database(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path}/empty.db", auto_migrate=False)
    with TestClient(create_app(settings)) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    assert "sharedcare db upgrade" in response.json()["reason"]


def test_unknown_path_is_an_operation_outcome(client: TestClient) -> None:
    response = client.get("/no/such/thing")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/fhir+json")
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "not-found"


def test_home_page_shows_zeros_on_an_empty_platform(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    html = response.text
    assert "Platform status" in html
    assert "No feeds are connected yet" in html
    assert "The record holds no resources yet" in html


def _seed(engine: Engine) -> None:
    with write_connection(engine) as connection:
        connection.execute(
            insert(Organisation),
            [
                {"ods_code": "RBD", "name": "Dorset County Hospital", "kind": "acute-trust"},
                {"ods_code": "R0D", "name": "University Hospitals Dorset", "kind": "acute-trust"},
            ],
        )
        connection.execute(
            insert(Feed),
            [
                {
                    "name": "DCH PAS ADT",
                    "organisation_ods_code": "RBD",
                    "protocol": "hl7v2",
                    "sending_application": "PAS",
                    "sending_facility": "RBD",
                    "last_message_at": datetime.now(UTC),
                    "message_count": 1200,
                    "error_count": 0,
                }
            ],
        )


def test_home_page_counts_organisations_and_feeds(database: str) -> None:
    engine = create_engine(database)
    _seed(engine)
    engine.dispose()
    with TestClient(create_app(Settings(database_url=database))) as client:
        html = client.get("/").text
    assert "DCH PAS ADT" in html
    assert "Dorset County Hospital" in html
    assert "healthy" in html
    assert "of 2 known" in html
    assert "1,200" in html
