"""Batch linking on several processes gives the real-time matcher's clusters, exactly."""

import itertools
import random
from collections.abc import Callable

import pytest

from sharedcare.identity.batchlink import BatchError, link_records
from sharedcare.identity.matcher import Matcher
from sharedcare.identity.person import PersonRecord

GIVEN = [
    "Jonathan",
    "Jon",
    "Sarah",
    "Sara",
    "Mohammed",
    "Muhammad",
    "Olivia",
    "Oliver",
    "Amelia",
    "Emily",
    "Jack",
    "Jake",
    "Grace",
    "Harry",
    "Henry",
    "Isla",
    "Leo",
    "Ava",
]
FAMILY = [
    "Smith",
    "Smyth",
    "Jones",
    "Taylor",
    "Brown",
    "Williams",
    "Khan",
    "Patel",
    "Wilson",
    "Evans",
    "Thomas",
    "Roberts",
    "Walker",
    "Wright",
    "Green",
    "Hall",
]
POSTCODES = ["BH1 1AA", "BH1 1AB", "BH2 5RR", "DT1 1AA", "DT1 2BB", "SP1 3CC"]


def _nhs(rng: random.Random) -> str:
    while True:
        digits = [rng.randrange(10) for _ in range(9)]
        check = 11 - sum(d * w for d, w in zip(digits, range(10, 1, -1), strict=True)) % 11
        if check == 11:
            check = 0
        if check != 10:
            return "".join(map(str, digits)) + str(check)


def _typo(rng: random.Random, text: str) -> str:
    if len(text) < 4:
        return text
    k = rng.randrange(1, len(text) - 1)
    return text[:k] + text[k + 1] + text[k] + text[k + 2 :]


def synthetic_records(people: int = 450, seed: int = 3) -> list[PersonRecord]:
    """A few records per person from different sources, with typos, swaps and gaps.

    Many people share names, birth dates and postcodes, so blocking buckets overlap and
    the review band and ties are exercised; there are more than 1,000 records so that
    term-frequency adjustment applies.
    """
    rng = random.Random(seed)
    records: list[PersonRecord] = []
    for p in range(people):
        given, family = rng.choice(GIVEN), rng.choice(FAMILY)
        dob = f"{rng.randrange(1930, 2020)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"
        sex = rng.choice(["male", "female"])
        postcode = rng.choice(POSTCODES)
        address = f"{rng.randrange(1, 40)} {rng.choice(['High St', 'Mill Lane', 'Park Road'])}"
        nhs = _nhs(rng)
        for source in rng.sample(["gp", "acute", "council", "community"], rng.randrange(2, 5)):
            g, f, d, pc = given, family, dob, postcode
            n: str | None = nhs
            roll = rng.random()
            if roll < 0.15:
                g = _typo(rng, g)
            elif roll < 0.25:
                f = _typo(rng, f)
            elif roll < 0.3:
                d = f"{d[:5]}{d[8:10]}-{d[5:7]}" if int(d[8:10]) <= 12 else d
            elif roll < 0.35:
                pc = rng.choice(POSTCODES)
            if rng.random() < 0.3:
                n = None
            elif rng.random() < 0.03:
                n = _nhs(rng)  # a wrong number
            records.append(
                PersonRecord.create(
                    source,
                    f"{source}-{p}",
                    given_name=g,
                    family_name=f,
                    birth_date=d,
                    sex=sex if rng.random() > 0.1 else None,
                    postcode=pc,
                    address=address,
                    nhs_number=n,
                )
            )
    rng.shuffle(records)
    return records


def counter_ids() -> Callable[[], str]:
    counter = itertools.count(1)
    return lambda: f"G{next(counter)}"


@pytest.fixture(scope="module")
def records() -> list[PersonRecord]:
    return synthetic_records()


def test_one_and_two_workers_give_identical_clusters(records: list[PersonRecord]) -> None:
    one = link_records(records, workers=1, id_factory=counter_ids(), chunk=100)
    two = link_records(records, workers=2, id_factory=counter_ids(), chunk=100)
    assert two.workers == 2
    assert one.clusters() == two.clusters()
    assert one.reviews == two.reviews
    assert (one.deterministic, one.probabilistic, one.compared) == (
        two.deterministic,
        two.probabilistic,
        two.compared,
    )


def test_batch_places_records_as_the_real_time_matcher_does(records: list[PersonRecord]) -> None:
    matcher = Matcher(id_factory=counter_ids())
    for record in records:
        matcher.add(record)
    batch = link_records(records, workers=2, id_factory=counter_ids(), chunk=100)
    assert batch.clusters() == {r.key: matcher.golden_id_of(r.key) for r in records}
    # The data set exercises every step.
    assert batch.deterministic and batch.probabilistic and batch.reviews
    assert len(set(batch.clusters().values())) < len(records)
    for index, record in enumerate(records):
        decision = matcher.decision(record.key)
        assert batch.kind(index) == (decision.kind, decision.band)
    expected = [(item.kind, item.record) for item in matcher.reviews()]
    assert [(r.kind, batch.keys[r.record]) for r in batch.reviews] == expected


def test_a_key_given_twice_is_refused(records: list[PersonRecord]) -> None:
    with pytest.raises(BatchError, match="appears twice"):
        link_records([records[0], records[0]], workers=1)


def test_bad_arguments_are_refused(records: list[PersonRecord]) -> None:
    with pytest.raises(BatchError, match="workers"):
        link_records(records[:10], workers=-1)
    with pytest.raises(BatchError, match="blocking rule"):
        link_records(records[:10], workers=1, rules=["nope"])


def test_default_golden_ids_are_random_uuids(records: list[PersonRecord]) -> None:
    import uuid

    ids = link_records(records[:300], workers=1).golden_ids
    assert len(set(ids)) == len(ids)
    assert all(uuid.UUID(i).version == 4 and str(uuid.UUID(i)) == i for i in ids)


def test_nothing_to_link() -> None:
    out = link_records([], workers=2)
    assert out.clusters() == {} and out.golden_ids == []
