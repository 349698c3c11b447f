"""Integration: migration 0012 moves ``_source`` from ``idx_uri`` rows to the resource row
and drops the rows of narrowed reference parameters (``Observation.patient``).

Resources are written at head (no such rows), the database is downgraded to 0010 (which must
rebuild the rows the 0010 store wrote: one ``_source`` row per live resource with a string
``meta.source``, the index extraction's rows for every narrowed parameter), the 0010 search
SQL is run on the ``_source`` rows, and after upgrading again every search must answer
exactly as before.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Engine, inspect, or_, select, text

from sharedcare.db.engine import create_engine, write_connection
from sharedcare.db.migrate import alembic_config, current_revision, head_revision, upgrade
from sharedcare.db.tables import IdxUri, Resource, meta_source
from sharedcare.fhir.search_index import ReferenceValue, UriValue, extract_index
from sharedcare.record.context import RequestContext
from sharedcare.record.derived import narrowed_from
from sharedcare.record.repository import Repository
from sharedcare.record.search.clauses import uri_condition
from sharedcare.record.sqlstore import SqlStore
from tests.support.identity import without_realtime_matching

URI: Any = IdxUri.__table__
RES: Any = Resource.__table__
LAB = "http://example.org/feeds/lab"

# (type, id, meta.source or None for the server's default)
RESOURCES = [
    ("Patient", "p1", LAB),
    ("Patient", "p2", None),
    ("Observation", "o1", f"{LAB}/run/1"),
    ("Observation", "o2", LAB),
    ("Observation", "o3", None),
    ("Observation", "o4", "http://other.org/x"),
    ("Observation", "o5", f"{LAB}/run/2"),  # deleted below
    ("Observation", "o6", "urn:uuid:0c3f3b4e-0f5e-4a8e-9c1e-2d1d8d0e6a11"),  # updated below
    ("Group", "g1", None),
]
# Observation subjects: a Patient, a Group, an absolute Patient URL, a typed logical one.
SUBJECTS: dict[str, dict[str, Any]] = {
    "o1": {"reference": "Patient/p1"},
    "o2": {"reference": "Group/g1"},
    "o3": {"reference": "http://elsewhere.org/fhir/Patient/p1"},
    "o4": {"type": "Patient", "identifier": {"system": "urn:x", "value": "42"}},
    "o6": {"reference": "Patient/p2/_history/1"},
}
#: (type, query) pairs on a narrowed parameter (``patient`` reads ``subject`` rows).
NARROWED: list[tuple[str, list[tuple[str, str]]]] = [
    ("Observation", [("patient", "p1")]),
    ("Observation", [("patient", "Patient/p1")]),
    ("Observation", [("patient", "g1")]),
    ("Observation", [("patient", "http://elsewhere.org/fhir/Patient/p1")]),
    ("Observation", [("patient:missing", "true")]),
    ("Observation", [("patient:missing", "false")]),
    ("Observation", [("patient:identifier", "urn:x|42")]),
    ("Observation", [("subject", "p1")]),
    ("Observation", [("patient.name", "x")]),
    ("Patient", [("_has:Observation:patient:status", "final")]),
    ("Observation", [("_sort", "patient")]),
    ("Observation", [("_include", "Observation:patient")]),
]
QUERIES: list[tuple[str, str | None, list[str]]] = [
    ("Observation", None, [LAB]),
    ("Observation", None, [LAB.upper()]),
    ("Observation", None, [LAB, "http://other.org/x"]),
    ("Observation", None, ["http://other.org/y"]),
    ("Observation", "below", ["http://example.org/feeds"]),
    ("Observation", "below", [f"{LAB}/"]),
    ("Observation", "above", [f"{LAB}/run/1/more"]),
    ("Observation", "above", [f"{LAB}/run/2"]),
    ("Patient", None, [LAB]),
    ("Patient", "below", ["urn:sharedcare:source:"]),
]


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no tables yet."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'source.db'}"
        return
    cluster = request.getfixturevalue("postgres_cluster")
    admin = create_engine(cluster.url)
    name = f"source_{tmp_path.name[-20:].replace('-', '_').lower()}"
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    yield str(cluster.url_for(name))


def _write(engine: Engine) -> tuple[SqlStore, Repository]:
    upgrade(engine)
    store = SqlStore(engine)
    store.ensure_params()
    repo = Repository(store, RequestContext.system())
    with without_realtime_matching():
        for rtype, rid, source in RESOURCES:
            resource: dict[str, Any] = {"resourceType": rtype, "id": rid}
            if rtype == "Observation":
                resource |= {"status": "final", "code": {"text": "x"}}
                if rid in SUBJECTS:
                    resource["subject"] = SUBJECTS[rid]
            if rtype == "Group":
                resource |= {"type": "person", "actual": True}
            if rtype == "Patient":
                resource["name"] = [{"family": "x"}]
            if source:
                resource["meta"] = {"source": source}
            repo.update(rtype, rid, resource)
        repo.delete("Observation", "o5")
        repo.update(
            "Observation",
            "o6",
            {"resourceType": "Observation", "id": "o6", "status": "final", "code": {"text": "y"},
             "meta": {"source": f"{LAB}/run/6"}, "subject": SUBJECTS["o6"]},
        )  # fmt: skip
    return store, repo


def _searched(
    repo: Repository, rtype: str, modifier: str | None, values: Sequence[str]
) -> set[str]:
    code = "_source" + (f":{modifier}" if modifier else "")
    page = repo.search(rtype, [(code, ",".join(values)), ("_count", "100")])
    return {m.id for m in page.matches}


def _by_rows(engine: Engine, store: SqlStore, rtype: str, modifier: str | None,
             values: list[str]) -> set[str]:  # fmt: skip
    """The 0010 compiler's semi-join on ``idx_uri``, for live resources of ``rtype``."""
    param = store.param_id(rtype, "_source")
    matching = select(URI.c.res).where(
        URI.c.param == param, or_(*(uri_condition(v, modifier, URI.c.uri) for v in values))
    )
    query = select(RES.c.id).where(
        RES.c.resource_type == rtype, RES.c.deleted.is_(False), RES.c.pk.in_(matching)
    )
    with engine.connect() as c:
        rows = c.execute(query).all()
    return {r[0] for r in rows}


