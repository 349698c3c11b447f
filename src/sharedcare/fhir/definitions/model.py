"""The FHIR R4 element model: element definitions and the per-object property maps.

Built lazily, once, from ``data/model.json.gz`` (written by :mod:`.build` from the
StructureDefinition snapshots, https://hl7.org/fhir/R4/elementdefinition.html).

An :class:`ObjectNode` describes one JSON object shape: a resource, a complex data type or a
backbone element inside a resource. Its ``props`` map every allowed JSON property name to a
:class:`Prop`; choice elements (``value[x]``) appear once per allowed type
(``valueQuantity``, ``valueString`` ...), see https://hl7.org/fhir/R4/formats.html#choice.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

PRIMITIVE = "primitive-type"
COMPLEX = "complex-type"
RESOURCE = "resource"


@dataclass(frozen=True, slots=True)
class ElementDef:
    """One element of a StructureDefinition snapshot.

    Attributes:
        path: Full path, e.g. ``Observation.component.code``.
        name: Element name without ``[x]``, e.g. ``value``.
        types: Allowed type codes (several for a choice element).
        min: Minimum cardinality.
        max: Maximum cardinality, ``None`` for ``*``.
        valueset: Canonical URL of the *required* binding, if any.
        content_reference: Path (relative to the type) this element reuses, if any.
        is_choice: True for ``[x]`` elements.
        is_array: True when the JSON form is an array (max cardinality above 1).
    """

    path: str
    name: str
    types: tuple[str, ...]
    min: int
    max: int | None
    valueset: str | None
    content_reference: str | None
    is_choice: bool = False
    is_array: bool = False


@dataclass(slots=True)
class Prop:
    """One JSON property of an object.

    Attributes:
        key: JSON property name (``valueQuantity`` for a choice element).
        element: The element definition.
        type_code: The FHIR type of the value (``Quantity``, ``string``, ``BackboneElement``).
        is_array: Whether the JSON value is an array.
        is_primitive: Whether the type is a FHIR primitive (has a ``_key`` sibling).
        node: The object shape of the value for backbone elements, else ``None``; complex
            types are looked up with :func:`node_for_type`.
    """

    key: str
    element: ElementDef
    type_code: str
    is_array: bool
    is_primitive: bool
    node: ObjectNode | None = None


@dataclass(slots=True)
class ObjectNode:
    """The allowed properties of one JSON object shape."""

    path: str
    type_name: str
    props: dict[str, Prop] = field(default_factory=dict)
    elements: dict[str, ElementDef] = field(default_factory=dict)
    is_resource: bool = False
    #: Elements with min cardinality >= 1, each with every JSON key that can carry it.
    required: list[tuple[ElementDef, tuple[str, ...]]] = field(default_factory=list)


def _choice_key(name: str, type_code: str) -> str:
    return name + type_code[0].upper() + type_code[1:]


@cache
def raw_model() -> dict[str, Any]:
    """Return the decoded ``model.json.gz`` package data (loaded once)."""
    blob = resources.files("sharedcare.fhir.definitions").joinpath("data/model.json.gz")
    data: dict[str, Any] = json.loads(gzip.decompress(blob.read_bytes()))
    return data


@cache
def primitive_types() -> frozenset[str]:
    """Names of the FHIR primitive types (``string``, ``date``, ``positiveInt`` ...)."""
    return frozenset(raw_model()["primitives"])


def type_kind(name: str) -> str | None:
    """Return ``primitive-type``, ``complex-type``, ``resource`` or ``None`` if unknown."""
    t = raw_model()["types"].get(name)
    return None if t is None else str(t["kind"])


@cache
def element_defs(type_name: str) -> tuple[ElementDef, ...]:
    """All element definitions of a resource or data type, in snapshot order.

    Raises:
        KeyError: If ``type_name`` is not an R4 type; check :func:`type_kind` first.
    """
    rows = raw_model()["types"][type_name]["elements"]
    out = []
    for rel, types, mn, mx, vs, cref in rows:
        name = rel.rsplit(".", 1)[-1]
        choice = name.endswith("[x]")
        if choice:
            name = name[:-3]
        out.append(
            ElementDef(
                path=f"{type_name}.{rel}",
                name=name,
                types=tuple(types),
                min=mn,
                max=None if mx == "*" else int(mx),
                valueset=vs,
                content_reference=f"{type_name}.{cref}" if cref else None,
                is_choice=choice,
                is_array=mx == "*" or int(mx) > 1,
            )
        )
    return tuple(out)


def _build_nodes(type_name: str) -> dict[str, ObjectNode]:
    kind = type_kind(type_name)
    prims = primitive_types()
    nodes: dict[str, ObjectNode] = {
        type_name: ObjectNode(type_name, type_name, is_resource=kind == RESOURCE)
    }
    defs = element_defs(type_name)
    for el in defs:
        parent = el.path.rsplit(".", 1)[0]
        if parent not in nodes:
            nodes[parent] = ObjectNode(parent, "BackboneElement")
    for el in defs:
        parent_node = nodes[el.path.rsplit(".", 1)[0]]
        parent_node.elements[el.name] = el
        if el.content_reference:
            target = nodes.get(el.content_reference)
            types: tuple[str, ...] = ("BackboneElement",)
        else:
            target = nodes.get(el.path)
            types = el.types
        for t in types:
            key = _choice_key(el.name, t) if el.is_choice else el.name
            parent_node.props[key] = Prop(
                key=key,
                element=el,
                type_code=t,
                is_array=el.is_array,
                is_primitive=t in prims,
                node=target if t in ("BackboneElement", "Element") else None,
            )
    for node in nodes.values():
        for el in node.elements.values():
            if el.min > 0:
                keys = [k for k, p in node.props.items() if p.element is el]
                keys += ["_" + k for k in keys if node.props[k].is_primitive]
                node.required.append((el, tuple(keys)))
    return nodes


@cache
def _nodes(type_name: str) -> dict[str, ObjectNode]:
    return _build_nodes(type_name)


def node_for_type(type_name: str) -> ObjectNode | None:
    """Return the object shape of a resource or complex data type, ``None`` if unknown."""
    kind = type_kind(type_name)
    if kind not in (RESOURCE, COMPLEX):
        return None
    return _nodes(type_name)[type_name]


def node_for_path(path: str) -> ObjectNode | None:
    """Return the object shape at an element path such as ``Observation.component``."""
    type_name = path.split(".", 1)[0]
    if type_kind(type_name) not in (RESOURCE, COMPLEX):
        return None
    return _nodes(type_name).get(path)


def node_of_prop(prop: Prop) -> ObjectNode | None:
    """Return the object shape of a property's value (backbone or complex type)."""
    if prop.node is None:
        prop.node = node_for_type(prop.type_code)
    return prop.node


@cache
def required_codes(valueset: str) -> dict[str, frozenset[str]] | None:
    """Return ``{system: codes}`` of an expanded required value set, ``None`` if unknown.

    Value sets that cannot be expanded from the R4 definitions alone (MIME types, UCUM,
    currencies ...) return ``None`` and are not checked.
    """
    vs = raw_model()["valuesets"].get(valueset)
    if vs is None:
        return None
    return {system: frozenset(codes) for system, codes in vs.items()}


@cache
def all_required_codes(valueset: str) -> frozenset[str] | None:
    """Return every code of a required value set regardless of system, or ``None``."""
    vs = required_codes(valueset)
    if vs is None:
        return None
    out: set[str] = set()
    for codes in vs.values():
        out |= codes
    return frozenset(out)
