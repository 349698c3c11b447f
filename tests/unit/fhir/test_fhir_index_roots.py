"""extract_index skips parameters whose top-level elements a resource lacks: same values.

The skip (``_Compiled.roots``) must never drop a value. Compared with evaluating every
parameter on the typical resources, the HL7 v2 ingest traffic and the UK Core examples.
"""

from __future__ import annotations

from typing import Any

from sharedcare.fhir import search_index
from sharedcare.fhir.search_index import _compiled, extract_index, extract_params
from tests.unit.fhir.conftest import ENCOUNTER, OBSERVATION, PATIENT
from tests.unit.fhir.test_fhir_fastcheck import CONDITION, _traffic, _uk_core


def every_parameter(resource: dict[str, Any]) -> list[Any]:
    """extract_index as it was: every compiled parameter of the type, none skipped."""
    return extract_params(resource, _compiled(resource["resourceType"]))


def test_skipping_parameters_changes_no_value() -> None:
    resources = [OBSERVATION, PATIENT, ENCOUNTER, CONDITION, *_traffic(), *_uk_core()]
    skipped = 0
    for resource in resources:
        assert extract_index(resource) == every_parameter(resource), resource["resourceType"]
        skipped += len(_compiled(resource["resourceType"])) - len(
            search_index._active(resource["resourceType"], resource)
        )
    assert skipped > len(resources)  # the skip is in use


def test_parameters_with_no_root_element_are_always_evaluated() -> None:
    # Patient.deceased.exists() and Patient.deceased != false: a value even when absent.
    deceased = next(c for c in _compiled("Patient") if c.code == "deceased")
    assert deceased.roots is None
    assert any(v.param == "deceased" for v in extract_index({"resourceType": "Patient"}))
    family = next(c for c in _compiled("Patient") if c.code == "family")
    assert family.roots == frozenset({"name"})
