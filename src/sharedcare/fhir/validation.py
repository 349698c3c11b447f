"""Structural validation of FHIR R4 JSON resources against the base specification.

Checks (https://hl7.org/fhir/R4/json.html and https://hl7.org/fhir/R4/validation.html):

* ``resourceType`` present and a known R4 resource type;
* unknown elements (including ``_element`` siblings of non-primitives);
* JSON types: arrays exactly where max cardinality > 1, objects for complex types, the right
  JSON primitive (string, number, boolean) for each FHIR primitive;
* primitive formats (the official JSON schema regexes for id, code, date, dateTime, instant,
  uri, oid, uuid ...; real calendar dates; 32-bit integer ranges);
* cardinality (min and max), empty objects/arrays/strings (ele-1), at most one choice type
  per ``[x]`` element;
* contained and nested resources (``contained``, ``Bundle.entry.resource`` ...), with no
  nested ``contained`` (dom-2) and every ``#id`` reference naming a contained resource (ref-1);
* required bindings (https://hl7.org/fhir/R4/terminologies.html#required) on ``code``,
  ``Coding`` and ``CodeableConcept`` elements whose value set expands from the R4 definitions;
* no active content in narrative (txt-1/txt-2, https://hl7.org/fhir/R4/narrative.html).

Profiles (UK Core) and invariants other than those above are not evaluated: extensions are
checked structurally only, which is what the base specification requires.

Issues never quote the offending value: patient data stays out of messages and logs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sharedcare.fhir.definitions import (
    ObjectNode,
    Prop,
    all_required_codes,
    is_resource_type,
    node_for_type,
    node_of_prop,
    required_codes,
)
from sharedcare.fhir.internals.fastcheck import certainly_valid, in_value_set
from sharedcare.fhir.internals.primitives import checker
from sharedcare.fhir.references import find_references

_SPEC = "https://hl7.org/fhir/R4"


@dataclass(frozen=True, slots=True)
class Issue:
    """One validation finding.

    Attributes:
        severity: ``fatal``, ``error``, ``warning`` or ``information``.
        code: FHIR issue-type code (https://hl7.org/fhir/R4/valueset-issue-type.html), e.g.
            ``structure``, ``required``, ``value``, ``code-invalid``, ``invariant``,
            ``not-supported``, ``too-costly``.
        location: FHIRPath-style location, e.g. ``Observation.component[1].code``.
        diagnostics: What is wrong and how to fix it; never contains the value.
    """

    severity: str
    code: str
    location: str
    diagnostics: str


def operation_outcome(issues: list[Issue]) -> dict[str, Any]:
    """Build an OperationOutcome resource (https://hl7.org/fhir/R4/operationoutcome.html).

    An empty list gives a single ``information`` issue saying that all is well.
    """
    if not issues:
        return {
            "resourceType": "OperationOutcome",
            "issue": [
                {"severity": "information", "code": "informational", "diagnostics": "No issues"}
            ],
        }
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": i.severity,
                "code": i.code,
                "diagnostics": i.diagnostics,
                "location": [i.location],
                "expression": [i.location],
            }
            for i in issues
        ],
    }


def has_errors(issues: list[Issue]) -> bool:
    """Return True if any issue is ``error`` or ``fatal``."""
    return any(i.severity in ("error", "fatal") for i in issues)


def validate(resource: object) -> list[Issue]:
    """Validate one resource (a decoded JSON object) against the R4 base definitions.

    Args:
        resource: The resource as parsed from JSON.

    Returns:
        The issues found; empty when the resource is valid.
    """
    if type(resource) is dict and certainly_valid(resource):
        return []  # the full walk below would find nothing (see internals.fastcheck)
    issues: list[Issue] = []
    if not isinstance(resource, dict):
        issues.append(Issue("fatal", "structure", "(root)", "A resource must be a JSON object."))
        return issues
    try:
        _resource(resource, None, issues, nested=False)
    except RecursionError:
        issues.append(
            Issue(
                "fatal",
                "too-costly",
                rtype if isinstance(rtype := resource.get("resourceType"), str) else "(root)",
                "The resource is nested too deeply to validate; flatten nested items or "
                "extensions.",
            )
        )
    return issues


def _resource(obj: dict[str, Any], path: str | None, issues: list[Issue], nested: bool) -> None:
    rtype = obj.get("resourceType")
    where = path or "(root)"
    if not isinstance(rtype, str):
        issues.append(
            Issue(
                "fatal" if path is None else "error",
                "structure",
                where,
                "Missing resourceType: every resource needs a 'resourceType' string naming an "
                f"R4 resource type ({_SPEC}/resourcelist.html).",
            )
        )
        return
    if not is_resource_type(rtype):
        issues.append(
            Issue(
                "fatal" if path is None else "error",
                "not-supported",
                where,
                "Unknown resourceType; use one of the R4 resource types "
                f"({_SPEC}/resourcelist.html).",
            )
        )
        return
    node = node_for_type(rtype)
    assert node is not None  # is_resource_type guarantees a node
    if nested and "contained" in obj:
        issues.append(
            Issue(
                "error",
                "structure",
                f"{where}.contained",
                "A contained resource must not itself contain resources "
                f"(dom-2, {_SPEC}/references.html#contained).",
            )
        )
    _object(obj, node, path or rtype, issues)
    contained = obj.get("contained")
    if not nested and type(contained) is list and contained:
        _local_references(obj, contained, path or rtype, issues)


def _local_references(
    obj: dict[str, Any], contained: list[Any], path: str, issues: list[Issue]
) -> None:
    """ref-1: a ``#id`` reference must name a contained resource (``#`` alone: the container)."""
    ids = {c.get("id") for c in contained if type(c) is dict}
    for loc, ref in find_references(obj):
        text = ref.get("reference")
        if type(text) is str and text.startswith("#") and len(text) > 1 and text[1:] not in ids:
            where = path + loc[loc.index(".") :] if "." in loc else path
            issues.append(
                Issue(
                    "error",
                    "invariant",
                    f"{where}.reference",
                    "Local reference does not match the id of any contained resource (ref-1, "
                    f"{_SPEC}/references.html#contained); fix the id or contain the resource.",
                )
            )


def _object(obj: dict[str, Any], node: ObjectNode, path: str, issues: list[Issue]) -> None:
    props = node.props
    if not obj:
        issues.append(
            Issue(
                "error",
                "structure",
                path,
                "Empty object: every element needs a value or children (ele-1); "
                "leave it out instead.",
            )
        )
        return
    choices: dict[str, str] | None = None
    for key, value in obj.items():
        prop = props.get(key)
        if prop is None:
            if key == "resourceType" and node.is_resource:
                continue
            if key[:1] == "_":
                base = props.get(key[1:])
                if base is not None and base.is_primitive:
                    _primitive_extension(obj, key, base, value, f"{path}.{key}", issues)
                    continue
            issues.append(
                Issue(
                    "error",
                    "structure",
                    f"{path}.{key}",
                    f"Unknown element '{key}' in {node.path}; check the spelling and the R4 "
                    f"definition ({_SPEC}/{node.path.split('.', 1)[0].lower()}.html), or move "
                    "local data into an extension.",
                )
            )
            continue
        el = prop.element
        if el.is_choice:
            if choices is None:
                choices = {}
            other = choices.setdefault(el.name, key)
            if other != key:
                issues.append(
                    Issue(
                        "error",
                        "structure",
                        f"{path}.{key}",
                        f"Only one type is allowed for {el.name}[x] but both '{other}' and "
                        f"'{key}' are present; keep one.",
                    )
                )
        loc = f"{path}.{key}"
        if prop.is_array:
            if type(value) is not list:
                issues.append(
                    Issue(
                        "error",
                        "structure",
                        loc,
                        f"Must be a JSON array (max cardinality of {el.path} is "
                        f"{'*' if el.max is None else el.max}); wrap the value in [ ].",
                    )
                )
                continue
            if not value:
                issues.append(
                    Issue("error", "structure", loc, "Empty array: leave the element out instead.")
                )
                continue
            if el.max is not None and len(value) > el.max:
                issues.append(
                    Issue(
                        "error",
                        "structure",
                        loc,
                        f"Too many repetitions: {el.path} allows at most {el.max}.",
                    )
                )
            has_ext = prop.is_primitive and ("_" + key) in obj
            for i, item in enumerate(value):
                if item is None and has_ext:
                    continue
                _value(item, prop, f"{loc}[{i}]", issues)
        else:
            if type(value) is list:
                issues.append(
                    Issue(
                        "error",
                        "structure",
                        loc,
                        "Must be a single value, not an array "
                        f"(max cardinality of {el.path} is 1).",
                    )
                )
                continue
            if value is None and prop.is_primitive and ("_" + key) in obj:
                continue
            _value(value, prop, loc, issues)
    for el, keys in node.required:
        present = 0
        for k in keys:
            v = obj.get(k)
            if v is not None:
                present = max(present, len(v) if type(v) is list else 1)
        if present < el.min:
            name = el.name + ("[x]" if el.is_choice else "")
            issues.append(
                Issue(
                    "error",
                    "required",
                    f"{path}.{name}",
                    f"Missing required element: {el.path} needs at least {el.min} value(s).",
                )
            )


def _value(value: Any, prop: Prop, loc: str, issues: list[Issue]) -> None:
    tc = prop.type_code
    if prop.is_primitive:
        if value is None:
            issues.append(
                Issue("error", "structure", loc, "null is not allowed here; leave the element out.")
            )
            return
        problem = checker(tc)(value)
        if problem is not None:
            issues.append(Issue("error", problem[0], loc, f"Value {problem[1]}."))
            return
        vs = prop.element.valueset
        if vs is not None and tc == "code":
            codes = all_required_codes(vs)
            if codes is not None and value not in codes:
                issues.append(
                    Issue(
                        "error",
                        "code-invalid",
                        loc,
                        f"Code is not in the required value set {vs}; use one of its codes.",
                    )
                )
        return
    if type(value) is not dict:
        issues.append(Issue("error", "structure", loc, f"Must be a JSON object (FHIR type {tc})."))
        return
    if tc == "Resource":
        _resource(value, loc, issues, nested=prop.element.name == "contained")
        return
    node = node_of_prop(prop)
    if node is None:
        issues.append(Issue("error", "structure", loc, f"Type {tc} is not an R4 data type."))
        return
    _object(value, node, loc, issues)
    vs = prop.element.valueset
    if vs is not None and tc in ("Coding", "CodeableConcept"):
        _coded_binding(value, tc, vs, loc, issues)


def _coded_binding(value: dict[str, Any], tc: str, vs: str, loc: str, issues: list[Issue]) -> None:
    systems = required_codes(vs)
    if systems is None:
        return
    codings = value.get("coding") if tc == "CodeableConcept" else [value]
    if not isinstance(codings, list) or not codings:
        return
    for c in codings:
        if isinstance(c, dict) and in_value_set(c, systems):
            return
    issues.append(
        Issue(
            "error",
            "code-invalid",
            loc,
            f"No coding is from the required value set {vs}; add a coding with one of its "
            "system/code pairs.",
        )
    )


def _primitive_extension(
    obj: dict[str, Any], key: str, base: Prop, value: Any, loc: str, issues: list[Issue]
) -> None:
    element_node = node_for_type("Element")
    assert element_node is not None
    if base.is_array:
        if type(value) is not list:
            issues.append(
                Issue("error", "structure", loc, "Must be a JSON array matching the values array.")
            )
            return
        values = obj.get(key[1:])
        if isinstance(values, list) and len(values) != len(value):
            issues.append(
                Issue(
                    "error",
                    "structure",
                    loc,
                    "Must have the same length as the values array; use null to pad.",
                )
            )
        for i, item in enumerate(value):
            if item is None:
                continue
            if type(item) is not dict:
                issues.append(Issue("error", "structure", f"{loc}[{i}]", "Must be a JSON object."))
                continue
            _object(item, element_node, f"{loc}[{i}]", issues)
        return
    if type(value) is not dict:
        issues.append(Issue("error", "structure", loc, "Must be a JSON object (id/extension)."))
        return
    _object(value, element_node, loc, issues)
