"""Compile SearchParameter FHIRPath expressions into fast, typed Python extractors.

The R4 search parameters use a small subset of FHIRPath
(https://hl7.org/fhirpath/N1/): dotted paths, ``a | b`` unions, ``.ofType(T)`` /
``.as(T)`` / ``x as T``, ``.where(resolve() is T)``, ``.where(field='literal')``, ``[n]``
and ``.first()``. Such expressions are resolved against the element model at compile time
into a plan of JSON key look-ups that knows the FHIR type of every value it yields. Any
branch outside that subset is evaluated with ``fhirpathpy`` instead (and its value types are
inferred from their JSON shape).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sharedcare.fhir.definitions import node_of_prop, primitive_types, required_codes
from sharedcare.fhir.definitions.model import ObjectNode
from sharedcare.fhir.references import reference_type


@dataclass(frozen=True, slots=True)
class Leaf:
    """What the compiler knows about the values at one position.

    Attributes:
        type_code: FHIR type (``CodeableConcept``, ``date``...); ``""`` when unknown.
        system: Implied code system of a ``code`` with a single-system required binding.
    """

    type_code: str
    system: str | None = None


UNKNOWN = Leaf("")
Item = tuple[Any, Leaf]
Extractor = Callable[[Any], list[Item]]


class NotCompilable(Exception):
    """The expression uses FHIRPath outside the compiled subset."""


# --- parsing ---------------------------------------------------------------------------

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INDEXED = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\[(\d+)\]")
_FUNC = re.compile(r"([A-Za-z]+)\((.*)\)", re.DOTALL)
_WHERE_RESOLVE = re.compile(r"resolve\(\)\s+is\s+([A-Za-z]+)")
_WHERE_EQ = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*=\s*'([^']*)'")

Step = tuple[str, ...]


def split_top(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside parentheses, brackets and quotes."""
    parts: list[str] = []
    depth = 0
    quoted = False
    start = 0
    for i, ch in enumerate(text):
        if ch == "'":
            quoted = not quoted
        elif quoted:
            continue
        elif ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return parts


def _matching_paren(text: str) -> int:
    depth = 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i
    raise NotCompilable(text)


def parse_steps(expr: str) -> list[Step]:
    """Parse one union branch into steps: ``("field", name)``, ``("index", n)``,
    ``("type", T)``, ``("resolve", T)``, ``("eq", field, literal)``."""
    expr = expr.strip()
    if " as " in expr and not expr.startswith("("):
        left, _, right = expr.rpartition(" as ")
        if not _IDENT.fullmatch(right.strip()):
            raise NotCompilable(expr)
        return [*parse_steps(left), ("type", right.strip())]
    if expr.startswith("("):
        close = _matching_paren(expr)
        rest = expr[close + 1 :].strip()
        if rest and not rest.startswith("."):
            raise NotCompilable(expr)
        return parse_steps(expr[1:close]) + (parse_steps(rest[1:]) if rest else [])
    steps: list[Step] = []
    for seg in split_top(expr, "."):
        if _IDENT.fullmatch(seg):
            steps.append(("field", seg))
            continue
        m = _INDEXED.fullmatch(seg)
        if m:
            steps += [("field", m.group(1)), ("index", m.group(2))]
            continue
        m = _FUNC.fullmatch(seg)
        if not m:
            raise NotCompilable(expr)
        name, arg = m.group(1), m.group(2).strip()
        if name in ("ofType", "as") and _IDENT.fullmatch(arg):
            steps.append(("type", arg))
        elif name == "first" and not arg:
            steps.append(("index", "0"))
        elif name == "where" and (w := _WHERE_RESOLVE.fullmatch(arg)):
            steps.append(("resolve", w.group(1)))
        elif name == "where" and (w := _WHERE_EQ.fullmatch(arg)):
            steps.append(("eq", w.group(1), w.group(2)))
        else:
            raise NotCompilable(expr)
    return steps


# --- compiling -------------------------------------------------------------------------

Alt = tuple[str, Leaf, "ObjectNode | None"]


def _implied_system(valueset: str | None) -> str | None:
    if valueset is None:
        return None
    systems = required_codes(valueset)
    if systems is not None and len(systems) == 1:
        return next(iter(systems))
    return None


