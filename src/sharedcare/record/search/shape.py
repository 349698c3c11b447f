"""``_summary`` and ``_elements`` (https://hl7.org/fhir/R4/search.html#summary,
https://hl7.org/fhir/R4/search.html#elements): returning part of each resource.

A subsetted resource is marked with the ``SUBSETTED`` tag of
http://terminology.hl7.org/CodeSystem/v3-ObservationValue, as R4 requires.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

import orjson

SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "Resource encoded in summary mode",
}
_ALWAYS = ("resourceType", "id", "meta")


@cache
def _definitions() -> dict[str, dict[str, list[str]]]:
    blob = resources.files("sharedcare.record.search").joinpath("summary.json").read_text()
    data: dict[str, dict[str, list[str]]] = json.loads(blob)
    return data


def _element_of(key: str, names: frozenset[str]) -> bool:
    """Whether JSON key ``key`` (``valueQuantity``, ``_birthDate``) carries one of ``names``."""
    key = key.removeprefix("_")
    if key in names:
        return True
    return any(key[i].isupper() and key[:i] in names for i in range(len(key) - 1, 0, -1))


def _keep(resource: dict[str, Any], names: frozenset[str]) -> dict[str, Any]:
    out = {k: v for k, v in resource.items() if k in _ALWAYS or _element_of(k, names)}
    meta = dict(out.get("meta") or {})
    tags = [t for t in meta.get("tag", []) if t.get("code") != "SUBSETTED"]
    meta["tag"] = [*tags, SUBSETTED]
    out["meta"] = meta
    return out


def shape(content: bytes, summary: str | None, elements: list[str]) -> bytes:
    """Apply ``_summary`` (``true``, ``text``, ``data``) or ``_elements`` to one resource.

    Args:
        content: The stored JSON.
        summary: The ``_summary`` mode, or ``None``.
        elements: The ``_elements`` names (ignored when ``summary`` is given).

    Returns:
        The JSON to return.
    """
    resource = orjson.loads(content)
    rtype = resource.get("resourceType", "")
    definition = _definitions().get(rtype, {"summary": [], "mandatory": []})
    mandatory = frozenset(definition["mandatory"])
    if summary == "true":
        names = frozenset(definition["summary"]) | mandatory
    elif summary == "text":
        names = mandatory | {"text"}
    elif summary == "data":
        names = frozenset(k for k in resource if k != "text")
    else:
        names = frozenset(elements) | mandatory
    return orjson.dumps(_keep(resource, names))
