"""A single REST write (pipeline mode and plain parameters on PostgreSQL) keeps its guarantees.

One resource's write runs its statements in psycopg's pipeline mode with plain parameters
(``docs/decisions/0021-single-write-pipeline.md``). Whatever the database, a create, an
update and a delete must leave the right current row, history and index rows, and exactly
one AuditEvent committed with the write; a version that changed since it was read must be
refused with nothing written; a racing create of the same id must be refused. A DELETE of
what does not exist (answered on the event loop) must still be audited and gated.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from sharedcare.api.app import create_app
from sharedcare.config import Settings
from sharedcare.db.engine import create_engine, write_connection
from sharedcare.plugins import hookimpl, plugin_manager
from sharedcare.record.audit import AuditEntry, audit_rows, insert_audit_rows
from sharedcare.record.context import RequestContext
from sharedcare.record.errors import ConcurrentUpdate, VersionConflict
from sharedcare.record.repository import Repository
from sharedcare.record.sqlstore import INDEX_TABLES, SqlStore

OBSERVATION: dict[str, Any] = {
    "resourceType": "Observation",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
    "subject": {"reference": "Patient/p1"},
    "effectiveDateTime": "2024-05-01T10:00:00Z",
    "valueQuantity": {"value": 61.5, "system": "http://unitsofmeasure.org", "code": "/min"},
}


def _scalar(engine: Engine, sql: str, **params: Any) -> Any:
    with engine.connect() as connection:
        return connection.execute(text(sql), params).scalar()


def _index_rows(engine: Engine, resource_id: str) -> int:
    pk = _scalar(engine, "SELECT pk FROM resource WHERE id = :id", id=resource_id)
    return sum(
        _scalar(engine, f"SELECT count(*) FROM {t.name} WHERE res = :pk", pk=pk)
        for t in INDEX_TABLES.values()
    )


def test_create_update_delete_write_rows_history_and_one_audit_each(engine: Engine) -> None:
    store = SqlStore(engine)
    repo = Repository(store, RequestContext.system())
    created = repo.create(dict(OBSERVATION)).stored
    rid = created.id
    assert created.version_id == 1
    assert _index_rows(engine, rid) >= 4
    updated = repo.update(
        "Observation", rid, {**OBSERVATION, "id": rid, "status": "amended"}, if_match='W/"1"'
    ).stored
    assert updated.version_id == 2
    assert repo.read("Observation", rid).json()["status"] == "amended"
    history = "SELECT count(*) FROM resource_history WHERE id = :id"
    assert _scalar(engine, history, id=rid) == 1
    assert _index_rows(engine, rid) >= 4
    # A stale If-Match is refused and writes nothing.
    with pytest.raises(VersionConflict):
        repo.update("Observation", rid, {**OBSERVATION, "id": rid}, if_match='W/"1"')
    assert repo.read("Observation", rid).version_id == 2
    deleted = repo.delete("Observation", rid)
    assert deleted is not None and deleted.version_id == 3 and deleted.deleted
    assert _index_rows(engine, rid) == 0
    assert _scalar(engine, history, id=rid) == 2
    audits = "SELECT count(*) FROM audit_event WHERE interaction = :i AND outcome = '0'"
    assert _scalar(engine, audits, i="create") == 1
    assert _scalar(engine, audits, i="update") == 1
    assert _scalar(engine, audits, i="delete") == 1


def test_a_write_whose_version_changed_is_refused_with_nothing_written(engine: Engine) -> None:
    store = SqlStore(engine)
    repo = Repository(store, RequestContext.system())
    rid = repo.create(dict(OBSERVATION)).stored.id
    stale = repo.prepare({**OBSERVATION, "id": rid}, id=rid, version_id=3, now=5, existed=True)
    rows = audit_rows(RequestContext.system(), [AuditEntry("update", "0", "Observation", rid)])
    before = _scalar(engine, "SELECT count(*) FROM audit_event")
    with (
        pytest.raises(ConcurrentUpdate),
        write_connection(engine) as connection,
        store.pipelined(connection, [stale]),
    ):
        store.apply(connection, [stale])
        insert_audit_rows(connection, rows)
    assert repo.read("Observation", rid).version_id == 1
    assert _scalar(engine, "SELECT count(*) FROM audit_event") == before + 1  # the read's


def test_a_racing_create_of_the_same_id_is_refused_in_pipeline_mode(engine: Engine) -> None:
    store = SqlStore(engine)
    repo = Repository(store, RequestContext.system())
    one = repo.prepare(dict(OBSERVATION), id="same", version_id=1, now=1_000, existed=False)
    two = repo.prepare(dict(OBSERVATION), id="same", version_id=1, now=2_000, existed=False)
    for write, fails in ((one, False), (two, True)):
        rows = audit_rows(RequestContext.system(), [AuditEntry("create", "0", "Observation")])
        try:
            with write_connection(engine) as connection, store.pipelined(connection, [write]):
                store.apply(connection, [write])
                insert_audit_rows(connection, rows)
        except ConcurrentUpdate:
            assert fails
        else:
            assert not fails
    assert _scalar(engine, "SELECT last_updated FROM resource WHERE id = 'same'") == 1_000
    assert _scalar(engine, "SELECT count(*) FROM audit_event") == 1


class _RefuseDeletes:
    @hookimpl
    def check_access(
        self, context: Any, interaction: str, resource_type: str | None, resource_id: str | None
    ) -> str | None:
        if interaction == "delete" and resource_id == "guarded":
            return "deleting this is not allowed"
        return None


@pytest.fixture
def refuse_deletes() -> Iterator[None]:
    plugin = _RefuseDeletes()
    plugin_manager().register(plugin, name="test-refuse-deletes")
    try:
        yield
    finally:
        plugin_manager().unregister(plugin)


def test_deletes_of_absent_resources_are_gated_and_audited(
    database: str, refuse_deletes: None
) -> None:
    with TestClient(create_app(Settings(database_url=database))) as client:
        absent = client.delete("/fhir/Observation/no-such")
        assert absent.status_code == 204 and "etag" not in absent.headers
        refused = client.delete("/fhir/Observation/guarded")
        assert refused.status_code == 403
        assert refused.json()["resourceType"] == "OperationOutcome"
        unknown = client.delete("/fhir/NoSuchType/x")
        assert unknown.status_code in {400, 404}
        assert unknown.json()["resourceType"] == "OperationOutcome"
        put = client.put("/fhir/Observation/o1", json={**OBSERVATION, "id": "o1"})
        assert put.status_code == 201
        first = client.delete("/fhir/Observation/o1")
        assert first.status_code == 204 and first.headers["etag"] == 'W/"2"'
        again = client.delete("/fhir/Observation/o1")  # already deleted: nothing written
        assert again.status_code == 204 and again.headers["etag"] == 'W/"2"'
        assert client.get("/fhir/Observation/o1").status_code == 410
    engine = create_engine(database)
    try:
        events = "SELECT count(*) FROM audit_event WHERE interaction = 'delete' AND outcome = :o"
        assert _scalar(engine, events, o="0") == 3  # absent, the deletion, already deleted
        assert _scalar(engine, events, o="4") == 2  # refused; the type that is not R4
        assert _scalar(engine, "SELECT max(version_id) FROM resource_history") == 1
    finally:
        engine.dispose()


def test_a_write_in_its_own_transaction_has_committed_when_its_block_ends(engine: Engine) -> None:
    # On PostgreSQL the COMMIT travels in the write's pipeline: another connection sees the
    # row as soon as the block ends, before the caller's transaction context closes.
    store = SqlStore(engine)
    repo = Repository(store, RequestContext.system())
    write = repo.prepare(dict(OBSERVATION), id="own", version_id=1, now=1_000, existed=False)
    rows = audit_rows(RequestContext.system(), [AuditEntry("create", "0", "Observation", "own")])
    with write_connection(engine) as connection:
        with store.pipelined(connection, [write], commit=True):
            store.apply(connection, [write])
            insert_audit_rows(connection, rows)
        if engine.dialect.name == "postgresql":
            assert _scalar(engine, "SELECT count(*) FROM resource WHERE id = 'own'") == 1
            assert _scalar(engine, "SELECT count(*) FROM audit_event") == 1
    assert _scalar(engine, "SELECT count(*) FROM resource WHERE id = 'own'") == 1
    assert _index_rows(engine, "own") >= 4
    assert _scalar(engine, "SELECT count(*) FROM audit_event") == 1


def test_a_failing_write_in_its_own_transaction_commits_nothing(engine: Engine) -> None:
    store = SqlStore(engine)
    repo = Repository(store, RequestContext.system())
    first = repo.prepare(dict(OBSERVATION), id="dup", version_id=1, now=1_000, existed=False)
    again = repo.prepare(dict(OBSERVATION), id="dup", version_id=1, now=2_000, existed=False)
    for write, fails in ((first, False), (again, True)):
        rows = audit_rows(RequestContext.system(), [AuditEntry("create", "0", "Observation")])
        try:
            with (
                write_connection(engine) as connection,
                store.pipelined(connection, [write], commit=True),
            ):
                store.apply(connection, [write])
                insert_audit_rows(connection, rows)
        except ConcurrentUpdate:  # the racing create, whether seen at once or at the COMMIT
            assert fails
        else:
            assert not fails
    assert _scalar(engine, "SELECT last_updated FROM resource WHERE id = 'dup'") == 1_000
    assert _scalar(engine, "SELECT count(*) FROM audit_event") == 1
    pk = _scalar(engine, "SELECT pk FROM resource WHERE id = 'dup'")
    # The refused create's index rows (keyed by the sequence value it drew) are not there.
    orphans = sum(
        _scalar(engine, f"SELECT count(*) FROM {t.name} WHERE res <> :pk", pk=pk)
        for t in INDEX_TABLES.values()
    )
    assert orphans == 0


def test_writes_leave_pooled_connections_with_custom_plans(database: str) -> None:
    # A write's statements run with generic plans (SET LOCAL): searches on the same pooled
    # connections afterwards must still get custom plans (sharedcare.db.engine).
    if not database.startswith("postgresql"):
        pytest.skip("plan_cache_mode is PostgreSQL's")
    engine = create_engine(database, pool_size=1)
    try:
        store = SqlStore(engine)
        repo = Repository(store, RequestContext.system())
        rid = repo.create(dict(OBSERVATION)).stored.id
        repo.update("Observation", rid, {**OBSERVATION, "id": rid, "status": "amended"})
        with engine.connect() as connection:
            mode = connection.execute(text("SHOW plan_cache_mode")).scalar()
        assert mode == "force_custom_plan"
    finally:
        engine.dispose()


def test_an_update_as_create_and_a_no_change_update_on_the_locked_path(engine: Engine) -> None:
    store = SqlStore(engine)
    repo = Repository(store, RequestContext.system())
    made = repo.update("Observation", "put-1", {**OBSERVATION, "id": "put-1"})
    assert made.created and made.stored.version_id == 1
    same = repo.update("Observation", "put-1", {**OBSERVATION, "id": "put-1"})
    assert not same.created and same.stored.version_id == 1
    changed = repo.update(
        "Observation", "put-1", {**OBSERVATION, "id": "put-1", "status": "amended"}
    )
    assert not changed.created and changed.stored.version_id == 2
    repo.delete("Observation", "put-1")
    revived = repo.update("Observation", "put-1", {**OBSERVATION, "id": "put-1"})
    assert revived.created and revived.stored.version_id == 4
    assert _index_rows(engine, "put-1") >= 4
    audits = "SELECT count(*) FROM audit_event WHERE interaction = :i AND outcome = '0'"
    assert _scalar(engine, audits, i="create") == 2  # the first PUT and the revival
    assert _scalar(engine, audits, i="update") == 2  # the unchanged one and the change
    with pytest.raises(VersionConflict):
        repo.update("Observation", "put-1", {**OBSERVATION, "id": "put-1"}, if_match='W/"3"')
    assert repo.read("Observation", "put-1").version_id == 4
