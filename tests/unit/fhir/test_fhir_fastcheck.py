"""The yes/no fast check agrees with the full validation: validate() gives the same issues.

``validate`` returns ``[]`` at once when ``certainly_valid`` says so, so the fast check must
never call a resource valid that the full walk would find an issue in. Checked on the
typical resources, the HL7 v2 ingest traffic's FHIR resources, the UK Core examples, and
thousands of mutations of them (each element deleted, nulled, emptied, wrapped in or taken
out of an array, given a wrong JSON type or a bad value, and unknown elements added).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sharedcare.fhir import validation
from sharedcare.fhir.internals.fastcheck import certainly_valid
from sharedcare.fhir.validation import Issue, validate
from sharedcare.fhir.xml_format import xml_to_json
from sharedcare.ingest.hl7v2.mapping import map_message
from tests.support.hl7_traffic import message
from tests.unit.fhir.conftest import ENCOUNTER, OBSERVATION, PATIENT

UK_CORE = Path("/work/shared/conformance/uk-core/examples")
# Required bindings on a CodeableConcept (clinicalStatus) and on codes.
CONDITION: dict[str, Any] = {
    "resourceType": "Condition",
    "id": "c1",
    "clinicalStatus": {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                "code": "active",
            }
        ]
    },
    "code": {"text": "asthma"},
    "subject": {"reference": "Patient/p1"},
    "onsetDateTime": "2020-02-03",
}


def full_walk(resource: dict[str, Any]) -> list[Issue]:
    """The full validation alone, without the fast check in front of it."""
    issues: list[Issue] = []
    validation._resource(resource, None, issues, nested=False)
    return issues


def _traffic() -> list[dict[str, Any]]:
    return [r for i in range(12) for r in map_message(message(i).encode()).resources]


def _uk_core() -> list[dict[str, Any]]:
    if not UK_CORE.is_dir():
        return []
    out = []
    for path in sorted(UK_CORE.glob("*.xml")):
        try:
            resource = xml_to_json(path.read_bytes())
        except Exception:  # not every example converts; those are covered elsewhere
            continue
        if isinstance(resource, dict):
            out.append(resource)
    return out


_WRONG: tuple[Any, ...] = (
    None,
    [],
    {},
    "",
    " ",
    "nonsense",
    "bad value  here",
    12,
    1.5,
    True,
    [None],
    [{}],
    {"x": 1},
)


def _mutations(resource: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Copies of ``resource`` each with one element changed."""

    def paths(node: Any, path: tuple[Any, ...]) -> Iterator[tuple[Any, ...]]:
        if isinstance(node, dict):
            yield path
            for key, value in node.items():
                yield from paths(value, (*path, key))
        elif isinstance(node, list):
            yield path
            for i, value in enumerate(node):
                yield from paths(value, (*path, i))
        else:
            yield path

    def at(root: Any, path: tuple[Any, ...]) -> tuple[Any, Any]:
        parent = root
        for step in path[:-1]:
            parent = parent[step]
        return parent, path[-1]

    for path in list(paths(resource, ())):
        if not path:
            continue
        value = at(resource, path)[0][path[-1]]
        replacements = [*_WRONG, [value]]
        if isinstance(value, list) and value:
            replacements.append(value[0])
            replacements.append(value * 3)
        for new in replacements:
            copied = copy.deepcopy(resource)
            parent, last = at(copied, path)
            parent[last] = new
            yield copied
        copied = copy.deepcopy(resource)
        parent, last = at(copied, path)
        if isinstance(parent, dict):
            del parent[last]
            yield copied
        if isinstance(value, dict):
            for extra in ("bogus", "_" + next(iter(value), "x"), "valueString", "resourceType"):
                copied = copy.deepcopy(resource)
                at(copied, path)[0][path[-1]][extra] = "x"
                yield copied
    for extra in ("contained", "_id", "_birthDate", "text", "implicitRules"):
        copied = copy.deepcopy(resource)
        copied[extra] = [{"resourceType": "Basic", "id": "b"}] if extra == "contained" else "x"
        yield copied


def _agrees(resource: dict[str, Any]) -> None:
    expected = full_walk(copy.deepcopy(resource))
    if certainly_valid(resource):
        assert expected == [], (resource.get("resourceType"), expected)
    assert validate(resource) == expected


@pytest.mark.parametrize(
    "resource", [OBSERVATION, PATIENT, ENCOUNTER], ids=lambda r: r["resourceType"]
)
def test_typical_resources_take_the_fast_path(resource: dict[str, Any]) -> None:
    assert full_walk(copy.deepcopy(resource)) == []
    assert certainly_valid(resource)


def test_the_ingest_traffic_takes_the_fast_path() -> None:
    for resource in _traffic():
        assert certainly_valid(resource), resource["resourceType"]
        assert full_walk(resource) == []


def test_uk_core_examples_agree() -> None:
    for resource in _uk_core():
        _agrees(resource)


@pytest.mark.parametrize(
    "resource",
    [OBSERVATION, PATIENT, ENCOUNTER, CONDITION, *_traffic()[:5]],
    ids=lambda r: f"{r['resourceType']}-{r.get('id', '')}"[:40],
)
def test_every_single_change_gets_the_issues_of_the_full_walk(resource: dict[str, Any]) -> None:
    count = 0
    for mutated in _mutations(resource):
        _agrees(mutated)
        count += 1
    assert count > 50


def test_not_a_dict_and_odd_roots_agree() -> None:
    assert validate([]) == [
        Issue("fatal", "structure", "(root)", "A resource must be a JSON object.")
    ]
    for root in ({}, {"resourceType": 3}, {"resourceType": "Nope"}, {"resourceType": "Patient"}):
        _agrees(root)


def test_contained_and_nested_resources_agree() -> None:
    basic = {"resourceType": "Basic", "id": "b", "code": {"text": "note"}}
    cases: list[dict[str, Any]] = []
    for subject in ("#b", "#elsewhere", "Patient/p1"):
        observation = copy.deepcopy(OBSERVATION)
        observation["contained"] = [copy.deepcopy(basic)]
        observation["subject"] = {"reference": subject}
        cases.append(observation)
    nested = copy.deepcopy(OBSERVATION)
    nested["contained"] = [{**basic, "contained": [copy.deepcopy(basic)]}]  # dom-2
    cases.append(nested)
    for entry in (basic, {"resourceType": "Basic"}, PATIENT, {**PATIENT, "bogus": 1}):
        cases.append(
            {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": entry}]}
        )
    for case in cases:
        _agrees(case)
    assert sum(certainly_valid(c) for c in cases) >= 2  # bundles of valid entries
