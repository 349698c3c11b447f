"""Service indicators: RTT waiting list, stroke key indicators, pathology turnaround."""

from __future__ import annotations

from string import Template
from typing import Any

from sharedcare.analytics.disclosure import Rate, protect
from sharedcare.analytics.indicators.base import Params
from sharedcare.analytics.indicators.engines import Engine

__all__ = ["pathology_turnaround", "rtt_waiting_list", "stroke"]


def _rows(engine: Engine, sql: str, params: Params) -> list[dict[str, Any]]:
    columns, rows = engine.query(Template(sql).substitute(params.substitutions()))
    return [dict(zip(columns, r, strict=True)) for r in rows]


def _ints(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> list[dict[str, Any]]:
    for row in rows:
        for c in columns:
            row[c] = int(row[c] or 0)
    return rows


_RTT = """
SELECT COALESCE(trust, 'unknown') AS trust,
       COALESCE(treatment_function, 'unknown') AS treatment_function,
       COALESCE(MAX(treatment_function_name), 'unknown') AS treatment_function_name,
       COUNT(*) AS waiting,
       SUM(CASE WHEN waited_days <= 126 THEN 1 ELSE 0 END) AS within_18_weeks,
       SUM(CASE WHEN waited_days >= 364 THEN 1 ELSE 0 END) AS over_52_weeks
FROM (
    SELECT trust, treatment_function, treatment_function_name,
           @days(clock_start, '$census') AS waited_days
    FROM v_rtt_pathways
    WHERE clock_start IS NOT NULL AND SUBSTR(clock_start, 1, 10) <= '$census'
      AND (clock_stop IS NULL OR SUBSTR(clock_stop, 1, 10) > '$census')
) w
GROUP BY COALESCE(trust, 'unknown'), COALESCE(treatment_function, 'unknown')
ORDER BY trust, treatment_function
"""


def rtt_waiting_list(engine: Engine, params: Params) -> list[dict[str, Any]]:
    """Incomplete RTT pathways on the census date by trust and treatment function."""
    counts = ("waiting", "within_18_weeks", "over_52_weeks")
    rows = _ints(_rows(engine, _RTT, params), counts)
    return protect(
        rows,
        count_columns=counts,
        group_by=("trust",),
        rates={"percent_within_18_weeks": Rate("within_18_weeks", "waiting", per=100)},
    )


_STROKE = """
SELECT COALESCE(a.trust, 'unknown') AS trust, COALESCE(a.site, 'unknown') AS site,
       COUNT(*) AS admissions,
       SUM(CASE WHEN img.first_imaging IS NOT NULL
                 AND @minutes(a.arrival, img.first_imaging) <= 60 THEN 1 ELSE 0 END)
         AS scanned_within_1h,
       SUM(CASE WHEN a.stroke_unit_arrival IS NOT NULL
                 AND @minutes(a.arrival, a.stroke_unit_arrival) <= 240 THEN 1 ELSE 0 END)
         AS stroke_unit_within_4h,
       SUM(CASE WHEN thr.thrombolysis IS NOT NULL THEN 1 ELSE 0 END) AS thrombolysed
FROM v_stroke_admissions a
LEFT JOIN (SELECT encounter_key, MIN(performed) AS first_imaging FROM v_stroke_procedures
           WHERE event = 'first-brain-imaging' GROUP BY encounter_key) img
       ON img.encounter_key = a.encounter_key
LEFT JOIN (SELECT encounter_key, MIN(performed) AS thrombolysis FROM v_stroke_procedures
           WHERE event = 'thrombolysis' GROUP BY encounter_key) thr
       ON thr.encounter_key = a.encounter_key
WHERE a.arrival IS NOT NULL
  AND SUBSTR(a.arrival, 1, 10) > '$period_start' AND SUBSTR(a.arrival, 1, 10) <= '$census'
GROUP BY COALESCE(a.trust, 'unknown'), COALESCE(a.site, 'unknown')
ORDER BY trust, site
"""


def stroke(engine: Engine, params: Params) -> list[dict[str, Any]]:
    """SSNAP-style key indicators by trust and site: scan in 1 h, stroke unit in 4 h, lysis."""
    counts = ("admissions", "scanned_within_1h", "stroke_unit_within_4h", "thrombolysed")
    rows = _ints(_rows(engine, _STROKE, params), counts)
    return protect(
        rows,
        count_columns=counts,
        group_by=("trust",),
        rates={
            "percent_scanned_within_1h": Rate("scanned_within_1h", "admissions"),
            "percent_stroke_unit_within_4h": Rate("stroke_unit_within_4h", "admissions"),
            "percent_thrombolysed": Rate("thrombolysed", "admissions"),
        },
    )


#: HL7 table 0074 diagnostic service sections that are imaging, not pathology.
_IMAGING_SECTIONS = "'RAD', 'RX', 'CT', 'MR', 'NMR', 'NMS', 'US', 'VUS', 'OUS', 'CUS', 'XRC', 'CTH'"

_PATHOLOGY = f"""
SELECT site, section, COUNT(*) AS reports,
       SUM(CASE WHEN minutes <= 1440 THEN 1 ELSE 0 END) AS within_24h,
       @median(minutes) / 60.0 AS median_hours
FROM (
    SELECT COALESCE(REPLACE(r.order_system, 'urn:sharedcare:hl7v2:order:', ''),
                    REPLACE(r.performer_key, 'Organization/', ''), 'unknown') AS site,
           COALESCE(r.section, 'unknown') AS section,
           @minutes(COALESCE(s.collected, r.effective), r.issued) AS minutes
    FROM v_results r
    LEFT JOIN v_specimens s ON s.specimen_key = r.specimen_key
    WHERE r.issued IS NOT NULL AND COALESCE(s.collected, r.effective) IS NOT NULL
      AND (r.section IS NULL OR r.section NOT IN ({_IMAGING_SECTIONS}))
      AND SUBSTR(r.issued, 1, 10) > '$period_start' AND SUBSTR(r.issued, 1, 10) <= '$census'
) t
GROUP BY site, section
ORDER BY site, section
"""


def pathology_turnaround(engine: Engine, params: Params) -> list[dict[str, Any]]:
    """Specimen-collected-to-report-issued time by site and section (median, % in 24 h)."""
    rows = _ints(_rows(engine, _PATHOLOGY, params), ("reports", "within_24h"))
    medians = [r["median_hours"] for r in rows]
    out = protect(
        rows,
        count_columns=("reports", "within_24h"),
        group_by=("site",),
        rates={"percent_within_24h": Rate("within_24h", "reports")},
    )
    for row, median in zip(out, medians, strict=True):
        row["median_hours"] = (
            round(float(median), 1) if row["reports"] is not None and median is not None else None
        )
    return out
