"""Parameters and the derived tables every population indicator shares.

Derived tables are engine-neutral SQL over the library views (``v_<view>``) and the lookup
tables (``ref_*``, see ``reference.py``); :func:`prepare` creates the ones an indicator needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from string import Template

from sharedcare.analytics.indicators.engines import Engine
from sharedcare.analytics.indicators.reference import EFI_DEFICIT_COUNT, lookup_tables

__all__ = ["DERIVED", "Params", "prepare"]


@dataclass(frozen=True)
class Params:
    """What an indicator is computed for.

    Attributes:
        census: the reference date: ages are on this day, the population is the people
            registered with a GP practice and alive on it, waiting lists are as at its end.
        period_start: activity (admissions, strokes, results) counts when it happened after
            this day and on or before ``census``; defaults to one year before ``census``.
    """

    census: date
    period_start: date | None = None

    def substitutions(self) -> dict[str, str]:
        """Values for the ``$name`` placeholders of indicator SQL."""
        start = self.period_start or _year_before(self.census)
        if start >= self.census:
            raise ValueError("the period must start before the census date")
        return {
            "census": self.census.isoformat(),
            "census_year": str(self.census.year),
            "census_mmdd": self.census.isoformat()[5:],
            "period_start": start.isoformat(),
        }


def _year_before(day: date) -> date:
    try:
        return day.replace(year=day.year - 1)
    except ValueError:  # 29 February
        return day.replace(year=day.year - 1, day=28)


def _imd_text(column: str) -> str:
    whens = " ".join(f"WHEN '{n}' THEN '{n}'" for n in range(1, 11))
    return f"CASE {column} {whens} ELSE 'unknown' END"


#: Each linked source Patient's person: its golden record in the master patient index.
PERSON_MAP = """
SELECT patient_key, MIN(person_key) AS person_key
FROM v_patient_links WHERE patient_key IS NOT NULL
GROUP BY patient_key
"""

#: A record's person: its golden record when linked, else the record itself.
_PERSON = "COALESCE({m}.person_key, {x}.patient_key)"

#: Registered, living population on the census date with strata: one row per person (their
#: GP registration record; with several, the first by key), ``patient_key`` = person key.
PEOPLE_BASE = f"""
SELECT p.person_key AS patient_key, p.record_key,
       CASE WHEN p.sex IN ('male', 'female', 'other') THEN p.sex ELSE 'unknown' END AS sex,
       p.age, a.age_band, a.esp_weight,
       {_imd_text("l.imd_quintile")} AS imd_quintile,
       CASE WHEN l.imd_decile IN ('1', '2') THEN 'core20'
            WHEN l.imd_decile IS NULL THEN 'unknown' ELSE 'rest' END AS core20
FROM (
    SELECT v.patient_key AS record_key, {_PERSON.format(m="m", x="v")} AS person_key,
           v.sex, v.lsoa,
           $census_year - CAST(SUBSTR(v.birth_date, 1, 4) AS INTEGER)
             - CASE WHEN SUBSTR(v.birth_date, 6, 5) > '$census_mmdd' THEN 1 ELSE 0 END AS age,
           ROW_NUMBER() OVER (PARTITION BY {_PERSON.format(m="m", x="v")}
                              ORDER BY v.patient_key) AS record_rank
    FROM v_people v
    LEFT JOIN person_map m ON m.patient_key = v.patient_key
    WHERE v.gp_practice_key IS NOT NULL
      AND v.birth_date IS NOT NULL AND SUBSTR(v.birth_date, 1, 10) <= '$census'
      AND (v.deceased IS NULL OR v.deceased = FALSE)
      AND (v.deceased_date IS NULL OR SUBSTR(v.deceased_date, 1, 10) > '$census')
) p
JOIN ref_age a ON a.age = CASE WHEN p.age > 120 THEN 120 ELSE p.age END
LEFT JOIN ref_lsoa l ON l.lsoa = p.lsoa
WHERE p.record_rank = 1
"""

#: People with their locality, GP practice and ethnic category (for breakdowns by them).
PEOPLE_DETAIL = f"""
SELECT b.patient_key, {_imd_text("l.imd_decile")} AS imd_decile,
       COALESCE(l.locality, 'unknown') AS locality,
       COALESCE(rp.practice_code, REPLACE(v.gp_practice_key, 'Organization/', '')) AS gp_practice,
       COALESCE(v.ethnic_category, 'unknown') AS ethnic_category
FROM people_base b
JOIN v_people v ON v.patient_key = b.record_key
LEFT JOIN ref_lsoa l ON l.lsoa = v.lsoa
LEFT JOIN ref_practice rp ON rp.practice_key = v.gp_practice_key
"""

#: People with a condition (or eFI deficit) from the code lists, on the census date.
CONDITION_PEOPLE = f"""
SELECT DISTINCT {_PERSON.format(m="m", x="c")} AS patient_key, r.list_kind, r.list_name
FROM v_conditions c
JOIN ref_codes r ON r.code = c.snomed_code
LEFT JOIN person_map m ON m.patient_key = c.patient_key
WHERE (COALESCE(c.onset, c.recorded_date) IS NULL
       OR SUBSTR(COALESCE(c.onset, c.recorded_date), 1, 10) <= '$census')
  AND (c.clinical_status IS NULL OR c.clinical_status IN ('active', 'recurrence', 'relapse'))
