"""A yes/no structural check that finds valid resources valid without building any issue.

:func:`sharedcare.fhir.validation.validate` walks a resource building a FHIRPath location
for every element it visits, so that any issue it finds can say where. Nearly every
resource the record writes is valid, and for those the locations are never used. This
module answers only "is this resource certainly valid?", with one generated Python function
per object shape (resource, data type, backbone element) and per kind of property, compiled
on first use from the same element model (https://hl7.org/fhir/R4/json.html):

* ``True`` means the full validation would report no issue: every check it makes
  (unknown elements, JSON types, arrays and cardinality, empty values, primitive formats,
  one type per choice element, required elements and required bindings, nested resources)
  is made here too, with the same rules;
* ``False`` means "not certainly": there is an issue, or the resource uses a rarer form
  this check does not follow (``contained`` resources, ``_element`` primitive extensions,
  ``null`` placeholders). The caller then runs the full validation, whose issues are the
  answer.

So the result of ``validate`` never depends on this check; only its speed does
(``tests/unit/fhir/test_fhir_fastcheck.py`` compares the two on every example). A resource
shape (type and keys in order) seen often gets a check of its own with every key's checks
inline (:func:`_compile_shape`; ``tests/unit/fhir/test_fhir_shape_plans.py``).
"""

from __future__ import annotations

import functools
import itertools
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
from sharedcare.fhir.internals.primitives import checker, string_matcher, string_shortcut

__all__ = ["certainly_valid", "in_value_set"]

_ENV: dict[str, Any] = {}  # the generated functions' globals, shared so they can call each other


def _name(node: ObjectNode) -> str:
    """The global name of a shape's check; compiled on its first call (shapes nest deeply)."""
    name = f"node_{id(node)}"
    if name not in _ENV:

        def first_call(obj: dict[str, Any]) -> bool:
            check = _compile_node(node, name)
            _ENV[name] = check
            return bool(check(obj))

        _ENV[name] = first_call
    return name


_NUMBERS = itertools.count()  # next() is atomic: two threads compiling never share a name


def _global(value: Any) -> str:
    name = f"g{next(_NUMBERS)}"
    _ENV[name] = value
    return name


def _item_check(prop: Prop, x: str) -> list[str]:
    """Source lines that ``return False`` unless the value ``x`` of ``prop`` is valid."""
    tc = prop.type_code
    vs = prop.element.valueset
    lines: list[str] = []
    if prop.is_primitive:
        matcher = string_matcher(tc)
        shortcut = string_shortcut(tc)
        if matcher is not None and shortcut is not None:
            # the usual printable text is settled inline; anything else asks the matcher
            lines.append(
                f"if type({x}) is not str or not ({shortcut.format(x=x)}"
                f" or {_global(matcher)}({x})):"
            )
        elif matcher is not None:
            lines.append(f"if type({x}) is not str or not {_global(matcher)}({x}):")
        else:
            lines.append(f"if {x} is None or {_global(checker(tc))}({x}) is not None:")
        lines.append("    return False")
        codes = all_required_codes(vs) if vs is not None and tc == "code" else None
        if codes is not None:
            lines += [f"if {x} not in {_global(codes)}:", "    return False"]
        return lines
    if tc == "Resource":
        nested = prop.element.name == "contained"
        return [
            f"if type({x}) is not dict or not _resource({x}, {nested}):",
            "    return False",
        ]
    node = node_of_prop(prop)
    if node is None:
        return ["return False"]
    lines += [f"if type({x}) is not dict or not {_name(node)}({x}):", "    return False"]
    systems = required_codes(vs) if vs is not None and tc in ("Coding", "CodeableConcept") else None
    if systems is not None:
        cc = tc == "CodeableConcept"
        lines += [f"if not _coded({x}, {_global(systems)}, {cc}):", "    return False"]
    return lines


def _prop_check(prop: Prop, v: str) -> list[str]:
    """Source lines that ``return False`` unless ``v``, the JSON value of ``prop`` (an array
    or a single value), is valid."""
    lines: list[str] = []
    if prop.is_array:
        lines += [f"if type({v}) is not list or not {v}:", "    return False"]
        most = prop.element.max
        if most is not None:
            lines += [f"if len({v}) > {most}:", "    return False"]
        lines.append(f"for x in {v}:")
        lines += ["    " + line for line in _item_check(prop, "x")]
    else:
        # An array fails the item's own type test (string, object, or the checker's), so
        # no separate test for one is needed.
        lines += _item_check(prop, v)
    return lines


def _compile_prop(prop: Prop) -> Any:
    """A function: is this JSON value of the property valid (array or single)?"""
    lines = ["def check(v):"]
    lines += ["    " + line for line in _prop_check(prop, "v")]
    lines.append("    return True")
    env: dict[str, Any] = {}
    exec("\n".join(lines), _ENV, env)  # noqa: S102 - generated from the packaged model only
    return env["check"]


