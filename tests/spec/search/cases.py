"""Table-driven search specs: a case type, the runner, and the data loader.

Each ``test_search_<type>.py`` module declares ``TITLE``, ``INTRO``, ``DATA`` (resources with
fixed ids) and ``CASES`` (one :class:`Case` per row). The same tables are rendered into
``docs/reference/search.md`` by ``scripts/gen_search_docs.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi.testclient import TestClient


@dataclass(frozen=True)
class Case:
    """One row: a query and what it must return.

    Attributes:
        query: ``Type?params`` (or a compartment path such as ``Patient/p1/Observation?...``).
        expect: Ids of the matches, or an HTTP status (400) for a request that must fail.
        note: What the row shows, for the reference page.
        ordered: The matches must come in exactly this order.
        include: ``Type/id`` of the entries with ``search.mode = include``.
        strict: Send ``Prefer: handling=strict``.
    """

    query: str
    expect: tuple[str, ...] | int
    note: str = ""
    ordered: bool = False
    include: tuple[str, ...] = ()
    strict: bool = False

    @property
    def id(self) -> str:
        return self.query + (" [strict]" if self.strict else "")


def load(client: TestClient, data: list[dict[str, Any]]) -> None:
    """Store ``data`` (each resource with its id) with PUT, in order."""
    for resource in data:
        url = f"/fhir/{resource['resourceType']}/{resource['id']}"
        response = client.put(url, json=resource)
        assert response.status_code in {200, 201}, (url, response.text)


def search(client: TestClient, case: Case) -> Any:
    """Run the case's query and return the response."""
    query = case.query
    if "_count=" not in query:
        query += ("&" if "?" in query else "?") + "_count=100"
    headers = {"Prefer": "handling=strict"} if case.strict else {}
    return client.get(f"/fhir/{query}", headers=headers)


def check(client: TestClient, case: Case) -> None:
    """Run one case and assert its expectation."""
    response = search(client, case)
    if isinstance(case.expect, int):
        assert response.status_code == case.expect, response.text
        body = response.json()
        assert body["resourceType"] == "OperationOutcome"
        assert body["issue"][0]["diagnostics"]
        return
    assert response.status_code == 200, response.text
    bundle = response.json()
    assert bundle["type"] == "searchset"
    entries = bundle.get("entry", [])
    matches = [e["resource"]["id"] for e in entries if e["search"]["mode"] == "match"]
    included = sorted(
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in entries
        if e["search"]["mode"] == "include"
    )
    if case.ordered:
        assert matches == list(case.expect)
    else:
        assert sorted(matches) == sorted(case.expect)
    assert included == sorted(case.include)
    if "total" in bundle and "_count=" not in case.query:
        assert bundle["total"] == len(matches)
