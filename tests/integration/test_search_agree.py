"""Hypothesis: SQLite and PostgreSQL return identical results for generated searches.

Each example stores the same generated Patients and Observations in both databases, then
runs generated searches - every parameter type, modifiers, prefixes, chains, ``_has``,
composites, ``_include``, several sort keys and paging - and compares the status, the ids
in order, the included ids and the total.
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Iterator
from datetime import date
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.spec.search.conftest import client_for
from tests.support.identity import without_realtime_matching

_examples = itertools.count()
LOINC = "http://loinc.org"

families = st.sampled_from(["Smith", "smythe", "Ólafsdóttir", "O'Brien", "de la Cruz", "Ng"])
genders = st.sampled_from(["male", "female", "other", "unknown"])
births = st.dates(min_value=date(1920, 1, 1), max_value=date(2020, 12, 31)).flatmap(
    lambda d: st.sampled_from([d.isoformat()[:4], d.isoformat()[:7], d.isoformat()])
)
codes = st.sampled_from(["8480-6", "8462-4", "8867-4"])
systems = st.sampled_from([LOINC, None])
values = st.decimals(min_value=0, max_value=300, places=1, allow_nan=False)
instants = st.datetimes(min_value=__import__("datetime").datetime(2023, 1, 1),
                        max_value=__import__("datetime").datetime(2024, 12, 31))  # fmt: skip

patients = st.lists(
    st.tuples(families, genders, st.one_of(st.none(), births)), min_size=1, max_size=5
)
observations = st.lists(
    st.tuples(st.integers(0, 4), codes, systems, st.one_of(st.none(), values), instants),
    max_size=8,
)
prefixes = st.sampled_from(["", "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb"])

patient_query = st.one_of(
    st.builds(
        lambda m, f: f"family{m}={f[:3]}", st.sampled_from(["", ":exact", ":contains"]), families
    ),
    st.builds(lambda g, h: f"gender={g},{h}", genders, genders),
    st.builds(lambda p, d: f"birthdate={p}{d}", prefixes, births),
    st.builds(lambda c: f"_has:Observation:patient:code={c}", codes),
    st.just("birthdate:missing=true"),
    st.just("_revinclude=Observation:subject"),
)
observation_query = st.one_of(
    st.builds(lambda c, s: f"code={s + '|' if s else ''}{c}", codes, systems),
    st.builds(lambda c: f"code:not={c}", codes),
    st.builds(lambda p, v: f"value-quantity={p}{v}", prefixes, values),
    st.builds(lambda p, v: f"value-quantity={p}{v}||mm[Hg]", prefixes, values),
    st.builds(lambda p, d: f"date={p}{d}", prefixes, births),
    st.builds(lambda f: f"subject:Patient.name={f[:2]}", families),
    st.builds(lambda c, p, v: f"code-value-quantity={c}${p}{v}", codes, prefixes, values),
    st.just("_include=Observation:subject"),
    st.just("value-quantity:missing=true"),
)
sorts = st.sampled_from(["_id", "-_lastUpdated", "birthdate,_id", "-birthdate", "family,-_id"])
obs_sorts = st.sampled_from(["_id", "-date", "value-quantity", "-value-quantity,_id", "code"])


@pytest.fixture(scope="module")
def clients(
    sqlite_template: Any, postgres_template: str, postgres_cluster: Any, tmp_path_factory: Any
) -> Iterator[tuple[TestClient, TestClient]]:
    from tests.conftest import _fresh_postgres_database

    path = tmp_path_factory.mktemp("search-agree") / "agree.db"
    shutil.copyfile(sqlite_template, path)
    pg = _fresh_postgres_database(postgres_cluster, postgres_template)
    with client_for(f"sqlite:///{path}") as a, client_for(pg) as b:
        yield a, b


def _store(client: TestClient, prefix: str, pats: list[Any], obs: list[Any]) -> None:
    for i, (family, gender, birth) in enumerate(pats):
        body: dict[str, Any] = {
            "resourceType": "Patient",
            "id": f"{prefix}-p{i}",
            "name": [{"family": family}],
            "gender": gender,
        }
        if birth:
            body["birthDate"] = birth
        assert client.put(f"/fhir/Patient/{body['id']}", json=body).status_code == 201
    for j, (slot, code, system, value, when) in enumerate(obs):
        coding = {"code": code, **({"system": system} if system else {})}
        body = {
            "resourceType": "Observation",
            "id": f"{prefix}-o{j}",
            "status": "final",
            "code": {"coding": [coding]},
            "subject": {"reference": f"Patient/{prefix}-p{slot % len(pats)}"},
            "effectiveDateTime": when.isoformat() + "Z",
        }
        if value is not None:
            body["valueQuantity"] = {
                "value": float(value), "unit": "mmHg", "system": "http://unitsofmeasure.org",
                "code": "mm[Hg]",
            }  # fmt: skip
        assert client.put(f"/fhir/Observation/{body['id']}", json=body).status_code == 201


def _run(client: TestClient, path: str) -> list[Any]:
    """Every page of a search, following next links: status, ids, includes, total."""
    seen: list[Any] = []
    url: str | None = path
    for _ in range(10):
        assert url is not None
        parts = urlsplit(url)
        response = client.get(parts.path, params=parse_qsl(parts.query))
        body = response.json()
        if response.status_code != 200:
            seen.append((response.status_code, body["issue"][0]["diagnostics"]))
            return seen
        entries = body.get("entry", [])
        seen.append(
            (
                [e["resource"]["id"] for e in entries if e["search"]["mode"] == "match"],
                sorted(e["resource"]["id"] for e in entries if e["search"]["mode"] == "include"),
                body.get("total"),
            )
        )
        url = next((x["url"] for x in body["link"] if x["relation"] == "next"), None)
        if url is None:
            break
    return seen


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    pats=patients,
    obs=observations,
    pq=st.lists(patient_query, min_size=1, max_size=2),
    oq=st.lists(observation_query, min_size=1, max_size=2),
    sort=sorts,
    obs_sort=obs_sorts,
    count=st.integers(1, 4),
)
def test_sqlite_and_postgres_return_the_same_results(
    clients: tuple[TestClient, TestClient],
    pats: list[Any],
    obs: list[Any],
    pq: list[str],
    oq: list[str],
    sort: str,
    obs_sort: str,
    count: int,
) -> None:
    sqlite_client, postgres_client = clients
    prefix = f"s{next(_examples)}"
    with without_realtime_matching():  # golden ids would differ between the two
        _store(sqlite_client, prefix, pats, obs)
        _store(postgres_client, prefix, pats, obs)
    queries = [
        f"/fhir/Patient?{'&'.join(pq)}&_sort={sort}&_count={count}",
        f"/fhir/Observation?{'&'.join(oq)}&_sort={obs_sort}&_count={count}",
        f"/fhir/Patient/{prefix}-p0/Observation?_sort={obs_sort}&_count={count}",
    ]
    for query in queries:
        assert _run(sqlite_client, query) == _run(postgres_client, query), query
