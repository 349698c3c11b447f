"""Helpers for the Bulk Data export tests: store resources, kick off, poll, download."""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson
from fastapi.testclient import TestClient

from tests.support.identity import without_realtime_matching

ASYNC = {"Prefer": "respond-async", "Accept": "application/fhir+json"}


def store(client: TestClient, resources: list[dict[str, Any]]) -> None:
    """PUT every resource (fixed ids) in one transaction bundle."""
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": r,
                "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
            }
            for r in resources
        ],
    }
    with without_realtime_matching():  # exactly these resources: no golden Patients
        response = client.post("/fhir", json=bundle)
    assert response.status_code == 200, response.text


def kick_off(client: TestClient, url: str, **headers: str) -> str:
    """Start an export; return its status URL."""
    response = client.get(url, headers={**ASYNC, **headers})
    assert response.status_code == 202, response.text
    assert response.json()["resourceType"] == "OperationOutcome"
    location: str = response.headers["content-location"]
    return location


def wait(
    client: TestClient,
    status_url: str,
    timeout: float = 30,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """Poll the status URL until the export is no longer in progress."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(status_url, headers=headers)
        if response.status_code != 202:
            done: httpx.Response = response
            return done
        assert response.headers["x-progress"]
        assert int(response.headers["retry-after"]) > 0
        assert time.monotonic() < deadline, "the export did not finish"
        time.sleep(0.05)


def export(client: TestClient, url: str, **headers: str) -> dict[str, Any]:
    """Kick off, wait, and return the completed manifest."""
    response = wait(client, kick_off(client, url, **headers), headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert "expires" in response.headers
    manifest: dict[str, Any] = response.json()
    return manifest


def download(
    client: TestClient,
    manifest: dict[str, Any],
    key: str = "output",
    headers: dict[str, str] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Every file of the manifest's ``key`` array, parsed, by type; checks counts and types."""
    found: dict[str, list[dict[str, Any]]] = {}
    for item in manifest[key]:
        response = client.get(item["url"], headers=headers)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/fhir+ndjson")
        lines = response.content.splitlines()
        assert response.content.endswith(b"\n")
        assert len(lines) == item["count"], "count in the manifest matches the file"
        for line in lines:
            resource = orjson.loads(line)
            assert resource["resourceType"] == item["type"], "one type per file"
            found.setdefault(item["type"], []).append(resource)
    return found


def ids(found: dict[str, list[dict[str, Any]]]) -> dict[str, set[str]]:
    """Resource ids by type."""
    return {rtype: {r["id"] for r in resources} for rtype, resources in found.items()}
