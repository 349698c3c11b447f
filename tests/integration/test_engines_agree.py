"""Hypothesis: SQLite and PostgreSQL agree on generated sequences of writes.

Each example applies the same generated sequence of creates (PUT with client ids), updates,
deletes and conditional creates to a SQLite and a PostgreSQL record, and compares every
response status and version, the final read of each resource, its history length, and a
few searches.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sharedcare.api.app import create_app
from sharedcare.config import Settings

_examples = itertools.count()

names = st.sampled_from(["Smith", "Jones", "Ng", "Ólafsdóttir", "O'Brien", "Brown"])
genders = st.sampled_from(["male", "female", "other", "unknown"])
dates = st.dates(min_value=__import__("datetime").date(1920, 1, 1)).map(lambda d: d.isoformat())
slots = st.integers(min_value=0, max_value=3)

operation = st.one_of(
    st.tuples(st.just("put"), slots, names, genders, dates),
    st.tuples(st.just("delete"), slots),
    st.tuples(st.just("observe"), slots, st.integers(min_value=40, max_value=200)),
    st.tuples(st.just("conditional"), names),
)


@pytest.fixture(scope="module")
def clients(
    sqlite_template: Any, postgres_template: str, postgres_cluster: Any, tmp_path_factory: Any
) -> Iterator[tuple[TestClient, TestClient]]:
    import shutil

    from tests.conftest import _fresh_postgres_database

    path = tmp_path_factory.mktemp("agree") / "agree.db"
    shutil.copyfile(sqlite_template, path)
    pg = _fresh_postgres_database(postgres_cluster, postgres_template)
    with (
        TestClient(create_app(Settings(database_url=f"sqlite:///{path}"))) as a,
        TestClient(create_app(Settings(database_url=pg))) as b,
    ):
        yield a, b


def _apply(client: TestClient, prefix: str, ops: list[tuple[Any, ...]]) -> list[Any]:
    seen: list[Any] = []
    for op in ops:
        if op[0] == "put":
            _, slot, family, gender, birth = op
            rid = f"{prefix}-p{slot}"
            body = {
                "resourceType": "Patient",
                "id": rid,
                "name": [{"family": family}],
                "gender": gender,
                "birthDate": birth,
                "identifier": [{"system": "urn:test", "value": f"{prefix}-{family}"}],
            }
            r = client.put(f"/fhir/Patient/{rid}", json=body)
            seen.append(("put", r.status_code, r.json().get("meta", {}).get("versionId")))
        elif op[0] == "delete":
            r = client.delete(f"/fhir/Patient/{prefix}-p{op[1]}")
            seen.append(("delete", r.status_code))
        elif op[0] == "observe":
            _, slot, value = op
            rid = f"{prefix}-o{slot}"
            body = {
                "resourceType": "Observation",
                "id": rid,
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                "subject": {"reference": f"Patient/{prefix}-p{slot}"},
                "valueQuantity": {"value": value, "unit": "/min"},
            }
            r = client.put(f"/fhir/Observation/{rid}", json=body)
            seen.append(("observe", r.status_code, r.json().get("meta", {}).get("versionId")))
        else:
            family = op[1]
            body = {"resourceType": "Patient", "name": [{"family": family}]}
            criteria = "identifier=" + quote(f"urn:test|{prefix}-{family}")
            r = client.post("/fhir/Patient", json=body, headers={"If-None-Exist": criteria})
            seen.append(("conditional", r.status_code))
    for kind in ("p", "o"):
        for slot in range(4):
            rtype = "Patient" if kind == "p" else "Observation"
            r = client.get(f"/fhir/{rtype}/{prefix}-{kind}{slot}")
            body = r.json()
            if r.status_code == 200:
                body = {k: v for k, v in body.items() if k != "meta"}
            seen.append(("read", rtype, slot, r.status_code, body))
            h = client.get(f"/fhir/{rtype}/{prefix}-{kind}{slot}/_history")
            seen.append(("history", h.status_code, h.json().get("total")))
    for query in (
        f"identifier=urn:test|{prefix}-Smith",
        "family=o",
        "gender=female,other",
        "birthdate=ge1970",
    ):
        r = client.get(f"/fhir/Patient?{query}&_count=1000&_sort=_id")
        ids = sorted(
            e["resource"]["id"]
            for e in r.json().get("entry", [])
            if e["resource"]["id"].startswith(prefix)
        )
        seen.append(("search", query, r.status_code, ids))
    return seen


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=st.lists(operation, min_size=1, max_size=12))
def test_sqlite_and_postgres_agree(
    clients: tuple[TestClient, TestClient], ops: list[tuple[Any, ...]]
) -> None:
    sqlite_client, postgres_client = clients
    prefix = f"x{next(_examples)}"
    assert _apply(sqlite_client, prefix, ops) == _apply(postgres_client, prefix, ops)
