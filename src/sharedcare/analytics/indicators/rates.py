"""Crude and directly age-standardised rates (ESP2013) by strata, with disclosure control.

Method (direct standardisation; see docs/reference/indicators.md): for each measure and
stratum, the age-specific rate in each of the 19 ESP2013 bands is weighted by the band's
standard population and the sum is divided by the whole standard population (100,000):

    DSR = per × Σ_i w_i · (n_i / N_i) / Σ_all w

Bands with nobody in the stratum contribute nothing. Everything is computed in SQL; Python
only applies ``sharedcare.analytics.disclosure.protect`` to the aggregate rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from string import Template
from typing import Any

from sharedcare.analytics.disclosure import Rate, protect
from sharedcare.analytics.indicators.engines import Engine
from sharedcare.analytics.indicators.reference import LookupTable

__all__ = ["DSR_MIN_NUMERATOR", "standardised_rates"]

DSR_MIN_NUMERATOR = 10
"""An age-standardised rate is published only when its numerator is at least this (the
Office for Health Improvement and Disparities does not publish DSRs on fewer than 10 events)."""


def _as_dicts(result: tuple[tuple[str, ...], list[tuple[Any, ...]]]) -> list[dict[str, Any]]:
    columns, rows = result
    return [dict(zip(columns, row, strict=True)) for row in rows]


def standardised_rates(
    engine: Engine,
    subs: dict[str, str],
    events_sql: str,
    measures: Sequence[tuple[str, int]],
    strata: Sequence[str],
    *,
    by_age: bool = True,
) -> list[dict[str, Any]]:
    """Age-band and all-ages rows of crude and age-standardised rates, protected.

    Args:
        engine: the engine, with ``people_base`` and whatever ``events_sql`` reads prepared.
        subs: ``$name`` substitutions (``Params.substitutions()``).
        events_sql: SQL giving ``(patient_key, measure, n)``: n events of a measure for a
            person (1 for prevalence).
        measures: (measure, per) pairs: every measure is reported, with rates per ``per``.
        strata: ``people_base`` columns to break down by (e.g. ``imd_quintile``, ``sex``).
        by_age: also publish the 19 age-band rows.

    Returns:
        Rows with ``measure``, the strata, ``age_band`` (``all`` for all ages),
        ``numerator``, ``denominator``, ``per``, ``crude_rate`` and, on ``all`` rows,
        ``standardised_rate``.
    """
    engine.load_lookup(
        LookupTable("ind_measures", (("measure", "text"), ("per", "int")), tuple(measures))
    )
    engine.create_table("ind_events", Template(events_sql).substitute(subs))
    s = ", ".join(strata)
    ps = ", ".join(f"p.{c}" for c in strata)
    ds = ", ".join(f"d.{c}" for c in strata)
    on = " AND ".join(f"n.{c} = d.{c}" for c in strata)
    engine.create_table(
        "ind_cells",
        f"""
        WITH den AS (
            SELECT {s}, age_band, esp_weight, COUNT(*) AS denominator
            FROM people_base GROUP BY {s}, age_band, esp_weight),
        num AS (
            SELECT ev.measure, {ps}, p.age_band, SUM(ev.n) AS numerator
            FROM ind_events ev JOIN people_base p ON p.patient_key = ev.patient_key
            GROUP BY ev.measure, {ps}, p.age_band)
        SELECT m.measure, m.per, {ds}, d.age_band, d.esp_weight, d.denominator,
               COALESCE(n.numerator, 0) AS numerator
        FROM den d CROSS JOIN ind_measures m
        LEFT JOIN num n ON n.measure = m.measure AND n.age_band = d.age_band AND {on}
        """,
    )
    all_rows = _as_dicts(
        engine.query(
            f"""
            SELECT measure, {s}, 'all' AS age_band, SUM(numerator) AS numerator,
                   SUM(denominator) AS denominator, per,
                   SUM(@float(esp_weight) * numerator / denominator) * per
                     / (SELECT @float(SUM(weight)) FROM ref_esp2013) AS standardised_rate
            FROM ind_cells GROUP BY measure, per, {s} ORDER BY measure, {s}
            """
        )
    )
    out: list[dict[str, Any]] = []
    if by_age:
        age_rows = _as_dicts(
            engine.query(
                f"""
                SELECT c.measure, {", ".join(f"c.{x}" for x in strata)}, c.age_band,
                       c.numerator, c.denominator, c.per
                FROM ind_cells c JOIN ref_esp2013 e ON e.age_band = c.age_band
                ORDER BY c.measure, {", ".join(f"c.{x}" for x in strata)}, e.age_from
                """
            )
        )
        out.extend(_protect(age_rows, ("measure", *strata)))
    raw = {(r["measure"], *(r[c] for c in strata)): r for r in all_rows}
    protected_all = _protect(all_rows, None)
    for row in protected_all:
        true = raw[(row["measure"], *(row[c] for c in strata))]
        dsr = true["standardised_rate"]
        publish = row["numerator"] is not None and int(true["numerator"]) >= DSR_MIN_NUMERATOR
        row["standardised_rate"] = round(float(dsr), 2) if publish and dsr is not None else None
    out.extend(protected_all)
    return out


def _protect(rows: list[dict[str, Any]], group_by: tuple[str, ...] | None) -> list[dict[str, Any]]:
    """Protect rows measure-rate by measure-rate (the rate's ``per`` differs by measure)."""
    by_per: dict[int, list[int]] = {}
    for i, row in enumerate(rows):
        row["numerator"] = int(row["numerator"])
        row["denominator"] = int(row["denominator"])
        row["per"] = int(row["per"])
        by_per.setdefault(row["per"], []).append(i)
    out: list[dict[str, Any]] = [{} for _ in rows]
    for per, indexes in by_per.items():
        protected = protect(
            [rows[i] for i in indexes],
            count_columns=("numerator", "denominator"),
            group_by=group_by or (),
            totals=None if group_by else [],
            rates={"crude_rate": Rate("numerator", "denominator", per=per, digits=2)},
        )
        for i, row in zip(indexes, protected, strict=True):
            out[i] = row
    return out
