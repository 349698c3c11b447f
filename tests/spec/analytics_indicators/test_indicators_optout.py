"""Indicators are secondary use: people with a National Data Opt-out are not counted.

The shared hand-built record (see indicator_record.py) plus an active opt-out Consent for ten
of the twenty hypertensive-or-frail women aged 70 in LSOA E01015273: the ten hypertensive
ones, each with an emergency admission. Every indicator must lose them from numerator and
denominator, on DuckDB and on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import duckdb
import psycopg
import pytest

from sharedcare.analytics.indicators import DuckDBEngine, Engine, PostgresEngine, run_indicator
from sharedcare.analytics.optout import SNOMED, TYPE1_OPTOUT_SNOMED, optout_consent
from sharedcare.analytics.views import load_duckdb_table, load_postgres_table
from tests.spec.analytics_indicators.indicator_record import PARAMS, RECORD


def _consents() -> list[dict[str, Any]]:
    out = []
    for i in range(10):
        consent = optout_consent(f"optout-{i}", f"old{i}", "2025-01-01")
        if i % 2:  # half as GP-recorded "type 1" opt-outs (SNOMED CT)
            consent["category"] = [{"coding": [{"system": SNOMED, "code": TYPE1_OPTOUT_SNOMED}]}]
        out.append(consent)
    # A withdrawn opt-out does not exclude anyone.
    withdrawn = optout_consent("optout-old", "old10", "2020-01-01")
    withdrawn["status"] = "inactive"
    return [*out, withdrawn]


OPTED_OUT = [*RECORD, *_consents()]


@pytest.fixture(
    scope="module", params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    if request.param == "duckdb":
        con = duckdb.connect()
        yield DuckDBEngine(con, load_duckdb_table(con, "res_optout", OPTED_OUT))
        con.close()
    else:
        url = request.getfixturevalue("postgres_url").replace("+psycopg", "", 1)
        with psycopg.connect(url) as conn:
            source = load_postgres_table(conn, "res_optout", OPTED_OUT)
            conn.commit()
            yield PostgresEngine(conn, source)
            conn.rollback()


def _find(rows: list[dict[str, Any]], **match: Any) -> dict[str, Any]:
    found = [r for r in rows if all(r.get(k) == v for k, v in match.items())]
    assert len(found) == 1, (match, found)
    return found[0]


def test_opted_out_people_leave_prevalence(engine: Engine) -> None:
    rows = run_indicator("prevalence", engine, PARAMS)
    band = _find(rows, measure="HYP", imd_quintile="1", sex="female", age_band="70-74")
    # Without the opt-outs: 10 of 20 (see test_indicators_spec.py::test_prevalence).
    assert (band["numerator"], band["denominator"]) == (0, 10)
    frail = _find(rows, measure="DM", imd_quintile="1", sex="female", age_band="70-74")
    assert (frail["numerator"], frail["denominator"]) == (10, 10)


def test_opted_out_people_leave_emergency_admissions(engine: Engine) -> None:
    rows = run_indicator("emergency-admissions", engine, PARAMS)
    q1 = _find(rows, imd_quintile="1", age_band="all")
    # Without the opt-outs: 10 admissions among 20 people.
    assert (q1["numerator"], q1["denominator"]) == (0, 10)


def test_opted_out_people_leave_core20(engine: Engine) -> None:
    rows = run_indicator("core20", engine, PARAMS)
    core = _find(rows, measure="HYP", core20="core20")
    assert (core["numerator"], core["denominator"]) == (0, 10)
    rest = _find(rows, measure="HYP", core20="rest")
    assert rest["denominator"] == 20