"""

#: NHS Data Dictionary admission method codes (UK Core AdmissionMethodEngland).
_EMERGENCY_METHODS = "'21', '22', '23', '24', '25', '28', '2A', '2B', '2C', '2D'"
_ELECTIVE_METHODS = "'11', '12', '13'"

#: Hospital admissions with their method: emergency, elective, other or unknown.
ADMISSIONS = f"""
SELECT e.encounter_key, {_PERSON.format(m="m", x="e")} AS patient_key, e.period_start,
       CASE WHEN e.admission_method IN ({_EMERGENCY_METHODS}) OR e.priority_code = 'EM'
                 OR e.admission_type_v2 IN ('E', 'U', 'A') OR e.admit_source = 'emd'
            THEN 'emergency'
            WHEN e.admission_method IN ({_ELECTIVE_METHODS}) OR e.priority_code = 'EL'
                 OR e.admission_type_v2 IN ('C', 'R')
            THEN 'elective'
            WHEN e.admission_method IS NOT NULL THEN 'other'
            ELSE 'unknown' END AS method
FROM v_encounters e
LEFT JOIN person_map m ON m.patient_key = e.patient_key
WHERE e.class_code IN ('IMP', 'ACUTE', 'NONAC') AND e.period_start IS NOT NULL
"""

#: Electronic Frailty Index for people aged 65+: deficits found, score and band.
EFI_PEOPLE = f"""
SELECT x.patient_key, x.imd_quintile, x.deficits,
       @float(x.deficits) / {EFI_DEFICIT_COUNT}.0 AS score,
       CASE WHEN x.deficits * 100 <= 12 * {EFI_DEFICIT_COUNT} THEN 'fit'
            WHEN x.deficits * 100 <= 24 * {EFI_DEFICIT_COUNT} THEN 'mild'
            WHEN x.deficits * 100 <= 36 * {EFI_DEFICIT_COUNT} THEN 'moderate'
            ELSE 'severe' END AS band
FROM (
    SELECT p.patient_key, p.imd_quintile, COUNT(d.deficit) AS deficits
    FROM people_base p
    LEFT JOIN (
        SELECT cp.patient_key, cp.list_name AS deficit
        FROM condition_people cp WHERE cp.list_kind = 'efi'
        UNION
        SELECT {_PERSON.format(m="pm", x="m")} AS patient_key, 'polypharmacy' AS deficit
        FROM v_medications m
        LEFT JOIN person_map pm ON pm.patient_key = m.patient_key
        WHERE m.medication_code IS NOT NULL
          AND (m.status = 'active'
               OR (SUBSTR(m.authored_on, 1, 10) > '$period_start'
                   AND SUBSTR(m.authored_on, 1, 10) <= '$census'))
        GROUP BY {_PERSON.format(m="pm", x="m")}
        HAVING COUNT(DISTINCT m.medication_code) >= 5
    ) d ON d.patient_key = p.patient_key
    WHERE p.age >= 65
    GROUP BY p.patient_key, p.imd_quintile
) x
"""


@dataclass(frozen=True)
class Derived:
    """A derived table: its SQL, the library views and derived tables it reads."""

    sql: str
    views: tuple[str, ...]
    needs: tuple[str, ...] = ()


DERIVED: dict[str, Derived] = {
    "person_map": Derived(PERSON_MAP, ("patient_links",)),
    "people_base": Derived(PEOPLE_BASE, ("people",), ("person_map",)),
    "people_detail": Derived(PEOPLE_DETAIL, ("people",), ("people_base",)),
    "condition_people": Derived(CONDITION_PEOPLE, ("conditions",), ("person_map",)),
    "admissions": Derived(ADMISSIONS, ("encounters",), ("person_map",)),
    "efi_people": Derived(
        EFI_PEOPLE, ("medications",), ("people_base", "condition_people", "person_map")
    ),
}


def prepare(
    engine: Engine,
    params: Params,
    views: tuple[str, ...],
    derived: tuple[str, ...],
    step: Callable[[str], None] | None = None,
) -> None:
    """Create the lookup tables, views and derived tables an indicator reads.

    Args:
        engine: where to create them.
        params: census date and period.
        views: library views to evaluate.
        derived: derived tables (``DERIVED``) to build, with what they need.
        step: called with a description after each view or table (progress display).
    """
    report = step or (lambda _: None)
    for table in lookup_tables():
        if engine.built.get(table.name) is not table:
            engine.load_lookup(table)
            engine.built[table.name] = table
    for view in views:
        engine.ensure_view(view)
        report(f"view {view}")
    subs = params.substitutions()
    done: set[str] = set()

    def build(name: str) -> None:
        if name in done:
            return
        spec = DERIVED[name]
        for need in spec.needs:
            build(need)
        for view in spec.views:
            engine.ensure_view(view)
        if engine.built.get(name) != params:
            engine.create_table(name, Template(spec.sql).substitute(subs))
            engine.built[name] = params
        done.add(name)
        report(f"table {name}")

    for name in derived:
        build(name)
