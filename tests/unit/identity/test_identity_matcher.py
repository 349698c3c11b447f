import itertools
from typing import Any

import pytest

from sharedcare.identity.matcher import DecisionKind, Matcher, MatchError, ReviewKind
from sharedcare.identity.model import Band
from sharedcare.identity.person import PersonRecord


def make_matcher() -> Matcher:
    counter = itertools.count(1)
    return Matcher(id_factory=lambda: f"G{next(counter)}")


def person(source: str, local_id: str, **kw: Any) -> PersonRecord:
    base: dict[str, Any] = dict(
        given_name="Jonathan",
        family_name="Whitfield",
        birth_date="1980-03-14",
        sex="male",
        postcode="BH1 1AA",
        address="1 High Street, Bournemouth",
    )
    base.update(kw)
    return PersonRecord.create(source, local_id, **base)


def test_first_record_starts_a_golden_record() -> None:
    m = make_matcher()
    d = m.add(person("gp", "1", nhs_number="9434765919"))
    assert d.kind is DecisionKind.NEW and d.band is Band.NO_LINK
    assert d.golden_id == "G1"
    assert m.golden_count == 1


def test_deterministic_link_on_nhs_number_and_birth_date() -> None:
    m = make_matcher()
    m.add(person("gp", "1", nhs_number="9434765919"))
    d = m.add(
        person(
            "acute",
            "A",
            given_name="X",
            family_name="Y",
            postcode="DT1 1AA",
            nhs_number="943 476 5919",
        )
    )
    assert d.kind is DecisionKind.DETERMINISTIC
    assert d.golden_id == "G1"
    assert d.score is not None and d.score.deterministic
    assert d.matched_record == ("gp", "1")


def test_invalid_nhs_number_is_not_deterministic() -> None:
    m = make_matcher()
    m.add(person("gp", "1", given_name="Ann", family_name="Lee", nhs_number="9434765918"))
    d = m.add(
        person(
            "acute",
            "A",
            given_name="Zed",
            family_name="Ko",
            nhs_number="9434765918",
            postcode="DT9 9ZZ",
            address="5 Far Road",
        )
    )
    assert d.kind is not DecisionKind.DETERMINISTIC


def test_probabilistic_link_with_typos_and_explanation() -> None:
    m = make_matcher()
    m.add(person("gp", "1"))
    d = m.add(
        person(
            "acute",
            "A",
            given_name="Jon",
            family_name="Whitfeild",
            birth_date="1980-14-03".replace("1980-14-03", "1980-03-14"),
            address="1 High St",
        )
    )
    assert d.kind is DecisionKind.PROBABILISTIC
    assert d.band is Band.AUTO_LINK
    assert d.golden_id == "G1"
    assert d.score is not None
    evidence = {e.field: e for e in d.score.evidence}
    assert evidence["given_name"].level == "alias"
    assert evidence["family_name"].level == "jaro_winkler_0.92"
    assert evidence["birth_date"].level == "exact"
    assert evidence["nhs_number"].level == "null" and evidence["nhs_number"].weight == 0
    assert d.score.match_weight == pytest.approx(
        m.model.prior_weight + sum(e.weight for e in d.score.evidence)
    )
    assert m.decision(("acute", "A")) == d


def test_day_month_swap_still_links() -> None:
    m = make_matcher()
    m.add(person("gp", "1", birth_date="1980-03-04"))
    d = m.add(person("acute", "A", birth_date="1980-04-03"))
    assert d.golden_id == "G1"
    assert d.score is not None
    assert {e.field: e.level for e in d.score.evidence}["birth_date"] == "day_month_swap"


def test_different_person_gets_own_golden_record() -> None:
    m = make_matcher()
    m.add(person("gp", "1"))
    d = m.add(
        person(
            "gp",
            "2",
            given_name="Margaret",
            family_name="Okafor",
            birth_date="1955-11-30",
            sex="female",
            postcode="DT4 7QQ",
            address="9 Quay Road",
        )
    )
    assert d.golden_id == "G2"
    assert d.band is Band.NO_LINK


def test_twin_goes_to_review_not_auto_link() -> None:
    m = make_matcher()
    m.add(person("gp", "1"))
    d = m.add(person("gp", "2", given_name="Samuel"))
    assert d.kind is DecisionKind.NEW
    assert d.band is Band.REVIEW
    assert d.golden_id == "G2"
    [item] = m.reviews()
    assert item.kind is ReviewKind.POSSIBLE_MATCH
    assert (item.golden_id, item.candidate_golden_id) == ("G2", "G1")


def test_reviews_since_gives_what_each_placement_raised_resolved_or_not() -> None:
    m = make_matcher()
    m.add(person("gp", "1"))
    assert (m.review_count(), m.reviews_since(0)) == (0, [])
    m.add(person("gp", "2", given_name="Samuel"))
    m.add(person("gp", "3", given_name="Simon"))
    raised = m.reviews(open_only=False)
    assert len(raised) >= 2 and m.review_count() == len(raised)
    assert m.reviews_since(0) == raised and m.reviews_since(1) == raised[1:]
    m.resolve_review(raised[0].id, same_person=False)  # resolved items stay in the log
    assert m.reviews_since(0) == m.reviews(open_only=False) == raised
    assert m.reviews_since(m.review_count()) == []


