"""A database error in a statement the ingest writer sends in PostgreSQL's pipeline mode.

The write transaction sends statements whose results it does not need without waiting for
each (the claim and version check with the index version's bump, the index rows, the
AuditEvents and stage update, the identity rows; decision 0025, session-9 addendum). An
error in any of them is raised at the pipeline's next wait: it must still roll the whole
batch back, so that the batch is split, every other message written, and only the message
that fails parked in the error queue with its reason (the cause's class, never data).
"""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, func, select, text

from sharedcare.db.tables import Feed, MessageStage, Resource
from sharedcare.ingest.hl7v2.mapping import map_message
from sharedcare.ingest.preplan import Preplanner
from sharedcare.ingest.stages import Stage
from sharedcare.ingest.store import FeedRegistry, Incoming, store_messages
from sharedcare.ingest.writer import ToWrite, write_messages, write_preplanned
from sharedcare.record.sqlstore import SqlStore

STAGE = MessageStage.__table__  # the stage rows (decision 0034, session-9 addendum)
RESOURCE = Resource.__table__


def adt(cid: str, patient: str, family: str) -> str:
    return "\r".join(
        [
            f"MSH|^~\\&|PAS|RBD|SC|ICS|20240315101500||ADT^A01|{cid}|P|2.4",
            "EVN|A01|20240315101500",
            f"PID|1||{patient}^^^RBD^MR||{family}^ALEX||19650412|F",
            f"PV1|1|I|W12^B^3^RBD||||||||||||||||V-{cid}^^^RBD^VN",
        ]
    )


def _stored(engine: Engine, families: list[str]) -> list[ToWrite]:
    items = [
        Incoming(
            "hl7v2",
            "PAS",
            "RBD",
            f"E{i}",
            "ADT^A01",
            adt(f"E{i}", f"Q{i}", family).encode(),
            Stage.MAPPED,
        )
        for i, family in enumerate(families)
    ]
    stored = store_messages(engine, items, FeedRegistry())
    return [
        ToWrite(done.message_id, done.feed, map_message(item.raw))
        for done, item in zip(stored, items, strict=True)
    ]


def _refuse(engine: Engine, table: str, condition: str) -> None:
    """A trigger that makes inserts into ``table`` matching ``condition`` fail."""
    with engine.begin() as connection:
        connection.execute(
            text(
                "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF {condition} THEN RAISE EXCEPTION 'refused by the test'; END IF; "
                "RETURN NEW; END $$"
            )
        )
        connection.execute(
            text(
                f"CREATE TRIGGER refuse BEFORE INSERT ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION refuse()"
            )
        )


@pytest.mark.parametrize("preplanned", [True, False], ids=["planned-ahead", "planned-in-tx"])
@pytest.mark.parametrize(
    "table",
    ["idx_string", "audit_event", "identity_link"],
    ids=["index-row", "audit-event", "identity-link"],
)
def test_a_failing_pipelined_statement_rolls_back_the_batch_and_parks_only_its_message(
    pg_engine: Engine, table: str, preplanned: bool
) -> None:
    engine = pg_engine
    good1, bad, good2 = _stored(engine, ["TESTER", "REFUSED", "TESTER"])
    if table == "idx_string":  # the source Patient's family name, in the array INSERT
        _refuse(engine, table, "NEW.exact = 'REFUSED'")
    elif table == "audit_event":  # the message's AuditEvent, sent with the stage update
        _refuse(engine, table, f"strpos(NEW.content::text, 'message {bad.message_id}:') > 0")
    else:  # the Patient's link to its golden record, sent with the other identity rows
        _refuse(engine, table, f"NEW.source_id = '{bad.mapped.resources[0]['id']}'")
    store = SqlStore(engine)
    items = [good1, bad, good2]

    if preplanned:
        ticket = Preplanner(engine, store).plan(items)
        assert ticket.preplanned is not None
        outcomes, as_planned = write_preplanned(engine, store, ticket.preplanned)
        assert not as_planned  # the batch failed as planned and was split
    else:
        outcomes = write_messages(engine, store, items)

    by_id = {o.message_id: o for o in outcomes}
    assert [by_id[i.message_id].stage for i in items] == [
        Stage.WRITTEN.value,
        Stage.FAILED.value,
        Stage.WRITTEN.value,
    ]
    reason = by_id[bad.message_id].error or ""
    assert "(ProgrammingError)" in reason  # psycopg's class of a RAISE EXCEPTION
    assert f"sharedcare ingest replay --id {bad.message_id}" in reason
    assert "REFUSED" not in reason
    with engine.connect() as connection:
        stages = dict(connection.execute(select(STAGE.c.id, STAGE.c.stage)).all())
        stored_error = connection.scalar(select(STAGE.c.error).where(STAGE.c.id == bad.message_id))
        patients = set(
            connection.scalars(select(RESOURCE.c.id).where(RESOURCE.c.resource_type == "Patient"))
        )
        audits = list(connection.scalars(text("SELECT content::text FROM audit_event")))
        errors = connection.scalar(select(func.sum(Feed.__table__.c.error_count)))
    assert stages[good1.message_id] == stages[good2.message_id] == Stage.WRITTEN.value
    assert stages[bad.message_id] == Stage.FAILED.value
    assert stored_error == reason
    assert errors == 1
    # Nothing of the failed message is in the record: its Patient and its AuditEvent were
    # rolled back with the batch and never written alone.
    bad_patient = bad.mapped.resources[0]
    assert bad_patient["resourceType"] == "Patient"
    assert bad_patient["id"] not in patients
    assert {good1.mapped.resources[0]["id"], good2.mapped.resources[0]["id"]} <= patients
    assert not any(f"message {bad.message_id}:" in a for a in audits)
    for good in (good1, good2):
        assert sum(f"message {good.message_id}:" in a for a in audits) == 1
