"""CSV feeds through the pipeline on SQLite and PostgreSQL: every shipped mapping's rows are
written, a bad row fails alone with a reason naming the column, a resend stores nothing new,
and a replay after a mapping fix clears the error queue."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, select, text

from sharedcare.db.tables import Feed, Message, MessageStage, Resource
from sharedcare.ingest import pipeline
from sharedcare.ingest.csvmap import get_mapping, load_mapping
from sharedcare.ingest.csvmap import spec as csv_spec
from sharedcare.ingest.csvmap.messages import CsvFileError, ingest_csv_file, row_bytes
from sharedcare.ingest.health import error_queue
from sharedcare.ingest.stages import Stage
from sharedcare.ingest.store import FeedRegistry, Incoming, store_messages
from sharedcare.record.sqlstore import SqlStore

FEEDS: dict[str, tuple[str, str, list[str], int]] = {
    # mapping: (organisation, header, two good rows, resources they make)
    "rtt": (
        "RBD",
        "pathway_id,hospital_number,nhs_number,site,treatment_function_code,treatment_function,"
        "referrer_ods,clock_start,first_attendance,clock_stop",
        [
            "RBD-RTT-D1-0,D1,9434765919,DCH,130,Ophthalmology,J81081,2023-07-20,"
            "2023-11-17T15:00,2024-02-06",
            "RBD-RTT-D2-0,D2,,DCH,100,General Surgery,J81009,2024-01-03,,",
        ],
        5,
    ),
    "ssnap": (
        "R0D",
        "hospital_number,nhs_number,site,arrival,first_brain_imaging,thrombolysis,"
        "stroke_unit_arrival,discharge",
        [
            "U1,9434765919,RBH,2025-08-11T13:07,2025-08-11T13:20,2025-08-11T14:20,"
            "2025-08-12T00:52,2025-08-17T13:15",
            "U2,,RBH,2024-04-28T21:47,2024-04-28T23:18,,2024-04-29T03:28,2024-05-05T13:23",
        ],
        5,
    ),
    "social-care-assessments": (
        "E06000059",
        "assessment_id,council_person_id,nhs_number,given_name,family_name,date_of_birth,"
        "address_line,town,postcode,assessment_date,assessment_type,outcome",
        [
            "DC1-A0,DC1,,Alex,Tester,1944-02-18,1 Test Street,Wareham,BH20 9ZZ,2021-11-26,"
            "Care Act needs assessment,No eligible needs",
            "DC2-A0,DC2,9434765919,Sam,Tester,1950-01-01,2 Test Street,Wareham,BH20 9ZZ,"
            "2022-01-05,Discharge to assess (pathway 1),Eligible needs",
        ],
        4,
    ),
    "social-care-packages": (
        "E06000059",
        "package_id,council_person_id,nhs_number,given_name,family_name,date_of_birth,postcode,"
        "service,start_date,end_date,hours_per_week",
        [
            "DC1-P0,DC1,,Alex,Tester,1944-02-18,BH20 9ZZ,Day services,2021-12-29,,6",
            "DC2-P0,DC2,,Sam,Tester,1950-01-01,BH20 9ZZ,Reablement at home,2022-01-05,"
            "2022-02-01,10.5",
        ],
        2,
    ),
    "vcs-referrals": (
        "VCS",
        "referral_id,received_date,service,referrer_ods,given_name,family_name,date_of_birth,"
        "postcode,nhs_number",
        [
            "VCS1-0,2024-07-03,Carers support,J81076,Alex,Tester,1974-04-24,DT8 8ZZ,",
            "VCS2-0,2024-07-04,Befriending service,J81076,Sam,Tester,1944-04-24,DT8 8ZZ,9434765919",
        ],
        4,
    ),
}
BAD_CELL = "13/13/2024"


def _write(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def _messages(engine: Engine) -> list[Any]:
    with engine.connect() as connection:
        return list(
            connection.execute(
                select(
                    MessageStage.stage,
                    MessageStage.error,
                    Message.control_id,
                    MessageStage.resource_count,
                )
                .join(MessageStage, MessageStage.id == Message.id)
                .join(Feed, Feed.id == Message.feed_id)
                .where(Feed.protocol == "csv")
                .order_by(Message.id)
            )
        )


@pytest.fixture
def ready(engine: Engine) -> Engine:
    SqlStore(engine).ensure_params()
    return engine


@pytest.mark.parametrize("name", sorted(FEEDS))
def test_feed_rows_written_bad_row_alone_resend_idempotent(
    ready: Engine, tmp_path: Path, name: str
) -> None:
    org, header, rows, made = FEEDS[name]
    mapping = get_mapping(name)
    date_column = next(c.name for c in mapping.columns.values() if c.type in ("date", "datetime"))
    cells = rows[0].split(",")
    cells[header.split(",").index(date_column)] = BAD_CELL
    cells[0] = cells[0] + "-bad"
    bad = ",".join(cells)
    path = _write(tmp_path / mapping.files[0].replace("*", "00000"), header, [*rows, bad])

    report = ingest_csv_file(ready, path, mapping, org)
    assert (report.rows, report.written, report.failed) == (3, 2, 1)
    assert report.resources == made
    stored = _messages(ready)
    assert [m.stage for m in stored] == ["written", "written", "failed"]
    reason = stored[2].error
    assert reason.startswith(f"column {date_column}: expected a")
    assert BAD_CELL not in reason
    queued = error_queue(ready.connect(), feed=f"{mapping.feed}@{org}")
    assert [q.error for q in queued] == [reason]

    again = ingest_csv_file(ready, path, mapping, org)
    assert (again.stored, again.duplicates) == (1, 2)  # the failed row is tried again
    assert len(_messages(ready)) == 3
    with ready.connect() as connection:
        versions = connection.execute(text("SELECT max(version_id) FROM resource")).scalar()
    assert versions == 1  # nothing was written twice


def test_header_without_required_column_is_refused_whole(ready: Engine, tmp_path: Path) -> None:
    org, header, rows, _ = FEEDS["rtt"]
    short_header = header.replace("clock_start,", "")
    short_rows = [",".join(r.split(",")[:7] + r.split(",")[8:]) for r in rows]
    path = _write(tmp_path / "rtt-1.csv", short_header, short_rows)
    with pytest.raises(CsvFileError, match="lacks column clock_start"):
        ingest_csv_file(ready, path, get_mapping("rtt"), org)
    assert _messages(ready) == []


@pytest.fixture
def strict_packages() -> Iterator[None]:
    """The shipped packages mapping, without "Day services" (a council's new service type)."""
    mappings = csv_spec.available_mappings()
    original = mappings["social-care-packages"]
    data = (resources.files("sharedcare.ingest.csvmap") / "mappings").joinpath(
        "social-care-packages.json"
    )
    document = copy.deepcopy(orjson.loads(data.read_bytes()))
    del document["columns"]["service"]["values"]["Day services"]
    mappings["social-care-packages"] = load_mapping(document)
    try:
        yield
    finally:
        mappings["social-care-packages"] = original


def test_replay_after_a_mapping_fix(ready: Engine, tmp_path: Path, strict_packages: None) -> None:
    org, header, rows, _ = FEEDS["social-care-packages"]
    path = _write(tmp_path / "packages-00000.csv", header, rows)
    report = ingest_csv_file(ready, path, get_mapping("social-care-packages"), org)
    assert (report.written, report.failed) == (1, 1)
    failed = _messages(ready)[0]
    assert failed.error.startswith("column service: not one of the 6 values")

    still = pipeline.replay(ready, feed=f"packages@{org}")
    assert still.failed == 1  # the mapping has not been fixed yet

    csv_spec.available_mappings()["social-care-packages"] = load_mapping(
        (resources.files("sharedcare.ingest.csvmap") / "mappings")
        .joinpath("social-care-packages.json")
        .read_bytes()
    )
    fixed = pipeline.replay(ready, feed=f"packages@{org}")
    assert (fixed.tried, fixed.failed) == (1, 0)
    assert [m.stage for m in _messages(ready)] == ["written", "written"]
    assert _messages(ready)[0].resource_count == 1


def test_recovery_maps_stored_rows_again(ready: Engine) -> None:
    org, header, rows, made = FEEDS["vcs-referrals"]
    # Stored but not written: as if the process died between the two commits.
    items = [
        Incoming(
            "csv",
            "referrals",
            org,
            f"referrals-00000.csv#VCS{n}",
            "vcs-referrals",
            row_bytes(header.split(","), row.split(",")),
            Stage.MAPPED,
        )
        for n, row in enumerate(rows)
    ]
    store_messages(ready, items, FeedRegistry())
    report = pipeline.recover(ready)
    assert report.stages == {"written": 2}
    assert sum(m.resource_count for m in _messages(ready)) == made
    with ready.connect() as connection:
        count = connection.execute(
            text("SELECT count(*) FROM resource WHERE resource_type = 'ServiceRequest'")
        ).scalar()
    assert count == 2


def test_a_council_feed_names_the_council_in_meta_source(ready: Engine, tmp_path: Path) -> None:
    # Councils are named by their local authority's ONS code (no ODS code in the reference
    # data): the feed's organisation is that code, named from the reference list, and the
    # resources it writes say so in meta.source instead of "unknown".
    org, header, rows, _ = FEEDS["social-care-assessments"]
    mapping = get_mapping("social-care-assessments")
    path = _write(tmp_path / mapping.files[0].replace("*", "00000"), header, rows)
    ingest_csv_file(ready, path, mapping, org)
    with ready.connect() as connection:
        feed = connection.execute(
            text("SELECT organisation_ods_code FROM feed WHERE protocol = 'csv'")
        ).scalar()
        named = connection.execute(
            text("SELECT name, kind FROM organisation WHERE ods_code = :c"), {"c": org}
        ).one()
        contents = connection.scalars(
            select(Resource.content).where(Resource.deleted.is_(False))
        ).all()
        sources = {
            (c if isinstance(c, dict) else orjson.loads(c))["meta"]["source"]
            for c in contents
            if c is not None
        }
    assert feed == "E06000059"
    assert tuple(named) == ("Dorset Council", "council")
    # The golden records the identity service made for the two people are the ICS's own.
    assert sources == {
        "urn:sharedcare:source:E06000059:assessments@E06000059",
        "urn:sharedcare:identity:golden",
    }


@pytest.mark.parametrize(
    ("facility", "code"),
    [
        ("RBD", "RBD"),
        ("rbd01", "RBD01"),
        ("J81021", "J81021"),
        ("E06000058", "E06000058"),
        ("W06000015", "W06000015"),
        ("E38000045", None),
        ("PAS system", None),
        ("", None),
    ],
)
def test_organisation_code_takes_ods_codes_and_local_authorities(
    facility: str, code: str | None
) -> None:
    from sharedcare.ingest.store import organisation_code

    assert organisation_code(facility) == code
