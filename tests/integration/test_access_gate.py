"""Every write path asks the access gate (the ``check_access`` hook), and refusals are audited.

A plugin refuses everything for one user. That user's REST create, update and delete, a
transaction bundle and a bulk load must all be refused with nothing written, and each
refused interaction must leave an AuditEvent with a failure outcome.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from sharedcare.api.app import create_app
from sharedcare.config import Settings
from sharedcare.db.engine import create_engine
from sharedcare.plugins import hookimpl, plugin_manager
from sharedcare.record.context import RequestContext
from sharedcare.record.loader import load_paths
from sharedcare.record.repository import Repository
from sharedcare.record.sqlstore import SqlStore

BLOCKED = "blocked-user"
PATIENT: dict[str, Any] = {"resourceType": "Patient", "gender": "female"}


class RefuseBlockedUser:
    @hookimpl
    def check_access(
        self, context: Any, interaction: str, resource_type: str | None, resource_id: str | None
    ) -> str | None:
        if context.user == BLOCKED:
            return f"{interaction} of {resource_type} is not allowed for this user"
        return None


@pytest.fixture
def gate() -> Iterator[None]:
    plugin = RefuseBlockedUser()
    plugin_manager().register(plugin, name="test-refuse-blocked")
    try:
        yield
    finally:
        plugin_manager().unregister(plugin)


def _counts(url: str) -> tuple[int, int]:
    engine = create_engine(url)
    with engine.connect() as connection:
        # Golden records (written by identity as Patients are matched) are not counted.
        resources = (
            connection.execute(
                text(
                    "SELECT count(*) FROM resource WHERE id NOT IN "
                    "(SELECT golden_id FROM identity_golden)"
                )
            ).scalar()
            or 0
        )
        refused = (
            connection.execute(
                text("SELECT count(*) FROM audit_event WHERE outcome = '4'")
            ).scalar()
            or 0
        )
    engine.dispose()
    return int(resources), int(refused)


def test_every_write_path_is_gated(database: str, gate: None, tmp_path: Path) -> None:
    blocked = {"X-Sharedcare-User": BLOCKED, "Content-Type": "application/fhir+json"}
    allowed = {"X-Sharedcare-User": "clinician", "Content-Type": "application/fhir+json"}
    with TestClient(create_app(Settings(database_url=database))) as client:
        existing = client.post("/fhir/Patient", json=PATIENT, headers=allowed).json()
        rid = existing["id"]
        assert client.post("/fhir/Patient", json=PATIENT, headers=blocked).status_code == 403
        changed = {**existing, "gender": "male"}
        assert client.put(f"/fhir/Patient/{rid}", json=changed, headers=blocked).status_code == 403
        assert client.delete(f"/fhir/Patient/{rid}", headers=blocked).status_code == 403
        transaction = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"resource": PATIENT, "request": {"method": "POST", "url": "Patient"}},
                {"request": {"method": "DELETE", "url": f"Patient/{rid}"}},
            ],
        }
        response = client.post("/fhir", json=transaction, headers=blocked)
        assert response.status_code == 403
        assert response.json()["issue"][0]["code"] == "forbidden"
        assert client.get(f"/fhir/Patient/{rid}", headers=blocked).status_code == 403
        assert client.get(f"/fhir/Patient/{rid}", headers=allowed).json()["gender"] == "female"

    path = tmp_path / "patients.ndjson"
    path.write_bytes(b"\n".join(orjson.dumps({**PATIENT, "id": f"p{i}"}) for i in range(3)))
    engine = create_engine(database)
    repo = Repository(SqlStore(engine), RequestContext(user=BLOCKED))
    report = load_paths(repo, [path])
    engine.dispose()
    assert (report.written, report.failed) == (0, 3)
    assert all("not allowed" in problem for problem in report.problems)

    resources, refused = _counts(database)
    assert resources == 1, "only the allowed user's create may have been written"
    assert refused >= 5, "each refused REST interaction and the transaction is audited"