def _source_rows(engine: Engine) -> set[tuple[str, str, str]]:
    with engine.connect() as c:
        return {
            tuple(r)
            for r in c.execute(
                text(
                    "SELECT r.resource_type, r.id, u.uri FROM idx_uri u "
                    "JOIN resource r ON r.pk = u.res "
                    "JOIN search_param p ON p.id = u.param AND p.code = '_source'"
                )
            )
        }


def _narrowed_rows(engine: Engine) -> set[tuple[Any, ...]]:
    with engine.connect() as c:
        return {
            tuple(r)
            for r in c.execute(
                text(
                    "SELECT r.resource_type, r.id, p.code, x.target_type, x.target_id, "
                    "x.version, x.url FROM idx_reference x JOIN resource r ON r.pk = x.res "
                    "JOIN search_param p ON p.id = x.param"
                )
            )
            if narrowed_from(r[0], r[2])
        }


def _expected_narrowed(repo: Repository) -> set[tuple[Any, ...]]:
    """The narrowed parameters' rows the 0010 store wrote: the index extraction's values."""
    out = set()
    for rtype, rid, _ in RESOURCES:
        if (rtype, rid) == ("Observation", "o5"):
            continue
        for v in extract_index(repo.read(rtype, rid).json()):
            if isinstance(v, ReferenceValue) and narrowed_from(rtype, v.param):
                out.add((rtype, rid, v.param, v.target_type or "", v.target_id or "",
                         v.version or "", v.url or ""))  # fmt: skip
    return out


def _narrowed_search(repo: Repository, rtype: str, params: list[tuple[str, str]]) -> set[str]:
    return {m.id for m in repo.search(rtype, [*params, ("_count", "100")]).matches}


def _expected_rows(repo: Repository) -> set[tuple[str, str, str]]:
    """The ``_source`` rows the 0010 store wrote: the index extraction's values."""
    out = set()
    for rtype, rid, _ in RESOURCES:
        if (rtype, rid) == ("Observation", "o5"):
            continue
        resource = repo.read(rtype, rid).json()
        for value in extract_index(resource):
            if isinstance(value, UriValue) and value.param == "_source":
                out.add((rtype, rid, value.uri))
    return out


