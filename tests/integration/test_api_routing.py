"""Routing shortcuts (``sharedcare.api.routing``): every request is served by the route that
served it before them, and the routes stay documented in OpenAPI."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from sharedcare.api.app import create_app
from sharedcare.api.routing import DirectGets, GuardedRouter, fhir_routes_first
from sharedcare.config import Settings

# Values for path parameters: a plain id, and the fixed segments of the routes, so that
# every template is tried against paths other routes claim.
VALUES = ["x1", "Patient", "AuditEvent", "_history", "metadata", "_search", "$export", "1"]


def _templates(app: FastAPI) -> list[str]:
    return sorted(app.openapi()["paths"])


def _paths(template: str) -> Iterator[str]:
    parts = template.split("/")
    slots = [i for i, part in enumerate(parts) if part.startswith("{")]
    for values in itertools.product(VALUES, repeat=len(slots)):
        filled = list(parts)
        for i, value in zip(slots, values, strict=True):
            filled[i] = value
        yield "/".join(filled)


def _served_by(client: TestClient, path: str, caplog: pytest.LogCaptureFixture) -> str:
    """The route template the access log names for ``GET path``, and the status."""
    caplog.clear()
    status = client.get(path, follow_redirects=False).status_code
    records = [r.getMessage() for r in caplog.records if r.name == "sharedcare.access"]
    assert len(records) == 1, records
    method, template, logged, _ = records[0].split(" ")
    assert method == "GET" and int(logged) == status
    return f"{template} {status}"


@pytest.fixture
def apps(tmp_path: Path) -> Iterator[tuple[TestClient, TestClient]]:
    settings = Settings(database_url=f"sqlite:///{tmp_path}/routing.db")
    shortcut = create_app(settings)
    plain = create_app(settings)
    plain.router.routes[:] = [r for r in plain.router.routes if not isinstance(r, DirectGets)]
    with TestClient(shortcut) as fast, TestClient(plain) as slow:
        yield fast, slow


def test_every_get_is_served_by_the_same_route(
    apps: tuple[TestClient, TestClient], caplog: pytest.LogCaptureFixture
) -> None:
    fast, slow = apps
    caplog.set_level(logging.INFO, logger="sharedcare.access")
    assert isinstance(fast.app.router.routes[0], DirectGets)  # type: ignore[attr-defined]
    paths = {p for t in _templates(fast.app) for p in _paths(t)}  # type: ignore[arg-type]
    paths |= {"/fhir/Observation/", "/fhir//x1", "/fhir/Patient/x1/", "/fhir"}
    direct = 0
    for path in sorted(paths):
        # Twice on the shortcut app: the second answer comes from its kept shapes.
        first = _served_by(fast, path, caplog)
        again = _served_by(fast, path, caplog)
        assert first == again == _served_by(slow, path, caplog), path
        direct += first.split(" ")[0] in {"/fhir/{rtype}", "/fhir/{rtype}/{id}"}
    assert direct > 10  # the shortcut was taken (and agreed)


def test_routes_stay_documented(apps: tuple[TestClient, TestClient]) -> None:
    fast, slow = apps
    documented = fast.app.openapi()  # type: ignore[attr-defined]
    assert documented["paths"] == slow.app.openapi()["paths"]  # type: ignore[attr-defined]
    search = documented["paths"]["/fhir/{rtype}"]["get"]
    assert [p["name"] for p in search["parameters"]] == ["rtype"]
    read = documented["paths"]["/fhir/{rtype}/{id}"]["get"]
    assert [p["name"] for p in read["parameters"]] == ["rtype", "id"]


def test_guarded_router_refuses_a_route_without_its_marker() -> None:
    router = GuardedRouter(marker="AuditEvent", prefix="/fhir")
    router.add_api_route("/AuditEvent/{id}", lambda id: id)
    with pytest.raises(ValueError, match="does not contain"):
        router.add_api_route("/{rtype}/{id}", lambda rtype, id: id)
    with pytest.raises(ValueError, match="does not contain"):
        router.add_api_route("/{AuditEvent}", lambda AuditEvent: AuditEvent)


def _app(first_path: str) -> FastAPI:
    app = FastAPI()
    app.add_api_route(first_path, lambda: {})
    fhir = GuardedRouter(marker="fhir", prefix="/fhir")
    fhir.add_api_route("/metadata", lambda: {})
    app.include_router(fhir)
    return app


def test_fhir_routes_go_first_unless_another_route_could_take_their_paths() -> None:
    app = _app("/healthz")
    healthz = [r for r in app.router.routes if getattr(r, "path", None) == "/healthz"]
    fhir_routes_first(app)
    assert app.router.routes[-1] is healthz[0]
    assert getattr(app.router.routes[0], "original_router", None) is not None
    for clash in ("/{anything}/x", "/{section}"):
        app = _app(clash)
        before = list(app.router.routes)
        fhir_routes_first(app)
        assert app.router.routes == before


@pytest.mark.parametrize("root_path", ["", "/api", "/api/"])
@pytest.mark.parametrize("host", [b"example.org:8080", None, b"bad host"])
def test_search_links_use_the_request_url(root_path: str, host: bytes | None) -> None:
    """``_page_url`` is Starlette's ``request.url`` without its query, built more cheaply."""
    from starlette.requests import Request

    from sharedcare.api.fhir import _page_url, base_url

    for path in ("/fhir/Observation", "/fhir/Obs?x#y\\z"):
        scope = {
            "type": "http",
            "method": "GET",
            "scheme": "https",
            "server": ("10.0.0.1", 443),
            "query_string": b"a=1",
            "headers": [(b"host", host)] if host else [],
            "root_path": root_path,
            "path": root_path.rstrip("/") + path,
        }
        request = Request(scope)
        assert _page_url(request, base_url(request)) == str(request.url).split("?")[0]
