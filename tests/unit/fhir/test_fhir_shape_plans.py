"""The per-shape fast paths give exactly what the general paths give.

Resources of one feed come in a few shapes (resource type and top-level keys). After a
shape has been seen a few times, ``extract_index`` runs one fused function generated for it
(``search_index._fuse``) and the validation fast check one specialised check
(``fastcheck._compile_shape``). Here every shape takes those paths from its first resource,
and their answers are compared with the general ones on the typical resources, the HL7 v2
ingest traffic, the UK Core examples and single-element changes of them (wrong JSON types,
arrays of one and of three, deleted and unknown keys, ``null``s): index values with the
items path (each parameter's extractor then its normaliser, value for value by ``repr``),
validation issues with the full walk.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from sharedcare.fhir import search_index
from sharedcare.fhir.internals import fastcheck
from sharedcare.fhir.internals.fastcheck import certainly_valid
from sharedcare.fhir.search_index import StringValue, _compiled, extract_index, extract_params
from sharedcare.fhir.validation import validate
from tests.unit.fhir.conftest import ENCOUNTER, OBSERVATION, PATIENT
from tests.unit.fhir.test_fhir_fastcheck import (
    CONDITION,
    _mutations,
    _traffic,
    _uk_core,
    full_walk,
)
from tests.unit.fhir.test_fhir_index_plans import DIAGNOSTIC_REPORT, RISK, SERVICE_REQUEST


@pytest.fixture(autouse=True)
def _shape_paths_at_once(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fused and specialised functions from a shape's first resource, in fresh caches."""
    monkeypatch.setattr(search_index, "_FUSE_AFTER", 1)
    monkeypatch.setattr(search_index, "_ACTIVE", {})
    monkeypatch.setattr(search_index, "_fused_count", 0)
    monkeypatch.setattr(search_index, "_FUSED_LIMIT", 10**6)
    monkeypatch.setattr(fastcheck, "_SPECIALISE_AFTER", 1)
    monkeypatch.setattr(fastcheck, "_SHAPES", {})
    yield


def _typical() -> list[dict[str, Any]]:
    return [
        OBSERVATION,
        PATIENT,
        ENCOUNTER,
        CONDITION,
        DIAGNOSTIC_REPORT,
        SERVICE_REQUEST,
        RISK,
    ]


def _same_index(resource: dict[str, Any]) -> None:
    expected = extract_params(resource, _compiled(resource["resourceType"]))
    assert repr(extract_index(resource)) == repr(expected), resource["resourceType"]


def _same_issues(resource: dict[str, Any]) -> None:
    expected = full_walk(copy.deepcopy(resource))
    if certainly_valid(resource):
        assert expected == [], (resource.get("resourceType"), expected)
    assert validate(resource) == expected


def test_fused_functions_give_the_values_of_the_items_path() -> None:
    resources = [*_typical(), *_traffic(), *_uk_core()]
    for resource in resources:
        _same_index(resource)
        _same_index(resource)  # and again, from the cached function
    fused = [s for s in search_index._ACTIVE.values() if s.fused is not None]
    assert len(fused) >= len({(r["resourceType"], frozenset(r)) for r in _typical()})


def test_fused_functions_match_on_changed_resources() -> None:
    changed = 0
    for resource in [*_typical(), *_traffic()[:8]]:
        for mutated in _mutations(resource):
            if type(mutated.get("resourceType")) is not str:
                continue
            _same_index(mutated)
            changed += 1
    assert changed > 2000


def test_repeated_one_value_keys_keep_their_order_and_duplicates_go() -> None:
    # Parameters sharing a key (address, address-city ...) read it once when it holds one
    # value; with two equal addresses each parameter's values are deduplicated alone.
    patient = copy.deepcopy(PATIENT)
    address = {"line": ["1 High St"], "city": "Leeds", "postalCode": "LS1 1AA"}
    for addresses in ([address], [address, address], [address, {"city": "York"}], address):
        changed = {**patient, "address": copy.deepcopy(addresses)}
        _same_index(changed)
    values = extract_index({**patient, "address": [address, address]})
    assert len(values) == len(set(values))
    cities = [v for v in values if v.param == "address-city"]
    assert cities == [StringValue("address-city", "leeds", "Leeds")]


def test_specialised_checks_give_the_issues_of_the_full_walk() -> None:
    for resource in [*_typical(), *_traffic(), *_uk_core()]:
        _same_issues(resource)
        _same_issues(resource)
    specialised = [check for shapes in fastcheck._SHAPES.values() for check in shapes.values()]
    assert any(callable(c) and "_shape_" in getattr(c, "__name__", "") for c in specialised)


@pytest.mark.parametrize(
    "resource",
    [OBSERVATION, PATIENT, ENCOUNTER, CONDITION, *_traffic()[:5]],
    ids=lambda r: f"{r['resourceType']}-{r.get('id', '')}"[:40],
)
def test_specialised_checks_match_on_every_single_change(resource: dict[str, Any]) -> None:
    count = 0
    for mutated in _mutations(resource):
        _same_issues(mutated)
        _same_issues(mutated)
        count += 1
    assert count > 50


def test_shapes_with_unknown_keys_or_two_choice_types_are_not_certainly_valid() -> None:
    observation = copy.deepcopy(OBSERVATION)
    for extra in ({"bogus": 1}, {"valueString": "x", "valueInteger": 1}, {"status": None}):
        changed = {**observation, **extra}
        assert not certainly_valid(changed)
        assert not certainly_valid(changed)  # the shape's cached answer too
        _same_issues(changed)
