"""Patient compartment membership, driven by the official R4 CompartmentDefinition.

A resource is in Patient X's compartment when any of the search parameters that the
definition lists for its type refers to ``Patient/X``; a Patient is in its own compartment
(https://hl7.org/fhir/R4/compartmentdefinition-patient.html).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sharedcare.fhir.definitions import patient_compartment
from sharedcare.fhir.search_index import IndexValue, ReferenceValue, extract_index


def compartment_params(resource_type: str) -> tuple[str, ...]:
    """Return the reference parameters that place a resource type in a Patient compartment
    (empty when the type can never be in one)."""
    return patient_compartment().get(resource_type, ())


def patient_ids(
    resource: dict[str, Any], index: Iterable[IndexValue] | None = None
) -> frozenset[str]:
    """Return the ids of the patients whose compartment holds this resource.

    Args:
        resource: The resource.
        index: Its :func:`extract_index` values if already computed (saves the work).

    Returns:
        Logical ids of the patients (relative ``Patient/id`` references, or absolute URLs
        ending in ``Patient/id``), plus the resource's own id for a Patient.
    """
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str):
        return frozenset()
    ids: set[str] = set()
    if rtype == "Patient" and isinstance(resource.get("id"), str):
        ids.add(resource["id"])
    params = compartment_params(rtype)
    if params:
        values = extract_index(resource) if index is None else index
        for v in values:
            if (
                type(v) is ReferenceValue
                and v.target_type == "Patient"
                and v.target_id
                and v.param in params
            ):
                ids.add(v.target_id)
    return frozenset(ids)
