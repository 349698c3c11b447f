"""Every FHIR request is audited, including one refused before the record's gate saw it.

Issue 3: an AuditEvent for every read, search, create, update and delete, on success or
failure. Requests refused by routing (404, 405), by FastAPI's validation, by the FHIR API's
own checks (bad JSON, a body that is not the resource, 415, a bad ``_count``), by the
repository's checks before its gate (a type that is not R4), by a client gone mid-request,
or by an unexpected error (500) used to leave no event. Each must now leave exactly one
failure event, committed before the response, with the caller as agent, and without any
value from the query, the body or the headers (decision 0005); refusals the gate audits
must not be audited twice. On SQLite and PostgreSQL, through the real application.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import json
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI, Query
from fastapi.responses import Response
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from starlette.types import Message, Scope

from sharedcare.api.app import create_app
from sharedcare.config import Settings
from sharedcare.db.engine import create_engine, write_connection
from sharedcare.plugins import hookimpl, plugin_manager
from tests.support.identity import without_realtime_matching

USER = "refusal.tester"
HEADERS = {
    "X-Sharedcare-User": USER,
    "X-Sharedcare-Organisation": "RBD",
    "X-Sharedcare-Role": "clinician",
    "X-Sharedcare-Purpose": "TREAT",
    "Content-Type": "application/fhir+json",
}
NAME = "Quillfeather"
NHS = "9990001236"
SENTINELS = (NAME, NHS)
PATIENT = {
    "resourceType": "Patient",
    "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": NHS}],
    "name": [{"family": NAME}],
}

# (id, method, path, request kwargs, status, interaction, entity reference or type, patient)
REFUSALS: list[tuple[str, str, str, dict[str, Any], int, str, str | None, str | None]] = [
    (
        "history _count not a number",
        "GET",
        "/fhir/Patient/_history",
        {"params": {"_count": NHS, "name": NAME}},
        400,
        "history-type",
        "Patient",
        None,
    ),
    (
        "history _at",
        "GET",
        "/fhir/_history",
        {"params": {"_at": NAME}},
        400,
        "history-system",
        None,
        None,
    ),
    (
        "$everything _offset out of range",
        "GET",
        "/fhir/Patient/example/$everything",
        {"params": {"_offset": f"-{NHS}"}},
        400,
        "operation",
        "Patient/example",
        "Patient/example",
    ),
    (
        "create with malformed JSON",
        "POST",
        "/fhir/Patient",
        {"content": f'{{"name": [{{"family": "{NAME}"'.encode()},
        400,
        "create",
        "Patient",
        None,
    ),
    (
        "create with another resource",
        "POST",
        "/fhir/Patient",
        {"json": {**PATIENT, "resourceType": "Observation"}},
        400,
        "create",
        "Patient",
        None,
    ),
    (
        "update with a body that is not a resource",
        "PUT",
        "/fhir/Patient/example",
        {"json": [NAME, NHS]},
        400,
        "update",
        "Patient/example",
        "Patient/example",
    ),
    (
        "create in an unsupported content type",
        "POST",
        "/fhir/Patient",
        {"content": NAME.encode(), "headers": {"Content-Type": f"text/{NAME.lower()}"}},
        415,
        "create",
        "Patient",
        None,
    ),
    (
        "a Bundle that is not a Bundle",
        "POST",
        "/fhir",
        {"json": PATIENT},
        400,
        "batch",
        None,
        None,
    ),
    (
        "$validate of something that is not a resource",
        "POST",
        "/fhir/Patient/$validate",
        {"json": [NAME]},
        400,
        "operation",
        "Patient",
        None,
    ),
    (
        "search of a type that is not R4",
        "GET",
        f"/fhir/{NAME}",
        {"params": {"identifier": NHS}},
        404,
        "search-type",
        None,
        None,
    ),
    ("read of a type that is not R4", "GET", f"/fhir/{NAME}/{NHS}", {}, 404, "read", None, None),
    (
        "update of a type that is not R4",
        "PUT",
        f"/fhir/{NAME}/x1",
        {"json": {**PATIENT, "resourceType": NAME, "id": "x1"}},
        404,
        "update",
        None,
        None,
    ),
    (
        "delete of a type that is not R4",
        "DELETE",
        f"/fhir/{NAME}/x1",
        {},
        404,
        "delete",
        None,
        None,
    ),
    (
        "no route for the path",
        "GET",
        "/fhir/Patient/example/_history/1/more",
        {"params": {"name": NAME}},
        404,
        "read",
        "Patient/example",
        "Patient/example",
    ),
    (
        "a method no route takes",
        "PATCH",
        "/fhir/Patient/example",
        {"json": PATIENT},
        405,
        "patch",
        "Patient/example",
        "Patient/example",
    ),
]


class Plugins:
    """Test plugins: a ``conditional_criteria`` hook that fails for ``Basic`` (an error
    outside the gate, so a 500 nothing audited), and a ``check_access`` hook that cancels
    the request's task when a search by ``cancelled.client`` asks the gate."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.task: asyncio.Future[Any] | None = None

    @hookimpl
    def conditional_criteria(self, resource_type: str) -> list[tuple[str, str]] | None:
        if resource_type == "Basic":
            raise RuntimeError(f"a plugin failed on {NAME} {NHS}")
        return None

    @hookimpl
    def check_access(
        self, context: Any, interaction: str, resource_type: str | None, resource_id: str | None
    ) -> str | None:
        if context.user == "cancelled.client" and interaction == "search-type":
            assert self.loop is not None and self.task is not None
            self.loop.call_soon_threadsafe(self.task.cancel)
        return None


