"""Disclosure control: primary suppression, rounding, secondary suppression and rates."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sharedcare.analytics.disclosure import (
    DisclosureError,
    Rate,
    determined_cells,
    protect,
    round_count,
)


def test_small_counts_suppressed_and_others_rounded() -> None:
    rows = [{"k": k, "n": n} for k, n in enumerate([0, 1, 7, 8, 12, 13, 100])]
    out = protect(rows, count_columns=["n"], totals=[])
    assert [r["n"] for r in out] == [0, None, None, 10, 10, 15, 100]
    assert [r["k"] for r in out] == list(range(7))


def test_lone_suppressed_cell_gets_a_partner_in_its_group() -> None:
    rows = [
        {"practice": "A", "age": "0-17", "n": 3},
        {"practice": "A", "age": "18-64", "n": 40},
        {"practice": "A", "age": "65+", "n": 20},
        {"practice": "B", "age": "0-17", "n": 30},
        {"practice": "B", "age": "18-64", "n": 50},
    ]
    out = protect(rows, count_columns=["n"], group_by=["practice"])
    # 3 is suppressed; the next-smallest cell of practice A (20) is suppressed with it.
    assert [r["n"] for r in out] == [None, 40, None, 30, 50]


def test_rates_come_from_published_counts() -> None:
    rows = [
        {"g": "a", "num": 3, "den": 9},
        {"g": "b", "num": 12, "den": 38},
        {"g": "c", "num": 9, "den": 4},
    ]
    out = protect(rows, count_columns=["num", "den"], totals=[], rates={"pct": Rate("num", "den")})
    assert out[0]["pct"] is None  # numerator suppressed
    assert out[1]["num"] == 10 and out[1]["den"] == 40 and out[1]["pct"] == 25.0
    assert out[2]["pct"] is None  # denominator suppressed


def test_bad_counts_are_rejected_without_echoing_values() -> None:
    with pytest.raises(DisclosureError, match="'n' in row 0 is not a whole number"):
        protect([{"n": 2.5}], count_columns=["n"])
    with pytest.raises(DisclosureError, match="missing"):
        protect([{"m": 1}], count_columns=["n"])
    with pytest.raises(DisclosureError, match="not one of count_columns"):
        protect([{"n": 1, "d": 2}], count_columns=["n"], rates={"r": Rate("n", "d")})


def test_bridge_in_a_two_way_table_is_closed() -> None:
    # Degree rule alone leaves cells determined when suppressed cells form a chain between
    # two rectangles; the exact check finds them.
    groups = [[0, 1], [2, 3], [0, 2], [1, 3, 4], [4, 5]]
    assert determined_cells(groups, {4}) == {4}
    assert determined_cells(groups, {0, 1, 2, 3}) == set()


# --- properties ----------------------------------------------------------------------------
counts = st.integers(min_value=0, max_value=60)


@st.composite
def cross_tables(draw: st.DrawFn) -> list[dict[str, Any]]:
    rows_n = draw(st.integers(min_value=1, max_value=6))
    cols_n = draw(st.integers(min_value=1, max_value=5))
    return [{"r": r, "c": c, "n": draw(counts)} for r in range(rows_n) for c in range(cols_n)]


def _groups(rows: list[dict[str, Any]], totals: list[tuple[str, ...]]) -> list[list[int]]:
    out: list[list[int]] = []
    for columns in totals:
        by: dict[tuple[Any, ...], list[int]] = {}
        for i, row in enumerate(rows):
            by.setdefault(tuple(row[c] for c in columns), []).append(i)
        out.extend(g for g in by.values() if len(g) > 1)
    return out


TOTALS = st.sampled_from([[("r",)], [("c",)], [("r",), ("c",)], [("r",), ("c",), ()], [()]])


@settings(max_examples=200, deadline=None)
@given(cross_tables(), TOTALS)
def test_published_counts_are_safe(
    rows: list[dict[str, Any]], totals: list[tuple[str, ...]]
) -> None:
    out = protect(rows, count_columns=["n"], totals=totals)
    published = [r["n"] for r in out if r["n"] is not None]
    assert all(not 1 <= n <= 7 for n in published)
    assert all(n % 5 == 0 for n in published)
    # Every true count 1..7 is suppressed; nothing published is more than 2 off.
    for before, after in zip(rows, out, strict=True):
        if 1 <= before["n"] <= 7:
            assert after["n"] is None
        if after["n"] is not None:
            assert abs(after["n"] - before["n"]) <= 2


@settings(max_examples=200, deadline=None)
@given(cross_tables(), TOTALS)
def test_no_suppressed_cell_recoverable_from_totals(
    rows: list[dict[str, Any]], totals: list[tuple[str, ...]]
) -> None:
    out = protect(rows, count_columns=["n"], totals=totals)
    hidden = {i for i, r in enumerate(out) if r["n"] is None}
    groups = _groups(rows, totals)
    # Exactly-known totals (worst case): no group holds a lone suppressed cell ...
    for group in groups:
        assert sum(1 for i in group if i in hidden) != 1
    # ... and no combination of totals pins a suppressed cell down.
    assert determined_cells(groups, hidden) == set()


@given(st.integers(min_value=0, max_value=10_000))
def test_round_count_is_nearest_multiple(n: int) -> None:
    r = round_count(n)
    assert r % 5 == 0 and abs(r - n) <= 2


def test_complementary_suppression_prefers_non_zero_cells() -> None:
    rows = [{"g": "a", "n": 4}, {"g": "a", "n": 0}, {"g": "a", "n": 30}, {"g": "a", "n": 50}]
    out = protect(rows, count_columns=["n"], group_by=["g"])
    assert [r["n"] for r in out] == [None, 0, None, 50]
