from typing import Any

from sharedcare.identity.blocking import RULES, BlockingIndex, blocking_keys
from sharedcare.identity.compare import Features, features
from sharedcare.identity.person import PersonRecord


def f(**kw: Any) -> Features:
    return features(PersonRecord.create("s", "1", **kw))


def test_keys_per_rule() -> None:
    keys = blocking_keys(
        f(
            given_name="Ann",
            family_name="Lee",
            birth_date="1980-03-04",
            postcode="BH1 1AA",
            nhs_number="9434765919",
        )
    )
    assert len(keys) == len(RULES)
    assert blocking_keys(f()) == []


def test_day_month_swap_shares_dob_key() -> None:
    a = f(birth_date="1980-03-04")
    b = f(birth_date="1980-04-03")
    assert blocking_keys(a, ["dob"]) == blocking_keys(b, ["dob"])


def test_wrong_birth_year_still_blocked_by_family_name_and_day() -> None:
    a = f(given_name="Ann", family_name="Lee", birth_date="1980-03-04")
    b = f(given_name="Anne", family_name="Leigh", birth_date="1908-03-04")
    assert set(blocking_keys(a)) & set(blocking_keys(b))


def test_index_candidates_remove_and_bucket_cap() -> None:
    index = BlockingIndex(max_bucket=2)
    a = f(given_name="Ann", family_name="Lee", birth_date="1980-03-04")
    index.add(1, a)
    index.add(2, a)
    assert index.candidates(a) == {1, 2}
    index.add(3, a)
    assert index.candidates(a) == set()  # every bucket now too big to be useful
    index.remove(3, a)
    index.remove(2, a)
    assert index.candidates(a) == {1}
    index.remove(1, a)
    assert len(index) == 0


def test_index_shrinks_a_bucket_back_to_one_record_and_lists_every_bucket() -> None:
    index = BlockingIndex()
    a = f(given_name="Ann", family_name="Lee", birth_date="1980-03-04")
    index.add(1, a)
    index.add(2, a)
    index.remove(1, a)
    assert index.candidates(a) == {2}
    assert sorted(map(sorted, index.buckets())) == [[2]] * len(blocking_keys(a))
    index.add(3, a)
    assert index.candidates(a) == {2, 3}
    index.remove(3, a)
    index.remove(2, a)
    assert index.candidates(a) == set()
    assert len(index) == 0
