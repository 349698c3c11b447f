"""R4 SearchParameters per resource type and the Patient compartment.

Loaded lazily, once, from ``data/search.json.gz`` (written by :mod:`.build` from the official
R4 SearchParameter bundle, https://hl7.org/fhir/R4/searchparameter-registry.html, and
https://hl7.org/fhir/R4/compartmentdefinition-patient.html).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True, slots=True)
class CompositeComponent:
    """One component of a composite search parameter.

    Attributes:
        type: The component's search parameter type (``token``, ``quantity`` ...).
        expression: FHIRPath relative to each value of the composite's expression.
    """

    type: str
    expression: str


@dataclass(frozen=True, slots=True)
class SearchParam:
    """A search parameter as it applies to one resource type.

    Attributes:
        code: The name used in URLs, e.g. ``birthdate``.
        type: ``number | date | string | token | reference | composite | quantity | uri |
            special`` (https://hl7.org/fhir/R4/search.html#ptypes).
        expression: FHIRPath restricted to this resource type's ``|`` branches; ``None`` for
            parameters with no expression (``_text``, ``_content``, ``_query``).
        targets: Allowed target resource types of a reference parameter.
        components: Components of a composite parameter.
        url: Canonical URL of the SearchParameter definition.
    """

    code: str
    type: str
    expression: str | None
    targets: tuple[str, ...]
    components: tuple[CompositeComponent, ...]
    url: str


@cache
def _raw() -> dict[str, Any]:
    blob = resources.files("sharedcare.fhir.definitions").joinpath("data/search.json.gz")
    data: dict[str, Any] = json.loads(gzip.decompress(blob.read_bytes()))
    return data


@cache
def _params(resource_type: str) -> Mapping[str, SearchParam]:
    rows = _raw()["params"].get(resource_type, [])
    out: dict[str, SearchParam] = {}
    for code, ptype, expr, targets, comps, url in rows:
        out[code] = SearchParam(
            code=code,
            type=ptype,
            expression=expr,
            targets=tuple(targets),
            components=tuple(CompositeComponent(t, e) for t, e in comps),
            url=url,
        )
    return MappingProxyType(out)


def search_parameters(resource_type: str) -> Mapping[str, SearchParam]:
    """Return ``{code: SearchParam}`` for a resource type, including the base ``Resource``
    and ``DomainResource`` parameters (``_id``, ``_lastUpdated``, ``_profile``, ``_tag``,
    ``_security``, ``_source``, ``_text`` ...). Unknown types give an empty mapping.
    """
    return _params(resource_type)


@cache
def patient_compartment() -> Mapping[str, tuple[str, ...]]:
    """Return ``{resource type: param codes}`` of the R4 Patient compartment.

    A resource is in patient X's compartment when any listed reference parameter points to
    ``Patient/X`` (https://hl7.org/fhir/R4/compartmentdefinition.html). For ``Patient``
    itself the parameter is ``link``; the patient is also in its own compartment.
    """
    comp = _raw()["compartments"]["Patient"]
    return MappingProxyType({k: tuple(v) for k, v in comp.items()})
