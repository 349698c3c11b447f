"""FHIR R4 element model used for static typing of view expressions.

Element names, types and cardinalities come from the R4 StructureDefinitions
(https://hl7.org/fhir/R4/elementdefinition.html), distilled by ``build_fhir_model`` into
``data/fhir_r4_elements.json``. Elements the model does not know (e.g. newer FHIR versions) are
still navigable: the compiler falls back to dynamic JSON handling for them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

_DATA = Path(__file__).parent / "data" / "fhir_r4_elements.json"

#: FHIR primitive type -> FHIRPath system type used in SQL
#: (https://hl7.org/fhir/R4/fhirpath.html#types).
PRIMITIVE_SYSTEM_TYPES: dict[str, str] = {
    "boolean": "boolean",
    "integer": "integer",
    "integer64": "integer",
    "positiveInt": "integer",
    "unsignedInt": "integer",
    "decimal": "decimal",
    "date": "date",
    "dateTime": "dateTime",
    "instant": "dateTime",
    "time": "time",
    "string": "string",
    "code": "string",
    "id": "string",
    "uri": "string",
    "url": "string",
    "canonical": "string",
    "oid": "string",
    "uuid": "string",
    "markdown": "string",
    "base64Binary": "string",
    "xhtml": "string",
}


@dataclass(frozen=True)
class ElementInfo:
    """One element of a FHIR type.

    Attributes:
        types: FHIR type codes (more than one for a choice element ``name[x]``).
        many: whether the element repeats (max cardinality ``*``).
        choice: whether this is a choice element (JSON keys ``name`` + TypeName).
    """

    types: tuple[str, ...]
    many: bool
    choice: bool


@lru_cache(maxsize=1)
def _model() -> tuple[dict[str, dict[str, ElementInfo]], dict[str, str]]:
    raw = json.loads(_DATA.read_text(encoding="utf-8"))
    types = {
        type_name: {
            elem: ElementInfo(tuple(info[0]), bool(info[1]), bool(info[2]))
            for elem, info in elements.items()
        }
        for type_name, elements in raw["types"].items()
    }
    return types, raw["kinds"]


def element(type_name: str | None, name: str) -> ElementInfo | None:
    """Return the element ``name`` of ``type_name``, or None if unknown."""
    if type_name is None:
        return None
    return _model()[0].get(type_name, {}).get(name)


def is_resource_type(name: str) -> bool:
    """Whether ``name`` is a FHIR R4 resource type (https://hl7.org/fhir/R4/resourcelist.html)."""
    kinds = _model()[1]
    return kinds.get(name) == "resource" and name not in ("Resource", "DomainResource")


def is_type(name: str) -> bool:
    """Whether ``name`` is a FHIR R4 type (primitive, complex or resource)."""
    return name in _model()[1] or name in PRIMITIVE_SYSTEM_TYPES


def system_type(fhir_type: str | None) -> str | None:
    """FHIRPath system type of a FHIR primitive type, or None for complex/unknown types."""
    if fhir_type is None:
        return None
    return PRIMITIVE_SYSTEM_TYPES.get(fhir_type)


def choice_key(name: str, fhir_type: str) -> str:
    """JSON key of choice element ``name[x]`` for one type (https://hl7.org/fhir/R4/formats.html#choice)."""
    return name + fhir_type[0].upper() + fhir_type[1:]
