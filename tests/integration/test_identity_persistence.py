"""The persisted master patient index, on SQLite and PostgreSQL: golden records as Patients,
stable ids across a restart, merge/unmerge, review, NHS-number search, golden $everything,
and the identity stage of the ingest writer (A28 + FHIR Patient, A40)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, select

from sharedcare.db.tables import IdentityAction, IdentityLink, IdentityReview, IdentityTrail
from sharedcare.identity.batch import link_all
from sharedcare.identity.golden import GOLDEN_SOURCE, GOLDEN_SYSTEM
from sharedcare.identity.nhs_number import NHS_NUMBER_SYSTEM
from sharedcare.identity.service import (
    IdentityError,
    IdentityService,
    SourcePatient,
    identity_service,
)
from sharedcare.ingest.hl7v2.mapping import map_message
from sharedcare.ingest.stages import Stage
from sharedcare.ingest.store import FeedRef, FeedRegistry, Incoming, store_messages
from sharedcare.ingest.writer import ToWrite, write_messages
from sharedcare.record.context import RequestContext
from sharedcare.record.repository import Repository
from sharedcare.record.sqlstore import SqlStore

NHS = "9434765919"  # a valid test-range number (modulus 11)


def org(code: str) -> RequestContext:
    return RequestContext(user=f"feed:{code}", organisation=code, role="feed", feed=f"PAS@{code}")


def patient(
    pid: str,
    *,
    given: str = "Alexandra",
    family: str = "Tester",
    birth: str = "1965-04-12",
    nhs: str | None = NHS,
    postcode: str = "BH1 1AA",
    line: str = "1 High Street",
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": pid,
        "name": [{"use": "official", "family": family, "given": [given]}],
        "gender": "female",
        "birthDate": birth,
        "address": [{"use": "home", "line": [line], "postalCode": postcode}],
    }
    if nhs:
        resource["identifier"] = [{"system": NHS_NUMBER_SYSTEM, "value": nhs}]
    return resource


@pytest.fixture
def store(engine: Engine) -> SqlStore:
    store = SqlStore(engine)
    store.ensure_params()
    return store


def put(store: SqlStore, context: RequestContext, resource: dict[str, Any]) -> None:
    Repository(store, context).update(resource["resourceType"], resource["id"], resource)


def read(store: SqlStore, pid: str) -> dict[str, Any]:
    return Repository(store, RequestContext.system()).read("Patient", pid).json()


def golden_of(engine: Engine, source_id: str) -> str:
    with engine.connect() as connection:
        golden = connection.scalar(
            select(IdentityLink.golden_id).where(IdentityLink.source_id == source_id)
        )
    assert golden is not None
    return str(golden)


def restart(engine: Engine, store: SqlStore) -> IdentityService:
    """A fresh service, as after a restart, rebuilt from the database."""
    service = IdentityService()
    with engine.connect() as connection:
        service.rebuild(connection)
    return service


def test_sources_link_to_one_golden_patient_that_survives_a_restart(
    engine: Engine, store: SqlStore
) -> None:
    put(store, org("RBD"), patient("a1"))
    put(store, org("Y0001"), patient("g1", given="Alex", postcode="BH2 2BB", line="2 Low Road"))
    report = link_all(engine, store)  # both were matched as they were written
    assert (report.seen, report.matched, report.goldens) == (2, 0, 1)
    golden_id = golden_of(engine, "a1")
    assert golden_of(engine, "g1") == golden_id

    golden = read(store, golden_id)
    assert golden["meta"]["source"] == GOLDEN_SOURCE
    assert {"system": GOLDEN_SYSTEM, "value": golden_id, "use": "official"} in golden["identifier"]
    assert {"system": NHS_NUMBER_SYSTEM, "value": NHS} in golden["identifier"]
    assert golden["active"] is True
    assert golden["birthDate"] == "1965-04-12"
    assert sorted((link["type"], link["other"]["reference"]) for link in golden["link"]) == [
        ("seealso", "Patient/a1"),
        ("seealso", "Patient/g1"),
    ]
    # The sources are kept exactly as sent: no links were added to them.
    assert "link" not in read(store, "a1")

    # Idempotent: a second run matches nothing again and writes no new golden version.
    again = link_all(engine, store)
    assert (again.matched, again.unchanged) == (0, 2)
    assert read(store, golden_id)["meta"]["versionId"] == golden["meta"]["versionId"]

    # After a restart the index is rebuilt from the tables: same golden id for a newcomer.
    service = restart(engine, store)
    assert service.golden_of("a1") == golden_id
    assert service.last_rebuild_seconds is not None
    put(store, org("RDZ"), patient("c1", given="Alexandra"))
    link_all(engine, store)
    assert golden_of(engine, "c1") == golden_id

    with engine.connect() as connection:
        actions = set(connection.scalars(select(IdentityTrail.action)))
    assert "link" in actions


def test_merge_leaves_replaced_by_and_unmerge_restores_even_after_restart(
    engine: Engine, store: SqlStore
) -> None:
    put(store, org("RBD"), patient("a1", nhs=None))
    put(
        store,
        org("Y0001"),
        patient("b1", given="Brian", family="Other", birth="1950-01-01", nhs=None),
    )
    link_all(engine, store)
    keep, retire = golden_of(engine, "a1"), golden_of(engine, "b1")
    assert keep != retire
    service = identity_service(engine)
    reviewer = RequestContext(user="dr.who", organisation="RBD", role="clinician")
    with service.transaction(engine, store, reviewer) as work:
        merge_id = work.merge(keep, retire, origin="manual", reason="same person per GP")
    assert golden_of(engine, "b1") == keep
    retired = read(store, retire)
    assert retired["active"] is False
    assert retired["link"] == [{"other": {"reference": f"Patient/{keep}"}, "type": "replaced-by"}]
    kept = read(store, keep)
    assert {"other": {"reference": f"Patient/{retire}"}, "type": "replaces"} in kept["link"]
    assert {"other": {"reference": "Patient/b1"}, "type": "seealso"} in kept["link"]

    # Forget the in-memory index: the merge must still be undoable from the tables.
    restart_service = identity_service(engine)
    restart_service._matcher = None
    with restart_service.transaction(engine, store, reviewer) as work:
        work.unmerge(merge_id)
    assert golden_of(engine, "b1") == retire
    restored = read(store, retire)
    assert restored["active"] is True
    assert restored["link"] == [{"other": {"reference": "Patient/b1"}, "type": "seealso"}]
    assert all(link["other"]["reference"] != "Patient/b1" for link in read(store, keep)["link"])
    with (
        pytest.raises(IdentityError, match="undone already"),
        restart_service.transaction(engine, store, reviewer) as work,
    ):
        work.unmerge(merge_id)


def _review_pair(engine: Engine, store: SqlStore) -> int:
    # Same names, a date of birth one keystroke apart, different homes, no NHS numbers:
    # probable but not certain, so queued for review.
    put(store, org("RBD"), patient("a1", nhs=None, birth="1965-04-12"))
    put(
        store,
        org("Y0001"),
        patient("g1", nhs=None, birth="1965-04-13", postcode="DT1 9ZZ", line="9 Far Lane"),
    )
    link_all(engine, store)
    with engine.connect() as connection:
        [review] = connection.execute(select(IdentityReview)).all()
    assert review.status == "open"
    evidence = orjson.loads(review.evidence)
    assert {e["field"] for e in evidence["evidence"]} >= {"given_name", "birth_date"}
    return int(review.id)


def test_review_confirmed_merges_the_pair(engine: Engine, store: SqlStore) -> None:
    review_id = _review_pair(engine, store)
    first, second = golden_of(engine, "a1"), golden_of(engine, "g1")
    assert first != second
    reviewer = RequestContext(user="clerk", organisation="ICS", role="identity-reviewer")
    service = identity_service(engine)
    with service.transaction(engine, store, reviewer) as work:
        merge_id = work.decide(review_id, same_person=True, reason="confirmed by phone")
    assert merge_id is not None
    assert golden_of(engine, "a1") == golden_of(engine, "g1") == first  # the older id is kept
    with engine.connect() as connection:
        row = connection.execute(select(IdentityReview)).one()
    assert (row.status, row.reviewer, row.merge_id) == ("confirmed", "clerk", merge_id)
    with (
        pytest.raises(IdentityError, match="not open"),
        service.transaction(engine, store, reviewer) as work,
    ):
        work.decide(review_id, same_person=False)


def test_review_rejected_keeps_them_apart(engine: Engine, store: SqlStore) -> None:
    review_id = _review_pair(engine, store)
    service = identity_service(engine)
    with service.transaction(engine, store) as work:
        assert work.decide(review_id, same_person=False, reason="different people") is None
    assert golden_of(engine, "a1") != golden_of(engine, "g1")
    with engine.connect() as connection:
        assert connection.scalar(select(IdentityReview.status)) == "rejected"
    # A changed record that scores the same pair again is not queued again.
    put(
        store,
        org("Y0001"),
        patient("g1", nhs=None, birth="1965-04-13", postcode="DT1 9ZZ", line="10 Far Lane"),
    )
    assert link_all(engine, store).matched == 0  # re-matched as it was written
    with engine.connect() as connection:
        assert list(connection.scalars(select(IdentityReview.status))) == ["rejected"]


def test_nhs_number_search_returns_golden_and_sources(engine: Engine, store: SqlStore) -> None:
    put(store, org("RBD"), patient("a1"))
    put(store, org("Y0001"), patient("g1", given="Alex"))
    put(store, org("Y0001"), patient("x1", given="Zed", family="Else", nhs="9434765870"))
    put(store, org("RDZ"), patient("n1", nhs=None))  # the same person, no NHS number
    link_all(engine, store)
    golden_id = golden_of(engine, "a1")
    assert golden_of(engine, "n1") == golden_id
    repo = Repository(store, RequestContext.system())
    page = repo.search("Patient", [("identifier", f"{NHS_NUMBER_SYSTEM}|{NHS}")])
    assert {s.id for s in page.matches} == {golden_id, "a1", "g1"}
    # The golden record's links bring in the source that lacks the number.
    page = repo.search(
        "Patient",
        [("identifier", f"{NHS_NUMBER_SYSTEM}|{NHS}"), ("_include", "Patient:link")],
    )
    assert {s.id for s in page.matches} | {s.id for s in page.included} == {
        golden_id,
        "a1",
        "g1",
        "n1",
    }


def test_golden_everything_spans_every_source_organisation(engine: Engine, store: SqlStore) -> None:
    put(store, org("RBD"), patient("a1"))
    put(store, org("Y0001"), patient("g1", given="Alex"))
    put(store, org("Y0002"), patient("z1", given="Zed", family="Else", nhs="9434765870"))
    put(
        store,
        org("RBD"),
        {
            "resourceType": "Encounter",
            "id": "e1",
            "status": "finished",
            "class": {"code": "IMP"},
            "subject": {"reference": "Patient/a1"},
        },
    )
    put(
        store,
        org("Y0001"),
        {
            "resourceType": "Observation",
            "id": "o1",
            "status": "final",
            "code": {"text": "weight"},
            "subject": {"reference": "Patient/g1"},
        },
    )
    put(
        store,
        org("Y0002"),
        {
            "resourceType": "Observation",
            "id": "o2",
            "status": "final",
            "code": {"text": "weight"},
            "subject": {"reference": "Patient/z1"},
        },
    )
    link_all(engine, store)
    golden_id = golden_of(engine, "a1")
    repo = Repository(store, RequestContext(user="dr", organisation="RBD", role="clinician"))
    page = repo.everything(golden_id)
    found, total = page.resources, page.total
    assert {(s.resource_type, s.id) for s in found} == {
        ("Patient", golden_id),
        ("Patient", "a1"),
        ("Patient", "g1"),
        ("Encounter", "e1"),
        ("Observation", "o1"),
    }
    assert total == 5
    first = repo.everything(golden_id, count=3).resources
    rest = repo.everything(golden_id, count=3, offset=3).resources
    assert len(first) == 3 and len(rest) == 2
    assert {s.id for s in first} | {s.id for s in rest} == {s.id for s in found}
    # A source's own $everything is its compartment only (the golden Patient is in it by
    # its link, as the Patient CompartmentDefinition says).
    own = repo.everything("a1").resources
    assert {s.id for s in own} == {"a1", "e1", golden_id}


A28 = "\r".join(
    [
        "MSH|^~\\&|PAS|RBD|SC|ICS|20240315101500||ADT^A28|C1|P|2.4",
        "EVN|A28|20240315101500",
        f"PID|1||H100^^^RBD^MR~{NHS}^^^NHS^NH||TESTER^ALEXANDRA||19650412|F|||"
        "1 High Street^^Bournemouth^^BH1 1AA",
        "PV1|1|N",
    ]
)


def _ingest(engine: Engine, store: SqlStore, *texts: str) -> None:
    registry = FeedRegistry()
    incoming = [
        Incoming("hl7v2", "PAS", "RBD", t.split("|")[9], "ADT", t.encode(), Stage.MAPPED)
        for t in texts
    ]
    stored = store_messages(engine, incoming, registry)
    items = [
        ToWrite(s.message_id, s.feed, map_message(t.encode()))
        for s, t in zip(stored, texts, strict=True)
    ]
    assert isinstance(items[0].feed, FeedRef)
    outcomes = write_messages(engine, store, items)
    assert all(o.stage == "written" for o in outcomes), outcomes


def _source_ids(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        return list(connection.scalars(select(IdentityLink.source_id)))


def test_ingested_a28_and_fhir_patient_end_in_one_golden(engine: Engine, store: SqlStore) -> None:
    _ingest(engine, store, A28)
    [adt_patient] = _source_ids(engine)  # matched in the writer's transaction
    put(store, org("Y0001"), patient("gp-1", given="Alexandra"))
    link_all(engine, store)
    assert golden_of(engine, "gp-1") == golden_of(engine, adt_patient)
    golden = read(store, golden_of(engine, adt_patient))
    assert len([link for link in golden["link"] if link["type"] == "seealso"]) == 2


def test_a40_goes_through_the_same_merge(engine: Engine, store: SqlStore) -> None:
    prior = A28.replace("H100", "H099").replace(f"~{NHS}^^^NHS^NH", "").replace("|C1|", "|C0|")
    other = prior.replace("TESTER^ALEXANDRA", "SMITH^JO").replace("19650412", "19900101")
    _ingest(engine, store, A28, other)
    first, second = sorted(_source_ids(engine))
    assert golden_of(engine, first) != golden_of(engine, second)
    a40 = "\r".join(
        [
            "MSH|^~\\&|PAS|RBD|SC|ICS|20240316101500||ADT^A40|C9|P|2.4",
            "EVN|A40|20240316101500",
            f"PID|1||H100^^^RBD^MR~{NHS}^^^NHS^NH||TESTER^ALEXANDRA||19650412|F",
            "MRG|H099^^^RBD^MR",
        ]
    )
    _ingest(engine, store, a40)
    assert golden_of(engine, first) == golden_of(engine, second)
    with engine.connect() as connection:
        assert connection.scalar(select(IdentityAction.status)) == "applied"
        origins = list(connection.scalars(select(IdentityTrail.action)))
    assert "merge" in origins


def test_chained_merges_undo_in_turn_after_a_restart(engine: Engine, store: SqlStore) -> None:
    people = {
        "a1": patient("a1", nhs=None),
        "b1": patient("b1", given="Brian", family="Other", birth="1950-01-01", nhs=None),
        "c1": patient("c1", given="Cara", family="Third", birth="1933-03-03", nhs=None),
    }
    for resource in people.values():
        put(store, org("RBD"), resource)
    link_all(engine, store)
    a, b, c = (golden_of(engine, s) for s in ("a1", "b1", "c1"))
    service = identity_service(engine)
    with service.transaction(engine, store) as work:
        first = work.merge(a, b, origin="manual")
    with service.transaction(engine, store) as work:
        second = work.merge(c, a, origin="manual")
    assert {golden_of(engine, s) for s in people} == {c}
    assert service.golden_of("b1") == c

    service._matcher = None  # as after a restart: rebuilt from the tables
    with (
        service.transaction(engine, store) as work,
        pytest.raises(IdentityError, match="cannot be undone"),
    ):
        work.unmerge(first)  # its kept record was merged again: undo that first
    with service.transaction(engine, store) as work:
        work.unmerge(second)
    assert [golden_of(engine, s) for s in ("a1", "b1", "c1")] == [a, a, c]
    with service.transaction(engine, store) as work:
        work.unmerge(first)
    assert [golden_of(engine, s) for s in ("a1", "b1", "c1")] == [a, b, c]
    assert read(store, b)["active"] is True
    assert "link" not in read(store, c) or all(
        link["type"] == "seealso" for link in read(store, c)["link"]
    )


def _source(store: SqlStore, pid: str) -> SourcePatient:
    stored = Repository(store, RequestContext.system()).read("Patient", pid)
    return SourcePatient(pid, stored.version_id, stored.json())


def test_another_process_catches_up_without_a_rebuild(engine: Engine, store: SqlStore) -> None:
    one, two = IdentityService(), IdentityService()  # as in two processes
    put(store, org("RBD"), patient("a1"))
    put(store, org("RBD"), patient("b1", given="Brian", family="Other", birth="1950-01-01"))
    sources = [_source(store, "a1"), _source(store, "b1")]
    with one.transaction(engine, store) as work:
        work.place(sources)
    with two.transaction(engine, store):
        pass  # loads the index
    a, b = golden_of(engine, "a1"), golden_of(engine, "b1")

    put(store, org("RBD"), patient("a1", postcode="DT1 1AA", line="5 New Road"))
    put(store, org("Y0001"), patient("g1", given="Alex"))
    put(store, org("Y0002"), patient("x1", given="Xan", family="Gone", nhs=None))
    sources = [_source(store, s) for s in ("a1", "g1", "x1")]
    with one.transaction(engine, store) as work:
        work.place(sources)
        merge_id = work.merge(a, b, origin="manual")
    with one.transaction(engine, store) as work:
        work.remove(["x1"])

    two.last_rebuild_seconds = None
    put(store, org("RDZ"), patient("c1"))
    sources = [_source(store, "c1")]
    with two.transaction(engine, store) as work:
        work.place(sources)
    assert two.last_rebuild_seconds is None  # caught up from the changed rows only
    assert golden_of(engine, "c1") == a
    assert two.golden_of("b1") == two.golden_of("g1") == a
    assert two.golden_of("x1") is None
    assert sorted(k[1] for k in two.matcher.members(a)) == ["a1", "b1", "c1", "g1"]
    held = {k[1]: k for k in two.matcher.members(a)}
    assert held["a1"] in two.matcher.members(a)

    # An unmerge made elsewhere cannot be applied incrementally: that process rebuilds.
    with two.transaction(engine, store) as work:
        work.unmerge(merge_id)  # the merge was made by `one`: rebuilt and replayed here
    assert golden_of(engine, "b1") == b
    one.last_rebuild_seconds = None
    with one.transaction(engine, store):
        pass
    assert one.last_rebuild_seconds is not None
    assert one.golden_of("b1") == b and one.golden_of("c1") == a