def test_review_resolution_merges_keeping_older_id() -> None:
    m = make_matcher()
    m.add(person("gp", "1"))
    m.add(person("gp", "2", given_name="Samuel"))
    [item] = m.reviews()
    event = m.resolve_review(item.id, same_person=True)
    assert event is not None and event.kept == "G1" and event.retired == "G2"
    assert m.resolve("G2") == "G1"
    assert m.members("G1") == [("gp", "1"), ("gp", "2")]
    assert m.reviews() == []
    with pytest.raises(MatchError):
        m.resolve_review(item.id, same_person=True)


def test_review_rejection_keeps_records_apart() -> None:
    m = make_matcher()
    m.add(person("gp", "1"))
    m.add(person("gp", "2", given_name="Samuel"))
    [item] = m.reviews()
    assert m.resolve_review(item.id, same_person=False) is None
    assert m.golden_id_of(("gp", "2")) == "G2"
    assert m.reviews(open_only=False)[0].outcome == "different-people"


def test_merge_and_unmerge_keep_ids_stable() -> None:
    m = make_matcher()
    m.add(person("gp", "1"))
    m.add(
        person(
            "gp",
            "2",
            given_name="Alice",
            family_name="Brown",
            birth_date="1990-01-01",
            postcode="DT1 1AA",
            address="3 Low Road",
            sex="female",
        )
    )
    m.add(
        person(
            "acute",
            "B",
            given_name="Alice",
            family_name="Brown",
            birth_date="1990-01-01",
            postcode="DT1 1AA",
            address="3 Low Road",
            sex="female",
        )
    )
    assert m.golden_id_of(("acute", "B")) == "G2"
    event = m.merge("G1", "G2")
    assert m.replaced_by("G2") == "G1"
    assert m.resolve("G2") == "G1"
    assert m.golden_id_of(("acute", "B")) == "G1"
    assert m.golden("G2").golden_id == "G1"  # a held id still resolves
    with pytest.raises(MatchError):
        m.merge("G1", "G2")
    m.unmerge(event.id)
    assert m.replaced_by("G2") is None
    assert m.members("G2") == [("acute", "B"), ("gp", "2")]
    assert m.members("G1") == [("gp", "1")]
    with pytest.raises(MatchError):
        m.unmerge(event.id)


def test_detach_moves_record_to_new_golden_record() -> None:
    m = make_matcher()
    m.add(person("gp", "1"))
    m.add(person("acute", "A"))
    new_id = m.detach(("acute", "A"))
    assert new_id == "G2"
    assert m.members("G1") == [("gp", "1")]
    assert m.decision(("acute", "A")).kind is DecisionKind.MANUAL
    assert m.detach(("acute", "A")) == "G2"  # alone already


def test_incremental_clustering_and_stable_ids_on_relink() -> None:
    m = make_matcher()
    m.add(person("gp", "1"))
    other = dict(
        given_name="Priya",
        family_name="Natarajan",
        birth_date="1972-08-19",
        sex="female",
        postcode="SP7 8AA",
        address="4 Bell Street",
    )
    m.add(person("gp", "2", **other))
    # A record that first looks like nobody in particular...
    d = m.add(
        person(
            "acute",
            "A",
            given_name="P",
            family_name="Smith",
            birth_date="2001-01-01",
            postcode="BH25 5ZZ",
            address="70 Sea Road",
        )
    )
    assert d.golden_id == "G3"
    # ...is corrected at source and now matches gp/2: it relinks, and G3 points to G2.
    d2 = m.update(person("acute", "A", **other))
    assert d2.golden_id == "G2"
    assert m.replaced_by("G3") == "G2"
    assert m.resolve("G3") == "G2"
    assert m.members("G2") == [("acute", "A"), ("gp", "2")]
    assert m.golden_count == 2


def test_update_that_still_matches_keeps_cluster() -> None:
    m = make_matcher()
    m.add(person("gp", "1"))
    m.add(person("acute", "A"))
    d = m.add(person("acute", "A", postcode="BH2 2BB", address="5 New Road"))  # moved house
    assert d.golden_id == "G1"
    assert m.members("G1") == [("acute", "A"), ("gp", "1")]
    assert len(m) == 2


def test_match_is_a_dry_run() -> None:
    m = make_matcher()
    m.add(person("gp", "1"))
    d = m.match(person("acute", "A", given_name="Samuel"))
    assert d.band is Band.REVIEW
    assert len(m) == 1 and m.reviews() == []


def test_possible_duplicate_when_record_matches_two_clusters() -> None:
    m = make_matcher()
    m.load(person("gp", "1"), "G100")
    m.load(person("acute", "X"), "G200")  # the same person, not yet merged
    d = m.add(person("community", "C"))
    assert d.golden_id in ("G100", "G200")
    [item] = m.reviews()
    assert item.kind is ReviewKind.POSSIBLE_DUPLICATE
    assert {item.golden_id, item.candidate_golden_id} == {"G100", "G200"}


