"""Every indicator on a small hand-built record with known answers, on DuckDB and PostgreSQL.

The record (census 2025-12-31, period 2025-01-01 → 2025-12-31):

* 20 women aged 70 in LSOA E01015273 (IMD decile 2, quintile 1, so Core20). Ten (the
  "hypertensive") have hypertension and one emergency admission (UK Core admission method
  21) in June 2025; ten (the "frail") have diabetes, AF, heart failure, CKD and COPD, which
  are 5 eFI deficits (5/36 = 0.139, "mild").
* 20 women aged 40 in LSOA E01015272 (decile 8, quintile 4): no conditions; ten have an
  elective admission (method 11), which no indicator counts as emergency.
* RTT at RBD, ophthalmology (130): 10 waiting since 2025-11-01 (under 18 weeks), 10 since
  2024-06-01 (over 52 weeks), 5 stopped before the census.
* Stroke at RBD: 20 admissions; 10 scanned at 30 min and on the stroke unit at 3 h; 10
  scanned at 2 h, never on the unit, thrombolysed.
* Pathology at DCH: 20 reports; 10 issued 12 h after collection, 10 after 48 h.

Counts are published rounded to 5 (all chosen counts are multiples of 10, so unchanged) and
counts of 1–7 suppressed, as ``sharedcare.analytics.disclosure.protect`` does.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import duckdb
import psycopg
import pytest

from sharedcare.analytics.indicators import (
    DuckDBEngine,
    Engine,
    IndicatorError,
    PostgresEngine,
    run_indicator,
)
from sharedcare.analytics.indicators.reference import code_lists, esp2013
from sharedcare.analytics.views import load_duckdb_table, load_postgres_table
from tests.spec.analytics_indicators.indicator_record import PARAMS, RECORD


@pytest.fixture(
    scope="module", params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    if request.param == "duckdb":
        con = duckdb.connect()
        yield DuckDBEngine(con, load_duckdb_table(con, "res", RECORD))
        con.close()
    else:
        url = request.getfixturevalue("postgres_url").replace("+psycopg", "", 1)
        with psycopg.connect(url) as conn:
            source = load_postgres_table(conn, "res", RECORD)
            conn.commit()
            yield PostgresEngine(conn, source)
            conn.rollback()


def _find(rows: list[dict[str, Any]], **match: Any) -> dict[str, Any]:
    found = [r for r in rows if all(r.get(k) == v for k, v in match.items())]
    assert len(found) == 1, (match, found)
    return found[0]


def test_esp2013_weights_sum_to_100000() -> None:
    bands = esp2013()
    assert len(bands) == 19 and sum(b[3] for b in bands) == 100_000
    assert bands[0] == ("0-4", 0, 4, 5000) and bands[-1][:2] == ("90+", 90)
    assert len(code_lists()["efi_deficits"]) == 36


def test_prevalence(engine: Engine) -> None:
    rows = run_indicator("prevalence", engine, PARAMS)
    band = _find(rows, measure="HYP", imd_quintile="1", sex="female", age_band="70-74")
    assert (band["numerator"], band["denominator"], band["crude_rate"]) == (10, 20, 50.0)
    total = _find(rows, measure="HYP", imd_quintile="1", sex="female", age_band="all")
    # One band (70-74, ESP weight 5000) at 50%: 100 × 5000 × 0.5 / 100000 = 2.5 per 100.
    assert total["standardised_rate"] == pytest.approx(2.5)
    assert total["crude_rate"] == 50.0
    none = _find(rows, measure="HYP", imd_quintile="4", sex="female", age_band="all")
    assert (none["numerator"], none["denominator"], none["crude_rate"]) == (0, 20, 0.0)
    # Below 10 events no DSR is published; 0 events publish a count of 0.
    assert none["standardised_rate"] is None


def test_prevalence_by_practice(engine: Engine) -> None:
    rows = run_indicator("prevalence-by-practice", engine, PARAMS)
    row = _find(rows, measure="HYP", gp_practice="J81006")
    assert (row["numerator"], row["denominator"], row["crude_rate"]) == (10, 40, 25.0)
    assert row["practice_name"] == "THE ADAM PRACTICE"


def test_emergency_admissions_per_1000(engine: Engine) -> None:
    rows = run_indicator("emergency-admissions", engine, PARAMS)
    q1 = _find(rows, imd_quintile="1", age_band="all")
    assert (q1["numerator"], q1["denominator"], q1["per"]) == (10, 20, 1000)
    assert q1["crude_rate"] == 500.0
    assert q1["standardised_rate"] == pytest.approx(1000 * 5000 * 0.5 / 100_000)
    q4 = _find(rows, imd_quintile="4", age_band="all")
    assert q4["numerator"] == 0  # the elective admissions are not emergencies


def test_core20_against_the_rest(engine: Engine) -> None:
    rows = run_indicator("core20", engine, PARAMS)
    core = _find(rows, measure="HYP", core20="core20")
    rest = _find(rows, measure="HYP", core20="rest")
    assert (core["numerator"], core["denominator"]) == (10, 20)
    assert (rest["numerator"], rest["denominator"]) == (0, 20)
    assert _find(rows, measure="emergency_admissions", core20="core20")["numerator"] == 10


def test_efi_bands(engine: Engine) -> None:
    rows = run_indicator("efi", engine, PARAMS)
    fit = _find(rows, imd_quintile="1", band="fit")
    mild = _find(rows, imd_quintile="1", band="mild")
    assert (fit["people"], mild["people"], mild["population_65_plus"]) == (10, 10, 20)
    assert mild["percent"] == 50.0
    assert _find(rows, imd_quintile="1", band="severe")["people"] == 0
    assert not [r for r in rows if r["imd_quintile"] == "4"]  # nobody there is 65+


def test_bridges_to_health(engine: Engine) -> None:
    rows = run_indicator("bridges-to-health", engine, PARAMS)
    assert _find(rows, imd_quintile="1", segment=7)["people"] == 10  # HF/COPD
    assert _find(rows, imd_quintile="1", segment=4)["people"] == 10  # hypertension
    assert _find(rows, imd_quintile="4", segment=1)["people"] == 20  # healthy
    assert len({r["segment"] for r in rows}) == 8


def test_rtt_waiting_list(engine: Engine) -> None:
    rows = run_indicator("rtt-waiting-list", engine, PARAMS)
    row = _find(rows, trust="RBD", treatment_function="130")
    assert (row["waiting"], row["within_18_weeks"], row["over_52_weeks"]) == (20, 10, 10)
    assert row["percent_within_18_weeks"] == 50.0
    assert row["treatment_function_name"] == "Ophthalmology"


def test_stroke(engine: Engine) -> None:
    rows = run_indicator("stroke", engine, PARAMS)
    row = _find(rows, trust="RBD", site="RBH")
    assert row["admissions"] == 20
    assert (row["scanned_within_1h"], row["stroke_unit_within_4h"], row["thrombolysed"]) == (
        10,
        10,
        10,
    )
    assert row["percent_thrombolysed"] == 50.0


def test_pathology_turnaround(engine: Engine) -> None:
    rows = run_indicator("pathology-turnaround", engine, PARAMS)
    row = _find(rows, site="DCH", section="HM")
    assert (row["reports"], row["within_24h"], row["percent_within_24h"]) == (20, 10, 50.0)
    assert row["median_hours"] == pytest.approx(30.0)


def test_small_counts_are_suppressed() -> None:
    con = duckdb.connect()
    few = [r for r in RECORD if r["id"] in {"old0", "old1", "old0-c0", "old1-c0"}]
    engine = DuckDBEngine(con, load_duckdb_table(con, "few", few))
    rows = run_indicator("prevalence", engine, PARAMS)
    row = _find(rows, measure="HYP", imd_quintile="1", sex="female", age_band="all")
    assert row["numerator"] is None and row["crude_rate"] is None


def test_unknown_indicator_and_missing_source() -> None:
    con = duckdb.connect()
    with pytest.raises(IndicatorError, match="unknown indicator"):
        run_indicator("nope", DuckDBEngine(con, None), PARAMS)
    with pytest.raises(IndicatorError, match="export the 'people' view"):
        run_indicator("prevalence", DuckDBEngine(con, None), PARAMS)


def test_every_library_view_compiles_for_every_engine() -> None:
    from sharedcare.analytics.library import load_view, parsed_view, view_names
    from sharedcare.analytics.views import Source, compile_for
    from sharedcare.analytics.views.spark import compile_view_spark

    assert {"people", "conditions", "observations", "encounters", "rtt_pathways"} <= set(
        view_names()
    )
    for name in view_names():
        assert load_view(name)["name"] == name
        compile_for(parsed_view(name), "duckdb", Source("t", "resource"))
        compile_for(parsed_view(name), "postgres", Source("t", "content", "resource_type"))
        compile_view_spark(parsed_view(name), Source("t", "resource"))


def test_observation_view_reads_blood_pressure_components() -> None:
    from sharedcare.analytics.library import parsed_view
    from sharedcare.analytics.views import run_duckdb

    loinc = "http://loinc.org"
    bp = {
        "resourceType": "Observation",
        "id": "bp",
        "status": "final",
        "code": {"coding": [{"system": loinc, "code": "85354-9"}]},
        "subject": {"reference": "Patient/a"},
        "effectiveDateTime": "2025-01-01T10:00:00+00:00",
        "component": [
            {
                "code": {"coding": [{"system": loinc, "code": "8480-6"}]},
                "valueQuantity": {"value": 150},
            },
            {
                "code": {"coding": [{"system": loinc, "code": "8462-4"}]},
                "valueQuantity": {"value": 95},
            },
        ],
    }
    other = {**bp, "id": "hr", "code": {"coding": [{"system": loinc, "code": "8867-4"}]}}
    con = duckdb.connect()
    rows = run_duckdb(con, parsed_view("observations"), load_duckdb_table(con, "o", [bp, other]))
    [row] = rows.as_dicts()
    assert (row["patient_key"], row["loinc_code"], row["systolic"], row["diastolic"]) == (
        "Patient/a",
        "85354-9",
        150.0,
        95.0,
    )


def _golden_record(linked: bool) -> list[dict[str, Any]]:
    """10 people, each with two GP registrations and a hospital record holding an admission."""
    from tests.spec.analytics_indicators.indicator_record import make_admission, make_patient

    out: list[dict[str, Any]] = []
    for i in range(10):
        gp_a, gp_b, hosp = f"gpa{i}", f"gpb{i}", f"hosp{i}"
        out += [
            make_patient(gp_a, "1955-03-01", "E01015273"),
            make_patient(gp_b, "1955-03-01", "E01015273"),
        ]
        out += [
            {"resourceType": "Patient", "id": hosp, "gender": "female"},
            make_admission(hosp, "21"),
        ]
        if linked:
            out.append(
                {
                    "resourceType": "Patient",
                    "id": f"golden{i}",
                    "meta": {
                        "tag": [
                            {
                                "system": "https://sharedcare.nhs.uk/CodeSystem/identity",
                                "code": "golden",
                            }
                        ]
                    },
                    "active": True,
                    "link": [
                        {"other": {"reference": f"Patient/{k}"}, "type": "seealso"}
                        for k in (gp_a, gp_b, hosp)
                    ],
                }
            )
    return out


@pytest.mark.parametrize("linked", [True, False])
def test_people_are_counted_by_golden_record(linked: bool) -> None:
    con = duckdb.connect()
    engine = DuckDBEngine(con, load_duckdb_table(con, "golden", _golden_record(linked)))
    rows = run_indicator("emergency-admissions", engine, PARAMS)
    row = _find(rows, imd_quintile="1", age_band="all")
    if linked:
        # One person per golden record; the hospital's admissions join the GP registrations.
        assert (row["numerator"], row["denominator"]) == (10, 10)
    else:
        # Unlinked: each GP record is a person and the hospital records are nobody's.
        assert (row["numerator"], row["denominator"]) == (0, 20)
