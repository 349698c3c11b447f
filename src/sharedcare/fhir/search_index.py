"""Search index extraction: typed, normalised values for every R4 search parameter.

``extract_index(resource)`` evaluates every SearchParameter of the resource's type (the
official R4 definitions, including ``_id``, ``_lastUpdated``, ``_profile``, ``_tag``,
``_security``, ``_source``) and returns a flat list of index values. Each kind of value is a
``NamedTuple`` whose first field is the parameter code, so the store can turn each kind into
rows of one typed index table:

=================  ==========================================================================
kind               fields (https://hl7.org/fhir/R4/search.html#ptypes)
=================  ==========================================================================
StringValue        ``param, normalized, exact``. ``normalized`` is lower-cased and
                   accent-folded (NFKD, combining marks removed) for the default
                   starts-with/contains match; ``exact`` is the original text for ``:exact``.
                   HumanName gives one value per family/given/prefix/suffix/text; Address one
                   per line/city/district/state/postalCode/country/text.
TokenValue         ``param, system, code, text``. Coding gives (system, code, display);
                   CodeableConcept one value per coding plus (None, None, text) for its text;
                   Identifier (system, value, type.text); ContactPoint (None, value, None);
                   code/string/boolean/id/uri (implied system or None, value, None) where
                   ``code`` elements with a single-system required binding get that system.
                   ``text`` is normalised like strings, for ``:text``. A reference parameter
                   also gives TokenValue rows named ``<param>:identifier`` for
                   ``Reference.identifier`` (the ``:identifier`` modifier).
ReferenceValue     ``param, target_type, target_id, version, url``. Relative ``Type/id`` refs
                   fill type/id/version; absolute URLs fill ``url`` (and type/id when the URL
                   ends ``Type/id``); canonical/uri values fill ``url`` only. Contained
                   (``#id``) references are not indexed.
DateValue          ``param, low, high``: epoch microseconds (UTC), ``high`` exclusive,
                   following the value's precision (``2020`` covers a year). Period gives
                   [start.low, end.high), open ends are DATE_MIN / DATE_MAX; Timing gives
                   each event plus repeat.boundsPeriod. Dates without time zone are UTC.
NumberValue        ``param, value`` (Decimal). A Range gives its low and high.
QuantityValue      ``param, value, system, code, unit`` (Decimal value). Range gives its
                   low and high; Money gives (value, urn:iso:std:iso:4217, currency);
                   SampledData is not indexed. Units are not UCUM-canonicalised.
UriValue           ``param, uri``.
CompositeValue     ``param, components``: a tuple with one value per component (in the
                   definition's order), one CompositeValue per combination.
=================  ==========================================================================

Expressions are compiled to plain dict look-ups (see ``internals.pathcompile``); the few
expressions outside the compiled subset are evaluated with fhirpathpy.
:func:`compile_stats` reports how many take the fast path. Resources of a frequent shape
(type and top-level keys) are indexed by one generated function for the shape (``_fuse``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from itertools import product
from typing import Any

from sharedcare.fhir.definitions import SearchParam, node_for_type, search_parameters
from sharedcare.fhir.definitions.model import ObjectNode
from sharedcare.fhir.index_values import (
    _NORMALISERS,
    CompositeValue,
    DateValue,
    IndexValue,
    Normaliser,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    StringValue,
    TokenValue,
    UriValue,
    normalize_string,
)
from sharedcare.fhir.internals.index_sinks import sink
from sharedcare.fhir.internals.pathcompile import (
    Emitter,
    Extractor,
    Item,
    NotCompilable,
    compile_branch,
    compile_emitter,
    emitter_ops,
    fhirpath_fallback,
    is_context,
    loop_lines,
    root_keys,
    split_top,
)
from sharedcare.fhir.internals.primitives import DATE_MAX, DATE_MIN

__all__ = [
    "DATE_MAX",
    "DATE_MIN",
    "CompositeValue",
    "DateValue",
    "IndexValue",
    "NumberValue",
    "QuantityValue",
    "ReferenceValue",
    "StringValue",
    "TokenValue",
    "UriValue",
    "compile_stats",
    "extract_index",
    "normalize_string",
]


# (normaliser, extractor, evaluated on the resource root)
_Component = tuple[Normaliser, Extractor, bool]
#: One union branch of a parameter's emitter: ``(plan, sink_for)`` when the branch is a
#: plan of loops (:func:`~sharedcare.fhir.internals.pathcompile.loop_lines`), else
#: ``(None, emitter)``.
_Part = tuple[list[Any] | None, Any]


@dataclass(slots=True)
class _Compiled:
    code: str
    type: str
    extract: Extractor
    normalise: Normaliser
    fast: bool
    #: For composites: per base branch, its extractor and its components in reverse order
    #: (evaluated last-first: the value component is usually the absent one).
    composite: tuple[tuple[Extractor, tuple[_Component, ...]], ...] = ()
    #: The resource's top-level keys the parameter can take values from: a resource with
    #: none of them has no value for it. ``None``: any resource may have values.
    roots: frozenset[str] | None = None
    #: ``emit(resource, out)``: the same values as ``normalise(code, extract(resource))``
    #: (for composites, as :func:`_composite`), appended to ``out`` without the items.
    emit: Emitter | None = None
    #: The branches of ``emit``, for the fused function of a resource shape (``_fuse``).
    parts: tuple[_Part, ...] = ()


def _roots(expr: str, root: ObjectNode, names: frozenset[str]) -> frozenset[str] | None:
    keys: set[str] = set()
    for branch in split_top(expr, "|"):
        found = root_keys(branch, root, names)
        if found is None:
            return None
        keys |= found
    return frozenset(keys)


def _composite_roots(
    sp: SearchParam, root: ObjectNode, names: frozenset[str]
) -> frozenset[str] | None:
    """Top-level keys a composite needs when its base is the resource itself.

    A composite value needs a value of every component, so when each base branch is either
    the resource (its components are then evaluated on the resource) or starts from known
    keys, the resource must have one of: the keys of those branches, or the keys one such
    component starts from. ``None`` when that cannot be said.
    """
    assert sp.expression is not None
    keys: set[str] = set()
    for branch in split_top(sp.expression, "|"):
        found = root_keys(branch, root, names)
        if found is None and is_context(branch, root, names):
            for comp in reversed(sp.components):  # the value component: usually absent
                expr = comp.expression.removeprefix(_RESOURCE_VAR)
                found = _roots(expr, root, names)
                if found is not None:
                    break
        if found is None:
            return None
        keys |= found
    return frozenset(keys)


def _compile_expr(
    expr: str, root: ObjectNode, root_names: frozenset[str]
) -> tuple[Extractor, bool]:
    extractors: list[Extractor] = []
    fast = True
    for branch in split_top(expr, "|"):
        try:
            ex = compile_branch(branch, root, root_names)[0]
        except NotCompilable:
            ex = fhirpath_fallback(branch)
            fast = False
        extractors.append(ex)
    if len(extractors) == 1:
        return extractors[0], fast

    def union(obj: Any) -> list[Item]:
        out: list[Item] = []
        for ex in extractors:
            out += ex(obj)
        return out

    return union, fast


def _compile_emit(
    expr: str, ctx: ObjectNode, names: frozenset[str], ptype: str, code: str
) -> Emitter:
    """``emit(obj, out)``: the values of parameter ``code`` (of type ``ptype``) that
    ``expr`` gives on an object of shape ``ctx``, as :func:`_compile_expr` and the
    normaliser would give them; one emitter per union branch."""
    return _compile_emit_parts(expr, ctx, names, ptype, code)[0]


def _compile_emit_parts(
    expr: str, ctx: ObjectNode, names: frozenset[str], ptype: str, code: str
) -> tuple[Emitter, tuple[_Part, ...]]:
    """:func:`_compile_emit`, and its branches (see ``_Compiled.parts``)."""
    normalise = _NORMALISERS.get(ptype)
    if normalise is None:
        return _emit_nothing, ()

    def sink_for(leaf: Any) -> Any:
        return sink(ptype, code, leaf)

    emitters: list[Emitter] = []
    parts: list[_Part] = []
    for branch in split_top(expr, "|"):
        try:
            ops = emitter_ops(branch, ctx, names)
        except NotCompilable:
            ops = None
        if ops is None:
            try:
                ex = compile_branch(branch, ctx, names)[0]
            except NotCompilable:
                ex = fhirpath_fallback(branch)
            em = _items_emitter(code, ex, normalise)
            parts.append((None, em))
        else:
            em = compile_emitter(ops, sink_for)
            parts.append((ops, sink_for))
        emitters.append(em)
    if len(emitters) == 1:
        return emitters[0], tuple(parts)
    first, *rest = emitters

    def union(obj: Any, out: list[Any]) -> None:
        first(obj, out)
        for em in rest:
            em(obj, out)

    return union, tuple(parts)


def _emit_nothing(obj: Any, out: list[Any]) -> None:
    return None


def _items_emitter(code: str, extract: Extractor, normalise: Normaliser) -> Emitter:
    def emit(obj: Any, out: list[Any]) -> None:
        items = extract(obj)
        if items:
            normalise(code, items, out)

    return emit


def _composite_emitter(
    c: _Compiled, sp: SearchParam, root: ObjectNode, names: frozenset[str]
) -> Emitter:
    """``emit(resource, out)`` of a composite: :func:`_composite` with component emitters
    (the base extractors are those of ``c.composite``, in the same order)."""
    assert sp.expression is not None
    code = c.code
    branches: list[tuple[Extractor, tuple[tuple[Emitter, bool], ...]]] = []
    for (base, _comps), branch in zip(c.composite, split_top(sp.expression, "|"), strict=True):
        try:
            ends = compile_branch(branch, root, names)[1]
            end = ends[0] if len(ends) == 1 else None
        except NotCompilable:
            end = None
        comps: list[tuple[Emitter, bool]] = []
        for comp in sp.components:
            on_root = comp.expression.startswith(_RESOURCE_VAR)
            expr = comp.expression[len(_RESOURCE_VAR) :] if on_root else comp.expression
            ctx = root if on_root else end
            if ctx is None:
                norm = _NORMALISERS.get(comp.type, _no_values)
                comps.append(
                    (_items_emitter(code, fhirpath_fallback(comp.expression), norm), False)
                )
                continue
            em = _compile_emit(expr, ctx, names if on_root else frozenset(), comp.type, code)
            comps.append((em, on_root))
        branches.append((base, tuple(reversed(comps))))

    def emit(resource: Any, out: list[Any]) -> None:
        for base, comps in branches:
            items = base(resource)
            if not items:
                continue
            for value, _leaf in items:
                parts: list[list[Any]] = []
                for em, on_root in comps:
                    vals: list[Any] = []
                    em(resource if on_root else value, vals)
                    if not vals:
                        break
                    parts.append(vals)
                else:
                    parts.reverse()
                    # tuple.__new__: what CompositeValue(code, combo) does, one frame less
                    out.extend([_new(CompositeValue, (code, combo)) for combo in product(*parts)])

    return emit


_RESOURCE_VAR = "%resource."
_new = tuple.__new__


def _compile_composite(
    sp: SearchParam, root: ObjectNode, names: frozenset[str]
) -> tuple[tuple[tuple[Extractor, tuple[_Component, ...]], ...], bool]:
    assert sp.expression is not None
    fast = True
    out: list[tuple[Extractor, tuple[_Component, ...]]] = []
    for branch in split_top(sp.expression, "|"):
        try:
            base, ends = compile_branch(branch, root, names)
            end = ends[0] if len(ends) == 1 else None
        except NotCompilable:
            base, end = fhirpath_fallback(branch), None
            fast = False
        comps: list[_Component] = []
        for comp in sp.components:
            on_root = comp.expression.startswith(_RESOURCE_VAR)
            expr = comp.expression[len(_RESOURCE_VAR) :] if on_root else comp.expression
            ctx = root if on_root else end
            norm = _NORMALISERS.get(comp.type, _no_values)
            if ctx is None:
                comps.append((norm, fhirpath_fallback(comp.expression), False))
                fast = False
                continue
            cx, cfast = _compile_expr(expr, ctx, names if on_root else frozenset())
            fast = fast and cfast
            comps.append((norm, cx, on_root))
        out.append((base, tuple(reversed(comps))))
    return tuple(out), fast


@cache
def _compiled(resource_type: str) -> tuple[_Compiled, ...]:
    root = node_for_type(resource_type)
    if root is None:
        return ()
    names = frozenset({resource_type, "Resource", "DomainResource"})
    out: list[_Compiled] = []
    for sp in search_parameters(resource_type).values():
        if sp.expression is None:
            continue
        roots = _roots(sp.expression, root, names)
        if sp.type == "composite" and roots is None:
            roots = _composite_roots(sp, root, names)
        if sp.type == "composite":
            branches, fast = _compile_composite(sp, root, names)
            c = _Compiled(sp.code, sp.type, _nothing, _no_values, fast, branches, roots)
            c.emit = _composite_emitter(c, sp, root, names)
            c.parts = ((None, c.emit),)
            out.append(c)
        elif sp.type in _NORMALISERS:
            extract, fast = _compile_expr(sp.expression, root, names)
            normalise = _NORMALISERS[sp.type]
            emit, parts = _compile_emit_parts(sp.expression, root, names, sp.type, sp.code)
            out.append(
                _Compiled(sp.code, sp.type, extract, normalise, fast, (), roots, emit, parts)
            )
    return tuple(out)


@dataclass(slots=True)
class _Shape:
    """What extract_index does for resources of one type with one set of top-level keys.

    Attributes:
        params: The compiled parameters that can take values from such a resource.
        emitters: Their emitters, run in turn (then duplicates dropped) until the shape
            has been seen ``_FUSE_AFTER`` times.
        keys: The top-level keys.
        seen: How many resources of this shape have been indexed.
        fused: From then on, one generated function with every parameter's loops inline,
            reading only the keys present (:func:`_fuse`).
    """

    params: tuple[_Compiled, ...]
    emitters: tuple[Emitter, ...]
    keys: frozenset[str]
    seen: int = 0
    fused: Emitter | None = None


# (resource type, its top-level keys) -> its shape. Resources of one feed share a handful
# of shapes; the bound only stops unusual traffic growing it.
_ACTIVE: dict[tuple[str, frozenset[str]], _Shape] = {}
_ACTIVE_LIMIT = 4096
#: A shape's fused function is compiled (about half a millisecond, some 4 us saved a
#: resource) once this many resources of it have been indexed the slower way: one-off
#: shapes never pay for it, and a feed's few shapes soon do.
_FUSE_AFTER = 64
#: At most this many shapes have a fused function (about 20 KB each) between two clears
#: of ``_ACTIVE``.
_FUSED_LIMIT = 256
_fused_count = 0


def _plan(rtype: str, resource: dict[str, Any]) -> _Shape:
    """The shape of this resource: the compiled parameters of ``rtype`` that can take
    values from it, and their emitters."""
    global _fused_count
    key = (rtype, frozenset(resource))
    found = _ACTIVE.get(key)
    if found is None:
        keys = key[1]
        params = tuple(
            c for c in _compiled(rtype) if c.roots is None or not c.roots.isdisjoint(keys)
        )
        found = _Shape(params, tuple(c.emit for c in params if c.emit is not None), keys)
        if len(_ACTIVE) >= _ACTIVE_LIMIT:
            _ACTIVE.clear()
            _fused_count = 0
        _ACTIVE[key] = found
    return found


def _active(rtype: str, resource: dict[str, Any]) -> tuple[_Compiled, ...]:
    """The compiled parameters of ``rtype`` that can take values from this resource."""
    return _plan(rtype, resource).params


def _dedupe_tail(out: list[Any], start: int) -> int:
    """Drop exact duplicates from ``out[start:]`` (first seen kept); the new length.

    Short tails are compared pairwise (``in`` compares as a dict's keys do: identity, then
    ``==``), longer ones through ``dict.fromkeys``.
    """
    tail = out[start:]
    if len(tail) <= 6:
        kept = []
        for value in tail:
            if value not in kept:
                kept.append(value)
    else:
        kept = list(dict.fromkeys(tail))
    if len(kept) != len(tail):
        out[start:] = kept
    return len(out)


def _first_key(c: _Compiled, keys: frozenset[str]) -> str | None:
    """The one top-level key a parameter's only branch starts from, if it is a plan of
    loops and that key is in ``keys``; else ``None``."""
    if len(c.parts) != 1 or c.parts[0][0] is None:
        return None
    op, alts = c.parts[0][0][0]
    if op != "hop":
        return None
    present = [alt[0] for alt in alts if alt[0] in keys]
    return present[0] if len(present) == 1 else None


_BOOKKEEPING = [
    "m = len(out)",
    "if m - n == 2:",
    "    if out[n] == out[m - 1]:",
    "        del out[n + 1]",
    "        m -= 1",
    "elif m - n > 2:",
    "    m = _dedupe_tail(out, n)",
    "n = m",
]


def _fuse(keys: frozenset[str], params: tuple[_Compiled, ...]) -> Emitter:
    """One function ``fused(resource, out)`` giving what the parameters' emitters give, in
    order and without duplicates, for a resource with exactly the top-level ``keys``.

    Each parameter's loops are generated inline (branches that start from an absent key
    are left out, present ones are read without a test); other branches (composites,
    existence tests) call their emitter. Values of two parameters never compare equal
    (the parameter code is their first field), so duplicates are dropped within each
    parameter that gave more than one value, keeping the first of equal ones as
    ``dict.fromkeys`` does. Consecutive parameters that start from the same key (the five
    of ``meta``, those of ``address`` or ``name``) read it once: when it holds one value
    (an object, or an array of one), each parameter continues from that value in turn,
    which gives the values in the same order as looping over it once per parameter
    (otherwise each parameter's own emitter runs).
    """
    env: dict[str, Any] = {"_dedupe_tail": _dedupe_tail}
    lines = ["def fused(x0, out):", "    n = 0"]
    i = 0
    while i < len(params):
        key = _first_key(params[i], keys)
        j = i + 1
        while key is not None and j < len(params) and _first_key(params[j], keys) == key:
            j += 1
        if j - i > 1:
            assert key is not None
            shared: list[str] = []
            alone: list[str] = []
            for c in params[i:j]:
                ops, sink_for = c.parts[0]
                assert ops is not None
                shared += loop_lines(ops, env, sink_for, "        ", keys, (key, "x2"))
                shared += ["        " + line for line in _BOOKKEEPING]
                name = f"E{len(env)}"
                env[name] = c.emit
                alone += [f"        {name}(x0, out)", *("        " + x for x in _BOOKKEEPING)]
            lines += [
                f"    v1 = x0[{key!r}]",
                "    x2 = v1[0] if type(v1) is list and len(v1) == 1 else v1",
                "    if type(x2) is not list:",
                "      if x2 is not None:",
                *shared,
                "    else:",
                *alone,
            ]
            i = j
            continue
        c = params[i]
        body: list[str] = []
        for ops, what in c.parts:
            if ops is None:
                name = f"E{len(env)}"
                env[name] = what
                body.append(f"    {name}(x0, out)")
            else:
                body += loop_lines(ops, env, what, "    ", keys)
        if body:
            lines += body
            lines += ["    " + line for line in _BOOKKEEPING]
        i += 1
    exec("\n".join(lines), env)  # noqa: S102 - source generated from the packaged model only
    fused: Emitter = env["fused"]
    return fused


def _nothing(obj: Any) -> list[Item]:
    return []


def _no_values(p: str, items: list[Item], out: list[Any]) -> None:
    return None


def extract_index(resource: dict[str, Any]) -> list[IndexValue]:
    """Return the search index values of a resource (see the module docstring).

    Args:
        resource: A resource as parsed from JSON (ideally already validated).

    Returns:
        Index values for every search parameter of the resource's type that has values,
        without exact duplicates. Unknown resource types give an empty list.
    """
    global _fused_count
    rtype = resource.get("resourceType")
    if type(rtype) is not str:
        return []
    out: list[Any] = []
    shape = _plan(rtype, resource)
    fused = shape.fused
    if fused is None:
        shape.seen += 1
        if shape.seen >= _FUSE_AFTER and _fused_count < _FUSED_LIMIT:
            _fused_count += 1
            fused = shape.fused = _fuse(shape.keys, shape.params)
    if fused is not None:
        fused(resource, out)
        return out
    for emit in shape.emitters:
        emit(resource, out)
    return list(dict.fromkeys(out))  # drop exact duplicates, keep first-seen order


def extract_params(resource: dict[str, Any], params: Iterable[Any]) -> list[Any]:
    """Index values of ``resource`` for the compiled parameters ``params`` by the items
    path (each parameter's extractor, then its normaliser): the reference that
    :func:`extract_index`'s emitters are tested against."""
    out: list[Any] = []
    for c in params:
        if c.composite:
            for base, comps in c.composite:
                items = base(resource)
                if items:
                    _composite(c.code, items, comps, resource, out)
            continue
        items = c.extract(resource)
        if items:
            c.normalise(c.code, items, out)
    return list(dict.fromkeys(out))  # drop exact duplicates, keep first-seen order


def _composite(
    code: str,
    items: list[Item],
    comps: tuple[_Component, ...],
    resource: dict[str, Any],
    out: list[Any],
) -> None:
    for value, _leaf in items:
        parts: list[list[Any]] = []
        for norm, cx, on_root in comps:
            vals: list[Any] = []
            norm(code, cx(resource if on_root else value), vals)
            if not vals:
                break
            parts.append(vals)
        else:
            parts.reverse()
            out.extend(CompositeValue(code, combo) for combo in product(*parts))


def compile_stats() -> dict[str, int]:
    """Compile every R4 search parameter and count fast-path versus fhirpathpy ones.

    Returns:
        ``{"total": n, "fast": n, "fallback": n, "skipped": n}`` over (resource type,
        parameter) pairs; ``skipped`` are those without an expression or of type
        ``special``.
    """
    from sharedcare.fhir.definitions import resource_types

    total = fast = skipped = 0
    for rtype in resource_types():
        compiled = _compiled(rtype)
        n = len(search_parameters(rtype))
        total += n
        skipped += n - len(compiled)
        fast += sum(1 for c in compiled if c.fast)
    return {"total": total, "fast": fast, "fallback": total - skipped - fast, "skipped": skipped}
