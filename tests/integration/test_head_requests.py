"""``HEAD`` is answered as ``GET`` without its body, and audited as the read it is.

RFC 9110 §9.3.2: the server sends the headers it would send for ``GET`` (``ETag``,
``Last-Modified``, ``Content-Length``) and no content. FastAPI routes declare ``GET`` only,
so before ``api.app.HeadAsGet`` every ``HEAD`` was refused with 405. On SQLite and
PostgreSQL, through the real application.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from sharedcare.api.app import create_app
from sharedcare.config import Settings
from sharedcare.db.engine import create_engine
from tests.support.identity import without_realtime_matching

HEADERS = {
    "X-Sharedcare-User": "head.tester",
    "X-Sharedcare-Organisation": "RBD",
    "X-Sharedcare-Role": "clinician",
    "X-Sharedcare-Purpose": "TREAT",
    "Content-Type": "application/fhir+json",
}


@pytest.fixture
def client(database: str) -> Iterator[TestClient]:
    with (
        without_realtime_matching(),
        TestClient(create_app(Settings(database_url=database)), headers=HEADERS) as client,
    ):
        yield client


def _interactions(database: str) -> list[tuple[str, str]]:
    engine = create_engine(database)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT interaction, outcome FROM audit_event "
                    "WHERE agent = 'head.tester' ORDER BY pk"
                )
            )
            return [(r[0], r[1]) for r in rows]
    finally:
        engine.dispose()


def test_head_of_a_resource_has_the_reads_headers_and_no_body(
    client: TestClient, database: str
) -> None:
    created = client.post(
        "/fhir/Observation",
        json={"resourceType": "Observation", "status": "final", "code": {"text": "weight"}},
    )
    assert created.status_code == 201
    path = f"/fhir/Observation/{created.json()['id']}"
    got = client.get(path)
    head = client.head(path)
    assert head.status_code == 200
    assert head.content == b""
    for name in ("etag", "last-modified", "content-type", "content-length"):
        assert head.headers[name] == got.headers[name], name
    # Audited like the GET: create, read, read, each a success.
    assert _interactions(database) == [("create", "0"), ("read", "0"), ("read", "0")]


def test_head_of_a_missing_resource_is_404_without_a_body(
    client: TestClient, database: str
) -> None:
    head = client.head("/fhir/Observation/absent")
    assert head.status_code == 404
    assert head.content == b""
    assert head.headers["content-type"].startswith("application/fhir+json")
    assert _interactions(database) == [("read", "4")]


@pytest.mark.parametrize("path", ["/fhir/metadata", "/fhir/Observation?_count=1", "/", "/healthz"])
def test_head_of_pages_and_searches(client: TestClient, path: str) -> None:
    got = client.get(path)
    head = client.head(path)
    assert head.status_code == got.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"]


def test_other_methods_are_still_refused(client: TestClient) -> None:
    assert client.request("OPTIONS", "/fhir/metadata").status_code == 405
