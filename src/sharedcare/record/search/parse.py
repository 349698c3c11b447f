"""Parsing a FHIR search query into a :class:`SearchRequest`.

https://hl7.org/fhir/R4/search.html: repeated parameters AND, comma-separated values OR,
``\\,`` escapes a comma. Parameter names may carry a modifier (``name:exact``), a chain
(``subject:Patient.identifier``) or a reverse chain (``_has:Observation:patient:code``).
"""

from __future__ import annotations

from collections.abc import Sequence

from sharedcare.fhir.definitions import is_resource_type, search_parameters
from sharedcare.record.errors import InvalidRequest
from sharedcare.record.search.model import MAX_COUNT, Clause, Include, SearchRequest

#: Result parameters (https://hl7.org/fhir/R4/search.html#return) and paging state.
RESULT_PARAMETERS = frozenset(
    {
        "_count",
        "_offset",
        "_cursor",
        "_sort",
        "_total",
        "_summary",
        "_elements",
        "_include",
        "_revinclude",
        "_format",
        "_pretty",
    }
)
#: Accepted and ignored: they change only how the response is serialised.
_FORMAT_PARAMETERS = frozenset({"_format", "_pretty"})
_SUMMARY = frozenset({"true", "false", "text", "data", "count"})

_MODIFIERS = {
    "string": {"exact", "contains", "missing"},
    "token": {"not", "text", "missing", "below", "above", "in", "not-in", "of-type"},
    "reference": {"missing", "identifier"},
    "date": {"missing"},
    "number": {"missing"},
    "quantity": {"missing"},
    "uri": {"below", "above", "missing"},
    "composite": {"missing"},
}
_SORTABLE = frozenset({"string", "token", "date", "number", "quantity", "uri", "reference"})


