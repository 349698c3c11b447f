"""Handlers of one search index value at a position whose FHIR type is known.

``sink(ptype, code, leaf)`` returns ``sink(value, out)`` doing what the normaliser of
``ptype`` (:mod:`sharedcare.fhir.index_values`) does for the one item ``(value, leaf)``: the
branch for the position's FHIR type is chosen once, when the parameter is compiled; any
other value goes to the normaliser itself, so the values are the same
(``tests/unit/fhir/test_fhir_index_plans.py`` compares them). The handlers build the value
tuples with ``tuple.__new__`` (what a ``NamedTuple``'s generated ``__new__`` does, without
its extra Python frame) and remember the ranges of date/time texts (``memo_date_range``).
The generated extractors of :func:`~sharedcare.fhir.internals.pathcompile.compile_emitter`
(and the fused functions of ``search_index``) call these directly, without building
``(value, Leaf)`` items.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sharedcare.fhir.index_values import (
    _ADDRESS_PARTS,
    _NAME_PARTS,
    _NORMALISERS,
    _QUANTITY_TYPES,
    DateValue,
    Normaliser,
    QuantityValue,
    ReferenceValue,
    StringValue,
    TokenValue,
    UriValue,
    _dates,
    _decimal,
    _references,
    _s,
    _tokens,
    normalize_string,
)
from sharedcare.fhir.internals.pathcompile import Leaf, Sink
from sharedcare.fhir.internals.primitives import DATE_MAX, DATE_MIN, memo_date_range
from sharedcare.fhir.references import CONTAINED, parse_reference

_new = tuple.__new__


def _norm(text: str) -> str:
    return text.lower() if text.isascii() else normalize_string(text)


def _generic_sink(normalise: Normaliser, p: str, leaf: Leaf) -> Sink:
    def sink(value: Any, out: list[Any]) -> None:
        normalise(p, [(value, leaf)], out)

    return sink


def _token_sink(p: str, leaf: Leaf) -> Sink | None:
    tc = leaf.type_code
    generic = _generic_sink(_tokens, p, leaf)
    if tc == "CodeableConcept":

        def concept(value: Any, out: list[Any]) -> None:
            if type(value) is not dict:
                return generic(value, out)
            coding = value.get("coding")
            if type(coding) is list:
                for c in coding:
                    if type(c) is dict:
                        system, code = c.get("system"), c.get("code")
                        system = system if type(system) is str else None
                        code = code if type(code) is str else None
                        if code is not None or system is not None:
                            d = c.get("display")
                            text = _norm(d) if type(d) is str else None
                            out.append(_new(TokenValue, (p, system, code, text)))
            text = value.get("text")
            if type(text) is str:
                out.append(_new(TokenValue, (p, None, None, _norm(text))))
            return None

        return concept
    if tc == "Identifier":

        def identifier(value: Any, out: list[Any]) -> None:
            if type(value) is not dict:
                return generic(value, out)
            system, code = value.get("system"), value.get("value")
            system = system if type(system) is str else None
            code = code if type(code) is str else None
            if code is not None or system is not None:
                typ = value.get("type")
                text = typ.get("text") if type(typ) is dict else None
                text = _norm(text) if type(text) is str else None
                out.append(_new(TokenValue, (p, system, code, text)))
            return None

        return identifier
    if tc == "Coding":

        def coding(value: Any, out: list[Any]) -> None:
            if type(value) is not dict:
                return generic(value, out)
            system, code = value.get("system"), value.get("code")
            system = system if type(system) is str else None
            code = code if type(code) is str else None
            if code is not None or system is not None:
                d = value.get("display")
                text = _norm(d) if type(d) is str else None
                out.append(_new(TokenValue, (p, system, code, text)))
            return None

        return coding
    if tc == "ContactPoint":

        def contact(value: Any, out: list[Any]) -> None:
            if type(value) is not dict:
                return generic(value, out)
            v = value.get("value")
            if type(v) is str:
                out.append(_new(TokenValue, (p, None, v, None)))
            return None

        return contact
    if tc in ("code", "string", "id", "uri"):
        system = leaf.system

        def plain(value: Any, out: list[Any]) -> None:
            if type(value) is str:
                out.append(_new(TokenValue, (p, system, value, None)))
            else:
                generic(value, out)

        return plain
    return None


def _reference_sink(p: str, leaf: Leaf) -> Sink | None:
    if leaf.type_code != "Reference":
        return None
    generic = _generic_sink(_references, p, leaf)
    ident_param = p + ":identifier"

    def reference(value: Any, out: list[Any]) -> None:
        if type(value) is not dict or "resourceType" in value:
            return generic(value, out)
        ref = value.get("reference")
        if type(ref) is str:
            parsed = parse_reference(ref)
            if parsed is not None and parsed.kind != CONTAINED:
                rtype = parsed.resource_type or _s(value.get("type"))
                out.append(_new(ReferenceValue, (p, rtype, parsed.id, parsed.version, parsed.url)))
        ident = value.get("identifier")
        if type(ident) is dict and type(ident.get("value")) is str:
            system = _s(ident.get("system"))
            out.append(_new(TokenValue, (ident_param, system, ident["value"], None)))
        return None

    return reference


def _date_sink(p: str, leaf: Leaf) -> Sink | None:
    generic = _generic_sink(_dates, p, leaf)
    if leaf.type_code == "Period":

        def period(value: Any, out: list[Any]) -> None:
            if type(value) is not dict:
                return generic(value, out)
            start, end = value.get("start"), value.get("end")
            lo = memo_date_range(start) if type(start) is str else None
            hi = memo_date_range(end) if type(end) is str else None
            if lo is not None or hi is not None:
                low = lo[0] if lo else DATE_MIN
                out.append(_new(DateValue, (p, low, hi[1] if hi else DATE_MAX)))
            return None

        return period
    if leaf.type_code not in ("date", "dateTime", "instant"):
        return None

    def date(value: Any, out: list[Any]) -> None:
        if type(value) is not str:
            return generic(value, out)
        r = memo_date_range(value)
        if r is not None:
            out.append(_new(DateValue, (p, r[0], r[1])))
        return None

    return date


def _string_sink(p: str, leaf: Leaf) -> Sink | None:
    tc = leaf.type_code
    if tc not in ("string", "markdown", "HumanName", "Address"):
        return None
    parts = _NAME_PARTS if tc == "HumanName" else _ADDRESS_PARTS if tc == "Address" else ()

    def string(value: Any, out: list[Any]) -> None:
        if type(value) is str:
            out.append(_new(StringValue, (p, _norm(value), value)))
        elif type(value) is dict:
            for part in parts:
                v = value.get(part)
                if v is None:
                    continue
                for s in v if type(v) is list else (v,):
                    if type(s) is str:
                        out.append(_new(StringValue, (p, _norm(s), s)))

    return string


def _quantity_sink(p: str, leaf: Leaf) -> Sink | None:
    if leaf.type_code not in _QUANTITY_TYPES:
        return None

    def quantity(value: Any, out: list[Any]) -> None:
        if type(value) is dict:
            d = _decimal(value.get("value"))
            if d is not None:
                system, code, unit = value.get("system"), value.get("code"), value.get("unit")
                system = system if type(system) is str else None
                code = code if type(code) is str else None
                unit = unit if type(unit) is str else None
                out.append(_new(QuantityValue, (p, d, system, code, unit)))

    return quantity


def _uri_sink(p: str, leaf: Leaf) -> Sink:
    def uri(value: Any, out: list[Any]) -> None:
        if type(value) is str:
            out.append(_new(UriValue, (p, value)))

    return uri


_SINKS: dict[str, Callable[[str, Leaf], Sink | None]] = {
    "string": _string_sink,
    "token": _token_sink,
    "reference": _reference_sink,
    "date": _date_sink,
    "quantity": _quantity_sink,
    "uri": _uri_sink,
}


def sink(ptype: str, p: str, leaf: Leaf) -> Sink:
    """The handler of one value of parameter ``p`` (of ``ptype``) at a position ``leaf``."""
    make = _SINKS.get(ptype)
    found = make(p, leaf) if make is not None and leaf.type_code else None
    return found if found is not None else _generic_sink(_NORMALISERS[ptype], p, leaf)
