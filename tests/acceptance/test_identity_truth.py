"""Issue 6 acceptance: the matcher against Synthetic Dorset's truth.

A small Synthetic Dorset run (300 people, made here in a temporary folder) is read back out
of every organisation's feed and fed record by record through the real-time matcher at its
default model and thresholds; the clusters must reach precision >= 0.995 and recall >= 0.99
against ``truth.csv``. Runs in a few seconds.

The run is harsher than the generator's defaults (half the NHS numbers missing, more typos,
nicknames, transposed dates and duplicates) so that the test bites: with NHS-number-only
blocking recall falls to about 0.2, with an auto-link threshold of 12 bits to about 0.91.
"""

from collections import defaultdict

import pytest

from sharedcare.identity.evaluation import (
    RecordKey,
    Scores,
    matcher_clusters,
    matcher_reviews,
    read_events,
    read_truth,
    run_matcher,
    score_clusters,
    snapshot,
)
from sharedcare.synthetic import DataQuality, SynthConfig, run

#: The truth (record -> person), the matcher's clusters (record -> golden id) and their scores.
Scored = tuple[dict[RecordKey, str], dict[RecordKey, str], Scores]

HARSH = DataQuality(
    missing_nhs_number=0.5,
    message_without_nhs_number=0.5,
    council_row_without_nhs_number=0.6,
    vcs_row_without_nhs_number=0.8,
    name_typo=0.06,
    nickname=0.08,
    dob_transposed=0.04,
    mistyped_nhs_number=0.03,
    old_address=0.5,
    duplicate_registration=0.05,
)


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> Scored:
    out = tmp_path_factory.mktemp("synth") / "run"
    run(SynthConfig(people=300, seed=8, out=out, quality=HARSH))
    events = read_events(out)
    sent = snapshot(events)
    truth = {k: v for k, v in read_truth(out).items() if k in sent}
    result = run_matcher(events)
    clusters = matcher_clusters(result.matcher, truth)
    return truth, clusters, score_clusters(clusters, truth, matcher_reviews(result.matcher))


def test_every_feed_is_read(scored: Scored) -> None:
    truth, clusters, scores = scored
    sources = {key[0][:3] for key in truth}
    assert {"J81", "RDY", "VCS", "E06"} <= sources
    assert sources & {"RBD", "R0D"}
    assert scores.missing_records == 0
    assert len(clusters) == len(truth)


def test_precision_and_recall_meet_the_target(scored: Scored) -> None:
    _, _, scores = scored
    assert scores.true_pairs > 300
    assert scores.precision >= 0.995, scores.summary()
    assert scores.recall >= 0.99, scores.summary()
    assert scores.cluster_precision >= 0.995, scores.summary()
    assert scores.cluster_recall >= 0.99, scores.summary()


def test_duplicate_registrations_cluster_together(scored: Scored) -> None:
    truth, clusters, _ = scored
    by_person: dict[tuple[str, str], set[str]] = defaultdict(set)
    count: dict[tuple[str, str], int] = defaultdict(int)
    for key, person in truth.items():
        if key[0] == "VCS":  # each referral is its own record; not a registration
            continue
        by_person[(key[0], person)].add(clusters[key])
        count[(key[0], person)] += 1
    duplicates = [k for k, n in count.items() if n > 1]
    assert duplicates, "the run should hold duplicate registrations inside one organisation"
    assert all(len(by_person[k]) == 1 for k in duplicates)
