"""The ingest writer plans a batch while the one before it commits (decision 0025).

A plan made ahead is used only if it is the plan the write transaction would make: every
resource still at the version it was planned on, every message still waiting, and every
batch before it written exactly as planned. Otherwise the batch is planned again in its
transaction, so the record ends up as if the batches had been written one by one.
"""

from __future__ import annotations

from sqlalchemy import Engine, select

from sharedcare.db.tables import MessageStage, Resource
from sharedcare.ingest.hl7v2.mapping import map_message
from sharedcare.ingest.preplan import Preplanner
from sharedcare.ingest.stages import Stage
from sharedcare.ingest.store import FeedRegistry, Incoming, store_messages
from sharedcare.ingest.writer import ToWrite, write_messages, write_preplanned
from sharedcare.record.sqlstore import SqlStore

RESOURCE = Resource.__table__


def adt(cid: str, patient: str, given: str = "ALEX") -> str:
    return "\r".join(
        [
            f"MSH|^~\\&|PAS|RBD|SC|ICS|20240315101500||ADT^A08|{cid}|P|2.4",
            "EVN|A08|20240315101500",
            f"PID|1||{patient}^^^RBD^MR||TESTER^{given}||19650412|F",
            f"PV1|1|I|W12^B^3^RBD||||||||||||||||V-{patient}^^^RBD^VN",
        ]
    )


def _stored(engine: Engine, messages: list[tuple[str, str, str]]) -> list[ToWrite]:
    items = [
        Incoming("hl7v2", "PAS", "RBD", cid, "ADT^A08", adt(cid, p, g).encode(), Stage.MAPPED)
        for cid, p, g in messages
    ]
    stored = store_messages(engine, items, FeedRegistry())
    return [
        ToWrite(done.message_id, done.feed, map_message(item.raw))
        for done, item in zip(stored, items, strict=True)
    ]


def _versions(engine: Engine) -> dict[tuple[str, str], int]:
    """(type, id) -> current version of every source resource (golden records left out)."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(RESOURCE.c.resource_type, RESOURCE.c.id, RESOURCE.c.version_id)
        ).all()
    return {(t, i): v for t, i, v in rows}


def _patient_id(item: ToWrite) -> str:
    found: str = next(r["id"] for r in item.mapped.resources if r["resourceType"] == "Patient")
    return found


def _stages(engine: Engine) -> dict[int, str]:
    with engine.connect() as connection:
        rows = connection.execute(select(MessageStage.id, MessageStage.stage))
        return {r.id: r.stage for r in rows}


def test_batches_planned_ahead_of_each_other_are_written_as_planned(engine: Engine) -> None:
    store = SqlStore(engine)
    first = _stored(engine, [("C1", "P1", "ALEX"), ("C2", "P2", "SAM")])
    second = _stored(engine, [("C3", "P1", "ALEXANDRA"), ("C4", "P3", "KIM")])
    planner = Preplanner(engine, store)

    # The second batch is planned before the first is written: it builds on the first's plan.
    one, two = planner.plan(first), planner.plan(second)
    assert one.preplanned is not None and two.preplanned is not None
    outcomes, as_planned = write_preplanned(engine, store, one.preplanned)
    assert as_planned and [o.stage for o in outcomes] == [Stage.WRITTEN.value] * 2
    planner.finished(one, as_planned)
    usable = planner.usable(two)
    assert usable is not None
    outcomes, as_planned = write_preplanned(engine, store, usable)
    assert as_planned and [o.stage for o in outcomes] == [Stage.WRITTEN.value] * 2

    versions = _versions(engine)
    assert versions[("Patient", _patient_id(first[0]))] == 2  # changed by the second batch
    assert versions[("Patient", _patient_id(first[1]))] == 1
    assert versions[("Patient", _patient_id(second[1]))] == 1
    ward = next(k for k in versions if k[0] == "Location")
    assert versions[ward] == 1  # the same ward in every message: written once
    assert set(_stages(engine).values()) == {Stage.WRITTEN.value}


def test_a_plan_whose_versions_changed_meanwhile_is_planned_again(engine: Engine) -> None:
    store = SqlStore(engine)
    [planned] = _stored(engine, [("C1", "P1", "ALEX")])
    [meanwhile] = _stored(engine, [("C2", "P1", "JO")])
    planner = Preplanner(engine, store)
    ticket = planner.plan([planned])
    assert ticket.preplanned is not None

    write_messages(engine, store, [meanwhile])  # another writer: Patient P1 at version 1
    outcomes, as_planned = write_preplanned(engine, store, ticket.preplanned)

    assert not as_planned
    assert [o.stage for o in outcomes] == [Stage.WRITTEN.value]
    assert _versions(engine)[("Patient", _patient_id(planned))] == 2
    planner.finished(ticket, as_planned)
    # Plans made before that are void; the next batch is planned afresh.
    later = planner.plan(_stored(engine, [("C3", "P2", "SAM")]))
    assert planner.usable(later) is not None


def test_plans_made_after_a_batch_written_otherwise_are_not_used(engine: Engine) -> None:
    store = SqlStore(engine)
    first = _stored(engine, [("C1", "P1", "ALEX")])
    second = _stored(engine, [("C2", "P1", "ALEXANDRA")])
    planner = Preplanner(engine, store)
    one, two = planner.plan(first), planner.plan(second)

    planner.finished(one, as_planned=False)  # e.g. split after a database error

    assert planner.usable(two) is None


def test_a_planned_message_another_writer_finished_is_written_once(engine: Engine) -> None:
    store = SqlStore(engine)
    [item] = _stored(engine, [("C1", "P1", "ALEX")])
    ticket = Preplanner(engine, store).plan([item])
    assert ticket.preplanned is not None
    write_messages(engine, store, [item])
    before = _versions(engine)

    outcomes, as_planned = write_preplanned(engine, store, ticket.preplanned)

    assert not as_planned
    assert [(o.stage, o.skipped) for o in outcomes] == [(Stage.WRITTEN.value, True)]
    assert _versions(engine) == before


def test_a_resource_planned_as_unchanged_but_changed_meanwhile_is_written(engine: Engine) -> None:
    store = SqlStore(engine)
    [first] = _stored(engine, [("C1", "P1", "ALEX")])
    write_messages(engine, store, [first])
    [again] = _stored(engine, [("C2", "P1", "ALEX")])
    [meanwhile] = _stored(engine, [("C3", "P1", "JO")])
    ticket = Preplanner(engine, store).plan([again])  # the Patient is unchanged: no write
    assert ticket.preplanned is not None

    write_messages(engine, store, [meanwhile])  # another writer changes it first
    _, as_planned = write_preplanned(engine, store, ticket.preplanned)

    # The later message's Patient is the current one, as if planned in its transaction.
    assert not as_planned
    patient = _patient_id(first)
    assert _versions(engine)[("Patient", patient)] == 3
    with engine.connect() as connection:
        content = connection.scalar(select(RESOURCE.c.content).where(RESOURCE.c.id == patient))
    assert b"ALEX" in (content if isinstance(content, bytes) else str(content).encode())