def test_remove_and_errors() -> None:
    m = make_matcher()
    m.add(person("gp", "1"))
    m.remove(("gp", "1"))
    assert len(m) == 0
    with pytest.raises(MatchError):
        m.golden_id_of(("gp", "1"))
    with pytest.raises(MatchError):
        m.update(person("gp", "1"))
    with pytest.raises(MatchError):
        m.resolve("nope")
    with pytest.raises(MatchError):
        m.load(person("gp", "9"), "G9")
        m.load(person("gp", "9"), "G9")


def test_survivorship_view_through_matcher() -> None:
    m = make_matcher()
    m.add(person("gp", "1", nhs_number="9434765919"))
    m.add(person("acute", "A", nhs_number="9434765919", given_name="Jon"))
    g = m.golden("G1")
    assert g.nhs_number == "9434765919"
    assert g.members == (("acute", "A"), ("gp", "1"))


def test_restore_from_storage_and_never_reuse_ids() -> None:
    m = make_matcher()
    m.load(person("gp", "1"), "G1")
    m.load_retired("G2", "G1")
    assert m.resolve("G2") == "G1"
    d = m.add(
        person(
            "gp",
            "2",
            given_name="Olive",
            family_name="Quist",
            birth_date="2001-05-05",
            sex="female",
            postcode="DT11 0ZZ",
            address="8 Elm Way",
        )
    )
    assert d.golden_id == "G3"  # G1 and G2 are taken
    with pytest.raises(MatchError, match="merged away"):
        m.load(person("gp", "3"), "G2")
    with pytest.raises(MatchError, match="still has records"):
        m.load_retired("G1", "G3")


def test_merges_lists_undoable_events() -> None:
    m = make_matcher()
    m.load(person("gp", "1"), "G1")
    m.load(person("gp", "2", given_name="Samuel"), "G2")
    event = m.merge("G1", "G2")
    assert m.merges() == [event]
    m.unmerge(event.id)
    assert m.merges() == []


def test_fhir_patients_from_two_sources_link() -> None:
    m = make_matcher()
    gp = {
        "resourceType": "Patient",
        "id": "gp-7",
        "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765919"}],
        "name": [{"given": ["Elizabeth"], "family": "Hart"}],
        "gender": "female",
        "birthDate": "1961-04-09",
        "address": [{"line": ["4 Mill Lane"], "postalCode": "DT1 2AB"}],
    }
    acute = {
        "resourceType": "Patient",
        "id": "mrn-88",
        "name": [{"given": ["Beth"], "family": "Hart"}],
        "gender": "female",
        "birthDate": "1961-09-04",
        "address": [{"line": ["4 Mill Lane"], "postalCode": "DT1 2AB"}],
    }
    m.add(PersonRecord.from_fhir(gp, source="gp"))
    d = m.add(PersonRecord.from_fhir(acute, source="acute"))
    assert d.golden_id == "G1"
    assert d.score is not None
    levels = {e.field: e.level for e in d.score.evidence}
    assert levels == {
        "nhs_number": "null",
        "given_name": "alias",
        "family_name": "exact",
        "birth_date": "day_month_swap",
        "sex": "agree",
        "address": "postcode_and_lines",
    }
    golden = m.golden("G1")
    assert golden.nhs_number == "9434765919"


def test_refresh_takes_a_newer_copy_with_the_same_values_without_rescoring() -> None:
    from datetime import UTC, datetime

    m = make_matcher()
    m.add(person("gp", "1", nhs_number="9434765919"))
    m.add(
        person(
            "pas",
            "9",
            nhs_number="9434765919",
            postcode="DT1 1AA",
            updated=datetime(2020, 1, 1, tzinfo=UTC),
        )
    )
    assert m.golden("G1").postcode == "DT1 1AA"  # the more recently updated record's
    before = m.decision(("gp", "1"))
    newer = PersonRecord.create(
        "gp",
        "1",
        given_name="Jonathan",
        family_name="Whitfield",
        birth_date="1980-03-14",
        sex="male",
        postcode="BH1 1AA",
        address="1 High Street, Bournemouth",
        nhs_number="9434765919",
        updated=datetime(2030, 1, 1, tzinfo=UTC),
    )
    assert m.refresh(newer) == 2  # kept in its cluster of two
    assert m.decision(("gp", "1")) is before  # nothing was scored
    # The newer copy is held: the most recently updated address now survives.
    assert m.golden("G1").postcode == "BH1 1AA"


def test_refresh_leaves_a_changed_or_unknown_record_to_add() -> None:
    m = make_matcher()
    m.add(person("gp", "1"))
    assert m.refresh(person("gp", "1", family_name="Whitfeld")) is None
    assert m.refresh(person("gp", "2")) is None
    assert m.refresh(person("pas", "1")) is None
    assert m.golden("G1").family_name == "Whitfield"
