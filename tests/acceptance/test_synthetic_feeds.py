"""Synthetic Dorset organisation feeds: HL7 v2 parses, FHIR validates, extracts hang together.

Acceptance (issue "Synthetic Dorset"): every HL7 message parses with python-hl7, and every FHIR
resource passes the record store's validation (``sharedcare.fhir.validation``).
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import hl7
import orjson
import pytest

from sharedcare.identity import nhs_number
from sharedcare.synthetic.feeds.hl7v2 import iter_messages
from sharedcare.synthetic.generate import SynthConfig, run
from sharedcare.synthetic.quality import DataQuality

PEOPLE = 600
ADT_EVENTS = {"A01", "A02", "A03", "A04", "A08", "A31", "A40"}


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("feeds")
    # More duplicates than the default so that merges (A40) certainly occur in a small run.
    run(
        SynthConfig(
            people=PEOPLE,
            seed=77,
            out=folder,
            chunk_size=400,
            quality=DataQuality(duplicate_registration=0.15),
        )
    )
    return folder


@pytest.fixture(scope="module")
def messages(out: Path) -> list[tuple[str, str, hl7.Message]]:
    """(trust, file name, parsed message) for every HL7 message in the run."""
    parsed = []
    for trust in ("RBD", "R0D"):
        for path in sorted((out / trust).glob("*.hl7")):
            for text in iter_messages(path):
                parsed.append((trust, path.name, hl7.parse(text)))
    return parsed


def test_every_hl7_message_parses_and_is_v24(messages: list[tuple[str, str, hl7.Message]]) -> None:
    assert len(messages) > 3000
    events: Counter[str] = Counter()
    for trust, name, msg in messages:
        msh = msg.segment("MSH")
        assert str(msh[12]) == "2.4"
        kind = str(msh[9])
        if name.startswith("adt-"):
            assert kind.startswith("ADT^")
            events[kind[4:]] += 1
        elif name.startswith("oru-"):
            assert kind == "ORU^R01"
        else:
            assert kind == "ORM^O01"
        pid3 = msg.segment("PID")[3]
        assert str(pid3[0][3]) == trust and str(pid3[0][4]) == "MR"
        assert "20201231" <= str(msh[7])[:8] < "20251231"  # inside the window
    assert set(events) == ADT_EVENTS


def test_most_but_not_all_messages_carry_the_nhs_number(
    messages: list[tuple[str, str, hl7.Message]],
) -> None:
    with_nhs = 0
    for _, _, msg in messages:
        reps = msg.segment("PID")[3]
        numbers = [str(r[0]) for r in reps if str(r[4]) == "NH"]
        if numbers:
            with_nhs += 1
            assert numbers[0].startswith("999") and len(numbers[0]) == 10
    share = with_nhs / len(messages)
    assert 0.85 < share < 0.99


def test_merges_name_a_hospital_number_the_trust_has_used(
    messages: list[tuple[str, str, hl7.Message]],
) -> None:
    used: dict[str, set[str]] = {"RBD": set(), "R0D": set()}
    merges = []
    for trust, _, msg in messages:
        used[trust].add(str(msg.segment("PID")[3][0][0]))
        if str(msg.segment("MSH")[9]) == "ADT^A40":
            merges.append((trust, str(msg.segment("MRG")[1][0][0])))
    assert merges
    for trust, old in merges:
        assert old in used[trust]


def test_pathology_flags_match_reference_ranges(
    messages: list[tuple[str, str, hl7.Message]],
) -> None:
    checked = 0
    for _, name, msg in messages:
        if not name.startswith("oru-path"):
            continue
        assert str(msg.segment("MSH")[3]) == "ODP"
        for seg in msg.segments("OBX"):
            value = float(str(seg[5]))
            low_high = str(seg[7])
            if low_high.startswith("<"):
                low, high = 0.0, float(low_high[1:])
            else:
                low, high = (float(x) for x in low_high.split("-"))
            flag = str(seg[8])
            assert flag == ("L" if value < low else "H" if value > high else "N")
            assert str(seg[3][0][2]) == "LN"
            checked += 1
    assert checked > 500


def test_every_fhir_resource_passes_record_store_validation(out: Path) -> None:
    validation = pytest.importorskip(
        "sharedcare.fhir.validation",
        reason="record-store validation (sharedcare.fhir.validation) has not landed yet",
    )
    bundles = 0
    types: Counter[str] = Counter()
    for path in sorted([*out.glob("J81*/patients-*.ndjson"), *out.glob("RDY/patients-*.ndjson")]):
        for line in path.read_bytes().splitlines():
            bundle = orjson.loads(line)
            issues = validation.validate(bundle)
            assert not validation.has_errors(issues), [(i.location, i.diagnostics) for i in issues]
            bundles += 1
            types.update(e["resource"]["resourceType"] for e in bundle["entry"])
    assert bundles > PEOPLE
    for rtype in (
        "Patient", "Organization", "Condition", "Observation", "Encounter",
        "MedicationRequest", "AllergyIntolerance", "ServiceRequest",
    ):  # fmt: skip
        assert types[rtype] > 0, rtype


def _rows(paths: list[Path]) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for path in paths:
        with path.open(newline="") as handle:
            rows.extend(csv.DictReader(handle))
    return rows


def test_stroke_timestamps_are_in_ssnap_order(out: Path) -> None:
    rows = _rows([*out.glob("*/ssnap-*.csv")])
    assert rows
    for row in rows:
        assert row["arrival"] <= row["first_brain_imaging"]
        assert row["arrival"] <= row["stroke_unit_arrival"] <= row["discharge"]
        if row["thrombolysis"]:
            assert row["first_brain_imaging"] < row["thrombolysis"]
    assert {r["site"] for r in rows} <= {"DCH", "RBH"}


def test_rtt_pathways_cover_the_named_specialties(out: Path) -> None:
    rows = _rows([*out.glob("*/rtt-*.csv")])
    specialties = Counter(r["treatment_function_code"] for r in rows)
    assert {"502", "420", "320", "130"} <= set(specialties)
    for r in rows:
        assert not r["clock_stop"] or r["clock_start"] <= r["clock_stop"]


def test_council_extracts_use_their_own_ids_and_sometimes_lack_nhs_numbers(out: Path) -> None:
    for council, prefix in (("E06000059", "DC"), ("E06000058", "BCP")):
        rows = _rows([*(out / council).glob("assessments-*.csv")])
        assert rows
        assert all(r["council_person_id"].startswith(prefix) for r in rows)
        missing = sum(not r["nhs_number"] for r in rows) / len(rows)
        assert 0.05 < missing < 0.35
        for r in rows:
            if r["nhs_number"]:
                assert len(r["nhs_number"]) == 10
    pathways = Counter(r["assessment_type"] for r in _rows([*out.glob("E06*/assessments-*.csv")]))
    assert any("pathway 3" in k for k in pathways) and any("pathway 1" in k for k in pathways)


def test_gp_patients_mostly_carry_valid_test_nhs_numbers(out: Path) -> None:
    valid = total = 0
    for path in out.glob("J81*/patients-*.ndjson"):
        for line in path.read_bytes().splitlines():
            patient = orjson.loads(line)["entry"][1]["resource"]
            total += 1
            ids = [i["value"] for i in patient["identifier"] if i["system"].endswith("nhs-number")]
            valid += bool(ids) and nhs_number.is_test_number(ids[0])
    assert 0.9 < valid / total < 1.0


def test_indicators_read_the_synthetic_lsoa_straight_from_the_output(out: Path) -> None:
    """GP bundles carry the LSOA extension, so IMD and Core20 strata are never ``unknown``."""
    from datetime import date

    import duckdb

    from sharedcare.analytics.indicators import Params, run_indicator
    from sharedcare.analytics.indicators.engines import duckdb_directory_engine

    con = duckdb.connect()
    try:
        engine = duckdb_directory_engine(con, out)  # Bundle lines unpacked
        rows = run_indicator("core20", engine, Params(census=date(2025, 12, 31)))
    finally:
        con.close()
    hyp = {r["core20"]: r for r in rows if r["measure"] == "HYP" and r["age_band"] == "all"}
    assert set(hyp) == {"core20", "rest"}  # no "unknown" stratum
    assert hyp["core20"]["denominator"] > 0 and hyp["rest"]["denominator"] > 0
    assert hyp["core20"]["denominator"] + hyp["rest"]["denominator"] >= PEOPLE * 0.9
