"""FHIR references: parse ``Reference.reference``, find every reference, rewrite them.

See https://hl7.org/fhir/R4/references.html#Reference and, for the ``urn:uuid:`` rewriting
done when a transaction is processed, https://hl7.org/fhir/R4/http.html#trules.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sharedcare.fhir.definitions import is_resource_type, node_for_type, node_of_prop
from sharedcare.fhir.definitions.model import ObjectNode

RELATIVE = "relative"
ABSOLUTE = "absolute"
URN = "urn"
CONTAINED = "contained"

_ID = r"[A-Za-z0-9\-.]{1,64}"
_ID_RE = re.compile(_ID)
_RELATIVE_RE = re.compile(rf"([A-Z][A-Za-z]+)/({_ID})(?:/_history/({_ID}))?")
_ABSOLUTE_RE = re.compile(rf"(https?://\S+?)/([A-Z][A-Za-z]+)/({_ID})(?:/_history/({_ID}))?")
_URN_RE = re.compile(
    r"urn:uuid:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|urn:oid:[0-2](\.(0|[1-9][0-9]*))+"
)
_URL_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:\S+")


def is_id(value: str) -> bool:
    """Whether ``value`` is a FHIR ``id`` (https://hl7.org/fhir/R4/datatypes.html#id)."""
    return _ID_RE.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class ParsedReference:
    """A parsed ``Reference.reference`` string.

    Attributes:
        kind: ``relative`` (``Patient/1``), ``absolute`` (a URL), ``urn`` (``urn:uuid:``/
            ``urn:oid:``) or ``contained`` (``#id``).
        resource_type: Target type when the string names one (relative, or an absolute URL
            ending ``Type/id``), else ``None``.
        id: Target logical id (or the contained id for ``#id``), else ``None``.
        version: Version id from ``/_history/v``, else ``None``.
        url: The whole string for absolute and urn references, else ``None``.
        base: Service base URL of an absolute ``.../Type/id`` reference, else ``None``.
    """

    kind: str
    resource_type: str | None = None
    id: str | None = None
    version: str | None = None
    url: str | None = None
    base: str | None = None


@lru_cache(maxsize=65536)
def parse_reference(ref: str) -> ParsedReference | None:
    """Parse a ``Reference.reference`` value (results are cached; they are immutable).

    Returns:
        The parsed reference, or ``None`` if the string is not a valid reference (say which
        element is wrong in your own error; do not echo the value).
    """
    if not ref:
        return None
    if ref[0] == "#":
        return ParsedReference(CONTAINED, id=ref[1:] or None)
    m = _RELATIVE_RE.fullmatch(ref)
    if m is not None:
        if not is_resource_type(m.group(1)):
            return None
        return ParsedReference(RELATIVE, m.group(1), m.group(2), m.group(3))
    if ref.startswith("urn:"):
        return ParsedReference(URN, url=ref) if _URN_RE.fullmatch(ref) else None
    m = _ABSOLUTE_RE.fullmatch(ref)
    if m is not None and is_resource_type(m.group(2)):
        return ParsedReference(ABSOLUTE, m.group(2), m.group(3), m.group(4), ref, m.group(1))
    if _URL_RE.fullmatch(ref):
        return ParsedReference(ABSOLUTE, url=ref)
    return None


def reference_type(ref: dict[str, Any]) -> str | None:
    """Return the target type of a Reference object: from its ``reference`` string, else its
    ``type`` element, else ``None``."""
    text = ref.get("reference")
    if isinstance(text, str):
        parsed = parse_reference(text)
        if parsed is not None and parsed.resource_type is not None:
            return parsed.resource_type
    rtype = ref.get("type")
    return rtype if isinstance(rtype, str) else None


def iter_references(resource: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``(location, Reference object)`` for every Reference in a resource.

    Walks the element model, so only real ``Reference`` elements are found (including those in
    extensions, contained resources and nested resources such as ``Bundle.entry.resource``).
    Locations look like ``Observation.performer[0]``.
    """
    return iter(find_references(resource))


def find_references(resource: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Return ``(location, Reference object)`` pairs; see :func:`iter_references`."""
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str):
        return []
    node = node_for_type(rtype)
    if node is None:
        return []
    out: list[tuple[str, dict[str, Any]]] = []
    _walk(resource, node, rtype, out)
    return out


def _walk(
    obj: dict[str, Any], node: ObjectNode, path: str, out: list[tuple[str, dict[str, Any]]]
) -> None:
    props = node.props
    for key, value in obj.items():
        prop = props.get(key)
        if prop is None or prop.is_primitive:
            continue
        many = type(value) is list
        items = value if many else (value,)
        tc = prop.type_code
        for i, item in enumerate(items):
            if type(item) is not dict:
                continue
            loc = f"{path}.{key}[{i}]" if many else f"{path}.{key}"
            if tc == "Reference":
                out.append((loc, item))
            if tc == "Resource":
                rtype = item.get("resourceType")
                sub = node_for_type(rtype) if isinstance(rtype, str) else None
                if sub is not None:
                    _walk(item, sub, loc, out)
                continue
            child = node_of_prop(prop)
            if child is not None:
                _walk(item, child, loc, out)


def rewrite_references(
    resource: dict[str, Any], mapping: Mapping[str, str] | Callable[[str], str | None]
) -> int:
    """Rewrite ``Reference.reference`` strings in place.

    Args:
        resource: The resource to change.
        mapping: Either a dict from old to new reference strings (e.g. ``urn:uuid:...`` to
            ``Patient/123``) or a function returning the new string or ``None`` to keep it.

    Returns:
        How many references were changed.
    """
    lookup: Callable[[str], str | None]
    if callable(mapping):
        lookup = mapping
    else:
        table = mapping

        def lookup(text: str) -> str | None:
            return table.get(text)

    changed = 0
    for _loc, ref in find_references(resource):
        text = ref.get("reference")
        if isinstance(text, str):
            new = lookup(text)
            if new is not None and new != text:
                ref["reference"] = new
                changed += 1
    return changed
