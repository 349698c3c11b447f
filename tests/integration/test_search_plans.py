"""Search statements are built once per query shape and reused with each request's values
(``sharedcare.record.search.signature`` and ``compile_search``).

A plan shared by two queries must give each the answer it would get from a plan built for it
alone. Every row of the search spec tables runs twice on each database: first with the
plan caches emptied before each request (every statement built for that query), then with
the caches warm, in the reverse order (every statement reused from whichever query of the
same shape came first); the answers must be the same.
"""

from __future__ import annotations

import importlib
from typing import Any

import pytest
import sqlalchemy

from sharedcare.record.search import _PLANS, SearchRequest, compile_search, parse_search
from sharedcare.record.search import include as include_module
from tests.spec.search.cases import Case, load, search
from tests.spec.search.conftest import _database, client_for

MODULES = [
    "test_search_token",
    "test_search_string",
    "test_search_reference",
    "test_search_date",
    "test_search_number",
    "test_search_quantity",
    "test_search_uri",
    "test_search_composite",
    "test_search_results",
]


def _answer(client: Any, case: Case) -> tuple[Any, ...]:
    response = search(client, case)
    if response.status_code != 200:
        return (response.status_code,)
    bundle = response.json()
    entries = [
        (e["search"]["mode"], e["resource"]["resourceType"], e["resource"]["id"])
        for e in bundle.get("entry", [])
    ]
    relations = sorted(link["relation"] for link in bundle["link"])
    return (200, entries, bundle.get("total"), relations)


def _forget() -> None:
    _PLANS.clear()
    include_module._STEPS.clear()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
@pytest.mark.parametrize("module_name", MODULES)
def test_shared_plans_answer_as_fresh_ones(
    request: pytest.FixtureRequest, kind: str, module_name: str
) -> None:
    module = importlib.import_module(f"tests.spec.search.{module_name}")
    cases: list[Case] = list(module.CASES)
    with client_for(_database(request, kind)) as client:
        load(client, module.DATA)
        fresh = {}
        for case in cases:
            _forget()
            fresh[case.id] = _answer(client, case)
        _forget()
        for case in reversed(cases):
            _answer(client, case)  # warm: plans built in the reverse order
        for case in cases:
            assert _answer(client, case) == fresh[case.id], case.query


def _shape_of(query: str) -> tuple[Any, dict[str, Any]]:
    rtype, _, rest = query.partition("?")
    params = [tuple(p.split("=", 1)) for p in rest.split("&")]
    request: SearchRequest = parse_search(rtype, params)  # type: ignore[arg-type]
    ids = {("Observation", "code"): 7, ("Observation", "subject"): 8, ("Patient", "family"): 9}
    compiled = compile_search(request, lambda t, c: ids.get((t, c)), bytewise=True)
    return compiled.plan, compiled.params


def test_queries_differing_only_in_values_share_a_plan() -> None:
    a, a_values = _shape_of("Observation?code=http://loinc.org|8480-6&subject=Patient/p1")
    b, b_values = _shape_of("Observation?code=http://snomed.info/sct|1234&subject=Patient/p2")
    assert a is b
    assert a_values != b_values
    assert "p1" in a_values.values() and "p2" in b_values.values()
    assert _shape_of("Patient?family=smi")[0] is _shape_of("Patient?family=jones")[0]


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("Observation?code=8480-6", "Observation?code=http://loinc.org|8480-6"),
        ("Observation?code=http://loinc.org|", "Observation?code=http://loinc.org|8480-6"),
        ("Observation?code=8480-6", "Observation?code=8480-6,8462-4"),
        ("Observation?code=8480-6", "Observation?code:not=8480-6"),
        ("Observation?subject=Patient/p1", "Observation?subject=p1"),
        ("Observation?subject=Patient/p1", "Observation?subject=http://x.org/fhir/Patient/p1"),
        ("Observation?date=ge2024", "Observation?date=lt2024"),
        ("Patient?family=smi", "Patient?family:exact=smi"),
        ("Observation?value-quantity=5", "Observation?value-quantity=6"),
        ("Observation?code=1&_sort=date", "Observation?code=1&_sort=-date"),
    ],
)
def test_queries_of_different_shapes_get_their_own_plans(one: str, other: str) -> None:
    assert _shape_of(one)[0] is not _shape_of(other)[0]


def test_string_clauses_alone_meet_in_the_index_before_resources_are_read() -> None:
    """``family=…&given=…``: the second name is checked against the first's index rows, so
    PostgreSQL does not fetch every family candidate's resource row first
    (``docs/decisions/0022-search-cpu-per-request.md``). Mixed with another kind, each
    clause stays its own semi-join on ``resource`` (0012: nesting misled a chained search)."""
    dialect = sqlalchemy.create_engine("postgresql+psycopg://").dialect  # never connects
    names, _ = _shape_of("Patient?family=smi&given=jo&name=x")
    sql = str(names.page(None, False, []).compile(dialect=dialect))
    assert sql.count("resource.pk IN") == 1
    assert sql.count("idx_string.res IN") == 2
    mixed, _ = _shape_of("Patient?family=smi&birthdate=2000")
    sql = str(mixed.page(None, False, []).compile(dialect=dialect))
    assert sql.count("resource.pk IN") == 2
    assert "idx_string.res IN" not in sql
