"""The audit writer's group commit on an event loop, and the events' JSON.

On PostgreSQL, AuditEvents submitted on an event loop (the API server's reads by id and
searches) are committed by a writer on that loop, one ``INSERT`` per batch in autocommit
(``docs/decisions/0028-search-audit-on-the-loop.md``); elsewhere, and on SQLite, by the
writer thread. Both must keep decision 0015's promises: every event stored, none answered
before it is, a failed batch failing every request in it, and what is queued committed on
close.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, text

from sharedcare.record.audit import ACTIONS, AuditEntry, audit_event, audit_rows
from sharedcare.record.audit_writer import AuditUnavailable, AuditWriter
from sharedcare.record.context import PURPOSES, RequestContext
from sharedcare.record.instants import to_instant


def _stored(engine: Engine, user: str) -> list[Any]:
    with engine.connect() as connection:
        return list(
            connection.execute(
                text("SELECT interaction, patient, content FROM audit_event WHERE agent = :u"),
                {"u": user},
            ).all()
        )


def test_submitted_on_a_loop_every_event_is_committed_before_its_future(engine: Engine) -> None:
    writer = AuditWriter(engine)
    context = RequestContext(user="loop")

    async def one(n: int) -> int:
        future = writer.submit(context, [AuditEntry("read", "0", "Patient", f"p{n}")])
        await asyncio.wrap_future(future)
        # Committed: another connection sees it.
        with engine.connect() as connection:
            return int(
                connection.execute(
                    text("SELECT count(*) FROM audit_event WHERE content::text LIKE :w"),
                    {"w": f'%"Patient/p{n}"%'},
                ).scalar()
                or 0
            )

    async def main() -> list[int]:
        seen = await asyncio.gather(*(one(n) for n in range(200)))
        await writer.aclose()
        return list(seen)

    if engine.dialect.name != "postgresql":
        pytest.skip("on SQLite every event goes through the writer thread")
    assert asyncio.run(main()) == [1] * 200
    assert len(_stored(engine, "loop")) == 200
    with pytest.raises(AuditUnavailable):
        writer.write(context, [AuditEntry("read", "0", "Patient", "late")])


def test_on_a_loop_what_is_queued_is_committed_by_aclose(engine: Engine) -> None:
    writer = AuditWriter(engine, max_rows=7)  # several batches
    context = RequestContext(user="aclose")

    async def main() -> list[Any]:
        futures = [
            writer.submit(context, [AuditEntry("search-type", "0", "Patient", query=f"n={n}")])
            for n in range(100)
        ]
        await writer.aclose()
        assert all(f.done() and f.exception() is None for f in futures)
        with pytest.raises(AuditUnavailable):
            writer.submit(context, [AuditEntry("read", "0", "Patient", "late")])
        return futures

    asyncio.run(main())
    assert len(_stored(engine, "aclose")) == 100


def test_on_a_loop_a_failed_batch_fails_its_requests_and_the_next_succeeds(
    engine: Engine,
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("the loop writer is PostgreSQL's")
    writer = AuditWriter(engine)
    context = RequestContext(user="failing")

    async def main() -> None:
        await asyncio.wrap_future(writer.submit(context, [AuditEntry("read", "0", "Patient")]))
        with engine.begin() as connection:
            connection.execute(text("ALTER TABLE audit_event RENAME TO audit_event_away"))
        try:
            futures = [
                writer.submit(context, [AuditEntry("read", "0", "Patient", f"x{n}")])
                for n in range(5)
            ]
            for future in futures:
                with pytest.raises(AuditUnavailable):
                    await asyncio.wrap_future(future)
        finally:
            with engine.begin() as connection:
                connection.execute(text("ALTER TABLE audit_event_away RENAME TO audit_event"))
        await asyncio.wrap_future(writer.submit(context, [AuditEntry("read", "0", "Patient")]))
        await writer.aclose()

    asyncio.run(main())
    assert len(_stored(engine, "failing")) == 2


def test_on_a_loop_a_request_cancelled_while_waiting_leaves_the_others_audited(
    engine: Engine,
) -> None:
    writer = AuditWriter(engine)
    context = RequestContext(user="cancelled")

    async def wait(future: Any) -> None:
        await asyncio.wrap_future(future)

    async def main() -> None:
        futures = [
            writer.submit(context, [AuditEntry("read", "0", "Patient", f"c{n}")]) for n in range(10)
        ]
        waiters = [asyncio.create_task(wait(f)) for f in futures]
        await asyncio.sleep(0)  # they wait, their batch in flight
        waiters[3].cancel()  # the client went away: its request stops waiting
        done = await asyncio.gather(*waiters, return_exceptions=True)
        assert [isinstance(d, asyncio.CancelledError) for d in done] == [n == 3 for n in range(10)]
        # The writer is still working for the next request.
        await asyncio.wrap_future(writer.submit(context, [AuditEntry("read", "0", "Patient")]))
        await writer.aclose()

    asyncio.run(asyncio.wait_for(main(), 60))  # a writer that died would leave them waiting
    # The cancelled request's event is committed with its batch all the same.
    assert len(_stored(engine, "cancelled")) == 11


def test_a_blocking_write_on_a_loop_goes_through_the_writer_thread(engine: Engine) -> None:
    writer = AuditWriter(engine)
    context = RequestContext(user="blocking")

    async def main() -> None:
        writer.write(context, [AuditEntry("read", "0", "Patient", "b")])
        await writer.aclose()

    asyncio.run(main())
    assert len(_stored(engine, "blocking")) == 1


CONTEXTS = [
    RequestContext(user="u"),
    RequestContext("u2", "ODS1", "analyst", "ETREAT", "10.0.0.1", "rid", "feed"),
    RequestContext("u3", purpose="NOT-A-PURPOSE", source="gp-feed"),
]
ENTRIES = [
    AuditEntry("search-type", "0", "Patient", query="family=smith&given=ann"),
    AuditEntry("read", "4", "Patient", "p1", 3, "Patient/p1", description="gone"),
    AuditEntry("not-an-interaction", "8"),
    AuditEntry("create", "0", "Observation", "o1", 1, "Patient/x", entities=["Patient/a"]),
    AuditEntry("search-compartment", "0", "Observation", patient="Patient/p9", query="a=b"),
    AuditEntry("read", "0", "Patient", "p1"),
]


def _balp_event(context: RequestContext, entry: AuditEntry, recorded: int) -> dict[str, Any]:
    """The AuditEvent for ``entry`` in the IHE BALP shape, built field by field: the
    oracle the product's spliced JSON is held to."""
    agent: dict[str, Any] = {
        "type": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                    "code": "IRCP",
                    "display": "information recipient",
                }
            ]
        },
        "who": {"identifier": {"value": context.user}},
        "name": context.user,
        "requestor": True,
        "role": [{"text": context.role}],
        "purposeOfUse": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                        "code": context.purpose,
                        "display": PURPOSES.get(context.purpose, context.purpose),
                    }
                ]
            }
        ],
        "network": {"address": context.source, "type": "2"},
    }
    if context.organisation:
        agent["who"]["display"] = context.organisation
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
            "display": "Restful Operation",
        },
        "subtype": [
            {"system": "http://hl7.org/fhir/restful-interaction", "code": entry.interaction}
        ],
        "action": ACTIONS.get(entry.interaction, "E"),
        "recorded": to_instant(recorded),
        "outcome": entry.outcome,
        "agent": [agent],
        "source": {
            "observer": {"display": "sharedcare"},
            "type": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                    "code": "4",
                    "display": "Application Server",
                }
            ],
        },
    }
    if entry.description:
        event["outcomeDesc"] = entry.description
    entities: list[dict[str, Any]] = []
    if entry.resource_type:
        what = entry.resource_type
        if entry.resource_id:
            what += f"/{entry.resource_id}"
            if entry.version_id:
                what += f"/_history/{entry.version_id}"
        entities.append(
            {
                "what": {"reference": what} if entry.resource_id else {"display": what},
                "type": {
                    "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                    "code": "2",
                    "display": "System Object",
                },
            }
        )
    if entry.query:
        entities.append(
            {
                "type": {
                    "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                    "code": "2",
                },
                "role": {
                    "system": "http://terminology.hl7.org/CodeSystem/object-role",
                    "code": "24",
                    "display": "Query",
                },
                "query": base64.b64encode(entry.query.encode()).decode(),
            }
        )
    for reference in entry.entities:
        entities.append(
            {
                "what": {"reference": reference},
                "type": {
                    "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                    "code": "2",
                },
            }
        )
    if entry.patient:
        entities.append(
            {
                "what": {"reference": entry.patient},
                "type": {
                    "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                    "code": "1",
                    "display": "Person",
                },
                "role": {
                    "system": "http://terminology.hl7.org/CodeSystem/object-role",
                    "code": "1",
                    "display": "Patient",
                },
            }
        )
    if entities:
        event["entity"] = entities
    return event


@pytest.mark.parametrize("context", CONTEXTS)
def test_a_rows_content_is_its_audit_event(context: RequestContext) -> None:
    recorded = 1_700_000_000_123_456
    for _ in range(2):  # the second time from what was kept
        rows = audit_rows(context, ENTRIES, recorded)
        for row, entry in zip(rows, ENTRIES, strict=True):
            assert row["content"] == orjson.dumps(_balp_event(context, entry, recorded))
            assert audit_event(context, entry, recorded) == _balp_event(context, entry, recorded)
            assert row["agent"] == context.user
            assert row["interaction"] == entry.interaction
