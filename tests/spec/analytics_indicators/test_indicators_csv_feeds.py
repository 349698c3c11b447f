"""The RTT and stroke views read what the CSV mappings (ingest.csvmap) make of the trusts' files.

Rows in the Synthetic Dorset / trust extract layout are mapped with the shipped ``rtt`` and
``ssnap`` mappings, then the indicators run over the resulting FHIR resources.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import duckdb

from sharedcare.analytics.indicators import DuckDBEngine, Params, run_indicator
from sharedcare.analytics.views import load_duckdb_table
from sharedcare.ingest.csvmap import get_mapping, map_row

RTT_HEADER = [
    "pathway_id",
    "hospital_number",
    "nhs_number",
    "site",
    "treatment_function_code",
    "treatment_function",
    "referrer_ods",
    "clock_start",
    "first_attendance",
    "clock_stop",
]
SSNAP_HEADER = [
    "hospital_number",
    "nhs_number",
    "site",
    "arrival",
    "first_brain_imaging",
    "thrombolysis",
    "stroke_unit_arrival",
    "discharge",
]


def _map(kind: str, header: list[str], rows: list[list[str]]) -> list[dict[str, Any]]:
    mapping = get_mapping(kind)
    return [r for cells in rows for r in map_row(mapping, header, cells, "RBD").resources]


def test_rtt_and_stroke_from_the_csv_mappings() -> None:
    rtt = [
        [f"RBD-RTT-D{i:08d}-0", f"D{i:08d}", "", "DCH", "130", "Ophthalmology", "J81081",
         "2025-11-01" if i < 10 else "2024-06-01", "", ""]
        for i in range(20)
    ] + [
        [f"RBD-RTT-D{i:08d}-1", f"D{i:08d}", "", "DCH", "130", "Ophthalmology", "J81081",
         "2024-01-01", "2024-02-01T10:00", "2024-06-01"]
        for i in range(10)
    ]  # fmt: skip
    ssnap = [
        [f"D{i:08d}", "", "DCH", "2025-05-01T10:00",
         "2025-05-01T10:30" if i < 10 else "2025-05-01T12:00",
         "" if i < 10 else "2025-05-01T12:30",
         "2025-05-01T13:00" if i < 10 else "",
         "2025-05-10T12:00"]
        for i in range(20)
    ]  # fmt: skip
    resources = _map("rtt", RTT_HEADER, rtt) + _map("ssnap", SSNAP_HEADER, ssnap)
    con = duckdb.connect()
    engine = DuckDBEngine(con, load_duckdb_table(con, "csv_fhir", resources))
    params = Params(census=date(2025, 12, 31))

    [waiting] = run_indicator("rtt-waiting-list", engine, params)
    assert (waiting["trust"], waiting["treatment_function"]) == ("RBD", "130")
    assert (waiting["waiting"], waiting["within_18_weeks"], waiting["over_52_weeks"]) == (
        20,
        10,
        10,
    )

    [stroke] = run_indicator("stroke", engine, params)
    assert (stroke["trust"], stroke["admissions"]) == ("RBD", 20)
    assert (
        stroke["scanned_within_1h"],
        stroke["stroke_unit_within_4h"],
        stroke["thrombolysed"],
    ) == (10, 10, 10)
