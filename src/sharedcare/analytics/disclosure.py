"""Statistical disclosure control for every aggregate that leaves sharedcare.

Public surface::

    protect(
        table,                      # rows: Iterable[Mapping[str, Any]] or a pyarrow Table
        *,
        count_columns,              # e.g. ("numerator", "denominator")
        group_by=(),                # cells sharing these values sum to a published total
        totals=None,                # more published margins, e.g. [("practice",), ("age_band",)]
        rates=None,                 # {"rate": Rate("numerator", "denominator", per=100)}
        policy=NHS_POLICY,          # threshold 7, rounding base 5
    ) -> list[dict[str, Any]]

The rules (see ``docs/explanation/disclosure-control.md``):

1. **Primary suppression**: a count from 1 to ``policy.threshold`` (7) is published as ``None``.
   Zero is published as 0.
2. **Rounding**: every other count is rounded to the nearest ``policy.base`` (5). Integers
   never tie (x mod 5 is 0..4), so 8 → 10, 12 → 10, 13 → 15.
3. **Secondary suppression**: for each published total (``group_by`` and each entry of
   ``totals``; ``()`` is the grand total) a lone suppressed cell could be recovered by
   subtracting the other cells from the total. Until no suppressed cell can be worked out
   exactly from any combination of totals, the smallest still-published non-zero cell of an
   exposed group is suppressed too (zeros only when nothing else is left; ties broken by row
   order). Each count column is protected on its
   own.
4. **Rates** named in ``rates`` are recomputed from the *published* (rounded) numerator and
   denominator, and are ``None`` when either is suppressed or the denominator rounds to 0.
   A rate from the true counts would let a reader undo the rounding (3/9 published as 5/10
   but shown as 33.3%); a rate from the rounded counts tells nothing the counts do not.

Rows are returned in the input order as new dicts; other columns pass through unchanged.
Input rows are engine-neutral dicts so DuckDB (``fetchall``/Arrow), PostgreSQL and Spark
(``Row.asDict()``) outputs all fit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

__all__ = [
    "NHS_POLICY",
    "DisclosureError",
    "DisclosurePolicy",
    "Rate",
    "protect",
    "round_count",
]


class DisclosureError(ValueError):
    """The table cannot be protected as asked (missing column, non-count value...)."""


@dataclass(frozen=True)
class DisclosurePolicy:
    """Thresholds of the disclosure rules.

    Attributes:
        threshold: counts from 1 to this are suppressed (NHS England: 7).
        base: other counts are rounded to the nearest multiple of this (NHS England: 5).
    """

    threshold: int = 7
    base: int = 5

    def __post_init__(self) -> None:
        if self.threshold < 0 or self.base < 1:
            raise DisclosureError("threshold must be >= 0 and base >= 1")


NHS_POLICY = DisclosurePolicy()


@dataclass(frozen=True)
class Rate:
    """A rate column derived from two count columns of the same row.

    Attributes:
        numerator: count column on top.
        denominator: count column below.
        per: multiplier (100 for a percentage, 1000 for a rate per thousand).
        digits: decimal places the published rate is rounded to.
    """

    numerator: str
    denominator: str
    per: float = 100.0
    digits: int = 1


def round_count(value: int, base: int = NHS_POLICY.base) -> int:
    """Round a non-negative count to the nearest multiple of ``base`` (halves round up)."""
    return ((2 * value + base) // (2 * base)) * base


def _rows(table: Any) -> list[dict[str, Any]]:
    if hasattr(table, "to_pylist"):  # pyarrow.Table, without importing pyarrow
        return [dict(r) for r in table.to_pylist()]
    if hasattr(table, "as_dicts"):  # sharedcare.analytics.views.ViewResult
        return [dict(r) for r in table.as_dicts()]
    return [dict(r) for r in table]


def _count(row: dict[str, Any], column: str, index: int) -> int:
    if column not in row:
        raise DisclosureError(f"count column '{column}' is missing from row {index}")
    value = row[column]
    if isinstance(value, bool) or value is None:
        raise DisclosureError(
            f"count column '{column}' in row {index} is not a count; "
            "give 0 for an empty cell and whole numbers otherwise"
        )
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or value < 0:
        try:
            as_int = int(value)
        except (TypeError, ValueError):
            as_int = -1
        if as_int < 0 or as_int != value:
            raise DisclosureError(
                f"count column '{column}' in row {index} is not a whole number >= 0; "
                "counts must be whole numbers"
            )
        value = as_int
    return int(value)


def _groups(rows: list[dict[str, Any]], groupings: list[tuple[str, ...]]) -> list[list[int]]:
    """Row indexes of every group of every published total (groups of one are kept)."""
    out: list[list[int]] = []
    for columns in groupings:
        for column in columns:
            if rows and column not in rows[0]:
                raise DisclosureError(
                    f"total column '{column}' is not in the table; name columns of the table "
                    "in group_by/totals"
                )
        by_key: dict[tuple[Any, ...], list[int]] = {}
        for i, row in enumerate(rows):
            by_key.setdefault(tuple(row.get(c) for c in columns), []).append(i)
        out.extend(by_key.values())
    return out


def _components(groups: Sequence[Sequence[int]], cells: set[int]) -> list[set[int]]:
    """Suppressed cells split into sets that share no equation (solved independently)."""
    parent = {c: c for c in cells}

    def find(c: int) -> int:
        while parent[c] != c:
            parent[c] = parent[parent[c]]
            c = parent[c]
        return c

    for group in groups:
        members = [c for c in group if c in parent]
        for other in members[1:]:
            parent[find(other)] = find(members[0])
    out: dict[int, set[int]] = {}
    for c in cells:
        out.setdefault(find(c), set()).add(c)
    return list(out.values())


def _determined_in(groups: Sequence[Sequence[int]], unknowns: list[int]) -> set[int]:
    """Unknowns pinned down by the group equations (sparse Gauss-Jordan, exact)."""
    position = {cell: n for n, cell in enumerate(unknowns)}
    rows: list[dict[int, Fraction]] = []
    for group in groups:
        members = {position[c]: Fraction(1) for c in group if c in position}
        if members:
            rows.append(members)
    pivot_of: dict[int, dict[int, Fraction]] = {}  # pivot column -> its (reduced) row
    for row in rows:
        # Reduce the new row by the existing pivots.
        for col in [c for c in row if c in pivot_of]:
            factor = row.get(col)
            if not factor:
                continue
            for k, v in pivot_of[col].items():
                value = row.get(k, Fraction(0)) - factor * v
                if value:
                    row[k] = value
                else:
                    row.pop(k, None)
        if not row:
            continue
        col = min(row)
        lead = row[col]
        new = {k: v / lead for k, v in row.items()}
        # Keep the basis fully reduced: clear the new pivot column from older rows.
        for other in pivot_of.values():
            factor = other.get(col)
            if factor:
                for k, v in new.items():
                    value = other.get(k, Fraction(0)) - factor * v
                    if value:
                        other[k] = value
                    else:
                        other.pop(k, None)
        pivot_of[col] = new
    return {unknowns[col] for col, row in pivot_of.items() if len(row) == 1}


def _exposed_by_component(groups: Sequence[Sequence[int]], suppressed: set[int]) -> list[list[int]]:
    """Determined suppressed cells, one sorted list per connected set of suppressed cells."""
    membership: dict[int, list[int]] = {}
    for n, group in enumerate(groups):
        for cell in group:
            if cell in suppressed:
                membership.setdefault(cell, []).append(n)
    out: list[list[int]] = []
    for component in _components(groups, suppressed):
        related = sorted({n for c in component for n in membership.get(c, [])})
        if not related:
            continue
        if len(component) == 1:
            out.append(sorted(component))
            continue
        found = _determined_in([groups[n] for n in related], sorted(component))
        if found:
            out.append(sorted(found))
    return out


def determined_cells(groups: Sequence[Sequence[int]], suppressed: set[int]) -> set[int]:
    """Suppressed cells whose exact value follows from the published totals.

    Each group gives one linear equation: the sum of its suppressed cells equals the total
    minus the published cells. A cell is determined exactly when its unit vector lies in the
    span of these equations, i.e. when a row of their reduced row echelon form is that unit
    vector. Exact rational arithmetic, one connected set of suppressed cells at a time.

    Args:
        groups: row indexes of each published total's cells.
        suppressed: row indexes of the suppressed cells.
    """
    return {cell for cells in _exposed_by_component(groups, suppressed) for cell in cells}


def _suppress_column(
    counts: list[int], groups: list[list[int]], policy: DisclosurePolicy
) -> set[int]:
    suppressed = {i for i, c in enumerate(counts) if 1 <= c <= policy.threshold}
    membership: dict[int, list[list[int]]] = {}
    for group in groups:
        for cell in group:
            membership.setdefault(cell, []).append(group)
    while True:
        # Cheap pass first: no group may hold exactly one suppressed cell (the textbook rule,
        # which settles one-way tables exactly), iterated because each extra suppression can
        # leave another group with a lone suppressed cell.
        changed = True
        while changed:
            changed = False
            for group in groups:
                hidden = [c for c in group if c in suppressed]
                if len(hidden) == 1:
                    shown = [_preference(counts, c) for c in group if c not in suppressed]
                    suppressed.add(min(shown)[2])
                    changed = True
        # Exact pass: with several overlapping totals a cell can still follow from a
        # combination of them (a bridge in a two-way table).
        exposed = _exposed_by_component(groups, suppressed) if suppressed else []
        if not exposed:
            return suppressed
        # One complementary suppression per connected set, then look again: one extra
        # cell often protects the rest of its set.
        for cells in exposed:
            cell = cells[0]
            best: tuple[bool, int, int] | None = None
            for group in membership.get(cell, []):
                for other in group:
                    choice = _preference(counts, other)
                    if other not in suppressed and (best is None or choice < best):
                        best = choice
            if best is None:
                raise DisclosureError(
                    "the published totals pin down a suppressed cell and every cell beside it "
                    "is already suppressed; publish fewer totals (group_by/totals) or publish "
                    "at a coarser level"
                )
            suppressed.add(best[2])


def _preference(counts: list[int], cell: int) -> tuple[bool, int, int]:
    """Order of choice for a complementary suppression: the smallest non-zero count first.

    A suppressed zero protects little where zeros are known to be structural (men in a
    cervical screening table), so zero cells are used only when nothing else is left.
    """
    return (counts[cell] == 0, counts[cell], cell)


def protect(
    table: Any,
    *,
    count_columns: Sequence[str],
    group_by: Sequence[str] = (),
    totals: Sequence[Sequence[str]] | None = None,
    rates: Mapping[str, Rate] | None = None,
    policy: DisclosurePolicy = NHS_POLICY,
) -> list[dict[str, Any]]:
    """Apply suppression, rounding and secondary suppression to an aggregate table.

    Args:
        table: rows as mappings (``list[dict]``), a ``ViewResult`` or a pyarrow ``Table``.
        count_columns: columns holding counts of people or events (whole numbers >= 0).
        group_by: columns whose shared values mark a group whose total of each count column
            is published (or derivable from another output). ``()`` means the grand total.
        totals: every published total as a tuple of columns, when there is more than one
            (a cross-tabulation with row and column margins:
            ``[("practice",), ("age_band",), ()]``). Replaces ``group_by`` for secondary
            suppression; ``[]`` says no total is published.
        rates: rate columns to (re)compute from published counts, by output column name.
        policy: threshold and rounding base.

    Returns:
        New rows in input order: counts rounded or ``None`` when suppressed, rates
        recomputed, other columns unchanged.

    Raises:
        DisclosureError: a named column is missing or a count is not a whole number >= 0.
    """
    rows = _rows(table)
    groupings = [tuple(group_by)] if totals is None else [tuple(t) for t in totals]
    # A total over a single row is that row's own count (publish the protected cell for
    # it), so it adds no equation.
    groups = [g for g in _groups(rows, groupings) if len(g) > 1]
    rate_specs = dict(rates or {})
    for name, spec in rate_specs.items():
        for column in (spec.numerator, spec.denominator):
            if column not in count_columns:
                raise DisclosureError(
                    f"rate '{name}' uses '{column}', which is not one of count_columns; "
                    "list it there so it is protected before the rate is computed"
                )
    out = [dict(r) for r in rows]
    for column in count_columns:
        counts = [_count(r, column, i) for i, r in enumerate(rows)]
        hidden = _suppress_column(counts, groups, policy)
        for i, count in enumerate(counts):
            out[i][column] = None if i in hidden else round_count(count, policy.base)
    for name, spec in rate_specs.items():
        for row in out:
            top, bottom = row[spec.numerator], row[spec.denominator]
            if top is None or bottom is None or bottom == 0:
                row[name] = None
            else:
                row[name] = round(top / bottom * spec.per, spec.digits)
    return out
