"""Benchmark: SQL-on-FHIR view materialisation on DuckDB, in resources per second.

Generates synthetic Patient and Observation NDJSON (no real data), then materialises three
ViewDefinitions (flat patient demographics, observations, and a forEach over names) with
``materialise_duckdb`` and prints resources/s. Target (issue): >= 50,000 res/s on 2 cores.

Usage: python benchmarks/bench_views.py [--resources 200000] [--threads 2]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import orjson

from sharedcare.analytics.views import Source, compile_for, materialise_duckdb, ndjson_source

PATIENT_VIEW = {
    "resource": "Patient",
    "name": "patient_demographics",
    "select": [
        {
            "column": [
                {"name": "patient_key", "path": "getResourceKey()", "type": "string"},
                {"name": "id", "path": "id", "type": "id"},
                {"name": "gender", "path": "gender", "type": "code"},
                {"name": "birth_date", "path": "birthDate", "type": "date"},
                {"name": "active", "path": "active", "type": "boolean"},
                {
                    "name": "nhs_number",
                    "path": "identifier.where(system = 'https://fhir.nhs.uk/Id/nhs-number')"
                    ".value.first()",
                    "type": "string",
                },
                {
                    "name": "family",
                    "path": "name.where(use = 'official').family.first()",
                    "type": "string",
                },
                {"name": "given", "path": "name.first().given.join(' ')", "type": "string"},
                {"name": "postcode", "path": "address.first().postalCode", "type": "string"},
                {
                    "name": "gp",
                    "path": "generalPractitioner.first().getReferenceKey(Organization)",
                    "type": "string",
                },
            ]
        }
    ],
}

OBSERVATION_VIEW = {
    "resource": "Observation",
    "name": "observations",
    "select": [
        {
            "column": [
                {"name": "id", "path": "id", "type": "id"},
                {
                    "name": "patient_key",
                    "path": "subject.getReferenceKey(Patient)",
                    "type": "string",
                },
                {"name": "status", "path": "status", "type": "code"},
                {"name": "effective", "path": "effective.ofType(dateTime)", "type": "dateTime"},
                {"name": "value", "path": "value.ofType(Quantity).value", "type": "decimal"},
                {"name": "unit", "path": "value.ofType(Quantity).unit", "type": "string"},
            ]
        },
        {
            "forEach": "code.coding",
            "column": [
                {"name": "system", "path": "system", "type": "uri"},
                {"name": "code", "path": "code", "type": "code"},
            ],
        },
    ],
}

NAMES_VIEW = {
    "resource": "Patient",
    "name": "patient_names",
    "select": [
        {"column": [{"name": "id", "path": "id", "type": "id"}]},
        {
            "forEachOrNull": "name",
            "column": [
                {"name": "name_index", "path": "%rowIndex", "type": "integer"},
                {"name": "use", "path": "use", "type": "code"},
                {"name": "family", "path": "family", "type": "string"},
                {"name": "given", "path": "given", "type": "string", "collection": True},
            ],
        },
    ],
}

CODES = [
    ("8867-4", "Heart rate", "/min"),
    ("29463-7", "Body weight", "kg"),
    ("8302-2", "Body height", "cm"),
    ("2339-0", "Glucose", "mmol/L"),
]


def _patient(i: int, rng: random.Random) -> dict[str, object]:
    return {
        "resourceType": "Patient",
        "id": f"p{i}",
        "active": rng.random() < 0.9,
        "identifier": [
            {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": f"{9000000000 + i}"},
            {"system": "urn:local:mrn", "value": f"MRN{i:08d}"},
        ],
        "name": [
            {"use": "official", "family": f"Family{i % 977}", "given": [f"Given{i % 313}", "Ann"]},
            {"use": "usual", "given": [f"Nick{i % 57}"]},
        ],
        "gender": rng.choice(["male", "female", "other", "unknown"]),
        "birthDate": f"{rng.randint(1930, 2020)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        "address": [
            {
                "line": [f"{i % 200} High Street"],
                "city": "Dorchester",
                "postalCode": f"DT{i % 11} {i % 9}AB",
            }
        ],
        "generalPractitioner": [{"reference": f"Organization/gp{i % 70}"}],
    }


def _observation(i: int, rng: random.Random, patients: int) -> dict[str, object]:
    code, display, unit = CODES[i % len(CODES)]
    return {
        "resourceType": "Observation",
        "id": f"o{i}",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}]},
        "subject": {"reference": f"Patient/p{rng.randrange(patients)}"},
        "effectiveDateTime": f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T10:00:00Z",
        "valueQuantity": {
            "value": round(rng.uniform(1, 200), 1),
            "unit": unit,
            "system": "http://unitsofmeasure.org",
            "code": unit,
        },
    }


def generate(path: Path, total: int, seed: int = 7) -> tuple[int, int]:
    """Write ``total`` resources (1/4 Patient, 3/4 Observation) as NDJSON."""
    rng = random.Random(seed)
    patients = max(1, total // 4)
    with path.open("wb") as out:
        for i in range(patients):
            out.write(orjson.dumps(_patient(i, rng)) + b"\n")
        for i in range(total - patients):
            out.write(orjson.dumps(_observation(i, rng, patients)) + b"\n")
    return patients, total - patients


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark; ``argv`` defaults to no options (as ``python -m benchmarks`` calls it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resources", type=int, default=200_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3, help="runs per view; best is reported")
    parser.add_argument(
        "--postgres-url",
        help="also time the same views in PostgreSQL (jsonb table, CREATE TEMP TABLE AS)",
    )
    args = parser.parse_args(argv or [])
    with tempfile.TemporaryDirectory() as tmp:
        ndjson = Path(tmp) / "resources.ndjson"
        t0 = time.perf_counter()
        patients, observations = generate(ndjson, args.resources)
        print(
            f"generated {args.resources:,} resources ({patients:,} Patient, "
            f"{observations:,} Observation, {ndjson.stat().st_size / 1e6:.0f} MB) "
            f"in {time.perf_counter() - t0:.1f}s"
        )
        con = duckdb.connect()
        con.execute(f"SET threads = {args.threads}")
        # Load once into a JSON table, as a materialisation job over a store export would.
        t0 = time.perf_counter()
        con.execute(
            f"CREATE TABLE resources AS SELECT json AS resource FROM "
            f"read_ndjson_objects('{ndjson}')"
        )
        load_s = time.perf_counter() - t0
        print(f"load NDJSON into DuckDB: {load_s:.2f}s ({args.resources / load_s:,.0f} res/s)")
        table = Source("resources", "resource")
        file_source = ndjson_source(ndjson)
        for view in (PATIENT_VIEW, OBSERVATION_VIEW, NAMES_VIEW):
            for label, source in (("table", table), ("ndjson", file_source)):
                secs = float("inf")
                for _ in range(args.repeat):  # best of N: the machine is shared
                    t0 = time.perf_counter()
                    rows = materialise_duckdb(con, view, source)
                    secs = min(secs, time.perf_counter() - t0)
                rate = args.resources / secs
                matching = patients if view["resource"] == "Patient" else observations
                print(
                    f"{view['name']:<22} from {label:<6}: {rows:>8,} rows in {secs:6.2f}s = "
                    f"{rate:>10,.0f} res/s scanned, {matching / secs:>9,.0f} "
                    f"{view['resource']}/s ({matching / secs / 50_000:.2f}x target)"
                )
        if args.postgres_url:
            _postgres(args.postgres_url, ndjson, args.resources, args.repeat, patients)


def _postgres(url: str, ndjson: Path, total: int, repeat: int, patients: int) -> None:
    """Time the views in PostgreSQL over a ``(resource_type, id, content jsonb)`` table."""
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1)) as conn:
        conn.execute("CREATE TEMP TABLE store (resource_type text, id text, content jsonb)")
        t0 = time.perf_counter()
        copy_sql = "COPY store (resource_type, id, content) FROM STDIN"
        with conn.cursor().copy(copy_sql) as copy, ndjson.open("rb") as lines:
            for line in lines:
                doc = orjson.loads(line)
                copy.write_row((doc["resourceType"], doc["id"], line.decode().strip()))
        conn.execute("ANALYZE store")
        print(f"load into PostgreSQL: {time.perf_counter() - t0:.1f}s")
        source = Source("store", "content", "resource_type")
        for view in (PATIENT_VIEW, OBSERVATION_VIEW, NAMES_VIEW):
            sql = compile_for(view, "postgres", source).sql
            secs = float("inf")
            for _ in range(repeat):
                conn.execute("DROP TABLE IF EXISTS out_view")
                t0 = time.perf_counter()
                conn.execute(f"CREATE TEMP TABLE out_view AS {sql}")
                secs = min(secs, time.perf_counter() - t0)
            matching = patients if view["resource"] == "Patient" else total - patients
            print(
                f"{view['name']:<22} postgres    : {matching / secs:>9,.0f} "
                f"{view['resource']}/s ({secs:.2f}s)"
            )


if __name__ == "__main__":
    main(sys.argv[1:])
