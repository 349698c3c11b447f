"""Search parameters whose values are exactly the union of other parameters' values.

R4 defines some parameters as the union of others on the same resource type, e.g.
``Observation.combo-code`` is ``Observation.code | Observation.component.code``, which is
``code`` ∪ ``component-code``. Storing their index rows again would duplicate rows the
record already holds, so the store writes **no rows** for such a *derived* parameter and a
search on it reads the rows of the parameters it is made of (``param IN (…)``). Matches,
``:missing`` and sorting see exactly the values the parameter would have had, because the
FHIRPath union (https://hl7.org/fhir/R4/fhirpath.html#union) of the branches is the set of
their values.

A parameter is derived only when its ``|`` branches are, as written in the official
definitions, exactly the union of the branches of two or more other parameters of the same
type (and, for composites, with the same components), so the rule follows the definitions and
needs no list kept by hand.

A reference parameter is also derived when each of its branches is another reference
parameter's branch narrowed to one target type, ``X.where(resolve() is T)`` where the other
is exactly ``X`` (``Observation.patient`` is ``Observation.subject.where(resolve() is
Patient)``; 47 parameters in R4). Its values are the other's rows whose ``target_type`` is
``T``: the index extraction takes a row's type from the reference, else from
``Reference.type``, which is what ``resolve() is T`` tests
(``sharedcare.fhir.references.reference_type``). Its ``:identifier`` rows stay stored (a
logical reference's token row does not record the type).

A composite is a *pair* (:func:`composite_pair`) when its expression is the resource type
itself and each component selects, from the resource, exactly the values of another stored
parameter of the component's type (``Observation.code-value-quantity``: ``code`` and
``value.ofType(Quantity)``, which are ``code`` and ``value-quantity``). Its combinations are
then every pair of those two parameters' values on the same resource, so it stores no rows: a
search matches a resource with a row of the first parameter matching the first component
and a row of the second matching the second (``sharedcare.record.search.composite``).
Components based on an element that repeats (``Observation.component``) are not pairs: both
values must come from the same element.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache

from sharedcare.fhir.definitions import SearchParam, search_parameters

__all__ = [
    "codes_to",
    "composite_pair",
    "composite_sources",
    "derived_from",
    "narrowed_from",
    "stored_codes",
    "target_filter",
]

_NARROWED = re.compile(r"^(.*)\.where\(resolve\(\) is ([A-Za-z]+)\)$")
_OF_TYPE = re.compile(r"^(.*)\.ofType\(([A-Za-z]+)\)$")
#: FHIR types whose values give no index values of a parameter type: a parameter branch
#: ``X.ofType(T)`` with such a ``T`` adds nothing to the parameter's values.
#: ``value-quantity`` is ``value.ofType(Quantity) | value.ofType(SampledData)``, and the
#: quantity normaliser indexes the Quantity types, Range and Money only ("SampledData is not
#: indexed", ``sharedcare.fhir.search_index``; ``tests/unit/record/test_composite_pairs_rule.py``
#: checks it on an Observation), so ``value-quantity``'s values are exactly those of
#: ``value.ofType(Quantity)``. Were SampledData indexed, ``code-value-quantity`` would not be
#: a pair and would keep its rows.
_UNINDEXED: dict[str, frozenset[str]] = {"quantity": frozenset({"SampledData"})}
#: The component types the search compiler can pair (``sharedcare.record.search.composite``).
_PAIR_TYPES = frozenset({"token", "quantity"})


def _branches(expression: str) -> frozenset[str]:
    """The top-level ``|`` branches of a FHIRPath expression (outside brackets and quotes)."""
    parts: list[str] = []
    depth = 0
    quote: str | None = None
    current: list[str] = []
    for ch in expression:
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'`":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "|" and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(ch)
    parts.append("".join(current).strip())
    return frozenset(_unwrap(p) for p in parts if p)


def _unwrap(branch: str) -> str:
    """``(a.b)`` and ``a.b`` are the same branch."""
    while branch.startswith("(") and branch.endswith(")") and _balanced(branch[1:-1]):
        branch = branch[1:-1].strip()
    return branch


def _balanced(text: str) -> bool:
    depth = 0
    for ch in text:
        depth += ch == "("
        depth -= ch == ")"
        if depth < 0:
            return False
    return depth == 0


def _same_kind(a: SearchParam, b: SearchParam) -> bool:
    return a.type == b.type and a.components == b.components


@cache
def _derived(resource_type: str) -> dict[str, tuple[str, ...]]:
    params = search_parameters(resource_type)
    branches = {
        code: _branches(p.expression)
        for code, p in params.items()
        if p.expression and p.type != "special"
    }
    out: dict[str, tuple[str, ...]] = {}
    for code, own in branches.items():
        if len(own) < 2:
            continue
        param = params[code]
        parts = sorted(
            other
            for other, theirs in branches.items()
            if other != code and theirs < own and _same_kind(param, params[other])
        )
        covered: set[str] = set()
        for other in parts:
            covered |= branches[other]
        if covered == own and len(parts) >= 2:
            out[code] = tuple(parts)
    return out


@cache
def _narrowed(resource_type: str) -> dict[str, tuple[str, str]]:
    params = search_parameters(resource_type)
    branches = {
        code: _branches(p.expression)
        for code, p in params.items()
        if p.expression and p.type == "reference"
    }
    unions = _derived(resource_type)
    out: dict[str, tuple[str, str]] = {}
    for code, own in branches.items():
        matches = [_NARROWED.match(b) for b in own]
        if not own or not all(matches) or code in unions:
            continue
        targets = {m.group(2) for m in matches if m}
        inner = frozenset(m.group(1) for m in matches if m)
        bases = sorted(
            other
            for other, theirs in branches.items()
            if other != code and theirs == inner and other not in unions
        )
        if len(targets) == 1 and bases:
            out[code] = (bases[0], targets.pop())
    return out


def _yields_nothing(ptype: str, branch: str) -> bool:
    match = _OF_TYPE.match(branch)
    return match is not None and match.group(2) in _UNINDEXED.get(ptype, frozenset())


@cache
def _pairs(resource_type: str) -> dict[str, tuple[str, str]]:
    params = search_parameters(resource_type)
    unions = _derived(resource_type)
    narrowed = _narrowed(resource_type)
    stored = {
        code: _branches(p.expression)
        for code, p in params.items()
        if p.expression and p.type not in {"special", "composite"}
        if code not in unions and code not in narrowed
    }
    out: dict[str, tuple[str, str]] = {}
    for code, param in params.items():
        if param.type != "composite" or not param.expression or len(param.components) != 2:
            continue
        if _branches(param.expression) != {resource_type}:
            continue
        found: list[str] = []
        for component in param.components:
            if component.type not in _PAIR_TYPES or component.expression.startswith("%"):
                break
            wanted = frozenset(f"{resource_type}.{b}" for b in _branches(component.expression))
            same = sorted(
                other
                for other, theirs in stored.items()
                if params[other].type == component.type
                and wanted <= theirs
                and all(_yields_nothing(component.type, b) for b in theirs - wanted)
            )
            if not same:
                break
            found.append(same[0])
        else:
            out[code] = (found[0], found[1])
    return out


def composite_pair(resource_type: str, code: str) -> tuple[str, str] | None:
    """The two parameters whose values make up the composite ``code``'s combinations
    (``Observation.code-value-quantity``: ``("code", "value-quantity")``), else ``None``."""
    return _pairs(resource_type).get(code)


def composite_sources(resource_type: str, code: str) -> tuple[tuple[str, ...], ...]:
    """Where a search on the composite ``code`` finds its combinations, in the order of
    :func:`stored_codes`: ``(c,)`` for the ``idx_composite`` rows of ``c``, ``(a, b)`` for the
    pairs of ``a`` and ``b`` rows of a :func:`composite_pair`."""
    parts = _derived(resource_type).get(code) or (code,)
    return tuple(_pairs(resource_type).get(part) or (part,) for part in parts)


def narrowed_from(resource_type: str, code: str) -> tuple[str, str] | None:
    """``(base, T)`` when ``code``'s values are the rows of ``base`` whose target type is
    ``T`` (``Observation.patient``: ``("subject", "Patient")``), else ``None``."""
    return _narrowed(resource_type).get(code)


def target_filter(resource_type: str, code: str) -> str | None:
    """The target type a search on ``code`` must require of the rows it reads, if any."""
    narrowed = _narrowed(resource_type).get(code)
    return narrowed[1] if narrowed else None


def derived_from(resource_type: str, code: str) -> tuple[str, ...]:
    """The parameters whose rows make up ``code``'s values, or ``()`` if it stores its own.

    Args:
        resource_type: The resource type searched.
        code: The search parameter code, e.g. ``combo-code``.
    """
    return _derived(resource_type).get(code, ())


def stored_codes(resource_type: str, code: str) -> tuple[str, ...]:
    """The parameter codes whose index rows a search on ``code`` reads (itself if stored);
    for a narrowed reference parameter, only rows of :func:`target_filter`'s type count; a
    composite pair reads its two parameters' rows (:func:`composite_sources`)."""
    narrowed = _narrowed(resource_type).get(code)
    if narrowed:
        return (narrowed[0],)
    return tuple(c for source in composite_sources(resource_type, code) for c in source)


def codes_to(resource_type: str, codes: Iterable[str], target: str) -> list[str]:
    """The parameters whose rows hold ``codes``' references to resources of type ``target``,
    for readers that already require ``target_type = target`` (the Patient compartment)."""
    out: dict[str, None] = {}
    for code in codes:
        narrowed = target_filter(resource_type, code)
        if narrowed is None or narrowed == target:
            out.update(dict.fromkeys(stored_codes(resource_type, code)))
    return list(out)
