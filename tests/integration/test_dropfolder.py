"""The watched drop folder on SQLite and PostgreSQL: FHIR NDJSON and CSV files are claimed,
stored, processed and moved to done/; unusable files go to failed/ with a reason file; a file
left claimed by a crash is finished on the next scan without storing anything twice."""

from __future__ import annotations

import threading
from pathlib import Path

import orjson
import pytest
from sqlalchemy import Engine, text

from sharedcare.ingest import pipeline
from sharedcare.ingest.dropfolder import CLAIMED, DONE, FAILED, DropFolder, DroppedFile
from sharedcare.record.sqlstore import SqlStore

RTT = (
    "pathway_id,hospital_number,nhs_number,site,treatment_function_code,treatment_function,"
    "referrer_ods,clock_start,first_attendance,clock_stop\n"
    "RBD-RTT-D1-0,D1,9434765919,DCH,130,Ophthalmology,J81081,2023-07-20,2023-11-17T15:00,"
    "2024-02-06\n"
    "RBD-RTT-D2-0,D2,,DCH,100,General Surgery,J81009,2024-01-03,,\n"
)


def _bundle(n: int) -> bytes:
    patient = {"resourceType": "Patient", "id": f"dp{n}", "birthDate": "1980-02-01"}
    return orjson.dumps(
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [{"resource": patient, "request": {"method": "PUT", "url": f"Patient/dp{n}"}}],
        }
    )


def _stages(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT stage, count(*) FROM message_stage GROUP BY stage"))
        return {stage: int(n) for stage, n in rows}


def _count(engine: Engine, sql: str) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text(sql)).scalar() or 0)


@pytest.fixture
def ready(engine: Engine) -> Engine:
    SqlStore(engine).ensure_params()
    return engine


def test_files_are_taken_moved_and_failures_explained(ready: Engine, tmp_path: Path) -> None:
    root = tmp_path / "drop"
    (root / "RBD").mkdir(parents=True)
    (root / "J81002").mkdir()
    (root / "RBD" / "rtt-20240101.csv").write_text(RTT, encoding="utf-8")
    bad_line = b'{"resourceType": "Patient", "birthDate": "not a date"}'
    (root / "J81002" / "patients-1.ndjson").write_bytes(
        b"\n".join([_bundle(1), _bundle(2), bad_line])
    )
    (root / "J81002" / "notes.txt").write_text("not a feed file", encoding="utf-8")
    (root / "J81002" / "patients-2.ndjson.part").write_bytes(_bundle(3))  # still being written
    (root / "RBD" / "ssnap-1.csv").write_text("hospital_number\nU1\n", encoding="utf-8")

    seen: list[DroppedFile] = []
    results = DropFolder(ready, root, on_file=seen.append).scan()
    assert results == seen
    by_name = {r.name: r for r in results}
    assert set(by_name) == {"rtt-20240101.csv", "patients-1.ndjson", "notes.txt", "ssnap-1.csv"}
    assert (by_name["rtt-20240101.csv"].written, by_name["rtt-20240101.csv"].errors) == (2, 0)
    fhir = by_name["patients-1.ndjson"]
    assert (fhir.kind, fhir.items, fhir.written, fhir.errors) == ("fhir", 3, 2, 1)
    assert (root / "RBD" / DONE / "rtt-20240101.csv").is_file()
    assert (root / "J81002" / DONE / "patients-1.ndjson").is_file()
    assert (root / "J81002" / "patients-2.ndjson.part").is_file()  # never taken
    reason = (root / "J81002" / FAILED / "notes.txt.reason.txt").read_text(encoding="utf-8")
    assert "no feed takes this file name" in reason
    ssnap_reason = (root / "RBD" / FAILED / "ssnap-1.csv.reason.txt").read_text(encoding="utf-8")
    assert "lacks column site, arrival" in ssnap_reason
    assert [list((root / feed / CLAIMED).iterdir()) for feed in ("RBD", "J81002")] == [[], []]

    assert _stages(ready) == {"written": 4, "failed": 1}
    assert _count(ready, "SELECT count(*) FROM resource WHERE resource_type = 'EpisodeOfCare'") == 2
    assert _count(ready, "SELECT count(*) FROM resource WHERE id IN ('dp1', 'dp2')") == 2
    with ready.connect() as connection:
        error = connection.execute(
            text("SELECT error FROM message_stage WHERE stage = 'failed'")
        ).scalar()
    assert "birthDate" in str(error) and "not a date" not in str(error)


def test_a_file_left_claimed_by_a_crash_is_finished_once(ready: Engine, tmp_path: Path) -> None:
    root = tmp_path / "drop"
    feed = root / "RBD"
    (feed / CLAIMED).mkdir(parents=True)
    (feed / "rtt-1.csv").write_text(RTT, encoding="utf-8")
    folder = DropFolder(ready, root)
    folder.scan()
    # The same file again, as if a crash left it claimed after its rows were stored.
    (feed / CLAIMED / "rtt-1.csv").write_text(RTT, encoding="utf-8")
    again = DropFolder(ready, root).scan()
    assert [(r.name, r.items, r.stored) for r in again] == [("rtt-1.csv", 2, 0)]
    done = sorted(p.name for p in (feed / DONE).iterdir())
    assert len(done) == 2 and done[0].endswith("-rtt-1.csv") and done[1] == "rtt-1.csv"
    assert _stages(ready) == {"written": 2}


def test_watch_takes_files_as_they_arrive_and_replay_fixes_fhir(
    ready: Engine, tmp_path: Path
) -> None:
    root = tmp_path / "drop"
    (root / "RDY").mkdir(parents=True)
    stop = threading.Event()
    done = threading.Event()

    def on_file(result: DroppedFile) -> None:
        done.set()

    folder = DropFolder(ready, root, on_file=on_file)
    watcher = threading.Thread(target=folder.watch, args=(stop, 0.1))
    watcher.start()
    try:
        (root / "RDY" / "patient.json").write_bytes(
            orjson.dumps({"resourceType": "Patient", "id": "rdy1", "gender": "female"})
        )
        assert done.wait(60)
    finally:
        stop.set()
        watcher.join(60)
    assert (root / "RDY" / DONE / "patient.json").is_file()
    assert _stages(ready) == {"written": 1}
    with ready.begin() as connection:
        connection.execute(text("UPDATE message_stage SET stage = 'failed', error = 'test'"))
    report = pipeline.replay(ready, feed="dropfolder@RDY")
    assert (report.tried, report.failed) == (1, 0)
    assert _stages(ready) == {"written": 1}
