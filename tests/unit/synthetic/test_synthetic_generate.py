"""A whole small run: files, manifest, ground truth, determinism."""

from __future__ import annotations

import csv
import gzip
import hashlib
from collections import Counter
from pathlib import Path

import hl7
import orjson
import pytest

from sharedcare.identity import nhs_number
from sharedcare.synthetic.feeds.fhir import LSOA_EXTENSION
from sharedcare.synthetic.feeds.hl7v2 import iter_messages
from sharedcare.synthetic.generate import SynthConfig, run
from sharedcare.synthetic.geography import area_geography

PEOPLE = 500


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    run(SynthConfig(people=PEOPLE, seed=21, out=out, chunk_size=200))
    return out


@pytest.fixture(scope="module")
def messages(run_dir: Path) -> list[tuple[str, hl7.Message]]:
    """Every HL7 message of the run, parsed once with python-hl7."""
    return [
        (trust, hl7.parse(text))
        for trust in ("RBD", "R0D")
        for path in sorted((run_dir / trust).glob("*.hl7"))
        for text in iter_messages(path)
    ]


def test_layout_and_manifest(run_dir: Path, messages: list[tuple[str, hl7.Message]]) -> None:
    manifest = orjson.loads((run_dir / "manifest.json").read_bytes())
    orgs = manifest["organisations"]
    assert manifest["people_at_census"] == PEOPLE
    assert orgs["population"]["person"] == manifest["people_total"] > PEOPLE
    assert orgs["population"]["death"] == manifest["people_total"] - PEOPLE
    assert orgs["population"]["birth"] > 0 and orgs["population"]["house-move"] > 0
    assert {"RBD", "R0D", "RDY", "E06000058", "E06000059", "VCS"} <= set(orgs)
    practices = [o for o in orgs if o.startswith("J81")]
    assert len(practices) > 50
    # Counts in the manifest match what is on disk.
    bundles = sum(
        len((p).read_bytes().splitlines()) for p in run_dir.glob("J81*/patients-*.ndjson")
    )
    assert bundles == sum(orgs[p]["Bundle"] for p in practices)
    for trust in ("RBD", "R0D"):
        on_disk = Counter(str(m.segment("MSH")[9]) for t, m in messages if t == trust)
        expected = {k: v for k, v in orgs[trust].items() if "^" in k}
        assert on_disk == Counter(expected)
        for kind in ("ADT^A01", "ADT^A02", "ADT^A03", "ADT^A04", "ADT^A08", "ORU^R01", "ORM^O01"):
            assert orgs[trust].get(kind, 0) > 0, (trust, kind)


def test_truth_covers_every_source_record(
    run_dir: Path, messages: list[tuple[str, hl7.Message]]
) -> None:
    with (run_dir / "truth.csv").open(newline="") as handle:
        truth = {(r["source_org"], r["source_id"]): r["person_id"] for r in csv.DictReader(handle)}
    seen = 0
    for trust, msg in messages:
        local = str(msg.segment("PID")[3][0][0])
        assert (trust, local) in truth
        seen += 1
    for path in run_dir.glob("J81*/patients-*.ndjson"):
        org = path.parent.name
        for line in path.read_bytes().splitlines():
            bundle = orjson.loads(line)
            patient = next(
                e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"
            )
            local = next(i["value"] for i in patient["identifier"] if org in i["system"])
            assert (org, local) in truth
            seen += 1
    for council in ("E06000058", "E06000059"):
        for path in (run_dir / council).glob("assessments-*.csv"):
            with path.open(newline="") as handle:
                for row in csv.DictReader(handle):
                    assert (council, row["council_person_id"]) in truth
    for path in (run_dir / "VCS").glob("referrals-*.csv"):
        with path.open(newline="") as handle:
            for row in csv.DictReader(handle):
                assert ("VCS", row["referral_id"]) in truth
    assert seen > 1000
    # Every person at census has exactly one GP registration (two for a duplicate).
    gp_people = Counter(p for (org, _), p in truth.items() if org.startswith("J81"))
    assert len(gp_people) >= PEOPLE
    assert max(gp_people.values()) <= 2


def test_every_visit_message_carries_its_admission_type(
    messages: list[tuple[str, hl7.Message]],
) -> None:
    """PV1-4 (table 0007) is the only place the feeds say "emergency", so every message about
    a visit repeats it: a later message without it would clear ``Encounter.type`` on ingest."""
    types: Counter[tuple[str, str]] = Counter()
    for _, msg in messages:
        if not str(msg.segment("MSH")[9]).startswith("ADT"):
            continue
        try:
            pv1 = msg.segment("PV1")
        except KeyError:
            continue
        if str(pv1[2]) == "N":
            continue  # A31 address updates carry no visit
        types[(str(pv1[2]), str(pv1[4]))] += 1
    assert types[("E", "E")] > 0 and types[("I", "E")] > 0 and types[("O", "C")] > 0
    assert not [key for key in types if key[1] == ""], types