def _same_type(a: str, b: str) -> bool:
    return a == b or a.lower() == b.lower()


def compile_branch(
    expr: str, root: ObjectNode, root_names: frozenset[str]
) -> tuple[Extractor, list[ObjectNode | None]]:
    """Compile one union branch evaluated on an object of shape ``root``.

    Args:
        expr: The branch, e.g. ``Observation.value.ofType(Quantity)``.
        root: Shape of the context object.
        root_names: Leading names that denote the context itself (the resource type,
            ``Resource``, ``DomainResource``).

    Returns:
        The extractor and the object shapes of the values it yields (for composites).

    Raises:
        NotCompilable: If the branch is outside the compiled subset.
    """
    m = _EXISTS_NOT_FALSE.fullmatch(expr.strip())
    if m is not None and m.group(1) == m.group(2):
        inner, _ends = compile_branch(m.group(1), root, root_names)
        return _exists_not_false(inner), [None]
    ops, alts = _resolve(expr, root, root_names)
    if not ops:
        leaf = alts[0][1]
        return (lambda obj: [(obj, leaf)]), [alts[0][2]]
    return _plan(ops), [a[2] for a in alts]


def root_keys(expr: str, root: ObjectNode, root_names: frozenset[str]) -> frozenset[str] | None:
    """The JSON keys of the context object one branch starts from, if it needs one.

    An extractor of :func:`compile_branch` whose first step looks up a field yields nothing
    when the object has none of these keys, so a caller may skip it for such objects.

    Returns:
        The keys (every JSON name of the first field: ``valueQuantity``, ``valueString``
        ...), or ``None`` when the branch may yield values without any (it starts at the
        object itself, tests existence, or is outside the compiled subset).
    """
    if _EXISTS_NOT_FALSE.fullmatch(expr.strip()) is not None:
        return None
    try:
        ops, _alts = _resolve(expr, root, root_names)
    except NotCompilable:
        return None
    if not ops or ops[0][0] != "hop":
        return None
    return frozenset(alt[0] for alt in ops[0][1])


def is_context(expr: str, root: ObjectNode, root_names: frozenset[str]) -> bool:
    """Whether a branch denotes the context object itself (``Observation`` on an
    Observation): its extractor yields exactly that object."""
    if _EXISTS_NOT_FALSE.fullmatch(expr.strip()) is not None:
        return False
    try:
        ops, _alts = _resolve(expr, root, root_names)
    except NotCompilable:
        return False
    return not ops


def _resolve(
    expr: str, root: ObjectNode, root_names: frozenset[str]
) -> tuple[list[tuple[str, Any]], list[Alt]]:
    """The plan of one branch (its operations) and the alternatives it ends on."""
    steps = parse_steps(expr)
    if steps and steps[0][0] == "field" and steps[0][1] in root_names:
        steps = steps[1:]
    prims = primitive_types()
    alts: list[Alt] = [("", Leaf(root.type_name), root)]
    ops: list[tuple[str, Any]] = []
    for step in steps:
        kind = step[0]
        if kind == "field":
            if len(alts) != 1 or alts[0][2] is None:
                raise NotCompilable(expr)
            node = alts[0][2]
            el = node.elements.get(step[1])
            if el is None:
                raise NotCompilable(expr)
            new: list[Alt] = []
            for key, prop in node.props.items():
                if prop.element is el:
                    sub = None if prop.type_code in prims else node_of_prop(prop)
                    system = _implied_system(el.valueset) if prop.type_code == "code" else None
                    new.append((key, Leaf(prop.type_code, system), sub))
            alts = new
            ops.append(("hop", alts))
        elif kind == "type":
            wanted = step[1]
            alts = [a for a in alts if _same_type(a[1].type_code, wanted)]
            if not ops or ops[-1][0] != "hop":
                raise NotCompilable(expr)
            ops[-1] = ("hop", alts)
        elif kind == "index":
            ops.append(("index", int(step[1])))
        elif kind == "resolve":
            ops.append(("resolve", step[1]))
        elif kind == "eq":
            ops.append(("eq", (step[1], step[2])))
    return ops, alts