@pytest.fixture
def plugins() -> Iterator[Plugins]:
    plugin = Plugins()
    plugin_manager().register(plugin, name="test-refusals-audited")
    try:
        yield plugin
    finally:
        plugin_manager().unregister(plugin)


def _probe_route(app: FastAPI) -> None:
    """A route under ``/fhir`` with a typed parameter, so that FastAPI's own validation
    refuses a request (no FHIR route declares one today), asked before the others."""

    async def probe(count: int = Query(alias="_count")) -> Response:
        return Response(status_code=204)

    app.add_api_route("/fhir/Patient/$probe", probe, methods=["GET"])
    routes = app.router.routes
    routes.insert(1, routes.pop())  # after DirectGets, before the generic FHIR routes


@pytest.fixture
def app(database: str, plugins: Plugins) -> FastAPI:
    app = create_app(Settings(database_url=database))
    _probe_route(app)
    return app


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with (
        without_realtime_matching(),
        TestClient(app, raise_server_exceptions=False) as client,
    ):
        client.headers.update(HEADERS)
        yield client


@pytest.fixture
def trail(database: str) -> Iterator[Engine]:
    engine = create_engine(database)
    try:
        yield engine
    finally:
        engine.dispose()


def _events(trail: Engine, user: str = USER) -> list[dict[str, Any]]:
    """The stored AuditEvents of ``user``, oldest first, each with its row's columns."""
    with trail.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT interaction, outcome, patient, content FROM audit_event "
                "WHERE agent = :user ORDER BY pk"
            ),
            {"user": user},
        ).all()
    events = []
    for interaction, outcome, patient, content in rows:
        event = content if isinstance(content, dict) else json.loads(content)
        event["_row"] = (interaction, outcome, patient)
        events.append(event)
    return events


def _no_request_values(event: dict[str, Any]) -> None:
    """Nothing the client sent (query, body, headers) is in the event, encoded or not."""
    text_of = json.dumps(event)
    queries = [
        base64.b64decode(e["query"]).decode() for e in event.get("entity", []) if "query" in e
    ]
    assert queries == [], "a refused request's query is not kept"
    for sentinel in SENTINELS:
        assert sentinel not in text_of
        assert sentinel.lower() not in text_of


