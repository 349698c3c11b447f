"""``/api/identity``: the review queue and merges as JSON, behind the access gate."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sharedcare.api.app import create_app
from sharedcare.config import Settings
from sharedcare.identity.batch import link_all
from sharedcare.plugins import hookimpl, plugin_manager

BLOCKED = "blocked-reviewer"


class RefuseBlocked:
    @hookimpl
    def check_access(
        self, context: Any, interaction: str, resource_type: str | None, resource_id: str | None
    ) -> str | None:
        return "not an identity reviewer" if context.user == BLOCKED else None


@pytest.fixture
def client(database: str) -> Iterator[TestClient]:
    plugin = RefuseBlocked()
    plugin_manager().register(plugin, name="test-refuse-blocked-reviewer")
    try:
        with TestClient(create_app(Settings(database_url=database))) as client:
            yield client
    finally:
        plugin_manager().unregister(plugin)


def _patient(pid: str, birth: str, postcode: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "name": [{"family": "Tester", "given": ["Alexandra"]}],
        "gender": "female",
        "birthDate": birth,
        "address": [{"use": "home", "line": [f"{pid} Street"], "postalCode": postcode}],
    }


def test_review_queue_decision_and_undo(client: TestClient) -> None:
    me = {"X-Sharedcare-User": "clerk", "X-Sharedcare-Role": "identity-reviewer"}
    for pid, birth, postcode in (("a1", "1965-04-12", "BH1 1AA"), ("b1", "1965-04-13", "DT1 9ZZ")):
        response = client.put(f"/fhir/Patient/{pid}", json=_patient(pid, birth, postcode))
        assert response.status_code == 201
    app: Any = client.app
    # REST-written Patients are matched as they are written: the batch run has nothing left.
    assert link_all(app.state.engine, app.state.store).matched == 0

    listed = client.get("/api/identity/reviews", headers=me).json()["reviews"]
    assert len(listed) == 1
    item = listed[0]
    assert item["kind"] == "possible-match" and item["source"].startswith("Patient/")
    assert {e["field"] for e in item["evidence"]} >= {"birth_date", "given_name"}
    assert "Tester" not in str(item)  # evidence names levels, never values

    refused = client.get("/api/identity/reviews", headers={"X-Sharedcare-User": BLOCKED})
    assert refused.status_code == 403
    blocked = client.post(
        f"/api/identity/reviews/{item['id']}/decision",
        json={"same_person": True, "reason": "x"},
        headers={"X-Sharedcare-User": BLOCKED},
    )
    assert blocked.status_code == 403  # the golden write is refused by the gate
    assert client.get("/api/identity/reviews", headers=me).json()["reviews"][0]["id"] == item["id"]

    decided = client.post(
        f"/api/identity/reviews/{item['id']}/decision",
        json={"same_person": True, "reason": "confirmed with the GP"},
        headers=me,
    ).json()
    assert decided["status"] == "confirmed" and decided["merge_id"] is not None
    golden = client.get(item["golden"].replace("Patient/", "/fhir/Patient/")).json()
    candidate = client.get(item["candidate"].replace("Patient/", "/fhir/Patient/")).json()
    kept, retired = (golden, candidate) if golden["active"] else (candidate, golden)
    assert retired["link"][0]["type"] == "replaced-by"
    assert len([link for link in kept["link"] if link["type"] == "seealso"]) == 2
    again = client.post(
        f"/api/identity/reviews/{item['id']}/decision",
        json={"same_person": False, "reason": "x"},
        headers=me,
    )
    assert again.status_code == 404 and "not open" in again.json()["error"]

    [merge] = client.get("/api/identity/merges", headers=me).json()["merges"]
    assert merge["origin"] == "review" and merge["moved"] == 1
    undone = client.post(
        f"/api/identity/merges/{merge['id']}/undo", json={"reason": "wrong"}, headers=me
    )
    assert undone.json() == {"merge": merge["id"], "status": "undone"}
    twice = client.post(
        f"/api/identity/merges/{merge['id']}/undo", json={"reason": "wrong"}, headers=me
    )
    assert twice.status_code == 404
    bad = client.post(f"/api/identity/merges/{merge['id']}/undo", json={}, headers=me)
    assert bad.status_code == 400  # a clear error naming the missing reason

    # Deleting a source takes it out of its golden record as the delete is written.
    assert client.delete("/fhir/Patient/b1").status_code == 204
    assert link_all(app.state.engine, app.state.store).removed == 0
    golden_ids = {item["golden"], item["candidate"]}
    goldens = [client.get(g.replace("Patient/", "/fhir/Patient/")).json() for g in golden_ids]
    links = [link["other"]["reference"] for g in goldens for link in g.get("link", [])]
    assert "Patient/b1" not in links and "Patient/a1" in links