_PROPS: dict[tuple[Any, ...], Any] = {}  # one check per kind of property, shared by shapes


def _lazy_prop(checks: dict[str, Any], key: str, prop: Prop) -> Any:
    """A stand-in that compiles the property's check on first use and takes its place."""

    def first_use(value: Any) -> bool:
        tc = prop.type_code
        sub = None if prop.is_primitive or tc == "Resource" else node_of_prop(prop)
        el = prop.element
        kind = (tc, prop.is_array, el.max, el.valueset, el.name == "contained", id(sub))
        check = _PROPS.get(kind)
        if check is None:
            check = _PROPS[kind] = _compile_prop(prop)
        checks[key] = check
        return bool(check(value))

    return first_use


# Shapes with at most this many JSON keys (data types such as Coding, Identifier,
# Reference, Quantity, Period, HumanName and small backbone elements) get one function with
# every property's check inline; larger ones (resources, Extension) loop over the keys.
_INLINE_MAX_KEYS = 16


#: Keys looked up last in a small shape: most objects have neither.
_RARE_KEYS = ("id", "extension", "modifierExtension")


def _compile_small_node(node: ObjectNode, name: str) -> Any:
    """Like :func:`_compile_node`, for a small shape: looks up each of its keys in turn.

    A key that is absent, or ``null``, is not counted; the object is valid only if every
    one of its keys was counted (so no unknown key and no ``null``) and each counted value
    is valid. A choice element is counted once per JSON key it has: more than one is two
    types. The checks are independent, so their order does not change the answer: the
    keys are looked up in the model's order with ``id`` and ``extension`` last, and once
    every key of the object has been counted the rest are known to be absent, so the
    choice and required-element tests end the check there.
    """
    lines = ["def check(o):", "    size = len(o)", "    if not size:", "        return False"]
    lines.append("    n = 0")
    counters: dict[str, str] = {}
    for prop in node.props.values():
        if prop.element.is_choice and prop.element.name not in counters:
            counters[prop.element.name] = f"c{len(counters)}"
    lines += [f"    {var} = 0" for var in counters.values()]
    tail: list[str] = []
    for var in counters.values():
        tail += [f"    if {var} > 1:", "        return False"]
    tail += _required_lines(node)
    tail.append("    return True")
    ordered = sorted(node.props.items(), key=lambda kv: kv[1].element.name in _RARE_KEYS)
    for key, prop in ordered:
        lines += [f"    v = o.get({key!r})", "    if v is not None:", "        n += 1"]
        if prop.element.is_choice:
            lines.append(f"        {counters[prop.element.name]} += 1")
        lines += ["        " + line for line in _prop_check(prop, "v")]
        lines.append("        if n == size:")
        lines += ["        " + line for line in tail]
    lines += ["    if n != size:", "        return False", *tail]
    return _define(lines, name)


def _define(lines: list[str], name: str) -> Any:
    """The function ``check`` that generated source ``lines`` define, named ``name``."""
    env: dict[str, Any] = {}
    exec("\n".join(lines), _ENV, env)  # noqa: S102 - generated from the packaged model only
    check = env["check"]
    check.__qualname__ = check.__name__ = name
    return check


def _required_lines(node: ObjectNode) -> list[str]:
    """Source lines of a shape's check that ``return False`` when a required element of
    ``o`` is missing."""
    lines: list[str] = []
    for el, keys in node.required:
        # An ``_element`` key has already failed the check: only the value keys count.
        values = [k for k in keys if not k.startswith("_")]
        if el.min == 1:
            absent = " and ".join(f"{k!r} not in o" for k in values) or "True"
            lines += [f"    if {absent}:", "        return False"]
        else:
            lines += [
                f"    if max((_count(o.get(k)) for k in {tuple(values)!r}), default=0) < {el.min}:",
                "        return False",
            ]
    return lines


def _compile_node(node: ObjectNode, name: str) -> Any:
    """A function: is this JSON object a valid instance of the shape (see ``_object``)?"""
    if not node.is_resource and len(node.props) <= _INLINE_MAX_KEYS:
        return _compile_small_node(node, name)
    checks: dict[str, Any] = {}
    for key, prop in node.props.items():
        checks[key] = _lazy_prop(checks, key, prop)
    choice = {k: p.element.name for k, p in node.props.items() if p.element.is_choice}
    lines = [
        "def check(o):",
        "    if not o:",
        "        return False",
        f"    checks = {_global(checks)}",
    ]
    if choice:
        lines += [f"    choice = {_global(choice)}", "    seen = None"]
    lines += [
        "    for k, v in o.items():",
        "        f = checks.get(k)",
        "        if f is None:",
    ]
    if node.is_resource:
        lines += ["            if k == 'resourceType':", "                continue"]
    lines += ["            return False", "        if not f(v):", "            return False"]
    if choice:
        lines += [
            "        c = choice.get(k)",
            "        if c is not None:",
            "            if seen is None:",
            "                seen = {c}",
            "            elif c in seen:",
            "                return False",
            "            else:",
            "                seen.add(c)",
        ]
    lines += _required_lines(node)
    lines.append("    return True")
    return _define(lines, name)


