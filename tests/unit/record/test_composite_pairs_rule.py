"""Unit: which composites are pairs of other parameters (``sharedcare.record.derived``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sharedcare.fhir.definitions import resource_types, search_parameters
from sharedcare.fhir.search_index import QuantityValue, extract_index
from sharedcare.record import derived
from sharedcare.record.derived import composite_pair, composite_sources, stored_codes

UCUM = "http://unitsofmeasure.org"


def test_the_observation_composites_on_the_observation_are_pairs() -> None:
    assert composite_pair("Observation", "code-value-quantity") == ("code", "value-quantity")
    assert composite_pair("Observation", "code-value-concept") == ("code", "value-concept")
    assert stored_codes("Observation", "code-value-quantity") == ("code", "value-quantity")


def test_composites_that_are_not_exact_pairs_keep_their_rows() -> None:
    # value.ofType(DateTime) names no FHIR type; value-string also takes CodeableConcept.text.
    assert composite_pair("Observation", "code-value-date") is None
    assert composite_pair("Observation", "code-value-string") is None
    # Both values must come from the same component, or the same useContext.
    assert composite_pair("Observation", "component-code-value-quantity") is None
    assert composite_pair("Library", "context-type-quantity") is None
    assert stored_codes("Observation", "code-value-date") == ("code-value-date",)
    pairs = {
        (rtype, code)
        for rtype in resource_types()
        for code in search_parameters(rtype)
        if composite_pair(rtype, code)
    }
    assert pairs == {("Observation", "code-value-quantity"), ("Observation", "code-value-concept")}


def test_a_union_with_a_pair_reads_the_pair_and_the_other_rows() -> None:
    assert composite_sources("Observation", "combo-code-value-quantity") == (
        ("code", "value-quantity"),
        ("component-code-value-quantity",),
    )
    assert stored_codes("Observation", "combo-code-value-quantity") == (
        "code",
        "value-quantity",
        "component-code-value-quantity",
    )
    assert composite_sources("Observation", "code-value-string") == (("code-value-string",),)


def test_sampled_data_gives_no_quantity_values_so_value_quantity_is_exact() -> None:
    """``value-quantity`` also names ``value.ofType(SampledData)``: the pair is exact only
    because a SampledData value gives no ``value-quantity`` values."""
    expression = search_parameters("Observation")["value-quantity"].expression or ""
    assert "ofType(SampledData)" in expression
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
        "valueSampledData": {
            "origin": {"value": 150, "system": UCUM, "code": "mm[Hg]", "unit": "mmHg"},
            "period": 10,
            "factor": 2,
            "lowerLimit": 1,
            "upperLimit": 300,
            "dimensions": 1,
            "data": "150 151",
        },
    }
    values = extract_index(observation)
    assert not [v for v in values if isinstance(v, QuantityValue)]
    assert [v for v in values if v[0] == "code"]


@pytest.fixture
def _fresh_rules() -> Iterator[None]:
    derived._pairs.cache_clear()
    yield
    derived._pairs.cache_clear()


@pytest.mark.usefixtures("_fresh_rules")
def test_the_rule_follows_what_the_index_gives(monkeypatch: pytest.MonkeyPatch) -> None:
    """Were SampledData indexed as a quantity, code-value-quantity would not be a pair."""
    monkeypatch.setattr(derived, "_UNINDEXED", {})
    assert composite_pair("Observation", "code-value-quantity") is None
    assert composite_pair("Observation", "code-value-concept") == ("code", "value-concept")
