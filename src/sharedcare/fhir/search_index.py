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

import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import cache
from itertools import product
from typing import Any, NamedTuple

from sharedcare.fhir.definitions import SearchParam, node_for_type, search_parameters
from sharedcare.fhir.definitions.model import ObjectNode
from sharedcare.fhir.internals.pathcompile import (
    Extractor,
    Item,
    NotCompilable,
    compile_branch,
    fhirpath_fallback,
    root_keys,
    split_top,
)
from sharedcare.fhir.internals.primitives import DATE_MAX, DATE_MIN, date_range
from sharedcare.fhir.references import CONTAINED, parse_reference

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


class StringValue(NamedTuple):
    """A string parameter value (https://hl7.org/fhir/R4/search.html#string)."""

    param: str
    normalized: str
    exact: str


class TokenValue(NamedTuple):
    """A token parameter value (https://hl7.org/fhir/R4/search.html#token)."""

    param: str
    system: str | None
    code: str | None
    text: str | None


class ReferenceValue(NamedTuple):
    """A reference parameter value (https://hl7.org/fhir/R4/search.html#reference)."""

    param: str
    target_type: str | None
    target_id: str | None
    version: str | None
    url: str | None


class DateValue(NamedTuple):
    """A date parameter value as an epoch-microsecond ``[low, high)`` range
    (https://hl7.org/fhir/R4/search.html#date)."""

    param: str
    low: int
    high: int


class NumberValue(NamedTuple):
    """A number parameter value (https://hl7.org/fhir/R4/search.html#number)."""

    param: str
    value: Decimal


class QuantityValue(NamedTuple):
    """A quantity parameter value (https://hl7.org/fhir/R4/search.html#quantity)."""

    param: str
    value: Decimal
    system: str | None
    code: str | None
    unit: str | None


class UriValue(NamedTuple):
    """A uri parameter value (https://hl7.org/fhir/R4/search.html#uri)."""

    param: str
    uri: str


class CompositeValue(NamedTuple):
    """A composite parameter value (https://hl7.org/fhir/R4/search.html#composite)."""

    param: str
    components: tuple[IndexValue, ...]


IndexValue = (
    StringValue
    | TokenValue
    | ReferenceValue
    | DateValue
    | NumberValue
    | QuantityValue
    | UriValue
    | CompositeValue
)

_NAME_PARTS = ("family", "given", "prefix", "suffix", "text")
_ADDRESS_PARTS = ("line", "city", "district", "state", "postalCode", "country", "text")
_URI_TYPES = frozenset({"uri", "url", "canonical", "oid", "uuid"})
_QUANTITY_TYPES = frozenset(
    {"Quantity", "Age", "Count", "Distance", "Duration", "SimpleQuantity", "MoneyQuantity"}
)


