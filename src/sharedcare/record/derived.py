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
"""

from __future__ import annotations

from functools import cache

from sharedcare.fhir.definitions import SearchParam, search_parameters

__all__ = ["derived_from", "stored_codes"]


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


def derived_from(resource_type: str, code: str) -> tuple[str, ...]:
    """The parameters whose rows make up ``code``'s values, or ``()`` if it stores its own.

    Args:
        resource_type: The resource type searched.
        code: The search parameter code, e.g. ``combo-code``.
    """
    return _derived(resource_type).get(code, ())


def stored_codes(resource_type: str, code: str) -> tuple[str, ...]:
    """The parameter codes whose index rows a search on ``code`` reads (itself if stored)."""
    return _derived(resource_type).get(code) or (code,)
