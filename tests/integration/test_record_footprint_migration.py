"""Integration: migration 0007 converts index rows written in the 0006 shapes.

Rows are written as the 0006 store wrote them (system URIs, composite JSON, rows for the
``combo-*`` parameters), then the upgrade must leave searches answering exactly as before.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from sqlalchemy import Engine, text

from sharedcare.db.engine import create_engine
from sharedcare.db.migrate import upgrade
from sharedcare.record.context import RequestContext
from sharedcare.record.keys import combination_key, system_key
from sharedcare.record.repository import Repository
from sharedcare.record.sqlstore import SqlStore
from tests.support.postgres import Cluster

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
OBSERVATION = {
    "resourceType": "Observation",
    "id": "o1",
    "status": "final",
    "code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
    "valueQuantity": {"value": 140, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"},
}
COMPONENTS = (
    '[["code-value-quantity","http://loinc.org","8480-6",null],'
    '["code-value-quantity","140","http://unitsofmeasure.org","mm[Hg]","mmHg"]]'
)


@pytest.fixture(params=["sqlite", "postgresql"])
def empty(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine on a database with no tables yet."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
    else:
        cluster: Cluster = request.getfixturevalue("postgres_cluster")
        admin = create_engine(cluster.url)
        name = f"footprint_{tmp_path.name[-20:].replace('-', '_').lower()}"
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        url = cluster.url_for(name)
    engine = create_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


def _write_0006_rows(engine: Engine, store: SqlStore) -> None:
    def pid(code: str) -> int:
        found = store.param_id("Observation", code)
        assert found is not None
        return found

    content = orjson.dumps(OBSERVATION).decode()
    tail = f"'8480-6', '{LOINC}', 'mm[Hg]', '{UCUM}', 'mmHg', 140, NULL, NULL, NULL"
    with engine.begin() as c:
        c.execute(
            text(
                "INSERT INTO resource (pk, resource_type, id, version_id, last_updated, deleted, "
                "content) VALUES (1, 'Observation', 'o1', 1, 1, false, :content)"
            ),
            {"content": content},
        )
        for code in ("code", "combo-code"):
            c.execute(
                text(f"INSERT INTO idx_token VALUES ({pid(code)}, '8480-6', '{LOINC}', 1, '')")
            )
        for code in ("value-quantity", "combo-value-quantity"):
            c.execute(
                text(f"INSERT INTO idx_quantity VALUES ({pid(code)}, 140, 'mm[Hg]', '{UCUM}', "
                     "'mmHg', 1)")
            )  # fmt: skip
        for code in ("code-value-quantity", "combo-code-value-quantity"):
            c.execute(
                text(
                    "INSERT INTO idx_composite (param, components, res, code1, system1, code2, "
                    "system2, unit2, number2, low2, high2, number3) "
                    f"VALUES ({pid(code)}, :components, 1, {tail})"
                ),
                {"components": COMPONENTS},
            )


def test_upgrade_converts_rows_and_searches_answer_the_same(empty: Engine) -> None:
    upgrade(empty, "0006")
    old_store = SqlStore(empty)
    old_store.ensure_params()
    _write_0006_rows(empty, old_store)

    upgrade(empty, "0012")

    store = SqlStore(empty)
    with empty.connect() as c:
        tokens = c.execute(text("SELECT param, code, system_id, res FROM idx_token")).all()
        quantities = c.execute(text("SELECT param, system_id FROM idx_quantity")).all()
        composites = c.execute(text("SELECT param, code1, combo, res FROM idx_composite")).all()
    # The combo-* rows are gone: those parameters read the others' rows.
    assert tokens == [(store.param_id("Observation", "code"), "8480-6", system_key(LOINC), 1)]
    assert quantities == [(store.param_id("Observation", "value-quantity"), system_key(UCUM))]
    assert composites == [
        (store.param_id("Observation", "code-value-quantity"), "8480-6",
         combination_key(COMPONENTS), 1)
    ]  # fmt: skip
    upgrade(empty)  # 0013: code-value-quantity is a pair of code and value-quantity
    with empty.connect() as c:
        assert c.execute(text("SELECT count(*) FROM idx_composite")).scalar_one() == 0

    repo = Repository(store, RequestContext.system())
    for params in (
        [("code", f"{LOINC}|8480-6")],
        [("combo-code", f"{LOINC}|8480-6")],
        [("value-quantity", f"140|{UCUM}|mm[Hg]")],
        [("combo-value-quantity", "ge140")],
        [("code-value-quantity", f"{LOINC}|8480-6$ge140")],
        [("combo-code-value-quantity", "8480-6$140")],
    ):
        page = repo.search("Observation", params)
        assert [m.id for m in page.matches] == ["o1"], params
    assert not repo.search("Observation", [("combo-code", f"{UCUM}|8480-6")]).matches