def _the_one_new_event(trail: Engine, before: int) -> dict[str, Any]:
    events = _events(trail)
    assert len(events) == before + 1, "exactly one AuditEvent, committed before the response"
    return events[-1]


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "interaction", "what", "patient"),
    [case[1:] for case in REFUSALS],
    ids=[case[0] for case in REFUSALS],
)
def test_a_refusal_is_audited_once_without_request_values(
    client: TestClient,
    trail: Engine,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
    interaction: str,
    what: str | None,
    patient: str | None,
) -> None:
    before = len(_events(trail))
    kwargs = dict(kwargs)  # the case's own stays as it is for the other database
    headers = {**HEADERS, **kwargs.pop("headers", {})}
    response = client.request(method, path, headers=headers, **kwargs)
    assert response.status_code == status, response.text
    assert response.json()["resourceType"] == "OperationOutcome"

    event = _the_one_new_event(trail, before)
    assert event["_row"] == (interaction, "4", patient)
    assert event["subtype"][0]["code"] == interaction
    assert event["outcome"] == "4"
    assert event["outcomeDesc"].startswith(f"{status} ")
    (agent,) = event["agent"]
    assert agent["who"]["identifier"]["value"] == USER
    assert agent["who"]["display"] == "RBD"
    assert agent["purposeOfUse"][0]["coding"][0]["code"] == "TREAT"
    entities = [e["what"] for e in event.get("entity", []) if e["type"]["code"] == "2"]
    if what is None:
        assert entities == []
    elif "/" in what:
        assert entities == [{"reference": what}]
    else:
        assert entities == [{"display": what}]
    _no_request_values(event)


def test_fastapi_validation_is_audited(client: TestClient, trail: Engine) -> None:
    response = client.get("/fhir/Patient/$probe", params={"_count": NAME})
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["query._count"]
    event = _the_one_new_event(trail, 0)
    assert event["_row"] == ("operation", "4", None)
    assert event["outcomeDesc"] == "400 Bad Request: invalid request: query._count (int_parsing)"
    _no_request_values(event)
    assert client.get("/fhir/Patient/$probe", params={"_count": "3"}).status_code == 204


def test_an_unexpected_error_is_audited_as_serious_with_its_incident(
    client: TestClient, trail: Engine
) -> None:
    response = client.put(
        "/fhir/Basic", params={"identifier": NHS}, json={"resourceType": "Basic", "id": NAME}
    )
    assert response.status_code == 500
    diagnostics = response.json()["issue"][0]["diagnostics"]
    incident = diagnostics.split("incident ")[1].split(")")[0]
    event = _the_one_new_event(trail, 0)
    assert event["_row"] == ("update", "8", None)
    assert event["outcomeDesc"] == (
        f"500 Internal Server Error: internal error RuntimeError (incident {incident})"
    )
    _no_request_values(event)


def _scope(method: str, path: str, headers: dict[str, str], query: str = "") -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query.encode(),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }


