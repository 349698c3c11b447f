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
:func:`compile_stats` reports how many take the fast path.
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
    fhirpath_fallback,
    is_context,
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
    normalise = _NORMALISERS.get(ptype)
    if normalise is None:
        return _emit_nothing
    emitters: list[Emitter] = []
    for branch in split_top(expr, "|"):
        try:
            em = compile_emitter(branch, ctx, names, lambda leaf: sink(ptype, code, leaf))
        except NotCompilable:
            em = None
        if em is None:
            try:
                ex = compile_branch(branch, ctx, names)[0]
            except NotCompilable:
                ex = fhirpath_fallback(branch)
            em = _items_emitter(code, ex, normalise)
        emitters.append(em)
    if len(emitters) == 1:
        return emitters[0]
    first, *rest = emitters

    def union(obj: Any, out: list[Any]) -> None:
        first(obj, out)
        for em in rest:
            em(obj, out)

    return union


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
                    out.extend(CompositeValue(code, combo) for combo in product(*parts))

    return emit


_RESOURCE_VAR = "%resource."


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
            out.append(c)
        elif sp.type in _NORMALISERS:
            extract, fast = _compile_expr(sp.expression, root, names)
            normalise = _NORMALISERS[sp.type]
            emit = _compile_emit(sp.expression, root, names, sp.type, sp.code)
            out.append(_Compiled(sp.code, sp.type, extract, normalise, fast, (), roots, emit))
    return tuple(out)


# (resource type, its top-level keys) -> the parameters that can have values and their
# emitters. Resources of one feed share a handful of shapes; the bound only stops unusual
# traffic growing it.
_Plan = tuple[tuple[_Compiled, ...], tuple[Emitter, ...]]
_ACTIVE: dict[tuple[str, frozenset[str]], _Plan] = {}
_ACTIVE_LIMIT = 4096


def _plan(rtype: str, resource: dict[str, Any]) -> _Plan:
    """The compiled parameters of ``rtype`` that can take values from this resource, and
    their emitters."""
    key = (rtype, frozenset(resource))
    found = _ACTIVE.get(key)
    if found is None:
        keys = key[1]
        params = tuple(
            c for c in _compiled(rtype) if c.roots is None or not c.roots.isdisjoint(keys)
        )
        found = params, tuple(c.emit for c in params if c.emit is not None)
        if len(_ACTIVE) >= _ACTIVE_LIMIT:
            _ACTIVE.clear()
        _ACTIVE[key] = found
    return found


def _active(rtype: str, resource: dict[str, Any]) -> tuple[_Compiled, ...]:
    """The compiled parameters of ``rtype`` that can take values from this resource."""
    return _plan(rtype, resource)[0]


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
    rtype = resource.get("resourceType")
    if type(rtype) is not str:
        return []
    out: list[Any] = []
    for emit in _plan(rtype, resource)[1]:
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
