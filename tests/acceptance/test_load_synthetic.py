"""``sharedcare load-synthetic`` as a user runs it: a small synth run loaded through a real
server (HL7 v2 over MLLP, FHIR over HTTP) and the CSV mappings, on SQLite and PostgreSQL.

Every feed's messages must reach ``written``, the counts must match the run's manifest, and
``truth.csv`` must not be loaded.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
from sqlalchemy import select, text

from sharedcare.db.engine import create_engine
from sharedcare.db.tables import Resource

CLI = [sys.executable, "-c", "from sharedcare.cli.main import app; app()"]
PEOPLE = 40
CSV_KINDS = {"rtt", "ssnap", "assessment", "package", "referral"}


@pytest.fixture(scope="module")
def synth_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "run"
    subprocess.run(
        [*CLI, "synth", "--people", str(PEOPLE), "--seed", "7", "--out", str(out)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return out


def _expected(manifest: dict[str, object]) -> tuple[Counter[str], Counter[str], int]:
    """(HL7 messages by type, FHIR resources by type, CSV rows) from the manifest."""
    hl7: Counter[str] = Counter()
    fhir: Counter[str] = Counter()
    rows = 0
    organisations = manifest["organisations"]
    assert isinstance(organisations, dict)
    for counts in organisations.values():
        for kind, n in counts.items():
            if "^" in kind:
                hl7[kind] += n
            elif kind[:1].isupper() and kind != "Bundle":
                fhir[kind] += n
            elif kind in CSV_KINDS:
                rows += n
    return hl7, fhir, rows


def _postgres_database(request: pytest.FixtureRequest, name: str) -> str:
    """A fresh migrated PostgreSQL database copied from the session's template."""
    cluster = request.getfixturevalue("postgres_cluster")
    template = request.getfixturevalue("postgres_template")
    database = f"{name}_{os.getpid()}_{time.monotonic_ns()}"
    admin = create_engine(cluster.url)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text(f'CREATE DATABASE "{database}" TEMPLATE "{template}"'))
    admin.dispose()
    return str(cluster.url_for(database))


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_load_synthetic_reaches_written_and_matches_the_manifest(
    synth_run: Path, tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'load.db'}"
        if backend == "sqlite"
        else _postgres_database(request, "load_synthetic")
    )
    result = subprocess.run(
        [*CLI, "load-synthetic", str(synth_run), "--database", url],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "matches" in result.stderr and "differ" not in result.stderr

    manifest = orjson.loads((synth_run / "manifest.json").read_bytes())
    hl7, fhir, rows = _expected(manifest)
    engine = create_engine(url)
    with engine.connect() as connection:
        stages: dict[str, int] = dict(
            connection.execute(
                text("SELECT stage, count(*) FROM message_stage GROUP BY stage")
            ).all()
        )
        hl7_loaded: Counter[str] = Counter(
            dict(
                connection.execute(
                    text(
                        "SELECT m.message_type, count(*) FROM message m JOIN feed f "
                        "ON f.id = m.feed_id JOIN message_stage s ON s.id = m.id "
                        "WHERE f.protocol = 'hl7v2' AND s.stage = 'written' "
                        "GROUP BY m.message_type"
                    )
                ).all()
            )
        )
        csv_loaded = connection.execute(
            text(
                "SELECT count(*) FROM message m JOIN feed f ON f.id = m.feed_id "
                "JOIN message_stage s ON s.id = m.id WHERE f.protocol = 'csv' "
                "AND s.stage = 'written'"
            )
        ).scalar()
        fhir_sources = connection.execute(
            text("SELECT count(*) FROM resource WHERE resource_type = 'Encounter'")
        ).scalar()
        truth_feeds = connection.execute(
            text("SELECT count(*) FROM feed WHERE name LIKE '%truth%'")
        ).scalar()
        # Every source Patient, whichever path it came by (the GP and community feeds'
        # Patients arrive over the FHIR API), is linked to a golden record.
        patients = connection.execute(
            select(Resource.id, Resource.content).where(
                Resource.resource_type == "Patient", Resource.deleted.is_(False)
            )
        ).all()
        linked = set(connection.scalars(text("SELECT source_id FROM identity_link")))
    engine.dispose()
    sources = {}
    for id_, content in patients:
        assert content is not None
        resource = content if isinstance(content, dict) else orjson.loads(content)
        if "golden" not in {t.get("code") for t in resource.get("meta", {}).get("tag", [])}:
            sources[id_] = resource["meta"]["source"]
    assert set(sources) <= linked
    from_fhir = [s for s in sources.values() if ":synthetic-" in s]
    assert len(from_fhir) == fhir["Patient"] > 0
    assert "golden records" in result.stderr
    # They were matched as they were written: the closing batch run had nothing to do.
    assert "source Patients: 0 matched," in result.stderr, result.stderr[-2000:]
    assert set(stages) == {"written"}, stages
    assert hl7_loaded == hl7
    assert csv_loaded == rows
    # GP and community Encounters from FHIR, plus those mapped from HL7 v2 and CSV.
    assert fhir_sources is not None and fhir_sources >= fhir["Encounter"]
    assert truth_feeds == 0
