"""Arbitrary JSON never makes validation, indexing or reference walking raise."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sharedcare.fhir.compartment import patient_ids
from sharedcare.fhir.references import iter_references
from sharedcare.fhir.search_index import extract_index
from sharedcare.fhir.validation import validate

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*prefix, i))
    return out


@settings(max_examples=150, deadline=None)
@given(data=st.data(), junk=JSON)
def test_mutated_resources_never_raise(
    typical_resources: list[dict[str, Any]], data: st.DataObject, junk: Any
) -> None:
    resource = copy.deepcopy(data.draw(st.sampled_from(typical_resources)))
    path = data.draw(st.sampled_from(_paths(resource)))
    target = resource
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = junk
    issues = validate(resource)
    assert all(i.location and i.diagnostics for i in issues)
    extract_index(resource)
    list(iter_references(resource))
    patient_ids(resource)