_EXISTS_NOT_FALSE = re.compile(r"(.+?)\.exists\(\) and (.+?) != false")
_BOOLEAN = Leaf("boolean")


def _exists_not_false(inner: Extractor) -> Extractor:
    """``p.exists() and p != false``: one boolean, true when p has a non-false value."""

    def run(obj: Any) -> list[Item]:
        items = inner(obj)
        return [(any(v is not False for v, _leaf in items), _BOOLEAN)]

    return run


Sink = Callable[[Any, list[Any]], None]
#: Emits the values of one branch straight into a list: ``emit(obj, out)``.
Emitter = Callable[[Any, list[Any]], None]


def compile_emitter(ops: list[tuple[str, Any]], sink_for: Callable[[Leaf], Sink]) -> Emitter:
    """Compile the plan of one union branch (:func:`emitter_ops`) into a function that
    hands each value to a sink.

    Like :func:`compile_branch`, but instead of building ``(value, Leaf)`` items the
    generated loops call ``sink_for(leaf)(value, out)`` for each value, in the same order,
    so a caller can choose a handler per position at compile time (the FHIR type is known).
    """
    emitter: Emitter = _generate(ops, sink_for)
    return emitter


def emitter_ops(expr: str, root: ObjectNode, root_names: frozenset[str]) -> list[Any] | None:
    """The plan of a branch that :func:`compile_emitter` turns into loops, for
    :func:`loop_lines`; ``None`` when it does not (``[n]`` indexing, existence tests, the
    context itself).

    Raises:
        NotCompilable: If the branch is outside the compiled subset.
    """
    if _EXISTS_NOT_FALSE.fullmatch(expr.strip()) is not None:
        return None
    ops, _alts = _resolve(expr, root, root_names)
    if not ops or any(op == "index" for op, _arg in ops):
        return None
    return ops


def loop_lines(
    ops: list[tuple[str, Any]],
    env: dict[str, Any],
    sink_for: Callable[[Leaf], Sink] | None,
    pad: str,
    present: frozenset[str] | None = None,
    first: tuple[str, str] | None = None,
) -> list[str]:
    """Source lines of nested loops over a plan without ``[n]`` indexing, on ``x0``.

    The lines are built only from element names of the packaged R4 model and ``repr()`` of
    expression literals, so they are safe to ``exec``; the objects they use (leaves, sinks,
    ``reference_type``) are added to ``env``, their globals, under fresh names. Without
    ``sink_for`` the lines append ``(value, Leaf)`` items to ``out``; with it they call
    ``sink_for(leaf)(value, out)`` for each value.

    Args:
        ops: The plan (:func:`emitter_ops`).
        env: The globals of the function the lines go into (shared by several plans).
        sink_for: The sink of each position, or ``None`` for items.
        pad: Indentation of the outermost line.
        present: When given, ``x0`` is known to be a dict with exactly these keys: the
            first step reads only those present, without testing.
        first: ``(key, variable)``: the first step (a look-up of one of its keys) is
            already done, its one value (not ``None``) is in the variable ``x2``; the
            lines continue from there, for the alternative ``key``.
    """
    env.setdefault("reference_type", reference_type)
    env.setdefault("UNKNOWN", UNKNOWN)
    lines: list[str] = []
    known = present or frozenset()

    def fresh(prefix: str, value: Any) -> str:
        name = f"{prefix}{len(env)}"
        env[name] = value
        return name

    def emit(i: int, cur: str, leaf: str, depth: int, pad: str) -> None:
        if i == len(ops):
            if sink_for is None:
                lines.append(f"{pad}out.append(({cur}, {leaf}))")
            else:
                lines.append(f"{pad}{fresh('S', sink_for(env[leaf]))}({cur}, out)")
            return
        op, arg = ops[i]
        if op == "hop":
            top = present is not None and i == 0
            if not top:
                lines.append(f"{pad}if type({cur}) is dict:")
            inner = pad if top else pad + "    "
            for key, alt_leaf, _node in arg:
                if top and key not in known:
                    continue
                name = fresh("L", alt_leaf)
                v, x = f"v{depth}", f"x{depth + 1}"
                get = f"{cur}[{key!r}]" if top else f"{cur}.get({key!r})"
                lines.append(f"{inner}{v} = {get}")
                lines.append(f"{inner}if {v} is not None:")
                lines.append(f"{inner}    for {x} in ({v} if type({v}) is list else ({v},)):")
                lines.append(f"{inner}        if {x} is not None:")
                emit(i + 1, x, name, depth + 1, inner + "            ")
        elif op == "resolve":
            lines.append(f"{pad}if type({cur}) is dict and reference_type({cur}) == {arg!r}:")
            emit(i + 1, cur, leaf, depth, pad + "    ")
        else:
            field, literal = arg
            lines.append(f"{pad}if type({cur}) is dict and {cur}.get({field!r}) == {literal!r}:")
            emit(i + 1, cur, leaf, depth, pad + "    ")

    if first is None:
        emit(0, "x0", "UNKNOWN", 1, pad)
        return lines
    key, var = first
    leaf = next(alt[1] for alt in ops[0][1] if alt[0] == key)
    emit(1, var, fresh("L", leaf), 2, pad)
    return lines