def _downgrade(engine: Engine, revision: str) -> None:
    config = alembic_config()
    with write_connection(engine) as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def test_source_searches_answer_the_same_before_and_after_0012(url: str) -> None:
    engine = create_engine(url)
    try:
        store, repo = _write(engine)
        assert _source_rows(engine) == set(), "the store writes no _source rows"
        assert _narrowed_rows(engine) == set(), "narrowed parameters store no rows"
        now = {q: _searched(repo, q[0], q[1], q[2]) for q in map(_key, QUERIES)}
        narrowed_now = [_narrowed_search(repo, t, q) for t, q in NARROWED]
        assert narrowed_now[:6] == [
            {"o1", "o3"}, {"o1", "o3"}, set(), {"o1", "o3"}, {"o2"}, {"o1", "o3", "o4", "o6"}
        ]  # fmt: skip
        assert now[_key(("Observation", "below", ["http://example.org/feeds"]))] == {
            "o1", "o2", "o6"
        }  # fmt: skip

        _downgrade(engine, "0010")
        assert current_revision(engine) == "0010"
        assert "ix_resource_source" not in {i["name"] for i in inspect(engine).get_indexes(
            "resource")}  # fmt: skip
        assert _source_rows(engine) == _expected_rows(repo)
        expected = _expected_narrowed(repo)
        assert {r[1] for r in expected if r[2] == "patient"} == {"o1", "o3", "o6"}
        assert _narrowed_rows(engine) == expected
        for q in map(_key, QUERIES):
            assert _by_rows(engine, store, q[0], q[1], list(q[2])) == now[q], q

        upgrade(engine)
        assert current_revision(engine) == head_revision()
        assert _source_rows(engine) == set()
        engine.dispose()
        engine = create_engine(url)
        store = SqlStore(engine)
        store.ensure_params()
        repo = Repository(store, RequestContext.system())
        for q in map(_key, QUERIES):
            assert _searched(repo, q[0], q[1], list(q[2])) == now[q], q
        assert _narrowed_rows(engine) == set()
        assert [_narrowed_search(repo, t, q) for t, q in NARROWED] == narrowed_now
    finally:
        engine.dispose()


def _key(query: tuple[str, str | None, list[str]]) -> tuple[str, str | None, tuple[str, ...]]:
    return query[0], query[1], tuple(query[2])


def test_source_matches_are_ranges_of_the_index(url: str) -> None:
    """The expression a ``_source`` match compares is the indexed one (constants only, the
    same collation), so exact and ``:above`` matches read a range of ``ix_resource_source``
    rather than every resource of the type, and so does ``:below`` on PostgreSQL. (SQLite
    applies its ``LIKE`` optimisation to plain columns only, and its ``LIKE`` ignores ASCII
    case, so ``:below`` there reads the type's resources, as it read all its rows before.)"""
    engine = create_engine(url)
    try:
        upgrade(engine)
        postgres = engine.dialect.name == "postgresql"
        content = (
            "jsonb_build_object('resourceType', 'Observation', 'meta', "
            "jsonb_build_object('source', 'http://s.org/f' || (i % 200)))"
            if postgres
            else "json_object('resourceType', 'Observation', 'meta', "
            "json_object('source', 'http://s.org/f' || (i % 200)))"
        )
        series = (
            "generate_series(1, 20000) AS i"
            if postgres
            else "(WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
            "WHERE i < 20000) SELECT i FROM n)"
        )
        with write_connection(engine) as c:
            c.execute(
                text(
                    "INSERT INTO resource (resource_type, id, version_id, last_updated, "
                    f"deleted, content) SELECT 'Observation', 'o' || i, 1, i, false, {content} "
                    f"FROM {series}"
                )
            )
            c.execute(text("ANALYZE"))
        alias = RES.alias()
        source = meta_source(alias.c.content)
        explain = "EXPLAIN (COSTS OFF) " if postgres else "EXPLAIN QUERY PLAN "
        with engine.connect() as c:
            for modifier, value in [(None, "http://s.org/f7"), ("above", "http://s.org/f7/x"),
                                    ("below", "http://s.org/f19")]:  # fmt: skip
                if modifier == "below" and not postgres:
                    continue
                query = select(alias.c.pk).where(
                    alias.c.resource_type == "Observation",
                    uri_condition(value, modifier, source),
                )
                sql = str(query.compile(engine, compile_kwargs={"literal_binds": True}))
                plan = " ".join(str(r[-1]) for r in c.execute(text(explain + sql)))
                assert "ix_resource_source" in plan, (modifier, plan)
                # A range of the index, not the type's entries filtered one by one.
                if postgres:
                    ranged = "Index Cond" in plan and "source" in plan.split("Index Cond")[1]
                else:
                    ranged = "<expr>" in plan
                assert ranged, (modifier, plan)
    finally:
        engine.dispose()
