"""The parsed form of a FHIR search (https://hl7.org/fhir/R4/search.html)."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_COUNT = 20
MAX_COUNT = 1000
#: Most resources one page may add through ``_include`` / ``_revinclude``.
MAX_INCLUDES = 1000


@dataclass(slots=True)
class Clause:
    """One search parameter occurrence: its values are ORed; clauses are ANDed.

    Attributes:
        code: Parameter code (``birthdate``), or ``_has`` for a reverse chain.
        type: The parameter's type (``token``, ``date`` ...; ``_has`` for a reverse chain).
        modifier: The modifier after ``:``, if any (for a chain, the target type).
        values: The comma-separated values, unescaped.
        name: The parameter name as written, for the self link.
        chain: For a chained parameter (https://hl7.org/fhir/R4/search.html#chaining):
            one inner clause per possible target type.
        has: For ``_has`` (https://hl7.org/fhir/R4/search.html#has): the referring type,
            its reference parameter and the clause the referring resources must match.
    """

    code: str
    type: str
    modifier: str | None
    values: list[str]
    name: str = ""
    chain: list[tuple[str, Clause]] = field(default_factory=list)
    has: tuple[str, str, Clause] | None = None


@dataclass(frozen=True, slots=True)
class Include:
    """One ``_include`` / ``_revinclude`` (https://hl7.org/fhir/R4/search.html#include).

    Attributes:
        source: The type holding the reference.
        param: The reference parameter, or ``None`` for ``*`` (every reference parameter).
        target: Restrict to this target type, if given.
        iterate: ``:iterate`` - also apply to included resources, repeatedly.
        reverse: ``_revinclude`` rather than ``_include``.
    """

    source: str
    param: str | None
    target: str | None
    iterate: bool
    reverse: bool

    def text(self) -> str:
        """The value as written in a query."""
        value = f"{self.source}:{self.param or '*'}"
        return value + (f":{self.target}" if self.target else "")

    def name(self) -> str:
        """The parameter name as written in a query."""
        return ("_revinclude" if self.reverse else "_include") + (
            ":iterate" if self.iterate else ""
        )


@dataclass(slots=True)
class SearchRequest:
    """A parsed search: the filter, then the result parameters."""

    resource_type: str
    clauses: list[Clause] = field(default_factory=list)
    count: int = DEFAULT_COUNT
    offset: int = 0
    cursor: str | None = None
    sort: list[tuple[str, bool]] = field(default_factory=list)
    total: str = "accurate"
    total_given: bool = False
    summary: str | None = None
    elements: list[str] = field(default_factory=list)
    includes: list[Include] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    def used_query(self) -> list[tuple[str, str]]:
        """The parameters actually applied, for the bundle's self link (no paging state)."""
        used = [(c.name, ",".join(_escape(v) for v in c.values)) for c in self.clauses]
        if self.sort:
            used.append(("_sort", ",".join(("-" if d else "") + c for c, d in self.sort)))
        used += [(inc.name(), inc.text()) for inc in self.includes]
        if self.summary:
            used.append(("_summary", self.summary))
        if self.elements:
            used.append(("_elements", ",".join(self.elements)))
        if self.total_given:
            used.append(("_total", self.total))
        used.append(("_count", str(self.count)))
        return used


def _escape(value: str) -> str:
    # Values keep their other escapes (``\\|``, ``\\$``); only commas were unescaped.
    return value.replace(",", "\\,")