def _count(value: Any) -> int:
    if value is None:
        return 0
    return len(value) if type(value) is list else 1


def certainly_valid(resource: dict[str, Any]) -> bool:
    """True if :func:`~sharedcare.fhir.validation.validate` would find no issue in it.

    ``False`` is not a verdict: run the full validation to learn the issues, if any.
    """
    try:
        return _resource(resource, False)
    except RecursionError:
        return False


_CHECK_NAMES: dict[str, str | None] = {}  # resource type -> its check's global name


def _check_name(rtype: str) -> str | None:
    if not is_resource_type(rtype):
        return None
    node = node_for_type(rtype)
    return None if node is None else _name(node)


def _resource(obj: dict[str, Any], nested: bool) -> bool:
    rtype = obj.get("resourceType")
    if type(rtype) is not str:
        return False
    name = _CHECK_NAMES.get(rtype, "")
    if name == "":
        if len(_CHECK_NAMES) >= 4096:  # only resource types are worth remembering
            _CHECK_NAMES.clear()
        name = _CHECK_NAMES[rtype] = _check_name(rtype)
    if name is None:
        return False
    if "contained" in obj and (nested or obj["contained"]):
        # dom-2 when nested; otherwise ref-1 needs the references found: the full check.
        return False
    shapes = _SHAPES.get(name)
    if shapes is None:
        shapes = _SHAPES[name] = {}
    keys = tuple(obj)
    check = shapes.get(keys)
    if type(check) is int or check is None:
        seen = (check or 0) + 1
        if seen < _SPECIALISE_AFTER:
            if len(shapes) >= _SHAPES_LIMIT:
                shapes.clear()
            shapes[keys] = seen
            return bool(_ENV[name](obj))
        check = _compile_shape(rtype, keys)
        if check is None:  # the shape's check (looked up by name: it may not be compiled yet)
            check = functools.partial(_check_by_name, name)
        shapes[keys] = check
    return bool(check(obj))


def _check_by_name(name: str, obj: dict[str, Any]) -> bool:
    return bool(_ENV[name](obj))


# check name -> {a resource's keys, in order: how many resources had them, then their
# check}. One feed's resources come in a handful of shapes; the bound stops unusual
# traffic growing it.
_SHAPES: dict[str, dict[tuple[str, ...], Any]] = {}
_SHAPES_LIMIT = 1024
#: A shape's check is compiled (about 0.15 ms, some 1.5 us saved a resource) once this
#: many resources of it have been checked the general way.
_SPECIALISE_AFTER = 32


def _compile_shape(rtype: str, keys: tuple[str, ...]) -> Any:
    """A check of resources of ``rtype`` with exactly these keys (in this order), or
    ``None`` when the keys alone make such a resource not certainly valid.

    Equal to the shape's check (:func:`_compile_node`) on such resources: the same checks
    of each value, in the same order, without looking up the keys' checks or counting the
    elements of choices at run time (an unknown key or two types of one choice give
    ``None``). Required elements are still tested on the object, as there.
    """
    node = node_for_type(rtype)
    if node is None or not node.is_resource:
        return None
    lines = ["def check(o):"]
    choices: set[str] = set()
    for key in keys:
        if key == "resourceType":
            continue
        prop = node.props.get(key)
        if prop is None:
            return None
        if prop.element.is_choice:
            if prop.element.name in choices:
                return None
            choices.add(prop.element.name)
        lines.append(f"    v = o[{key!r}]")
        lines += ["    " + line for line in _prop_check(prop, "v")]
    lines += _required_lines(node)
    lines.append("    return True")
    return _define(lines, f"{rtype}_shape_{next(_NUMBERS)}")


def _coded(value: dict[str, Any], systems: dict[str, frozenset[str]], is_cc: bool) -> bool:
    """The required binding of a Coding or CodeableConcept (validation's _coded_binding)."""
    codings = value.get("coding") if is_cc else [value]
    if not isinstance(codings, list) or not codings:
        return True
    return any(isinstance(c, dict) and in_value_set(c, systems) for c in codings)


def in_value_set(coding: dict[str, Any], systems: dict[str, frozenset[str]]) -> bool:
    """Whether a Coding's system and code are in an expanded value set.

    Non-string systems and codes never are (and raise nothing: a list is not hashable).
    """
    code, system = coding.get("code"), coding.get("system") or ""
    return type(code) is str and type(system) is str and code in systems.get(system, ())


_ENV.update(_resource=_resource, _coded=_coded, _count=_count)