def _generate(ops: list[tuple[str, Any]], sink_for: Callable[[Leaf], Sink] | None = None) -> Any:
    """Generate a nested-loop Python function for a plan without ``[n]`` indexing.

    Returns ``None`` when the plan needs collection-wide operations (indexing). Without
    ``sink_for`` the function returns ``(value, Leaf)`` items; with it, ``emit(x0, out)``
    calls the sink of each position (see :func:`loop_lines`).
    """
    if any(op == "index" for op, _arg in ops):
        return None
    env: dict[str, Any] = {}
    body = loop_lines(ops, env, sink_for, "    ")
    if sink_for is None:
        lines = ["def extract(x0):", "    out = []", *body, "    return out"]
    else:
        lines = ["def extract(x0, out):", *body] if body else ["def extract(x0, out):", "    pass"]
    exec("\n".join(lines), env)  # noqa: S102 - source generated from the packaged model only
    return env["extract"]


def _plan(ops: list[tuple[str, Any]]) -> Extractor:
    if len(ops) == 1 and ops[0][0] == "hop" and len(ops[0][1]) == 1:
        key, leaf, _node = ops[0][1][0]

        def single(obj: Any) -> list[Item]:
            if type(obj) is not dict:
                return []
            v = obj.get(key)
            if v is None:
                return []
            if type(v) is list:
                return [(x, leaf) for x in v if x is not None]
            return [(v, leaf)]

        return single
    generated: Extractor | None = _generate(ops)
    if generated is not None:
        return generated
    plan: list[tuple[str, Any]] = [
        (op, [(a[0], a[1]) for a in arg] if op == "hop" else arg) for op, arg in ops
    ]

    def run(obj: Any) -> list[Item]:
        items: list[Item] = [(obj, UNKNOWN)]
        for op, arg in plan:
            if op == "hop":
                out: list[Item] = []
                for value, _leaf in items:
                    if type(value) is not dict:
                        continue
                    for key, leaf in arg:
                        v = value.get(key)
                        if v is None:
                            continue
                        if type(v) is list:
                            out.extend((x, leaf) for x in v if x is not None)
                        else:
                            out.append((v, leaf))
                items = out
            elif op == "index":
                n: int = arg
                items = items[n : n + 1]
            elif op == "resolve":
                items = [it for it in items if type(it[0]) is dict and reference_type(it[0]) == arg]
            else:
                field, literal = arg
                items = [it for it in items if type(it[0]) is dict and it[0].get(field) == literal]
            if not items:
                return items
        return items

    return run


def fhirpath_fallback(expr: str) -> Extractor:
    """Return an extractor that evaluates ``expr`` with fhirpathpy (slow path)."""
    import fhirpathpy
    from fhirpathpy.models import models

    fn = fhirpathpy.compile(expr, models["r4"])

    def run(obj: Any) -> list[Item]:
        try:
            result = fn(obj, {})
        except Exception:  # fhirpathpy raises assorted errors on odd data; index nothing
            return []
        return [
            (v if isinstance(v, dict | str | int | float | bool | Decimal) else str(v), UNKNOWN)
            for v in result
        ]

    return run
