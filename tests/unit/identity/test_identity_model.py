import json
import math
from collections import Counter
from pathlib import Path

import pytest

from sharedcare.identity.compare import COMPARISONS, LEVELS
from sharedcare.identity.model import (
    Band,
    MatchModel,
    ModelError,
    TermFrequencies,
    probability_from_weight,
)
from sharedcare.identity.training import em


def vec(**levels: str) -> list[int]:
    out = [0] * len(COMPARISONS)
    for name, label in levels.items():
        out[COMPARISONS.index(name)] = LEVELS[name].index(label)
    return out


def test_level_weight_is_log2_m_over_u() -> None:
    model = MatchModel.default()
    p = model.fields["birth_date"]
    assert model.level_weights("birth_date")[1] == pytest.approx(math.log2(p.m[1] / p.u[1]))
    assert model.level_weights("birth_date")[0] == 0.0


def test_weight_adds_prior_and_fields() -> None:
    model = MatchModel.default()
    v = vec(given_name="exact", family_name="exact", birth_date="exact")
    expected = model.prior_weight + sum(
        model.level_weights(f)[1] for f in ("given_name", "family_name", "birth_date")
    )
    assert model.weight(v) == pytest.approx(expected)
    assert model.weight([0] * len(COMPARISONS)) == pytest.approx(model.prior_weight)


def test_probability_from_weight() -> None:
    assert probability_from_weight(0) == 0.5
    assert probability_from_weight(1) == pytest.approx(2 / 3)
    assert probability_from_weight(100) == 1.0
    assert probability_from_weight(-100) == 0.0


def test_bands_and_explanation() -> None:
    model = MatchModel.default()
    strong = vec(given_name="exact", family_name="exact", birth_date="exact", address="postcode")
    score = model.score(strong)
    assert score.band is Band.AUTO_LINK
    assert [e.field for e in score.evidence] == list(COMPARISONS)
    assert {e.level for e in score.evidence} >= {"exact", "postcode", "null"}
    assert sum(e.weight for e in score.evidence) + model.prior_weight == pytest.approx(
        score.match_weight
    )
    weak = vec(family_name="exact", address="postcode_district")
    assert model.score(weak).band is Band.NO_LINK
    assert model.band(model.review_weight) is Band.REVIEW
    assert model.band(model.auto_link_weight) is Band.AUTO_LINK


def test_different_given_name_caps_at_review_unless_nhs_agrees() -> None:
    model = MatchModel.default()
    twins = vec(
        given_name="different",
        family_name="exact",
        birth_date="exact",
        sex="agree",
        address="postcode_and_lines",
    )
    assert model.weight(twins) >= model.auto_link_weight
    assert model.score(twins).band is Band.REVIEW
    with_nhs = list(twins)
    with_nhs[0] = 1
    assert model.score(with_nhs).band is Band.AUTO_LINK


def test_term_frequency_adjustment_penalises_common_names() -> None:
    model = MatchModel.default()
    tf = TermFrequencies(["family_name"], min_total=10)
    tf.add("family_name", "SMITH", 500)
    tf.add("family_name", "ZANUCK", 1)
    tf.add("family_name", "JONES", 1499)
    v = vec(family_name="exact")
    i = model.tf_fields.index("family_name")
    common: list[float | None] = [None, None]
    rare: list[float | None] = [None, None]
    common[i] = tf.frequency("family_name", "SMITH")
    rare[i] = tf.frequency("family_name", "ZANUCK")
    base = model.weight(v)
    assert model.weight(v, common) < base < model.weight(v, rare)
    assert model.weight(v, rare) - base <= model.tf_max_adjustment
    explained = model.score(v, common).evidence[COMPARISONS.index("family_name")]
    assert explained.tf_adjustment < 0


def test_term_frequencies_need_enough_counts_and_support_removal() -> None:
    tf = TermFrequencies(["given_name"], min_total=3)
    tf.add("given_name", "ANN")
    assert tf.frequency("given_name", "ANN") is None
    tf.add("given_name", "BOB", 2)
    assert tf.frequency("given_name", "ANN") == pytest.approx(1 / 3)
    tf.add("given_name", "BOB", -1)
    assert tf.frequency("given_name", "ANN") is None


def test_serialisation_round_trip(tmp_path: Path) -> None:
    model = MatchModel.default()
    path = tmp_path / "m.json"
    model.save(path)
    again = MatchModel.load(path)
    assert again.to_dict() == model.to_dict()
    data = json.loads(path.read_text())
    assert set(data["fields"]["birth_date"]["levels"]) == set(LEVELS["birth_date"][1:])


def test_bad_parameters_are_rejected_with_clear_messages(tmp_path: Path) -> None:
    data = MatchModel.default().to_dict()
    del data["fields"]["sex"]
    with pytest.raises(ModelError, match="sex"):
        MatchModel.from_dict(data)
    data = MatchModel.default().to_dict()
    data["fields"]["sex"]["levels"]["agree"]["m"] = 1.5
    with pytest.raises(ModelError, match="outside"):
        MatchModel.from_dict(data)
    data = MatchModel.default().to_dict()
    data["review_weight"] = 99
    with pytest.raises(ModelError, match="review_weight"):
        MatchModel.from_dict(data)
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(ModelError, match="not valid JSON"):
        MatchModel.load(bad)


def test_em_recovers_m_from_a_known_mixture() -> None:
    # Two fields' worth of simulated pairs: matches agree 90% on each, non-matches 10%.
    model = MatchModel.default()
    counts: Counter[tuple[int, ...]] = Counter()
    g = COMPARISONS.index("given_name")
    f = COMPARISONS.index("family_name")
    exact_g, diff_g = 1, LEVELS["given_name"].index("different")
    exact_f, diff_f = 1, LEVELS["family_name"].index("different")
    for is_match, n in ((True, 2000), (False, 8000)):
        p = 0.9 if is_match else 0.1
        for ga in (True, False):
            for fa in (True, False):
                share = (p if ga else 1 - p) * (p if fa else 1 - p)
                v = [0] * len(COMPARISONS)
                v[g] = exact_g if ga else diff_g
                v[f] = exact_f if fa else diff_f
                counts[tuple(v)] += round(n * share)
    u = {name: list(model.fields[name].u) for name in COMPARISONS}
    u["given_name"] = [1.0] + [0.0] * (len(LEVELS["given_name"]) - 1)
    u["given_name"][exact_g], u["given_name"][diff_g] = 0.1, 0.9
    u["family_name"] = [1.0] + [0.0] * (len(LEVELS["family_name"]) - 1)
    u["family_name"][exact_f], u["family_name"][diff_f] = 0.1, 0.9
    start = {name: list(model.fields[name].m) for name in COMPARISONS}
    m, prior, runs = em(counts, start, u, 0.5)
    assert m["given_name"][exact_g] == pytest.approx(0.9, abs=0.02)
    assert m["family_name"][exact_f] == pytest.approx(0.9, abs=0.02)
    assert prior == pytest.approx(0.2, abs=0.02)
    assert runs >= 2


def test_band_of_agrees_with_score_on_every_vector() -> None:
    import itertools
    import random

    model = MatchModel.default()
    rng = random.Random(7)
    vectors = list(itertools.product(*(range(len(LEVELS[name])) for name in COMPARISONS)))
    bands: Counter[Band] = Counter()
    for vector in rng.sample(vectors, 4000):
        for tf in (None, [None, None], [rng.random() * 0.02, rng.random() * 0.02]):
            expected = model.score(vector, tf).band
            assert model.band_of(vector, tf) is expected
            bands[expected] += 1
    assert len(bands) == 3  # all three bands were reached
