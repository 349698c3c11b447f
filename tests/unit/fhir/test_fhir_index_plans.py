"""extract_index's emitters give exactly the values of the items path.

``extract_index`` runs, per parameter, a generated function that hands each value to a
handler chosen at compile time for its FHIR type (``_Compiled.emit``); ``extract_params``
keeps the original path (each parameter's extractor builds ``(value, Leaf)`` items, then
its normaliser). Compared value for value (``repr``, so ``Decimal('1.0')`` and
``Decimal('1')`` differ) on the typical resources, the HL7 v2 ingest traffic, the UK Core
examples and, for the handlers' other branches, single-element mutations with values of
the wrong JSON type.
"""

from __future__ import annotations

import copy
import itertools
import random
from typing import Any

from sharedcare.fhir import search_index
from sharedcare.fhir.internals.primitives import date_range
from sharedcare.fhir.search_index import _compiled, extract_index, extract_params
from tests.unit.fhir.conftest import ENCOUNTER, OBSERVATION, PATIENT
from tests.unit.fhir.test_fhir_fastcheck import CONDITION, _traffic, _uk_core
from tests.unit.fhir.test_fhir_primitives import _reference_time_range

DIAGNOSTIC_REPORT: dict[str, Any] = {
    "resourceType": "DiagnosticReport",
    "id": "dr1",
    "meta": {"lastUpdated": "2024-01-02T10:00:00.5+01:00", "tag": [{"code": "t"}]},
    "identifier": [{"system": "urn:x", "value": "R1", "type": {"text": "Report"}}],
    "basedOn": [{"reference": "ServiceRequest/sr1"}],
    "status": "final",
    "category": [{"coding": [{"system": "http://loinc.org", "code": "LAB"}], "text": "Lab"}],
    "code": {"coding": [{"system": "http://loinc.org", "code": "58410-2", "display": "CBC"}]},
    "subject": {"reference": "Patient/p1", "identifier": {"system": "urn:n", "value": "9"}},
    "effectivePeriod": {"start": "2024-01-01", "end": "2024-01-02T09:00:00Z"},
    "issued": "2024-01-02T10:00:00Z",
    "performer": [{"reference": "https://example.org/fhir/Organization/o1/_history/2"}],
    "result": [{"reference": "Observation/o1"}, {"reference": "#contained"}],
    "conclusionCode": [{"text": "Normal"}],
    "presentedForm": [{"contentType": "text/plain", "data": "aGk="}],
}

SERVICE_REQUEST: dict[str, Any] = {
    "resourceType": "ServiceRequest",
    "id": "sr1",
    "identifier": [{"system": "urn:order", "value": "O-1"}],
    "instantiatesCanonical": ["http://example.org/PlanDefinition/p"],
    "status": "active",
    "intent": "order",
    "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "108252007"}]}],
    "priority": "routine",
    "code": {"coding": [{"system": "http://snomed.info/sct", "code": "26604007"}], "text": "FBC"},
    "subject": {"reference": "Patient/p1"},
    "encounter": {"reference": "Encounter/e1"},
    "occurrenceTiming": {
        "event": ["2024-02-01T08:00:00Z", "2024-02"],
        "repeat": {"boundsPeriod": {"start": "2024-02-01"}},
    },
    "authoredOn": "2024-01-31T17:45:12.123456-05:00",
    "requester": {"reference": "Practitioner/pr1", "display": "Dr Who"},
    "performer": [{"reference": "Organization/o1"}],
    "specimen": [{"reference": "Specimen/s1"}],
    "bodySite": [{"coding": [{"system": "http://snomed.info/sct", "code": "368209003"}]}],
}

RISK: dict[str, Any] = {
    "resourceType": "RiskAssessment",
    "status": "final",
    "subject": {"reference": "Patient/p1"},
    "prediction": [
        {"probabilityDecimal": 0.25},
        {"probabilityRange": {"low": {"value": 1}, "high": {"value": 2.50}}},
    ],
}

ODD_VALUES: tuple[Any, ...] = ("x", 3, 2.5, True, False, [], {}, ["a", 1], [{}], {"x": 1})


def _typical() -> list[dict[str, Any]]:
    return [OBSERVATION, PATIENT, ENCOUNTER, CONDITION, DIAGNOSTIC_REPORT, SERVICE_REQUEST, RISK]


def _items_path(resource: dict[str, Any]) -> list[Any]:
    """extract_index by the items path: every parameter, extractor then normaliser."""
    values = extract_params(resource, _compiled(resource["resourceType"]))
    return values


def _same(resource: dict[str, Any]) -> None:
    assert repr(extract_index(resource)) == repr(_items_path(resource)), resource.get(
        "resourceType"
    )


def test_emitters_match_the_items_path() -> None:
    resources = [*_typical(), *_traffic(), *_uk_core()]
    with_values = 0
    for resource in resources:
        _same(resource)
        with_values += bool(extract_index(resource))
    assert with_values == len(resources)


def _mutations(resource: dict[str, Any]) -> list[dict[str, Any]]:
    """Copies with one element (top level, or one level down) replaced by an odd value."""
    out = []
    for key, value in resource.items():
        if key == "resourceType":
            continue
        for odd in ODD_VALUES:
            out.append({**resource, key: odd})
        inner = value[0] if type(value) is list and value else value
        if type(inner) is dict:
            for sub in inner:
                for odd in ODD_VALUES:
                    changed = copy.deepcopy(resource)
                    target = changed[key][0] if type(value) is list else changed[key]
                    target[sub] = odd
                    out.append(changed)
    return out


def test_emitters_match_on_values_of_the_wrong_type() -> None:
    mutated = 0
    for resource in [*_typical(), *_traffic()[:8]]:
        for changed in _mutations(resource):
            _same(changed)
            mutated += 1
    assert mutated > 1000


def test_composites_without_their_elements_are_skipped_and_kept_with_them() -> None:
    # Observation.code-value-quantity is based on the resource: it needs value[x] there.
    cvq = next(c for c in _compiled("Observation") if c.code == "code-value-quantity")
    assert cvq.roots is not None and "valueQuantity" in cvq.roots
    assert cvq not in search_index._active("Observation", OBSERVATION)  # components only
    with_value = {**OBSERVATION, "valueQuantity": {"value": 5, "code": "mg"}}
    assert cvq in search_index._active("Observation", with_value)
    got = [v for v in extract_index(with_value) if v.param == "code-value-quantity"]
    assert len(got) == 2  # two codings of code x one quantity
    _same(with_value)


def test_date_time_ranges_match_fromisoformat_on_near_misses() -> None:
    rng = random.Random(7)
    base = "2024-03-01T10:15:00.123456+05:30"
    alphabet = "0123456789-:T.Z+z "
    checked = 0
    for _ in range(20000):
        chars = list(base)
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(chars))
            op = rng.random()
            if op < 0.5:
                chars[i] = rng.choice(alphabet)
            elif op < 0.75:
                del chars[i]
            else:
                chars.insert(i, rng.choice(alphabet))
        text = "".join(chars)
        if len(text) >= 20 and text[10] == "T":
            assert date_range(text) == _reference_time_range(text), text
            checked += 1
    for frac, zone in itertools.product(["", ".0", ".12", ".1234567"], ["Z", "-23:59", "+24:00"]):
        text = f"1999-12-31T23:59:59{frac}{zone}"
        assert date_range(text) == _reference_time_range(text), text
    assert checked > 5000
