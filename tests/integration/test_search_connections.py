"""The API server's search connections are kept between searches, and closed with it.

On PostgreSQL a search runs on the API server's asyncio engine, and a finished search's
connection is kept for the next (``sharedcare.record.search.connections``,
``docs/decisions/0028-search-audit-on-the-loop.md``). These tests hold it to what the pool
did: searches keep working across kept connections (failed ones included), no more are
kept than the pool's size, and none is left open when the application stops.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from sharedcare.api.app import create_app
from sharedcare.config import Settings
from sharedcare.db.engine import create_engine
from sharedcare.record.search import connections

HEADERS = {"Content-Type": "application/fhir+json", "X-Sharedcare-User": "kept-tests"}


def _backends(database: str) -> int:
    """Connections to ``database`` other than the one asking."""
    engine = create_engine(database)
    try:
        with engine.connect() as connection:
            return int(
                connection.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid != pg_backend_pid()"
                    )
                ).scalar()
                or 0
            )
    finally:
        engine.dispose()


def test_search_connections_are_kept_and_closed_with_the_app(database: str) -> None:
    if not database.startswith("postgresql"):
        pytest.skip("searches run on the event loop on PostgreSQL only")
    app = create_app(Settings(database_url=database, db_pool_size=2))
    with TestClient(app, headers=HEADERS) as client:
        rid = client.post("/fhir/Patient", json={"resourceType": "Patient"}).json()["id"]
        for _ in range(5):
            # A search that fails hands its connection back to the pool, and the next
            # search still works.
            assert client.get("/fhir/Patient?birthdate=2020-13-45").status_code == 400
            body: Any = client.get(f"/fhir/Patient?_id={rid}").json()
            assert [e["resource"]["id"] for e in body["entry"]] == [rid]
        engine = app.state.search_engine.sync_engine
        kept = connections._kept[engine]
        assert 1 <= len(kept.free) <= kept.keep == 2
    assert engine not in connections._kept
    assert kept.closed and not kept.free
    assert _backends(database) == 0