def _asgi_request(
    client: TestClient, app: FastAPI, scope: Scope, messages: list[Message], plugins: Plugins
) -> tuple[bool, list[Message]]:
    """Send one request to ``app`` on the client's event loop, as its own task (given to
    ``plugins``), the body as ``messages``; returns whether the task was cancelled and
    what the app sent."""
    sent: list[Message] = []

    async def run() -> bool:
        queue = list(messages)

        async def receive() -> Message:
            return queue.pop(0) if queue else {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            sent.append(message)

        plugins.loop = asyncio.get_running_loop()
        plugins.task = asyncio.ensure_future(app(scope, receive, send))
        try:
            await plugins.task
        except asyncio.CancelledError:
            return True
        return False

    assert client.portal is not None
    return client.portal.call(run), sent


def test_a_client_gone_mid_request_is_audited(
    client: TestClient, app: FastAPI, trail: Engine, plugins: Plugins
) -> None:
    body = json.dumps(PATIENT).encode()
    messages: list[Message] = [
        {"type": "http.request", "body": body[:20], "more_body": True},
        {"type": "http.disconnect"},
    ]
    scope = _scope("POST", "/fhir/Patient", HEADERS)
    cancelled, sent = _asgi_request(client, app, scope, messages, plugins)
    assert not cancelled
    assert sent[0]["status"] == 400
    event = _the_one_new_event(trail, 0)
    assert event["_row"] == ("create", "4", None)
    assert "disconnected" in event["outcomeDesc"]
    _no_request_values(event)


def test_a_search_cancelled_mid_way_is_audited(
    client: TestClient, app: FastAPI, trail: Engine, plugins: Plugins, database: str
) -> None:
    """The request's task is cancelled while its search runs (what a server does to the
    requests it still has when it stops). On PostgreSQL the search runs on the event loop
    and is cancelled where it awaits PostgreSQL; on SQLite it runs in a thread, which
    finishes the search (and stores its event) though nobody awaits it any more."""
    user = "cancelled.client"
    query = f"subject:identifier={NHS}&code={NAME}"
    scope = _scope("GET", "/fhir/Observation", {"X-Sharedcare-User": user}, query)
    messages: list[Message] = [{"type": "http.request", "body": b"", "more_body": False}]
    cancelled, sent = _asgi_request(client, app, scope, messages, plugins)
    assert cancelled, "the request's task was cancelled"
    assert sent == [], "a cancelled request is not answered"
    if database.startswith("postgresql"):
        events = _events(trail, user)  # committed before the task ended
    else:
        deadline = time.monotonic() + 30
        while not (events := _events(trail, user)) and time.monotonic() < deadline:
            time.sleep(0.05)
    assert len(events) == 1, "the search is audited once, whether it finished or not"
    (event,) = events
    assert event["_row"][0] == "search-type"
    if database.startswith("postgresql"):
        assert event["_row"][1] == "8"
        assert "cancelled" in event["outcomeDesc"]
        _no_request_values(event)


REACHED_THE_GATE = [
    ("GET", "/fhir/Patient/no-such-patient", {}, 404, 1),
    ("GET", "/fhir/Patient", {"params": {"no-such-parameter": "x"}}, 400, 1),
    ("PUT", "/fhir/AuditEvent/1", {"json": {"resourceType": "AuditEvent", "id": "1"}}, 405, 1),
    ("DELETE", "/fhir/AuditEvent/1", {}, 405, 1),
    ("GET", "/fhir/AuditEvent/_history", {}, 405, 1),
    (
        "POST",
        "/fhir",
        {
            "json": {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [{"request": {"method": "DELETE", "url": "AuditEvent/1"}}],
            }
        },
        405,
        1,  # the transaction's failure (its entries are not audited apart)
    ),
]


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "count"), REACHED_THE_GATE)
def test_a_refusal_the_gate_audited_is_not_audited_again(
    client: TestClient,
    trail: Engine,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
    count: int,
) -> None:
    headers = {**HEADERS, "Prefer": "handling=strict"}
    response = client.request(method, path, headers=headers, **kwargs)
    assert response.status_code == status, response.text
    events = _events(trail)
    assert len(events) == count
    # Every event of this one request came from the record (none is the HTTP layer's,
    # whose descriptions start with the status).
    assert not any(e.get("outcomeDesc", "").startswith(f"{status} ") for e in events)


def test_paths_outside_fhir_are_not_fhir_interactions(client: TestClient, trail: Engine) -> None:
    assert client.get(f"/no-such-page/{NAME}").status_code == 404
    assert client.patch("/readyz").status_code == 405
    assert _events(trail) == []


