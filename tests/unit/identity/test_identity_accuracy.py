"""Tests for the accuracy work: typo levels, nickname typos and the truth scorer."""

from pathlib import Path
from typing import Any

import pytest

from sharedcare.identity.compare import COMPARISONS, LEVELS, Features, compare, features
from sharedcare.identity.evaluation import (
    EvaluationError,
    SourceEvent,
    read_events,
    run_matcher,
    score_clusters,
    snapshot,
)
from sharedcare.identity.matcher import Matcher
from sharedcare.identity.nicknames import near_nickname_groups, nickname_groups
from sharedcare.identity.person import PersonRecord


def rec(**kw: Any) -> Features:
    return features(PersonRecord.create("s", "1", **kw))


def level(field: str, a: Features, b: Features) -> str:
    return LEVELS[field][compare(a, b)[COMPARISONS.index(field)]]


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("Ryo", "Roy", "jaro_winkler_0.80"),  # swapped letters in a short name: not "different"
        ("Jo", "Al", "different"),  # two letters: too short to call a typo
        ("Ken", "Ben", "jaro_winkler_0.80"),  # one letter apart, no positive weight either
        ("Roy", "Sam", "different"),
    ],
)
def test_one_typo_given_names_are_not_different(a: str, b: str, expected: str) -> None:
    assert level("given_name", rec(given_name=a), rec(given_name=b)) == expected


def test_one_typo_family_names_are_not_different() -> None:
    assert level("family_name", rec(family_name="Ng"), rec(family_name="Gn")) == "different"
    assert level("family_name", rec(family_name="Orr"), rec(family_name="Rorr")) != "different"


def test_new_nickname_groups() -> None:
    for formal, short in [("KIMBERLEY", "KIM"), ("GILLIAN", "JILL"), ("PAMELA", "PAM")]:
        assert nickname_groups(formal) & nickname_groups(short)


def test_nickname_survives_a_typo_in_a_long_name() -> None:
    assert near_nickname_groups("NIICHOLAS") == nickname_groups("NICHOLAS")
    assert near_nickname_groups("NICHOLAS") == frozenset()  # in the table: exact groups only
    assert level("given_name", rec(given_name="Niicholas"), rec(given_name="Nick")) == "alias"
    # short unknown names are not guessed at
    assert near_nickname_groups("KAY") == frozenset()
    assert near_nickname_groups("ZZZZZZZ") == frozenset()


def test_score_clusters_pairwise_and_cluster_figures() -> None:
    truth = {("a", "1"): "P1", ("b", "1"): "P1", ("c", "1"): "P1", ("a", "2"): "P2"}
    # P1 split in two; P2 wrongly joined to part of P1
    clusters = {("a", "1"): "G1", ("b", "1"): "G1", ("c", "1"): "G2", ("a", "2"): "G2"}
    s = score_clusters(clusters, truth, [(("c", "1"), [("a", "1")])])
    assert (s.true_pairs, s.predicted_pairs, s.correct_pairs) == (3, 2, 1)
    assert s.precision == 0.5 and s.recall == pytest.approx(1 / 3)
    assert s.cluster_precision == 0.5  # G1 pure, G2 mixed
    assert s.cluster_recall == 0.5  # P2 whole, P1 split
    assert (s.review_pairs, s.review_true) == (1, 1)


def test_score_counts_unplaced_records_as_singletons() -> None:
    truth = {("a", "1"): "P1", ("b", "1"): "P1"}
    s = score_clusters({("a", "1"): "G1"}, truth)
    assert s.missing_records == 1 and s.recall == 0.0 and s.precision == 1.0


def test_run_matcher_skips_unchanged_resends_and_applies_source_merges() -> None:
    first = PersonRecord.create(
        "RBD", "D1", given_name="Ann", family_name="Ng", birth_date="1970-01-01"
    )
    other = PersonRecord.create(
        "RBD", "D2", given_name="Zed", family_name="Oak", birth_date="1990-05-05"
    )
    events = [
        SourceEvent("1", first),
        SourceEvent("2", first),
        SourceEvent("3", other),
        SourceEvent("4", None, (first.key, other.key)),
    ]
    matcher = Matcher()  # empty, hence falsy: must still be the one used
    run = run_matcher(events, matcher)
    assert run.matcher is matcher
    assert (run.adds, run.unchanged, run.merges_applied) == (2, 1, 1)
    assert matcher.resolve(matcher.golden_id_of(first.key)) == matcher.resolve(
        matcher.golden_id_of(other.key)
    )
    assert list(snapshot(events)) == [first.key, other.key]


def test_read_events_says_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(EvaluationError, match=r"no truth\.csv"):
        read_events(tmp_path)
    (tmp_path / "truth.csv").write_text("source_org,record_type,source_id,person_id,faults\n")
    (tmp_path / "J81002").mkdir()
    (tmp_path / "J81002" / "patients-00000.ndjson").write_text("{not json\n")
    with pytest.raises(EvaluationError, match="line 1 is not JSON"):
        read_events(tmp_path)
    (tmp_path / "J81002" / "patients-00000.ndjson").unlink()
    (tmp_path / "RBD").mkdir()
    (tmp_path / "RBD" / "adt-00000.hl7").write_text("MSH|^~\\&|PAS|DCH\rPID|1||\r\n")
    with pytest.raises(EvaluationError, match="message 1"):
        read_events(tmp_path)


def test_different_valid_nhs_numbers_never_auto_link() -> None:
    matcher = Matcher()
    common: dict[str, Any] = {
        "given_name": "Ann",
        "family_name": "Ng",
        "birth_date": "1970-01-01",
        "sex": "female",
        "postcode": "DT1 1AA",
        "address": "1 High Street",
    }
    matcher.add(PersonRecord.create("gp", "1", nhs_number="9434765919", **common))
    decision = matcher.add(PersonRecord.create("acute", "2", nhs_number="9434765870", **common))
    assert decision.score is not None and decision.score.match_weight > 0
    assert decision.band.value == "review"
    assert decision.golden_id != matcher.golden_id_of(("gp", "1"))
