"""FHIR R4 (4.0.1) definitions carried inside the package.

Public API (all loaders read the gzipped package data lazily, once):

* :func:`resource_types` - the concrete R4 resource type names (147 in 4.0.1).
* :func:`is_resource_type`.
* :func:`element_defs` / :func:`node_for_type` / :func:`node_for_path` - the element model
  (paths, types incl. choice ``[x]``, cardinality, required bindings).
* :func:`required_codes` - ``{system: codes}`` of a required-binding value set.
* :func:`search_parameters` - ``{code: SearchParam}`` per resource type.
* :func:`patient_compartment` - ``{resource type: param codes}``.

Rebuild the data with ``python -m sharedcare.fhir.definitions.build DIR``.
"""

from __future__ import annotations

from functools import cache

from sharedcare.fhir.definitions.model import (
    ElementDef,
    ObjectNode,
    Prop,
    all_required_codes,
    element_defs,
    node_for_path,
    node_for_type,
    node_of_prop,
    primitive_types,
    raw_model,
    required_codes,
    type_kind,
)
from sharedcare.fhir.definitions.search import (
    CompositeComponent,
    SearchParam,
    patient_compartment,
    search_parameters,
)

FHIR_VERSION = "4.0.1"


@cache
def resource_types() -> tuple[str, ...]:
    """Return the concrete (non-abstract) R4 resource type names, sorted."""
    return tuple(raw_model()["resources"])


@cache
def _resource_set() -> frozenset[str]:
    return frozenset(resource_types())


def is_resource_type(name: str) -> bool:
    """Return True if ``name`` is a concrete R4 resource type."""
    return name in _resource_set()


__all__ = [
    "FHIR_VERSION",
    "CompositeComponent",
    "ElementDef",
    "ObjectNode",
    "Prop",
    "SearchParam",
    "all_required_codes",
    "element_defs",
    "is_resource_type",
    "node_for_path",
    "node_for_type",
    "node_of_prop",
    "patient_compartment",
    "primitive_types",
    "required_codes",
    "resource_types",
    "search_parameters",
    "type_kind",
]