def test_a_refusal_whose_event_cannot_be_stored_is_not_answered(
    client: TestClient, database: str
) -> None:
    engine = create_engine(database)
    try:
        with write_connection(engine) as connection:
            connection.execute(text("ALTER TABLE audit_event RENAME TO audit_event_away"))
        try:
            refused = client.get(f"/fhir/{NAME}")
        finally:
            with write_connection(engine) as connection:
                connection.execute(text("ALTER TABLE audit_event_away RENAME TO audit_event"))
    finally:
        engine.dispose()
    assert refused.status_code == 500, "a refusal is not answered unaudited"
    assert "audit trail" in refused.json()["issue"][0]["diagnostics"]
    assert client.get(f"/fhir/{NAME}").status_code == 404


def test_a_request_cancelled_while_awaiting_its_event_leaves_the_writer_working(
    database: str, trail: Engine
) -> None:
    """A request task cancelled while it awaits its AuditEvent (as a cancelled search
    awaits its failure event) cancelled the writer's future, and the writer thread's
    ``set_result`` then raised and stopped it: every later event waited for ever. The
    event is held up by a lock on the trail until the awaiting task is cancelled."""
    from sharedcare.record.audit import AuditEntry
    from sharedcare.record.audit_writer import AuditWriter
    from sharedcare.record.context import RequestContext

    writer = AuditWriter(trail)
    context = RequestContext(user="cancelled.waiter")
    blocker: Any
    if database.startswith("sqlite"):
        blocker = sqlite3.connect(database.removeprefix("sqlite:///"), timeout=60)
        blocker.execute("BEGIN IMMEDIATE")
    else:
        blocker = trail.connect()
        blocker.execute(text("LOCK TABLE audit_event IN SHARE MODE"))
    try:
        held = writer.submit(context, [AuditEntry("read", "0")])  # from no event loop
        assert isinstance(held, concurrent.futures.Future)

        async def await_then_cancel() -> bool:
            waiting = asyncio.ensure_future(asyncio.wrap_future(held))
            await asyncio.sleep(0.1)
            waiting.cancel()
            try:
                await waiting
            except asyncio.CancelledError:
                return True
            return False

        assert asyncio.run(await_then_cancel())
    finally:
        blocker.rollback()
        blocker.close()
    try:
        held.result(timeout=60)  # stored once the lock is gone, though nobody awaits it
        writer.write(context, [AuditEntry("read", "0")])  # and the writer still works
    finally:
        writer.close()
    assert len(_events(trail, "cancelled.waiter")) == 2


@pytest.mark.parametrize(
    ("path", "what"),
    [("/fhir/Patient/$validate", None), ("/fhir/Patient/p1/$validate", "Patient/p1")],
    ids=["type", "instance"],
)
@pytest.mark.parametrize("valid", [True, False], ids=["valid", "invalid"])
def test_validate_is_audited_once_without_the_resource(
    client: TestClient, trail: Engine, path: str, what: str | None, valid: bool
) -> None:
    """``$validate`` stores nothing, but it is an interaction: one ``operation`` event,
    successful whatever the issues found, and none of the resource sent in it."""
    before = len(_events(trail))
    body = PATIENT if valid else {**PATIENT, "gender": NHS}
    response = client.post(path, json=body)
    assert response.status_code == 200
    severities = {issue["severity"] for issue in response.json()["issue"]}
    assert severities == ({"information"} if valid else {"error"})
    event = _the_one_new_event(trail, before)
    assert event["_row"][:2] == ("operation", "0")
    assert event["outcomeDesc"] == "$validate"
    entity = event["entity"][0]["what"]
    assert entity == ({"reference": what} if what else {"display": "Patient"})
    _no_request_values(event)


def test_validate_at_a_type_that_is_not_r4_is_refused_and_audited(
    client: TestClient, trail: Engine
) -> None:
    before = len(_events(trail))
    response = client.post(f"/fhir/{NAME}/$validate", json={**PATIENT, "resourceType": NAME})
    assert response.status_code == 404
    event = _the_one_new_event(trail, before)
    assert event["_row"][:2] == ("operation", "4")
    _no_request_values(event)
