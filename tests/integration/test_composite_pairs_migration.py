"""Integration: migration 0013 drops the rows of composites that are pairs of other
parameters (``Observation.code-value-quantity`` and ``code-value-concept``).

Resources are written at head (no such rows), the database is downgraded to 0012 (which
must rebuild exactly the rows the 0012 store wrote: the index extraction's combinations for
every live Observation, which are also every pair of its ``code`` and ``value-*`` values),
the 0012 search SQL is run on those rows, and after upgrading again every search must answer
exactly as before, on both databases.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import product
from pathlib import Path
from typing import Any

import orjson
import pytest
from alembic import command
from sqlalchemy import Engine, or_, select, text

from sharedcare.db.engine import create_engine, write_connection
from sharedcare.db.migrate import alembic_config, current_revision, head_revision, upgrade
from sharedcare.db.tables import IdxComposite, Resource
from sharedcare.fhir.definitions import search_parameters
from sharedcare.fhir.search_index import CompositeValue, extract_index
from sharedcare.record.context import RequestContext
from sharedcare.record.derived import composite_pair
from sharedcare.record.repository import Repository
from sharedcare.record.search.composite import composite_condition
from sharedcare.record.sqlstore import SqlStore
from sharedcare.record.store_rows import index_row
from tests.support.identity import without_realtime_matching

COMPOSITE: Any = IdxComposite.__table__
RES: Any = Resource.__table__
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
SNOMED = "http://snomed.info/sct"


def _q(value: float, code: str = "mm[Hg]", unit: str = "mmHg") -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": code}


def _obs(oid: str, code: dict[str, Any], **rest: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "status": "final", "code": code, **rest}


SYS = {
    "coding": [
        {"system": LOINC, "code": "8480-6", "display": "Systolic"},
        {"system": "http://example.org/codes", "code": "sbp"},
    ],
    "text": "SBP",
}
SMOKING = {"coding": [{"system": LOINC, "code": "72166-2"}]}
RESOURCES = [
    _obs("o1", SYS, valueQuantity=_q(150)),
    _obs("o2", {"coding": [{"code": "8480-6"}]}, valueQuantity={"value": 120, "unit": "mmHg"}),
    _obs("o3", SYS, valueQuantity=_q(18.7, "kPa", "kPa")),
    _obs("o4", SYS, valueSampledData={"origin": _q(150), "period": 1, "dimensions": 1}),
    _obs("o5", SMOKING, valueCodeableConcept={
        "coding": [{"system": SNOMED, "code": "77176002"}, {"code": "smoker"}], "text": "Yes"}),
    _obs("o6", SMOKING, valueString="yes"),
    _obs("o7", {"text": "panel"}, valueQuantity=_q(99), component=[
        {"code": SMOKING, "valueQuantity": _q(1)}]),
    _obs("o8", SYS, valueQuantity=_q(130)),  # deleted below
    _obs("o9", SYS, valueQuantity=_q(110)),  # updated below
    _obs("o10", SMOKING, valueDateTime="2024-05-01"),
]  # fmt: skip
QUERIES: list[tuple[str, str]] = [
    ("code-value-quantity", f"{LOINC}|8480-6$gt140"),
    ("code-value-quantity", "8480-6$le150"),
    ("code-value-quantity", "|8480-6$120"),
    ("code-value-quantity", f"sbp$gt0|{UCUM}|kPa"),
    ("code-value-quantity", "8480-6$120||mmHg,8480-6$115"),
    ("code-value-quantity", "8480-6$130"),
    ("code-value-quantity:missing", "true"),
    ("code-value-quantity:missing", "false"),
    ("code-value-concept", f"72166-2${SNOMED}|77176002"),
    ("code-value-concept", "72166-2$|smoker"),
    ("code-value-concept", "8480-6$smoker"),
    ("code-value-concept:missing", "false"),
    ("combo-code-value-quantity", "72166-2$1"),
    ("combo-code-value-quantity", "8480-6$ge150"),
]


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no tables yet."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'pairs.db'}"
        return
    cluster = request.getfixturevalue("postgres_cluster")
    admin = create_engine(cluster.url)
    name = f"pairs_{tmp_path.name[-20:].replace('-', '_').lower()}"
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    yield str(cluster.url_for(name))


def _repository(engine: Engine) -> tuple[SqlStore, Repository]:
    store = SqlStore(engine)
    store.ensure_params()
    return store, Repository(store, RequestContext.system())


def _write(engine: Engine) -> tuple[SqlStore, Repository]:
    upgrade(engine)
    store, repo = _repository(engine)
    with without_realtime_matching():
        for resource in RESOURCES:
            repo.update("Observation", resource["id"], resource)
        repo.delete("Observation", "o8")
        repo.update("Observation", "o9", _obs("o9", SYS, valueQuantity=_q(115)))
    return store, repo


def _search(repo: Repository, code: str, value: str) -> set[str]:
    page = repo.search("Observation", [(code, value), ("_count", "100")])
    return {m.id for m in page.matches}


def _pair_params(engine: Engine) -> dict[int, str]:
    with engine.connect() as c:
        rows = c.execute(text("SELECT id, resource_type, code FROM search_param")).all()
    return {pk: code for pk, rtype, code in rows if composite_pair(rtype, code)}


def _pair_rows(engine: Engine) -> set[tuple[Any, ...]]:
    params = _pair_params(engine)
    with engine.connect() as c:
        rows = c.execute(select(COMPOSITE).where(COMPOSITE.c.param.in_(list(params)))).all()
    return {tuple(r) for r in rows}


def _live(engine: Engine) -> dict[str, tuple[int, dict[str, Any]]]:
    """Live Observations: id -> (pk, JSON)."""
    with engine.connect() as c:
        rows = c.execute(
            select(RES.c.id, RES.c.pk, RES.c.content).where(RES.c.deleted.is_(False))
        ).all()
    return {
        rid: (pk, content if isinstance(content, dict) else orjson.loads(content))
        for rid, pk, content in rows
    }


def _expected(engine: Engine) -> tuple[set[Any], set[Any]]:
    """The rows the 0012 store wrote (the extraction's combinations), and every pair of the
    two parameters' extracted values on each resource, as rows."""
    ids = {code: pk for pk, code in _pair_params(engine).items()}
    written, pairs = set(), set()
    for pk, resource in _live(engine).values():
        values = extract_index(resource)
        for value in values:
            if isinstance(value, CompositeValue) and value.param in ids:
                written.add(index_row(value, ids[value.param], pk))
        for code, param in ids.items():
            pair = composite_pair("Observation", code)
            assert pair is not None
            first = [v._replace(param=code) for v in values if v[0] == pair[0]]
            second = [v._replace(param=code) for v in values if v[0] == pair[1]]
            for combo in product(first, second):
                pairs.add(index_row(CompositeValue(code, combo), param, pk))
    return written, pairs


def _by_rows(engine: Engine, store: SqlStore, code: str, value: str) -> set[str]:
    """The 0012 compiler's semi-join on ``idx_composite`` (and its ``:missing``)."""
    name = code
    code, _, modifier = code.partition(":")
    if code.startswith("combo-"):
        codes = [code.removeprefix("combo-"), f"component-{code.removeprefix('combo-')}"]
    else:
        codes = [code]
    params = [store.param_id("Observation", c) for c in codes]
    rows = select(COMPOSITE.c.res).where(COMPOSITE.c.param.in_(params))
    if modifier != "missing":
        definition = search_parameters("Observation")[code]
        conditions = [composite_condition(definition, v, name) for v in value.split(",")]
        rows = rows.where(or_(*conditions))
    matched = RES.c.pk.in_(rows)
    if modifier == "missing" and value == "true":
        matched = ~matched
    query = select(RES.c.id).where(
        RES.c.resource_type == "Observation", RES.c.deleted.is_(False), matched
    )
    with engine.connect() as c:
        return {r[0] for r in c.execute(query)}


def _downgrade(engine: Engine, revision: str) -> None:
    config = alembic_config()
    with write_connection(engine) as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def test_pair_searches_answer_the_same_before_and_after_0013(url: str) -> None:
    engine = create_engine(url)
    try:
        store, repo = _write(engine)
        assert set(_pair_params(engine).values()) == {"code-value-quantity", "code-value-concept"}
        assert _pair_rows(engine) == set(), "the store writes no rows for pairs"
        with engine.connect() as c:
            others = c.execute(text("SELECT count(*) FROM idx_composite")).scalar_one()
        assert others >= 3, "code-value-string, -date and the component composites keep theirs"
        now = {q: _search(repo, *q) for q in QUERIES}
        assert now[QUERIES[0]] == {"o1"}
        assert now[("code-value-quantity:missing", "true")] == {"o4", "o5", "o6", "o10"}

        _downgrade(engine, "0012")
        assert current_revision(engine) == "0012"
        written, pairs = _expected(engine)
        # code-value-quantity: o1, o3, o9 (two codings and a text) 3 each, o2 and o7 1 each;
        # code-value-concept: o5 (one coding; two codings and a text) 3. Not o4 (SampledData).
        assert len(written) == 3 * 3 + 2 + 3
        assert written == pairs, "the combinations are exactly the pairs"
        assert _pair_rows(engine) == written
        for q in QUERIES:
            assert _by_rows(engine, store, *q) == now[q], q

        upgrade(engine)
        assert current_revision(engine) == head_revision()
        assert _pair_rows(engine) == set()
        engine.dispose()
        engine = create_engine(url)
        store, repo = _repository(engine)
        for q in QUERIES:
            assert _search(repo, *q) == now[q], q
    finally:
        engine.dispose()
