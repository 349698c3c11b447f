"""Population-health indicators over the library views, on DuckDB, PostgreSQL or Spark.

Each indicator is defined once, as engine-neutral SQL over the views of
``sharedcare.analytics.library`` and small lookup tables (ESP2013, LSOA → IMD, practices,
code lists). Every row it returns has passed through
``sharedcare.analytics.disclosure.protect`` (counts of 1–7 suppressed, others rounded to 5,
secondary suppression, rates recomputed from published counts).

Typical use::

    import duckdb
    from datetime import date
    from sharedcare.analytics.indicators import Params, run_indicator
    from sharedcare.analytics.indicators.engines import duckdb_directory_engine

    engine = duckdb_directory_engine(duckdb.connect(), Path("export"))
    rows = run_indicator("prevalence", engine, Params(census=date(2025, 12, 31)))

Definitions, code lists and caveats: docs/reference/indicators.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sharedcare.analytics.indicators import population, services
from sharedcare.analytics.indicators.base import Params, prepare
from sharedcare.analytics.indicators.engines import (
    DuckDBEngine,
    Engine,
    IndicatorError,
    PostgresEngine,
    SparkEngine,
)

__all__ = [
    "INDICATORS",
    "DuckDBEngine",
    "Engine",
    "Indicator",
    "IndicatorError",
    "Params",
    "PostgresEngine",
    "SparkEngine",
    "run_indicator",
    "steps",
]


@dataclass(frozen=True)
class Indicator:
    """One indicator: what it reads and how it is computed."""

    name: str
    title: str
    views: tuple[str, ...]
    derived: tuple[str, ...]
    compute: Callable[[Engine, Params], list[dict[str, Any]]]


_POP = ("people_base", "condition_people")

INDICATORS: dict[str, Indicator] = {
    i.name: i
    for i in (
        Indicator(
            "prevalence",
            "Condition prevalence by IMD quintile × age band × sex, ESP2013-standardised",
            ("people", "conditions"),
            _POP,
            population.prevalence,
        ),
        Indicator(
            "prevalence-by-practice",
            "Condition prevalence (crude %) by GP practice",
            ("people", "conditions"),
            (*_POP, "people_detail"),
            population.prevalence_by_practice,
        ),
        Indicator(
            "emergency-admissions",
            "Emergency admissions per 1,000 by IMD quintile × age band, ESP2013-standardised",
            ("people", "encounters"),
            ("people_base", "admissions"),
            population.emergency_admissions,
        ),
        Indicator(
            "core20",
            "Core20 (IMD deciles 1–2) against the rest: prevalence and emergency admissions",
            ("people", "conditions", "encounters"),
            (*_POP, "admissions"),
            population.core20,
        ),
        Indicator(
            "efi",
            "Electronic Frailty Index bands, people aged 65+, by IMD quintile",
            ("people", "conditions", "medications"),
            (*_POP, "efi_people"),
            population.efi,
        ),
        Indicator(
            "bridges-to-health",
            "Bridges to Health segments (8) by IMD quintile",
            ("people", "conditions", "medications", "encounters"),
            (*_POP, "efi_people", "admissions"),
            population.bridges_to_health,
        ),
        Indicator(
            "rtt-waiting-list",
            "RTT waiting list by trust and specialty: % within 18 weeks, 52+ week waits",
            ("rtt_pathways",),
            (),
            services.rtt_waiting_list,
        ),
        Indicator(
            "stroke",
            "Stroke key indicators by trust: scan in 1 h, stroke unit in 4 h, thrombolysis",
            ("stroke_admissions", "stroke_procedures"),
            (),
            services.stroke,
        ),
        Indicator(
            "pathology-turnaround",
            "Pathology turnaround (specimen collected to report issued) by site",
            ("results", "specimens"),
            (),
            services.pathology_turnaround,
        ),
    )
}


def run_indicator(
    name: str, engine: Engine, params: Params, step: Callable[[str], None] | None = None
) -> list[dict[str, Any]]:
    """Compute one indicator; every returned row is disclosure-protected.

    Args:
        name: a key of ``INDICATORS``.
        engine: where to compute (``DuckDBEngine``, ``PostgresEngine``, ``SparkEngine``).
        params: census date and activity period.
        step: progress callback, called with a description after each view/table.

    Raises:
        IndicatorError: unknown indicator, or the engine could not compute it.
    """
    try:
        indicator = INDICATORS[name]
    except KeyError:
        raise IndicatorError(
            f"unknown indicator '{name}'; choose one of: {', '.join(INDICATORS)}"
        ) from None
    prepare(engine, params, indicator.views, indicator.derived, step)
    rows = indicator.compute(engine, params)
    if step:
        step("indicator computed and protected")
    return rows


def steps(name: str) -> int:
    """How many times ``run_indicator`` calls ``step`` for an indicator (at most)."""
    from sharedcare.analytics.indicators.base import DERIVED

    indicator = INDICATORS[name]
    tables: set[str] = set()

    def walk(table: str) -> None:
        tables.add(table)
        for need in DERIVED[table].needs:
            walk(need)

    for table in indicator.derived:
        walk(table)
    return len(indicator.views) + len(tables) + 1
