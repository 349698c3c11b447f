"""Population indicators: prevalence, emergency admissions, Core20, eFI, Bridges to Health."""

from __future__ import annotations

from string import Template
from typing import Any

from sharedcare.analytics.disclosure import Rate, protect
from sharedcare.analytics.indicators.base import Params
from sharedcare.analytics.indicators.engines import Engine
from sharedcare.analytics.indicators.rates import standardised_rates
from sharedcare.analytics.indicators.reference import code_lists

__all__ = [
    "bridges_to_health",
    "core20",
    "efi",
    "emergency_admissions",
    "prevalence",
    "prevalence_by_practice",
]

_PREVALENCE_EVENTS = """
SELECT patient_key, list_name AS measure, 1 AS n
FROM condition_people WHERE list_kind = 'condition'
"""

_EMERGENCY_EVENTS = """
SELECT patient_key, 'emergency_admissions' AS measure, COUNT(*) AS n
FROM admissions
WHERE method = 'emergency'
  AND SUBSTR(period_start, 1, 10) > '$period_start' AND SUBSTR(period_start, 1, 10) <= '$census'
GROUP BY patient_key
"""


def _conditions() -> list[tuple[str, int]]:
    return [(name, 100) for name in code_lists()["conditions"]]


def prevalence(engine: Engine, params: Params) -> list[dict[str, Any]]:
    """Condition prevalence (%) by IMD quintile × age band × sex, with ESP2013 DSRs."""
    return standardised_rates(
        engine,
        params.substitutions(),
        _PREVALENCE_EVENTS,
        _conditions(),
        ("imd_quintile", "sex"),
    )


_BY_PRACTICE = """
WITH den AS (SELECT d.gp_practice, COUNT(*) AS denominator
             FROM people_detail d GROUP BY d.gp_practice),
num AS (SELECT cp.list_name AS measure, d.gp_practice, COUNT(*) AS numerator
        FROM condition_people cp JOIN people_detail d ON d.patient_key = cp.patient_key
        WHERE cp.list_kind = 'condition' GROUP BY cp.list_name, d.gp_practice)
SELECT c.condition AS measure, den.gp_practice, COALESCE(rp.practice_name, 'unknown') AS
       practice_name, COALESCE(num.numerator, 0) AS numerator, den.denominator
FROM den CROSS JOIN ref_condition c
LEFT JOIN num ON num.measure = c.condition AND num.gp_practice = den.gp_practice
LEFT JOIN ref_practice rp ON rp.practice_code = den.gp_practice
ORDER BY c.condition, den.gp_practice
"""


def prevalence_by_practice(engine: Engine, params: Params) -> list[dict[str, Any]]:
    """Crude condition prevalence (%) by GP practice (QOF-style register rates)."""
    columns, rows = engine.query(_BY_PRACTICE)
    out = [dict(zip(columns, r, strict=True)) for r in rows]
    for row in out:
        row["numerator"] = int(row["numerator"])
        row["denominator"] = int(row["denominator"])
    return protect(
        out,
        count_columns=("numerator", "denominator"),
        group_by=("measure",),
        rates={"crude_rate": Rate("numerator", "denominator", per=100, digits=2)},
    )


def emergency_admissions(engine: Engine, params: Params) -> list[dict[str, Any]]:
    """Emergency admissions per 1,000 people in the period, by IMD quintile × age band."""
    return standardised_rates(
        engine,
        params.substitutions(),
        _EMERGENCY_EVENTS,
        [("emergency_admissions", 1000)],
        ("imd_quintile",),
    )


def core20(engine: Engine, params: Params) -> list[dict[str, Any]]:
    """Core20 (IMD deciles 1–2) against the rest: prevalence and emergency admissions, DSRs."""
    events = _PREVALENCE_EVENTS + " UNION ALL " + _EMERGENCY_EVENTS
    return standardised_rates(
        engine,
        params.substitutions(),
        events,
        [*_conditions(), ("emergency_admissions", 1000)],
        ("core20",),
        by_age=False,
    )


def _shares(
    rows: list[dict[str, Any]], count: str, population: str, group: tuple[str, ...]
) -> list[dict[str, Any]]:
    for row in rows:
        row[count] = int(row[count])
        row[population] = int(row[population])
    return protect(
        rows,
        count_columns=(count, population),
        group_by=group,
        rates={"percent": Rate(count, population, per=100, digits=1)},
    )


_EFI_BANDS = "('fit', 1), ('mild', 2), ('moderate', 3), ('severe', 4)"


