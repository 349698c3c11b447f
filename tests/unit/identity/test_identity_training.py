import random
from datetime import date, timedelta

import pytest

from sharedcare.identity.compare import Features, features
from sharedcare.identity.model import MatchModel
from sharedcare.identity.person import PersonRecord
from sharedcare.identity.training import estimate_u, train

GIVEN = ["Oliver", "Amelia", "George", "Isla", "Harry", "Ava", "Jack", "Mia", "Noah", "Ruby"]
FAMILY = ["Smith", "Jones", "Taylor", "Brown", "Evans", "Walker", "Wright", "Hughes", "Green"]


def population(n: int = 300, seed: int = 3) -> tuple[list[Features], list[Features]]:
    rng = random.Random(seed)
    left: list[PersonRecord] = []
    right: list[PersonRecord] = []
    for i in range(n):
        given, family = rng.choice(GIVEN), rng.choice(FAMILY)
        dob = date(1940, 1, 1) + timedelta(days=rng.randrange(25000))
        pc = f"BH{rng.randint(1, 20)} {rng.randint(1, 9)}A{rng.choice('BDEFG')}"
        left.append(
            PersonRecord.create(
                "l", f"L{i}", given_name=given, family_name=family, birth_date=dob, postcode=pc
            )
        )
        if rng.random() < 0.7:
            if rng.random() < 0.2:
                given = given[:-1]
            if rng.random() < 0.1:
                pc = f"DT{rng.randint(1, 9)} 1ZZ"
            right.append(
                PersonRecord.create(
                    "r", f"R{i}", given_name=given, family_name=family, birth_date=dob, postcode=pc
                )
            )
    return [features(r) for r in left], [features(r) for r in right]


def test_estimate_u_from_random_pairs() -> None:
    left, right = population()
    base = MatchModel.default()
    u = estimate_u(left, right, base, pairs=5000, seed=1)
    # Ten given names drawn evenly: random pairs agree about one time in ten.
    assert 0.06 < u["given_name"][1] < 0.15
    assert abs(sum(u["given_name"][1:]) - 1.0) < 1e-9
    # In so small a set about one random pair in 300 is the same person, so an exact
    # date of birth is seen a few times; "different" dominates.
    assert u["birth_date"][1] < 0.01 < 0.9 < u["birth_date"][-1]


def test_unseen_levels_keep_their_default_u() -> None:
    left, right = population()
    base = MatchModel.default()
    u = estimate_u(left[:50], right[100:150], base, pairs=200, seed=1)
    # A day/month swap is never seen in 200 random pairs: its u stays at the default,
    # only rescaled so that the levels sum to one.
    assert u["birth_date"][2] == pytest.approx(base.fields["birth_date"].u[2], rel=0.1)


def test_train_learns_sensible_parameters_and_keeps_thresholds() -> None:
    left, right = population()
    base = MatchModel.default()
    model, report = train(left, right, base, u_pairs=5000)
    assert set(report.rules) == {"dob", "names", "place"}
    assert report.rules["dob"]["pairs"] > 0
    for name in ("given_name", "family_name", "birth_date"):
        weights = model.level_weights(name)
        assert weights[1] > 0, name  # exact agreement is evidence for a match
    assert model.level_weights("given_name")[-1] < 0
    assert model.auto_link_weight == base.auto_link_weight
    assert model.prior == base.prior
    MatchModel.from_dict(model.to_dict())  # still a valid, serialisable model


def test_train_on_one_set_for_deduplication() -> None:
    left, _ = population(120)
    model, report = train(left + left[:30], None, u_pairs=2000)
    assert report.rules["dob"]["pairs"] >= 30
    assert model.level_weights("birth_date")[1] > 0