def split_values(raw: str) -> list[str]:
    """Split on unescaped commas (https://hl7.org/fhir/R4/search.html#escaping).

    ``\\,`` becomes a literal comma; other escapes (``\\|``, ``\\$``, ``\\\\``) are kept for
    the value parsers, which split on ``|`` and ``$``.
    """
    values: list[str] = []
    current: list[str] = []
    escaped = False
    for ch in raw:
        if escaped:
            current.append(ch if ch == "," else "\\" + ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ",":
            values.append("".join(current))
            current = []
        else:
            current.append(ch)
    if escaped:
        current.append("\\")
    values.append("".join(current))
    return values


def split_escaped(value: str, sep: str, *, keep: bool = False) -> list[str]:
    """Split ``value`` on unescaped ``sep`` and unescape each part.

    With ``keep``, escapes of characters other than ``sep`` are kept for a later split.
    """
    parts: list[str] = []
    current: list[str] = []
    escaped = False
    for ch in value:
        if escaped:
            current.append(ch if ch == sep or not keep else "\\" + ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == sep:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def unescape(value: str) -> str:
    """Drop search escapes (``\\|`` → ``|``)."""
    return split_escaped(value, "\x00")[0] if "\\" in value else value


def _int(name: str, raw: str, low: int, high: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise InvalidRequest(f"{name} must be a whole number", expression=name) from None
    if not low <= value <= high:
        raise InvalidRequest(f"{name} must be between {low} and {high}", expression=name)
    return value


def parse_search(
    resource_type: str, params: Sequence[tuple[str, str]], *, strict: bool = False
) -> SearchRequest:
    """Parse a search query for ``resource_type``.

    Args:
        resource_type: The type searched.
        params: Query parameters in order (repeats allowed).
        strict: ``Prefer: handling=strict``: unknown parameters are errors, not ignored
            (https://hl7.org/fhir/R4/search.html#errors).

    Raises:
        InvalidRequest: For unknown parameters (strict), bad modifiers or malformed values.
    """
    if not is_resource_type(resource_type):
        raise InvalidRequest(f"{resource_type} is not an R4 resource type")
    request = SearchRequest(resource_type)
    for name, raw in params:
        base = name.partition(":")[0]
        if base in RESULT_PARAMETERS:
            _result_parameter(request, name, raw, strict)
            continue
        clause = parse_clause(resource_type, name, split_values(raw))
        if clause is None:
            if strict:
                raise InvalidRequest(
                    f"unknown search parameter {name!r} for {resource_type}; see /fhir/metadata "
                    "for the supported parameters, or drop Prefer: handling=strict to ignore it",
                    expression=name,
                )
            request.ignored.append(name)
            continue
        request.clauses.append(clause)
    if request.cursor is not None and request.offset:
        raise InvalidRequest("use either _cursor (from a paging link) or _offset, not both")
    return request


def parse_clause(resource_type: str, name: str, values: list[str]) -> Clause | None:
    """One parameter occurrence as a :class:`Clause`, or ``None`` if the name is unknown.

    Raises:
        InvalidRequest: For a known parameter with a modifier it does not support.
    """
    if name.startswith("_has:"):
        return _parse_has(resource_type, name, values)
    head, dot, rest = name.partition(".")
    code, _, modifier = head.partition(":")
    if dot:
        return _parse_chain(resource_type, name, code, modifier or None, rest, values)
    if code in {"_id", "_lastUpdated"}:
        clause = Clause(code, "token" if code == "_id" else "date", modifier or None, values, name)
    else:
        definition = search_parameters(resource_type).get(code)
        if definition is None or definition.expression is None or definition.type == "special":
            return None
        clause = Clause(code, definition.type, modifier or None, values, name)
    _check_clause(clause)
    return clause


def _parse_chain(
    resource_type: str, name: str, code: str, target: str | None, rest: str, values: list[str]
) -> Clause | None:
    """``subject:Patient.name=x`` (https://hl7.org/fhir/R4/search.html#chaining)."""
    definition = search_parameters(resource_type).get(code)
    if definition is None or definition.type != "reference":
        return None
    if target is not None and not is_resource_type(target):
        raise InvalidRequest(
            f"{code}:{target} in a chain must name a resource type, e.g. {code}:Patient.name",
            expression=name,
        )
    targets = [target] if target else list(definition.targets)
    chain = []
    for target_type in targets:
        inner = parse_clause(target_type, rest, values)
        if inner is not None:
            chain.append((target_type, inner))
    if not chain:
        return None
    return Clause(code, "reference", target, values, name, chain=chain)


def _parse_has(resource_type: str, name: str, values: list[str]) -> Clause | None:
    """``_has:Observation:patient:code=x`` (https://hl7.org/fhir/R4/search.html#has)."""
    parts = name.split(":", 3)
    if len(parts) != 4 or not all(parts[1:]):
        raise InvalidRequest(
            "_has takes the form _has:Type:reference-parameter:parameter, e.g. "
            "_has:Observation:patient:code=1234-5",
            expression=name,
        )
    _, source, ref, rest = parts
    if not is_resource_type(source):
        raise InvalidRequest(f"_has names {source!r}, which is not a resource type")
    definition = search_parameters(source).get(ref)
    if definition is None or definition.type != "reference":
        raise InvalidRequest(
            f"_has:{source}:{ref} needs a reference parameter of {source}", expression=name
        )
    if definition.targets and resource_type not in definition.targets:
        raise InvalidRequest(f"{source}.{ref} never refers to a {resource_type}", expression=name)
    inner = parse_clause(source, rest, values)
    if inner is None:
        return None
    return Clause("_has", "_has", None, values, name, has=(source, ref, inner))


def _check_clause(clause: Clause) -> None:
    allowed = _MODIFIERS.get(clause.type, {"missing"})
    if clause.code == "_id":
        allowed = {"not", "missing"}
    if clause.modifier and clause.modifier not in allowed:
        if clause.type == "reference" and is_resource_type(clause.modifier):
            return
        raise InvalidRequest(
            f"modifier :{clause.modifier} is not supported on {clause.type} parameter "
            f"{clause.code!r}; see https://hl7.org/fhir/R4/search.html#modifiers",
            expression=clause.name,
        )
    if clause.modifier == "missing" and any(v not in {"true", "false"} for v in clause.values):
        raise InvalidRequest(f"{clause.code}:missing takes true or false", expression=clause.name)
    if clause.modifier in {"in", "not-in", "below", "above"} and clause.type == "token":
        raise InvalidRequest(
            f"{clause.code}:{clause.modifier} needs terminology services, which sharedcare "
            "does not provide; list the codes instead",
            expression=clause.name,
        )


def _result_parameter(request: SearchRequest, name: str, raw: str, strict: bool) -> None:
    base, _, modifier = name.partition(":")
    if base in _FORMAT_PARAMETERS:
        return
    if base in {"_include", "_revinclude"}:
        if modifier not in {"", "iterate", "recurse"}:
            raise InvalidRequest(f"{name}: the only modifier is :iterate", expression=name)
        include = _parse_include(request.resource_type, raw, bool(modifier), base == "_revinclude")
        if include is None:
            if strict:
                raise InvalidRequest(
                    f"{name}={raw} names no reference parameter; use Type:parameter[:Target], "
                    "e.g. Observation:subject",
                    expression=name,
                )
            request.ignored.append(name)
        elif include not in request.includes:
            request.includes.append(include)
        return
    if modifier:
        raise InvalidRequest(f"{base} takes no modifier", expression=name)
    if base == "_count":
        request.count = _int("_count", raw, 0, MAX_COUNT)
    elif base == "_offset":
        request.offset = _int("_offset", raw, 0, 10_000_000)
    elif base == "_cursor":
        request.cursor = raw
    elif base == "_sort":
        request.sort = _parse_sort(request.resource_type, raw)
    elif base == "_total":
        if raw not in {"none", "estimate", "accurate"}:
            raise InvalidRequest("_total must be none, estimate or accurate", expression="_total")
        request.total, request.total_given = raw, True
    elif base == "_summary":
        if raw not in _SUMMARY:
            raise InvalidRequest(
                "_summary must be true, false, text, data or count", expression="_summary"
            )
        request.summary = None if raw == "false" else raw
    elif base == "_elements":
        elements = [e.strip() for e in raw.split(",") if e.strip()]
        for element in elements:
            if not element.replace("_", "").isalnum():
                raise InvalidRequest(
                    "_elements takes top-level element names, e.g. _elements=name,birthDate",
                    expression="_elements",
                )
        request.elements = list(dict.fromkeys(request.elements + elements))


def _parse_sort(resource_type: str, raw: str) -> list[tuple[str, bool]]:
    """``_sort=a,-b`` (https://hl7.org/fhir/R4/search.html#sort)."""
    keys = [(key.removeprefix("-"), key.startswith("-")) for key in raw.split(",") if key]
    definitions = search_parameters(resource_type)
    for key, _ in keys:
        if key in {"_id", "_lastUpdated"}:
            continue
        definition = definitions.get(key)
        if definition is None or definition.expression is None:
            raise InvalidRequest(f"cannot sort by unknown parameter {key!r}", expression="_sort")
        if definition.type not in _SORTABLE:
            raise InvalidRequest(
                f"cannot sort by {definition.type} parameter {key!r}", expression="_sort"
            )
    return keys


def _parse_include(resource_type: str, raw: str, iterate: bool, reverse: bool) -> Include | None:
    """``_include=Type:param[:Target]`` (https://hl7.org/fhir/R4/search.html#include)."""
    if raw == "*":
        return Include(resource_type, None, None, iterate, reverse) if not reverse else None
    parts = raw.split(":")
    if len(parts) not in {2, 3}:
        raise InvalidRequest(
            f"{'_revinclude' if reverse else '_include'} takes Type:parameter[:Target], e.g. "
            "Observation:subject",
            expression="_revinclude" if reverse else "_include",
        )
    source, param = parts[0], parts[1]
    target = parts[2] if len(parts) == 3 else None
    if not is_resource_type(source) or (target is not None and not is_resource_type(target)):
        return None
    if not reverse and not iterate and source != resource_type:
        raise InvalidRequest(
            f"_include={raw} starts from {source} but the search is for {resource_type}; "
            "use _include:iterate to follow references from included resources",
            expression="_include",
        )
    if param == "*":
        return Include(source, None, target, iterate, reverse)
    definition = search_parameters(source).get(param)
    if definition is None or definition.type != "reference":
        return None
    return Include(source, param, target, iterate, reverse)
