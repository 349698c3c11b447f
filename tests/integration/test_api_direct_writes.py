"""Writes dispatched directly (``sharedcare.api.direct_writes``): every write is served by
the route, and answered with the status and headers, that FastAPI's own routing gives."""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from sharedcare.api.app import create_app
from sharedcare.api.direct_writes import DirectRoutes
from sharedcare.api.routing import DirectGets
from sharedcare.config import Settings

VALUES = ["x1", "Patient", "AuditEvent", "_history", "metadata", "_search", "$export", "1"]
_COMPARED = ("etag", "location", "content-type", "allow")


@pytest.fixture
def apps(tmp_path: Path) -> Iterator[tuple[TestClient, TestClient]]:
    """The application as served, and one without the direct routes, each on a database
    of its own (the same writes go to both)."""
    shortcut = create_app(Settings(database_url=f"sqlite:///{tmp_path}/direct.db"))
    plain = create_app(Settings(database_url=f"sqlite:///{tmp_path}/plain.db"))
    plain.router.routes[:] = [r for r in plain.router.routes if not isinstance(r, DirectGets)]
    with TestClient(shortcut) as fast, TestClient(plain) as slow:
        yield fast, slow


def _answer(
    client: TestClient,
    caplog: pytest.LogCaptureFixture,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[Any, ...]:
    """The route the access log names, the status, the compared headers and the body's
    type (the resource's or the OperationOutcome's)."""
    caplog.clear()
    content = None if body is None else orjson.dumps(body)
    sent = {"content-type": "application/fhir+json", **(headers or {})}
    response = client.request(method, path, content=content, headers=sent, follow_redirects=False)
    records = [r.getMessage() for r in caplog.records if r.name == "sharedcare.access"]
    assert len(records) == 1, records
    logged_method, template, logged, _ = records[0].split(" ")
    assert logged_method == method and int(logged) == response.status_code
    kept = tuple(
        (name, response.headers.get(name, "").replace(str(client.base_url), ""))
        for name in _COMPARED
    )
    if method == "POST":  # a server-assigned id differs between the two databases
        kept = tuple((n, re.sub(r"^(/fhir/\w+/)[^/]+", r"\1{id}", v)) for n, v in kept)
    kind = response.json().get("resourceType") if response.content else None
    outcome = response.json()["issue"][0]["code"] if kind == "OperationOutcome" else None
    return template, response.status_code, kept, kind, outcome


def test_every_write_is_answered_as_fastapi_answers_it(
    apps: tuple[TestClient, TestClient], caplog: pytest.LogCaptureFixture
) -> None:
    fast, slow = apps
    caplog.set_level(logging.INFO, logger="sharedcare.access")
    assert isinstance(fast.app.router.routes[0], DirectRoutes)  # type: ignore[attr-defined]
    documented = fast.app.openapi()["paths"]  # type: ignore[attr-defined]
    requests: list[tuple[str, str, Any, dict[str, str]]] = []
    for template, operations in sorted(documented.items()):
        parts = template.split("/")
        slots = [i for i, part in enumerate(parts) if part.startswith("{")]
        for method in ("post", "put", "delete"):
            for values in itertools.product(VALUES, repeat=len(slots)):
                filled = list(parts)
                for i, value in zip(slots, values, strict=True):
                    filled[i] = value
                path = "/".join(filled)
                body = {"resourceType": values[0] if values else "Patient", "id": "x1"}
                requests.append((method.upper(), path, body, {}))
        del operations
    # The CRUD interactions with their headers, in an order that makes each meaningful.
    patient = {"resourceType": "Patient", "id": "p1", "gender": "female"}
    requests += [
        ("PUT", "/fhir/Patient/p1", patient, {}),
        ("PUT", "/fhir/Patient/p1", patient, {}),  # unchanged
        ("PUT", "/fhir/Patient/p1", dict(patient, gender="male"), {"if-match": 'W/"1"'}),
        ("PUT", "/fhir/Patient/p1", patient, {"if-match": 'W/"1"'}),  # stale: 412
        ("POST", "/fhir/Patient", {"resourceType": "Observation"}, {}),  # wrong type
        ("POST", "/fhir/Patient", "not a resource", {}),
        ("POST", "/fhir/Patient", patient, {"if-none-exist": "_id=p1"}),  # exists: 200
        ("POST", "/fhir/NotAType", {"resourceType": "NotAType"}, {}),
        ("PUT", "/fhir/Patient/p1", None, {}),  # no body
        ("DELETE", "/fhir/Patient/p1", None, {"if-match": 'W/"1"'}),  # stale
        ("DELETE", "/fhir/Patient/p1", None, {}),
        ("DELETE", "/fhir/Patient/p1", None, {}),  # already deleted
        ("DELETE", "/fhir/Patient/never", None, {}),
        ("PUT", "/fhir/Patient/p1", patient, {}),  # back after deletion
        ("DELETE", "/fhir/AuditEvent/a1", None, {}),  # the trail is read-only
        ("PUT", "/fhir/Patient/p1/", patient, {}),
        ("POST", "/fhir/Patient/", patient, {}),
    ]
    for method, path, body, headers in requests:
        expected = _answer(slow, caplog, method, path, body, headers)
        got = _answer(fast, caplog, method, path, body, headers)
        assert got == expected, (method, path, headers)
    shortcut: Any = fast.app.router.routes[0]  # type: ignore[attr-defined]
    taken = {shape[0] for shape, found in shortcut._writes.items() if found is not None}
    assert taken == {"POST", "PUT", "DELETE"}  # the shortcut was taken (and agreed)


def test_write_headers_stay_documented(apps: tuple[TestClient, TestClient]) -> None:
    fast, _ = apps
    paths = fast.app.openapi()["paths"]  # type: ignore[attr-defined]

    def headers(path: str, method: str) -> set[str]:
        parameters = paths[path][method].get("parameters", [])
        return {p["name"] for p in parameters if p["in"] == "header"}

    assert headers("/fhir/{rtype}", "post") == {"if-none-exist"}
    assert headers("/fhir/{rtype}/{id}", "put") == {"if-match"}
    assert headers("/fhir/{rtype}/{id}", "delete") == {"if-match"}
