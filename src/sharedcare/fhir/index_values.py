"""Search index values (one ``NamedTuple`` per parameter type) and their normalisers.

The value kinds are described in :mod:`sharedcare.fhir.search_index`, which re-exports them.
A normaliser turns the ``(value, Leaf)`` items a parameter's expression gives into index
values (https://hl7.org/fhir/R4/search.html#ptypes).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple

from sharedcare.fhir.internals.pathcompile import Item
from sharedcare.fhir.internals.primitives import DATE_MAX, DATE_MIN, date_range
from sharedcare.fhir.references import CONTAINED, parse_reference


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
    if tv is int:
        return Decimal(value)  # the same Decimal as Decimal(str(value)), without the str
    if tv is not float:
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