def test_faults_are_present_at_roughly_the_configured_rates(run_dir: Path) -> None:
    with (run_dir / "truth.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    faults = Counter(f for r in rows for f in r["faults"].split(";") if f)
    n = len(rows)
    assert 0.01 < faults["missing-nhs-number"] / n < 0.06
    assert 0.002 < faults["mistyped-nhs-number"] / n < 0.03
    assert faults["duplicate-registration"] > 0 and faults["dob-transposed"] > 0
    assert faults["name-typo"] > 0 and faults["old-address"] > 0


def test_fhir_bundles_reference_only_their_own_entries(run_dir: Path) -> None:
    for path in [*run_dir.glob("J81*/patients-*.ndjson"), *run_dir.glob("RDY/patients-*.ndjson")]:
        for line in path.read_bytes().splitlines()[:30]:
            bundle = orjson.loads(line)
            assert bundle["type"] == "transaction"
            ids = {e["request"]["url"] for e in bundle["entry"]}
            assert len(ids) == len(bundle["entry"])
            refs = _references(bundle)
            assert refs and refs <= ids
            patient = next(
                e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"
            )
            for ident in patient["identifier"]:
                if ident["system"] == nhs_number.NHS_NUMBER_SYSTEM:
                    assert ident["value"].startswith("999")


def test_patients_carry_the_lsoa_of_the_address_they_hold(run_dir: Path) -> None:
    """The ``people`` analytics view reads the LSOA from this extension (IMD, Core20)."""
    geography = area_geography()
    seen = 0
    for path in [*run_dir.glob("J81*/patients-*.ndjson"), *run_dir.glob("RDY/patients-*.ndjson")]:
        for line in path.read_bytes().splitlines()[:20]:
            bundle = orjson.loads(line)
            for entry in bundle["entry"]:
                if entry["resource"]["resourceType"] != "Patient":
                    continue
                [home] = entry["resource"]["address"]
                [extension] = home["extension"]
                assert extension["url"] == LSOA_EXTENSION
                # The postcode district is the one the generator gives that LSOA.
                district = geography[extension["valueCode"]].postcode_district
                assert home["postalCode"].split(" ")[0] == district
                seen += 1
    assert seen > 100


def _references(node: object) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                found.add(value)
            else:
                found |= _references(value)
    elif isinstance(node, list):
        for item in node:
            found |= _references(item)
    return found


def test_same_seed_gives_identical_output_whatever_the_worker_count(
    run_dir: Path, tmp_path: Path
) -> None:
    again = tmp_path / "again"
    run(SynthConfig(people=PEOPLE, seed=21, out=again, chunk_size=200, workers=2))
    assert _digest(again) == _digest(run_dir)


def test_different_seed_gives_different_output(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    run(SynthConfig(people=200, seed=1, out=a))
    run(SynthConfig(people=200, seed=2, out=b))
    assert (a / "truth.csv").read_bytes() != (b / "truth.csv").read_bytes()


def test_config_rejects_impossible_runs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="test range"):
        SynthConfig(people=2_000_000, seed=1, out=tmp_path)
    with pytest.raises(ValueError, match="years"):
        SynthConfig(people=10, seed=1, out=tmp_path, years=0)


def test_compressed_output_holds_the_same_bytes(tmp_path: Path) -> None:
    plain, packed, again = tmp_path / "plain", tmp_path / "packed", tmp_path / "again"
    run(SynthConfig(people=150, seed=4, out=plain))
    run(SynthConfig(people=150, seed=4, out=packed, compress=True))
    run(SynthConfig(people=150, seed=4, out=again, compress=True))
    assert _digest(packed) == _digest(again)  # gzip headers carry no time or name
    plain_files = {
        p.relative_to(plain) for p in plain.rglob("*") if p.is_file() and p.parent != plain
    }
    packed_files = {p.relative_to(packed) for p in packed.rglob("*.gz")}
    assert {p.with_suffix(p.suffix + ".gz") for p in plain_files} == packed_files
    for rel in plain_files:
        assert gzip.decompress((packed / f"{rel}.gz").read_bytes()) == (plain / rel).read_bytes()
    hl7_file = next(packed.glob("R*/adt-*.hl7.gz"))
    assert all(hl7.parse(text) for text in iter_messages(hl7_file))
