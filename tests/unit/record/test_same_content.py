"""``same_content`` (compared element by element, without copies) agrees with its definition:
two versions are the same when they are equal once the server-set meta is taken out."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from sharedcare.record.resources import same_content


def _without_server_meta(resource: dict[str, Any]) -> dict[str, Any]:
    copy = dict(resource)
    meta = {
        k: v
        for k, v in (copy.pop("meta", None) or {}).items()
        if k not in {"versionId", "lastUpdated", "source"}
    }
    if meta:
        copy["meta"] = meta
    return copy


def _by_definition(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return _without_server_meta(a) == _without_server_meta(b)


CASES: list[dict[str, Any]] = [
    {"resourceType": "Location", "id": "w", "name": "W12"},
    {"resourceType": "Location", "id": "w", "name": "W12", "meta": {"versionId": "3"}},
    {
        "resourceType": "Location",
        "id": "w",
        "name": "W12",
        "meta": {"versionId": "1", "lastUpdated": "2024-01-01T00:00:00Z", "source": "urn:x"},
    },
    {"resourceType": "Location", "id": "w", "name": "W12", "meta": {"tag": [{"code": "a"}]}},
    {"resourceType": "Location", "id": "w", "name": "W12", "meta": {"tag": [{"code": "b"}]}},
    {"resourceType": "Location", "id": "w", "name": "W13"},
    {"resourceType": "Location", "id": "w"},
    {"resourceType": "Location", "id": "w", "name": "W12", "status": None},
    {"resourceType": "Location", "id": "w", "name": "W12", "meta": {}},
    {"resourceType": "Location", "id": "w", "name": "W12", "meta": None},
    {"resourceType": "Location", "id": "w", "meta": {"versionId": "2"}, "status": "active"},
]


def test_agrees_on_every_pair_of_typical_versions() -> None:
    for a, b in itertools.product(CASES, CASES):
        assert same_content(a, b) == _by_definition(a, b), (a, b)


_keys = st.sampled_from(["id", "name", "status", "meta", "extra"])
_meta = st.dictionaries(
    st.sampled_from(["versionId", "lastUpdated", "source", "tag", "profile"]),
    st.sampled_from(["1", "2", "x"]),
    max_size=3,
)
_resource = st.dictionaries(
    _keys, st.one_of(st.none(), st.sampled_from(["a", "b"]), _meta), max_size=5
).map(lambda d: {k: (v if k == "meta" or not isinstance(v, dict) else "a") for k, v in d.items()})


@given(_resource, _resource)
def test_agrees_on_generated_resources(a: dict[str, Any], b: dict[str, Any]) -> None:
    a = {k: v for k, v in a.items() if k != "meta" or v is None or isinstance(v, dict)}
    b = {k: v for k, v in b.items() if k != "meta" or v is None or isinstance(v, dict)}
    assert same_content(a, b) == _by_definition(a, b)
