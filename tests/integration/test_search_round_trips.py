"""How many SQL statements a search costs, on SQLite and PostgreSQL.

Each statement is a round trip to the database; at a million resources the search mix
(``benchmarks/bench_search.py``) is bound by them rather than by the queries themselves.
A page is one query that returns the resources; ``_include`` / ``_revinclude`` add one query
per step that returns the included resources (never per resource); a count runs only when
the page does not already show every match.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, event

from sharedcare.db.engine import create_engine
from sharedcare.record.context import RequestContext
from sharedcare.record.repository import Repository
from sharedcare.record.sqlstore import SqlStore
from tests.support.identity import without_realtime_matching

PATIENTS = 3
OBSERVATIONS = 4  # per patient


def _data() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"resourceType": "Organization", "id": "org", "name": "Dorset Practice"}
    ]
    for p in range(PATIENTS):
        out.append(
            {
                "resourceType": "Patient",
                "id": f"p{p}",
                "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": f"9{p}"}],
                "managingOrganization": {"reference": "Organization/org"},
            }
        )
        for o in range(OBSERVATIONS):
            out.append(
                {
                    "resourceType": "Observation",
                    "id": f"o{p}-{o}",
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                    "subject": {"reference": f"Patient/p{p}"},
                }
            )
    return out


@pytest.fixture
def repo(engine: Engine) -> Repository:
    store = SqlStore(engine)
    store.ensure_params()
    repository = Repository(store, RequestContext(user="round-trips"))
    with without_realtime_matching():  # exactly _data(): no golden Patients
        for resource in _data():
            repository.update(resource["resourceType"], resource["id"], resource)
    return repository


@pytest.fixture
def selects(engine: Engine) -> Iterator[list[str]]:
    """The SELECT statements run while the test runs (not the audit's INSERT).

    On PostgreSQL they are counted at the driver, where searches send their statements
    without SQLAlchemy's ``execute`` (``sharedcare.record.search.execute.fetch_rows``):
    every cursor of the engine's connections records what it runs."""
    seen: list[str] = []

    def record(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append(statement)

    if engine.dialect.name != "postgresql":
        event.listen(engine, "before_cursor_execute", record)
        try:
            yield seen
        finally:
            event.remove(engine, "before_cursor_execute", record)
        return

    class Recording(psycopg.Cursor[Any]):
        def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
            text = query.decode() if isinstance(query, bytes) else str(query)
            record(None, self, text)
            return super().execute(query, *args, **kwargs)

    def checkout(connection: Any, *_: Any) -> None:
        connection.cursor_factory = Recording

    event.listen(engine, "checkout", checkout)
    try:
        yield seen
    finally:
        event.remove(engine, "checkout", checkout)
        engine.dispose()  # no connection keeps the recording cursor


def _search(repo: Repository, resource_type: str, query: str) -> Any:
    params = [(name, value) for name, value in (p.split("=", 1) for p in query.split("&"))]
    return repo.search(resource_type, params)


@pytest.mark.parametrize(
    ("resource_type", "query", "matches", "included", "statements"),
    [
        ("Patient", "identifier=https://fhir.nhs.uk/Id/nhs-number|91", 1, 0, 1),
        ("Observation", "subject=Patient/p1&code=http://loinc.org|8867-4", OBSERVATIONS, 0, 1),
        ("Observation", "subject:Patient.identifier=91", OBSERVATIONS, 0, 1),
        ("Observation", "code=8867-4&_total=none&_count=2", 2, 0, 1),
        ("Observation", "subject=Patient/p1&_include=Observation:subject", OBSERVATIONS, 1, 2),
        ("Patient", "_id=p1&_revinclude=Observation:subject", 1, OBSERVATIONS, 2),
        (
            "Observation",
            "subject=Patient/p1&_include=Observation:subject&_include:iterate=Patient:organization",
            OBSERVATIONS,
            2,
            3,
        ),
        ("Observation", "code=8867-4&_count=2", 2, 0, 2),  # a page, then the count
    ],
)
def test_statements_per_search(
    repo: Repository,
    selects: list[str],
    resource_type: str,
    query: str,
    matches: int,
    included: int,
    statements: int,
) -> None:
    _search(repo, resource_type, query)  # warm: parameter ids, collation
    selects.clear()
    page = _search(repo, resource_type, query)
    assert len(page.matches) == matches
    assert len(page.included) == included
    assert len(selects) == statements, selects


def test_counts_agree_with_pages(repo: Repository) -> None:
    """The count (one index scan, or several ANDed) is the number of matches paged through."""
    for query in ("code=8867-4", "code=8867-4&subject=Patient/p2", "subject=Patient/p0"):
        page = _search(repo, "Observation", query + "&_count=1")
        count = _search(repo, "Observation", query + "&_summary=count")
        shown = 1
        while page.next_cursor:
            page = _search(repo, "Observation", f"{query}&_count=1&_cursor={page.next_cursor}")
            shown += len(page.matches)
        assert page.total == count.total == shown


def test_postgresql_plans_with_the_values(postgres_url: str) -> None:
    """Prepared statements must not fall back to generic plans: a search's plan depends on
    how many rows its values match (see ``sharedcare.db.engine``)."""
    engine = create_engine(postgres_url)
    try:
        with engine.connect() as connection:
            mode = connection.exec_driver_sql("SHOW plan_cache_mode").scalar()
    finally:
        engine.dispose()
    assert mode == "force_custom_plan"


def test_whole_type_count_leaves_out_deleted(repo: Repository) -> None:
    """With no parameters the count is of the type's rows less its deleted ones."""
    repo.delete("Observation", "o0-0")
    repo.delete("Patient", "p2")
    count = _search(repo, "Observation", "_summary=count")
    total = _search(repo, "Observation", "_total=accurate&_count=1")
    assert count.total == total.total == PATIENTS * OBSERVATIONS - 1
    assert _search(repo, "Patient", "_summary=count").total == PATIENTS - 1
