"""Server-assigned ids (``sharedcare.record.resources.new_id``): valid, unique, time-ordered."""

from __future__ import annotations

import re
import time

from sharedcare.record.resources import new_id

# FHIR R4 id: [A-Za-z0-9\-\.]{1,64} (https://hl7.org/fhir/R4/datatypes.html#id).
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


def _decode(text: str) -> int:
    value = 0
    for ch in text:
        value = value * 32 + _CROCKFORD.index(ch)
    return value


def test_ids_are_26_lower_case_crockford_digits_and_valid_fhir_ids() -> None:
    for _ in range(1000):
        rid = new_id()
        assert len(rid) == 26
        assert set(rid) <= set(_CROCKFORD)
        assert _FHIR_ID.fullmatch(rid)
        assert rid[0] in "01234567"  # 128 bits in 130: the top two are zero


def test_the_first_48_bits_are_the_time_in_milliseconds() -> None:
    before = time.time_ns() // 1_000_000
    rid = new_id()
    after = time.time_ns() // 1_000_000
    assert before <= _decode(rid) >> 80 <= after


def test_ids_are_unique_and_sort_in_the_order_they_were_made() -> None:
    ids: list[str] = []
    for _ in range(5):
        ids.extend(new_id() for _ in range(200))
        time.sleep(0.002)
    assert len(set(ids)) == len(ids)
    times = [_decode(i) >> 80 for i in ids]
    assert times == sorted(times)
    # Within the same millisecond the random part decides; across milliseconds, text order
    # is time order.
    firsts = [i for n, i in enumerate(ids) if n % 200 == 0]
    assert firsts == sorted(firsts)