def normalize_string(text: str) -> str:
    """Lower-case and accent-fold text for string matching."""
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def _infer(value: Any) -> str:
    """Guess the FHIR type of a fallback (fhirpathpy) result from its JSON shape."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "decimal"
    if isinstance(value, str):
        return "string"
    if not isinstance(value, dict):
        return ""
    if "resourceType" in value:
        return "Resource"
    if "coding" in value:
        return "CodeableConcept"
    if "reference" in value or ("identifier" in value and "display" in value):
        return "Reference"
    if "family" in value or "given" in value:
        return "HumanName"
    if "line" in value or "city" in value or "postalCode" in value:
        return "Address"
    if "start" in value or "end" in value:
        return "Period"
    if "low" in value or "high" in value:
        return "Range"
    if "value" in value and ("unit" in value or "code" in value):
        return "Quantity"
    if "code" in value:
        return "Coding"
    if "system" in value and "value" in value:
        return "Identifier"
    if "event" in value or "repeat" in value:
        return "Timing"
    return ""


def _decimal(value: Any) -> Decimal | None:
    """JSON numbers (and fhirpathpy Decimals) to finite Decimals; anything else to None."""
    tv = type(value)
    if tv is Decimal:
        return value if value.is_finite() else None
    if tv is not int and tv is not float:
        return None
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        return None
    return d if d.is_finite() else None


def _s(value: Any) -> str | None:
    return value if type(value) is str else None


def _list(value: Any) -> list[Any]:
    return value if type(value) is list else []


def _strings(p: str, items: list[Item], out: list[Any]) -> None:
    for value, leaf in items:
        tc = leaf.type_code or _infer(value)
        if type(value) is str:
            out.append(StringValue(p, normalize_string(value), value))
        elif type(value) is dict:
            parts = _NAME_PARTS if tc == "HumanName" else _ADDRESS_PARTS if tc == "Address" else ()
            for part in parts:
                v = value.get(part)
                for s in v if type(v) is list else (v,):
                    if type(s) is str:
                        out.append(StringValue(p, normalize_string(s), s))


def _text(value: Any) -> str | None:
    return normalize_string(value) if type(value) is str else None


def _coding(p: str, c: Any, out: list[Any]) -> None:
    if type(c) is dict:
        system, code = _s(c.get("system")), _s(c.get("code"))
        if code is not None or system is not None:
            out.append(TokenValue(p, system, code, _text(c.get("display"))))


def _tokens(p: str, items: list[Item], out: list[Any]) -> None:
    for value, leaf in items:
        tv = type(value)
        if tv is str:
            out.append(TokenValue(p, leaf.system, value, None))
            continue
        if tv is bool:
            out.append(TokenValue(p, None, "true" if value else "false", None))
            continue
        if tv is not dict:
            if tv is int or tv is float:
                out.append(TokenValue(p, None, str(value), None))
            continue
        tc = leaf.type_code or _infer(value)
        if tc == "CodeableConcept":
            for c in _list(value.get("coding")):
                _coding(p, c, out)
            if type(value.get("text")) is str:
                out.append(TokenValue(p, None, None, _text(value["text"])))
        elif tc == "Coding":
            _coding(p, value, out)
        elif tc == "Identifier":
            system, code = _s(value.get("system")), _s(value.get("value"))
            if code is not None or system is not None:
                typ = value.get("type")
                text = _text(typ.get("text")) if type(typ) is dict else None
                out.append(TokenValue(p, system, code, text))
        elif tc == "ContactPoint" and type(value.get("value")) is str:
            out.append(TokenValue(p, None, value["value"], None))


def _references(p: str, items: list[Item], out: list[Any]) -> None:
    for value, leaf in items:
        if type(value) is str:
            out.append(ReferenceValue(p, None, None, None, value))
            continue
        if type(value) is not dict:
            continue
        tc = leaf.type_code or _infer(value)
        if tc == "Resource" or "resourceType" in value:
            rid = value.get("id")
            if type(rid) is str and type(value.get("resourceType")) is str:
                out.append(ReferenceValue(p, value["resourceType"], rid, None, None))
            continue
        ref = value.get("reference")
        if type(ref) is str:
            parsed = parse_reference(ref)
            if parsed is not None and parsed.kind != CONTAINED:
                rtype = parsed.resource_type or _s(value.get("type"))
                out.append(ReferenceValue(p, rtype, parsed.id, parsed.version, parsed.url))
        ident = value.get("identifier")
        if type(ident) is dict and type(ident.get("value")) is str:
            out.append(TokenValue(p + ":identifier", _s(ident.get("system")), ident["value"], None))


def _dates(p: str, items: list[Item], out: list[Any]) -> None:
    for value, leaf in items:
        if type(value) is str:
            r = date_range(value)
            if r is not None:
                out.append(DateValue(p, r[0], r[1]))
            continue
        if type(value) is not dict:
            continue
        tc = leaf.type_code or _infer(value)
        if tc == "Period":
            _period(p, value, out)
        elif tc == "Timing":
            for ev in _list(value.get("event")):
                r = date_range(ev) if type(ev) is str else None
                if r is not None:
                    out.append(DateValue(p, r[0], r[1]))
            rep = value.get("repeat")
            if type(rep) is dict and type(rep.get("boundsPeriod")) is dict:
                _period(p, rep["boundsPeriod"], out)


def _period(p: str, value: dict[str, Any], out: list[Any]) -> None:
    start, end = value.get("start"), value.get("end")
    lo = date_range(start) if type(start) is str else None
    hi = date_range(end) if type(end) is str else None
    if lo is None and hi is None:
        return
    out.append(DateValue(p, lo[0] if lo else DATE_MIN, hi[1] if hi else DATE_MAX))


def _numbers(p: str, items: list[Item], out: list[Any]) -> None:
    for value, _leaf in items:
        if type(value) is dict:  # Range (RiskAssessment.probability): its low and high
            for end in (value.get("low"), value.get("high")):
                d = _decimal(end.get("value")) if type(end) is dict else None
                if d is not None:
                    out.append(NumberValue(p, d))
            continue
        d = _decimal(value)
        if d is not None:
            out.append(NumberValue(p, d))


def _quantity(p: str, q: Any, out: list[Any]) -> None:
    if type(q) is dict:
        d = _decimal(q.get("value"))
        if d is not None:
            out.append(
                QuantityValue(p, d, _s(q.get("system")), _s(q.get("code")), _s(q.get("unit")))
            )


def _quantities(p: str, items: list[Item], out: list[Any]) -> None:
    for value, leaf in items:
        if type(value) is not dict:
            continue
        tc = leaf.type_code or _infer(value)
        if tc in _QUANTITY_TYPES:
            _quantity(p, value, out)
        elif tc == "Range":
            _quantity(p, value.get("low"), out)
            _quantity(p, value.get("high"), out)
        elif tc == "Money":
            d = _decimal(value.get("value"))
            if d is not None:
                cur = _s(value.get("currency"))
                out.append(QuantityValue(p, d, "urn:iso:std:iso:4217", cur, cur))


def _uris(p: str, items: list[Item], out: list[Any]) -> None:
    for value, _leaf in items:
        if type(value) is str:
            out.append(UriValue(p, value))


Normaliser = Callable[[str, list[Item], list[Any]], None]
_NORMALISERS: dict[str, Normaliser] = {
    "string": _strings,
    "token": _tokens,
    "reference": _references,
    "date": _dates,
    "number": _numbers,
    "quantity": _quantities,
    "uri": _uris,
}


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


def _roots(expr: str, root: ObjectNode, names: frozenset[str]) -> frozenset[str] | None:
    keys: set[str] = set()
    for branch in split_top(expr, "|"):
        found = root_keys(branch, root, names)
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
        if sp.type == "composite":
            branches, fast = _compile_composite(sp, root, names)
            out.append(_Compiled(sp.code, sp.type, _nothing, _no_values, fast, branches, roots))
        elif sp.type in _NORMALISERS:
            extract, fast = _compile_expr(sp.expression, root, names)
            out.append(_Compiled(sp.code, sp.type, extract, _NORMALISERS[sp.type], fast, (), roots))
    return tuple(out)


# (resource type, its top-level keys) -> the parameters that can have values. Resources of
# one feed share a handful of shapes; the bound only stops unusual traffic growing it.
_ACTIVE: dict[tuple[str, frozenset[str]], tuple[_Compiled, ...]] = {}
_ACTIVE_LIMIT = 4096


def _active(rtype: str, resource: dict[str, Any]) -> tuple[_Compiled, ...]:
    """The compiled parameters of ``rtype`` that can take values from this resource."""
    key = (rtype, frozenset(resource))
    found = _ACTIVE.get(key)
    if found is None:
        keys = key[1]
        found = tuple(
            c for c in _compiled(rtype) if c.roots is None or not c.roots.isdisjoint(keys)
        )
        if len(_ACTIVE) >= _ACTIVE_LIMIT:
            _ACTIVE.clear()
        _ACTIVE[key] = found
    return found


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
    return extract_params(resource, _active(rtype, resource))


def extract_params(resource: dict[str, Any], params: Iterable[Any]) -> list[Any]:
    """Index values of ``resource`` for the compiled parameters ``params`` (see
    :func:`extract_index`, which passes those whose root elements are present)."""
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
