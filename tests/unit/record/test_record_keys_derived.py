"""Unit: fixed-width keys and derived (union) search parameters of the record store."""

from __future__ import annotations

from sharedcare.fhir.definitions import resource_types, search_parameters
from sharedcare.record.derived import (
    codes_to,
    derived_from,
    narrowed_from,
    stored_codes,
    target_filter,
)
from sharedcare.record.keys import combination_key, system_key


def test_no_system_has_key_zero_so_bar_code_searches_can_find_it() -> None:
    assert system_key(None) == 0
    assert system_key("") == 0


def test_keys_never_change_because_stored_rows_hold_them() -> None:
    # Pinned values: changing the function would orphan every stored row.
    assert system_key("http://loinc.org") == 4281956892100354830
    assert combination_key('[["a"]]') == 2153737166214192792


def test_keys_fit_a_signed_bigint_and_differ() -> None:
    systems = ["http://loinc.org", "http://snomed.info/sct", "https://fhir.nhs.uk/Id/nhs-number"]
    keys = {system_key(s) for s in systems}
    assert len(keys) == len(systems)
    assert all(-(2**63) <= k < 2**63 for k in keys)


def test_observation_combo_parameters_are_unions_of_stored_ones() -> None:
    assert derived_from("Observation", "combo-code") == ("code", "component-code")
    assert derived_from("Observation", "combo-value-quantity") == (
        "component-value-quantity",
        "value-quantity",
    )
    assert derived_from("Observation", "combo-code-value-quantity") == (
        "code-value-quantity",
        "component-code-value-quantity",
    )


def test_parameters_that_are_not_exact_unions_store_their_own_rows() -> None:
    assert derived_from("Observation", "code") == ()
    assert stored_codes("Observation", "code") == ("code",)
    # patient is subject.where(resolve() is Patient): a filter, not a union.
    assert derived_from("Observation", "patient") == ()
    # A composite is derived only from composites with the same components.
    assert "code-value-concept" not in derived_from("Observation", "combo-code-value-quantity")


def test_reference_parameters_narrowed_to_one_target_type_read_the_wider_rows() -> None:
    assert narrowed_from("Observation", "patient") == ("subject", "Patient")
    assert stored_codes("Observation", "patient") == ("subject",)
    assert target_filter("Observation", "patient") == "Patient"
    assert narrowed_from("Encounter", "practitioner") == ("participant", "Practitioner")
    # subject itself, and a parameter with branches of its own, store their rows.
    assert narrowed_from("Observation", "subject") is None
    assert target_filter("Observation", "subject") is None
    assert narrowed_from("Observation", "performer") is None
    # AllergyIntolerance.patient is its own element, not a narrowed subject.
    assert narrowed_from("AllergyIntolerance", "patient") is None
    total = sum(1 for t in resource_types() for c in search_parameters(t) if narrowed_from(t, c))
    assert total == 47


def test_compartment_readers_expand_only_parameters_that_can_hold_the_target() -> None:
    assert codes_to("Condition", ["patient", "asserter"], "Patient") == ["subject", "asserter"]
    assert codes_to("Observation", ["subject", "patient"], "Patient") == ["subject"]
    # Encounter.practitioner holds Practitioners only: it can never put one in a compartment.
    assert codes_to("Encounter", ["practitioner"], "Patient") == []