def efi(engine: Engine, params: Params) -> list[dict[str, Any]]:
    """People aged 65+ in each eFI band (fit/mild/moderate/severe), by IMD quintile."""
    columns, rows = engine.query(
        f"""
        WITH bands AS (SELECT band, band_order FROM (VALUES {_EFI_BANDS}) AS b (band, band_order)),
        pop AS (SELECT imd_quintile, COUNT(*) AS population FROM efi_people GROUP BY imd_quintile),
        counts AS (SELECT imd_quintile, band, COUNT(*) AS people
                   FROM efi_people GROUP BY imd_quintile, band)
        SELECT p.imd_quintile, b.band, COALESCE(c.people, 0) AS people,
               p.population AS population_65_plus
        FROM pop p CROSS JOIN bands b
        LEFT JOIN counts c ON c.imd_quintile = p.imd_quintile AND c.band = b.band
        ORDER BY p.imd_quintile, b.band_order
        """
    )
    out = [dict(zip(columns, r, strict=True)) for r in rows]
    return _shares(out, "people", "population_65_plus", ("imd_quintile",))


#: Bridges to Health segments (Lynn et al. 2007), highest need first; see the docs.
SEGMENTS = (
    (8, "Frailty"),
    (7, "Limited reserve and exacerbations"),
    (6, "Short period of decline before dying"),
    (5, "Stable but serious disability"),
    (4, "Chronic conditions, normal function"),
    (3, "Acutely ill but likely to recover"),
    (2, "Maternal and infant health"),
    (1, "Healthy"),
)

_SEGMENT_PEOPLE = """
SELECT p.patient_key, p.imd_quintile,
       CASE WHEN dem.patient_key IS NOT NULL OR f.band IN ('moderate', 'severe') THEN 8
            WHEN org.patient_key IS NOT NULL THEN 7
            WHEN can.patient_key IS NOT NULL THEN 6
            WHEN dis.patient_key IS NOT NULL THEN 5
            WHEN ltc.patient_key IS NOT NULL THEN 4
            WHEN adm.patient_key IS NOT NULL THEN 3
            WHEN p.age < 1 THEN 2
            ELSE 1 END AS segment
FROM people_base p
LEFT JOIN efi_people f ON f.patient_key = p.patient_key
LEFT JOIN (SELECT DISTINCT patient_key FROM condition_people
           WHERE list_kind = 'condition' AND list_name = 'DEM') dem
       ON dem.patient_key = p.patient_key
LEFT JOIN (SELECT DISTINCT patient_key FROM condition_people
           WHERE list_kind = 'condition' AND list_name IN ('HF', 'COPD')) org
       ON org.patient_key = p.patient_key
LEFT JOIN (SELECT DISTINCT patient_key FROM condition_people
           WHERE list_kind = 'condition' AND list_name = 'CAN') can
       ON can.patient_key = p.patient_key
LEFT JOIN (SELECT DISTINCT patient_key FROM condition_people
           WHERE list_kind = 'condition' AND list_name IN ('LD', 'MH')) dis
       ON dis.patient_key = p.patient_key
LEFT JOIN (SELECT DISTINCT patient_key FROM condition_people WHERE list_kind = 'condition') ltc
       ON ltc.patient_key = p.patient_key
LEFT JOIN (SELECT DISTINCT patient_key FROM admissions
           WHERE method = 'emergency' AND SUBSTR(period_start, 1, 10) > '$period_start'
             AND SUBSTR(period_start, 1, 10) <= '$census') adm
       ON adm.patient_key = p.patient_key
"""


def bridges_to_health(engine: Engine, params: Params) -> list[dict[str, Any]]:
    """People in each of the 8 Bridges to Health segments, by IMD quintile."""
    engine.create_table(
        "segment_people", Template(_SEGMENT_PEOPLE).substitute(params.substitutions())
    )
    names = ", ".join(f"({n}, '{t}')" for n, t in SEGMENTS)
    columns, rows = engine.query(
        f"""
        WITH segs AS (SELECT segment, segment_name
                      FROM (VALUES {names}) AS s (segment, segment_name)),
        pop AS (SELECT imd_quintile, COUNT(*) AS population FROM segment_people
                GROUP BY imd_quintile),
        counts AS (SELECT imd_quintile, segment, COUNT(*) AS people FROM segment_people
                   GROUP BY imd_quintile, segment)
        SELECT p.imd_quintile, s.segment, s.segment_name, COALESCE(c.people, 0) AS people,
               p.population
        FROM pop p CROSS JOIN segs s
        LEFT JOIN counts c ON c.imd_quintile = p.imd_quintile AND c.segment = s.segment
        ORDER BY p.imd_quintile, s.segment
        """
    )
    out = [dict(zip(columns, r, strict=True)) for r in rows]
    return _shares(out, "people", "population", ("imd_quintile",))
