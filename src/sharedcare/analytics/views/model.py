"""ViewDefinition model and structural validation.

Implements the logical model of https://sql-on-fhir.org/ig/StructureDefinition-ViewDefinition.html
(v2.1.0-pre): ``resource``, ``constant``, ``select`` (``column``, ``select``, ``forEach``,
``forEachOrNull``, ``repeat``, ``unionAll``) and ``where``. FHIRPath expressions are parsed here so
that syntax errors surface as ``ViewDefinitionError`` before any SQL is produced.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sharedcare.analytics.views import fhir_types, fhirpath
from sharedcare.analytics.views.errors import ViewDefinitionError

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")

#: ``constant.value[x]`` type -> FHIRPath system type.
CONSTANT_TYPES: dict[str, str] = {
    "valueBase64Binary": "string",
    "valueBoolean": "boolean",
    "valueCanonical": "string",
    "valueCode": "string",
    "valueDate": "date",
    "valueDateTime": "dateTime",
    "valueDecimal": "decimal",
    "valueId": "string",
    "valueInstant": "dateTime",
    "valueInteger": "integer",
    "valueInteger64": "integer",
    "valueOid": "string",
    "valueString": "string",
    "valuePositiveInt": "integer",
    "valueTime": "time",
    "valueUnsignedInt": "integer",
    "valueUri": "string",
    "valueUrl": "string",
    "valueUuid": "string",
}


@dataclass(frozen=True)
class Expression:
    """A FHIRPath expression with its source text and where it sits in the view."""

    text: str
    ast: fhirpath.Node
    location: str


@dataclass(frozen=True)
class Constant:
    """A view constant ``%name`` with its system type and Python value."""

    name: str
    type: str
    value: str | int | float | bool


@dataclass(frozen=True)
class Column:
    """One output column (``select.column``)."""

    name: str
    path: Expression
    type: str | None
    collection: bool


@dataclass
class Select:
    """A ``select`` node; the view itself is the root node (no iteration, no columns)."""

    location: str
    columns: list[Column] = field(default_factory=list)
    select: list[Select] = field(default_factory=list)
    union_all: list[Select] = field(default_factory=list)
    for_each: Expression | None = None
    or_null: bool = False
    repeat: list[Expression] | None = None

    def column_names(self) -> list[str]:
        """Output column names of this node in view order (columns, select, unionAll)."""
        names = [c.name for c in self.columns]
        for child in self.select:
            names.extend(child.column_names())
        if self.union_all:
            names.extend(self.union_all[0].column_names())
        return names


@dataclass
class ViewDefinition:
    """A validated ViewDefinition."""

    resource: str
    root: Select
    where: list[Expression]
    constants: dict[str, Constant]
    name: str | None = None

    def column_names(self) -> list[str]:
        """Output column names in order."""
        return self.root.column_names()


def _expr(value: Any, location: str) -> Expression:
    if not isinstance(value, str) or not value.strip():
        raise ViewDefinitionError(f"{location} must be a non-empty FHIRPath string")
    try:
        return Expression(value, fhirpath.parse(value), location)
    except ViewDefinitionError as exc:
        raise ViewDefinitionError(f"{location}: {exc}") from None


def _list(value: Any, location: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ViewDefinitionError(f"{location} must be a JSON array")
    return value


def _object(value: Any, location: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ViewDefinitionError(f"{location} must be a JSON object")
    return value


def _column(raw: Any, location: str) -> Column:
    obj = _object(raw, location)
    name = obj.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ViewDefinitionError(
            f"{location}.name must be a name starting with a letter and using only letters, "
            "digits and '_'"
        )
    col_type = obj.get("type")
    if col_type is not None and (not isinstance(col_type, str) or not fhir_types.is_type(col_type)):
        raise ViewDefinitionError(
            f"{location}.type must be a FHIR type code such as 'string', 'integer' or 'dateTime'"
        )
    collection = obj.get("collection", False)
    if not isinstance(collection, bool):
        raise ViewDefinitionError(f"{location}.collection must be true or false")
    return Column(name, _expr(obj.get("path"), f"{location}.path"), col_type, collection)


def _select(raw: Any, location: str) -> Select:
    obj = _object(raw, location)
    node = Select(location)
    if "forEach" in obj and "forEachOrNull" in obj:
        raise ViewDefinitionError(f"{location} may have forEach or forEachOrNull, not both")
    if "forEach" in obj:
        node.for_each = _expr(obj["forEach"], f"{location}.forEach")
    elif "forEachOrNull" in obj:
        node.for_each = _expr(obj["forEachOrNull"], f"{location}.forEachOrNull")
        node.or_null = True
    if "repeat" in obj:
        if node.for_each is not None:
            raise ViewDefinitionError(f"{location} may not combine repeat with forEach")
        paths = _list(obj["repeat"], f"{location}.repeat")
        if not paths:
            raise ViewDefinitionError(f"{location}.repeat needs at least one FHIRPath")
        node.repeat = [_expr(p, f"{location}.repeat[{i}]") for i, p in enumerate(paths)]
    node.columns = [
        _column(c, f"{location}.column[{i}]")
        for i, c in enumerate(_list(obj.get("column"), f"{location}.column"))
    ]
    node.select = [
        _select(s, f"{location}.select[{i}]")
        for i, s in enumerate(_list(obj.get("select"), f"{location}.select"))
    ]
    node.union_all = [
        _select(s, f"{location}.unionAll[{i}]")
        for i, s in enumerate(_list(obj.get("unionAll"), f"{location}.unionAll"))
    ]
    if not (node.columns or node.select or node.union_all):
        raise ViewDefinitionError(f"{location} needs at least one of column, select or unionAll")
    if node.union_all:
        first = node.union_all[0].column_names()
        for i, branch in enumerate(node.union_all[1:], start=1):
            if branch.column_names() != first:
                raise ViewDefinitionError(
                    f"{location}.unionAll[{i}] has columns {branch.column_names()} but "
                    f"unionAll[0] has {first}; every branch needs the same names in the same order"
                )
    return node


def _constant(raw: Any, location: str) -> Constant:
    obj = _object(raw, location)
    name = obj.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ViewDefinitionError(f"{location}.name must be a simple name (letters, digits, _)")
    values = [k for k in obj if k.startswith("value")]
    if len(values) != 1 or values[0] not in CONSTANT_TYPES:
        raise ViewDefinitionError(
            f"{location} (constant '{name}') needs exactly one value[x] such as valueString, "
            "valueInteger, valueBoolean, valueDecimal or valueDate"
        )
    key = values[0]
    value = obj[key]
    kind = CONSTANT_TYPES[key]
    ok = {
        "boolean": isinstance(value, bool),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "decimal": isinstance(value, (int, float)) and not isinstance(value, bool),
    }.get(kind, isinstance(value, str))
    if not ok:
        raise ViewDefinitionError(f"{location}.{key} has the wrong JSON type for {key}")
    return Constant(name, kind, value)


def parse_view(raw: Any) -> ViewDefinition:
    """Validate a ViewDefinition (as parsed JSON) and build the model.

    Args:
        raw: the ViewDefinition JSON object.

    Returns:
        The validated view.

    Raises:
        ViewDefinitionError: naming the first problem found and how to fix it.
    """
    obj = _object(raw, "ViewDefinition")
    resource = obj.get("resource")
    if not isinstance(resource, str) or not resource:
        raise ViewDefinitionError(
            "ViewDefinition.resource is required: set it to the FHIR resource type, e.g. 'Patient'"
        )
    if not fhir_types.is_resource_type(resource):
        raise ViewDefinitionError(
            f"ViewDefinition.resource '{resource}' is not a FHIR R4 resource type"
        )
    constants: dict[str, Constant] = {}
    for i, c in enumerate(_list(obj.get("constant"), "ViewDefinition.constant")):
        const = _constant(c, f"constant[{i}]")
        if const.name in constants:
            raise ViewDefinitionError(f"constant[{i}].name '{const.name}' is defined twice")
        constants[const.name] = const
    selects = _list(obj.get("select"), "ViewDefinition.select")
    if not selects:
        raise ViewDefinitionError("ViewDefinition.select needs at least one select with columns")
    root = Select("ViewDefinition")
    root.select = [_select(s, f"select[{i}]") for i, s in enumerate(selects)]
    where = [
        _expr(_object(w, f"where[{i}]").get("path"), f"where[{i}].path")
        for i, w in enumerate(_list(obj.get("where"), "ViewDefinition.where"))
    ]
    names = root.column_names()
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise ViewDefinitionError(
                f"column name '{n}' is used more than once; column names must be unique"
            )
        seen.add(n)
    name = obj.get("name") if isinstance(obj.get("name"), str) else None
    return ViewDefinition(resource, root, where, constants, name)
