"""A Patient update that leaves every matching value alone keeps its place (decision 0020,
2026-11-22): its link keeps its decision and moves to the new version, nothing is scored and
no trail row is written; survivorship still sees the newer update time, in this process and
in another that catches up. On SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from sharedcare.api.app import create_app
from sharedcare.config import Settings
from sharedcare.db.tables import IdentityLink, IdentityTrail
from sharedcare.identity.batch import link_all, sync_patients
from sharedcare.identity.nhs_number import NHS_NUMBER_SYSTEM
from sharedcare.identity.service import IdentityService
from sharedcare.record.sqlstore import SqlStore
from tests.support.identity import without_realtime_matching

NHS = "9434765919"
GP = {"X-Sharedcare-User": "gp-system", "X-Sharedcare-Organisation": "Y0001"}
PHONE = [{"system": "phone", "value": "01202 000000"}]


def patient(pid: str, postcode: str = "BH1 1AA", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "identifier": [{"system": NHS_NUMBER_SYSTEM, "value": NHS}],
        "name": [{"use": "official", "family": "Tester", "given": ["Alexandra"]}],
        "gender": "female",
        "birthDate": "1965-04-12",
        "address": [{"use": "home", "line": ["1 High Street"], "postalCode": postcode}],
        **extra,
    }


@pytest.fixture
def client(database: str) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(database_url=database))) as client:
        yield client


def _state(client: TestClient) -> tuple[Engine, SqlStore]:
    app: Any = client.app
    return app.state.engine, app.state.store


def _link(engine: Engine, source_id: str) -> Any:
    with engine.connect() as connection:
        return connection.execute(
            select(IdentityLink.__table__).where(IdentityLink.source_id == source_id)
        ).one()


def _trail_rows(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.scalar(select(func.count()).select_from(IdentityTrail)) or 0)


def test_an_update_leaving_matching_values_alone_keeps_its_decision(client: TestClient) -> None:
    engine, store = _state(client)
    assert client.put("/fhir/Patient/gp-a", json=patient("gp-a"), headers=GP).status_code == 201
    first = _link(engine, "gp-a")
    golden = client.get(f"/fhir/Patient/{first.golden_id}").json()
    trail = _trail_rows(engine)

    again = patient("gp-a", telecom=PHONE, language="cy")
    assert client.put("/fhir/Patient/gp-a", json=again, headers=GP).status_code == 200
    second = _link(engine, "gp-a")
    assert second.source_version == 2
    assert second.changed > first.changed  # other processes re-read it when they catch up
    for column in ("golden_id", "kind", "band", "decided_at", "match_weight", "evidence"):
        assert getattr(second, column) == getattr(first, column), column
    assert _trail_rows(engine) == trail
    # Alone in its golden record, the source cannot change it: not rewritten.
    assert client.get(f"/fhir/Patient/{first.golden_id}").json()["meta"] == golden["meta"]
    assert link_all(engine, store).matched == 0

    # A change to a matching value is matched again as before.
    moved = patient("gp-a", postcode="DT1 1AA", telecom=PHONE)
    assert client.put("/fhir/Patient/gp-a", json=moved, headers=GP).status_code == 200
    third = _link(engine, "gp-a")
    assert third.source_version == 3 and third.decided_at > first.decided_at
    rewritten = client.get(f"/fhir/Patient/{first.golden_id}").json()
    assert rewritten["address"][0]["postalCode"] == "DT1 1AA"


def test_recency_survivorship_sees_an_update_that_changes_no_matching_value(
    client: TestClient,
) -> None:
    engine, store = _state(client)
    assert client.put("/fhir/Patient/gp-a", json=patient("gp-a"), headers=GP).status_code == 201
    pas = patient("pas-b", postcode="DT1 1AA")
    assert client.put("/fhir/Patient/pas-b", json=pas, headers=GP).status_code == 201
    golden_id = _link(engine, "gp-a").golden_id
    assert _link(engine, "pas-b").golden_id == golden_id
    # The address of the most recently updated source survives.
    golden = client.get(f"/fhir/Patient/{golden_id}").json()
    assert golden["address"][0]["postalCode"] == "DT1 1AA"

    other = IdentityService()  # another process's index, loaded before the update
    assert other.warm(engine)

    again = patient("gp-a", telecom=PHONE)
    assert client.put("/fhir/Patient/gp-a", json=again, headers=GP).status_code == 200
    assert _link(engine, "gp-a").source_version == 2
    golden = client.get(f"/fhir/Patient/{golden_id}").json()
    assert golden["address"][0]["postalCode"] == "BH1 1AA"  # gp-a is now the newer
    assert golden["meta"]["versionId"] == "3"

    with other.transaction(engine, store) as work:  # catches up from the changed links
        assert work.service.matcher.golden(golden_id).postcode == "BH1 1AA"
    fresh = IdentityService()
    with fresh.transaction(engine, store) as work:  # rebuilt from the record
        assert work.service.matcher.golden(golden_id).postcode == "BH1 1AA"
    assert link_all(engine, store).matched == 0


def test_a_source_changed_while_no_match_ran_is_placed_again(client: TestClient) -> None:
    """An index loaded after the change holds the new values: they are not taken as the
    ones the link was decided on, so the source is placed and its golden record rewritten."""
    engine, store = _state(client)
    assert client.put("/fhir/Patient/gp-a", json=patient("gp-a"), headers=GP).status_code == 201
    first = _link(engine, "gp-a")
    moved = patient("gp-a", postcode="DT1 1AA")
    with without_realtime_matching():  # as if the process died before its match
        assert client.put("/fhir/Patient/gp-a", json=moved, headers=GP).status_code == 200
    assert _link(engine, "gp-a").source_version == 1

    restarted = IdentityService()  # loads gp-a's current (unmatched) version
    with restarted.transaction(engine, store) as work:
        assert sync_patients(work, ["gp-a"]).placed == 1
    second = _link(engine, "gp-a")
    assert second.source_version == 2 and second.decided_at > first.decided_at
    golden = client.get(f"/fhir/Patient/{first.golden_id}").json()
    assert golden["address"][0]["postalCode"] == "DT1 1AA"
