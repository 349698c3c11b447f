"""Integration: migration 0014 stores PostgreSQL's resources as ``json`` and gives its token
and reference rows value indexes in place of their primary keys; its downgrade restores
``jsonb`` and the keys.

SQLite keeps its text column and its keys (tables stored WITHOUT ROWID in key order), so
there the migration changes nothing. On PostgreSQL, rows are written at head, searched, then
the database is downgraded (a duplicate row, which only the keys would refuse, must go) and
upgraded again; searches answer the same throughout.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Engine, inspect, text

from sharedcare.db.engine import create_engine, write_connection
from sharedcare.db.migrate import alembic_config, current_revision, head_revision, upgrade
from sharedcare.record.context import RequestContext
from sharedcare.record.repository import Repository
from sharedcare.record.sqlstore import SqlStore
from tests.support.identity import without_realtime_matching

LOINC = "http://loinc.org"
SEARCHES: list[tuple[str, list[tuple[str, str]]]] = [
    ("Observation", [("code", f"{LOINC}|8480-6")]),
    ("Observation", [("code", "8867-4")]),
    ("Observation", [("code", f"{LOINC}|")]),
    ("Observation", [("code:text", "heart")]),
    ("Observation", [("status", "final"), ("subject", "Patient/p1")]),
    ("Observation", [("subject", "p2")]),
    ("Observation", [("subject:missing", "true")]),
    ("Observation", [("subject.name", "smith")]),
    ("Patient", [("_has:Observation:subject:code", "8867-4")]),
    ("Observation", [("_sort", "code"), ("status", "final")]),
]


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no tables yet."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'values.db'}"
        return
    cluster = request.getfixturevalue("postgres_cluster")
    admin = create_engine(cluster.url)
    name = f"values_{tmp_path.name[-20:].replace('-', '_').lower()}"
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    yield str(cluster.url_for(name))


def _write(engine: Engine) -> Repository:
    upgrade(engine)
    store = SqlStore(engine)
    store.ensure_params()
    repo = Repository(store, RequestContext.system())
    with without_realtime_matching():
        for n, family in ((1, "Smith"), (2, "Jones")):
            repo.update(
                "Patient", f"p{n}", {"resourceType": "Patient", "id": f"p{n}",
                                     "name": [{"family": family}]},
            )  # fmt: skip
        vitals = [("8480-6", "Systolic blood pressure"), ("8867-4", "Heart rate")]
        for n in range(12):
            code, display = vitals[n % 2]
            resource: dict[str, Any] = {
                "resourceType": "Observation",
                "id": f"o{n}",
                "status": "final" if n % 3 else "amended",
                "code": {"coding": [{"system": LOINC, "code": code, "display": display}]},
            }
            if n % 4:
                resource["subject"] = {"reference": f"Patient/p{1 + n % 2}"}
            repo.update("Observation", f"o{n}", resource)
        repo.delete("Observation", "o5")
    return repo


def _answers(repo: Repository) -> list[list[str]]:
    return [
        [m.id for m in repo.search(rtype, [*params, ("_count", "100")]).matches]
        for rtype, params in SEARCHES
    ]


def _shape(engine: Engine, table: str) -> tuple[list[str], set[str]]:
    inspector = inspect(engine)
    key = inspector.get_pk_constraint(table)["constrained_columns"]
    return key, {str(i["name"]) for i in inspector.get_indexes(table)}


def _resource_key(engine: Engine) -> list[list[str]]:
    """The columns of ``resource``'s unique keys."""
    return [u["column_names"] for u in inspect(engine).get_unique_constraints("resource")]


def _document_types(engine: Engine) -> set[str]:
    """The types of the two tables' ``content`` columns."""
    columns = inspect(engine).get_columns
    return {
        str(c["type"]).lower()
        for table in ("resource", "resource_history")
        for c in columns(table)
        if c["name"] == "content"
    }


def _downgrade(engine: Engine, revision: str) -> None:
    config = alembic_config()
    with write_connection(engine) as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def test_value_indexes_on_postgresql_and_keys_after_a_downgrade(url: str) -> None:
    engine = create_engine(url)
    try:
        repo = _write(engine)
        before = _answers(repo)
        assert sorted(before[0]) == ["o0", "o10", "o2", "o4", "o6", "o8"]
        assert before[8] == ["p2"]
        postgres = engine.dialect.name == "postgresql"
        token_key, token_indexes = _shape(engine, "idx_token")
        reference_key, reference_indexes = _shape(engine, "idx_reference")
        assert _document_types(engine) == ({"json"} if postgres else {"text"})
        assert _resource_key(engine) == [
            ["id", "resource_type"] if postgres else ["resource_type", "id"]
        ]
        if postgres:
            assert (token_key, reference_key) == ([], [])
            assert "ix_idx_token_value" in token_indexes
            assert "ix_idx_reference_value" in reference_indexes
        else:
            assert token_key == ["param", "code", "system_id", "res", "text"]
            assert reference_key[:2] == ["param", "target_id"]
            assert "ix_idx_token_value" not in token_indexes

        with engine.begin() as connection:
            count = connection.execute(text("SELECT count(*) FROM idx_token")).scalar_one()
            if postgres:  # only a key refuses a second copy of a row
                connection.execute(text("INSERT INTO idx_token SELECT * FROM idx_token LIMIT 1"))
                connection.execute(
                    text("INSERT INTO idx_reference SELECT * FROM idx_reference LIMIT 1")
                )
        assert _answers(repo) == before, "a duplicate row changes no answer"

        _downgrade(engine, "0013")
        assert current_revision(engine) == "0013"
        assert _shape(engine, "idx_token")[0] == ["param", "code", "system_id", "res", "text"]
        assert "ix_idx_token_value" not in _shape(engine, "idx_token")[1]
        assert "ix_idx_reference_value" not in _shape(engine, "idx_reference")[1]
        assert _document_types(engine) == ({"jsonb"} if postgres else {"text"})
        assert _resource_key(engine) == [["resource_type", "id"]]
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM idx_token")).scalar_one() == count
        assert _answers(repo) == before

        upgrade(engine)
        assert current_revision(engine) == head_revision()
        engine.dispose()
        engine = create_engine(url)
        store = SqlStore(engine)
        store.ensure_params()
        assert _answers(Repository(store, RequestContext.system())) == before
        if postgres:
            assert _shape(engine, "idx_token")[0] == []
    finally:
        engine.dispose()
