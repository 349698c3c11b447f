"""Spec: uri search parameters (https://hl7.org/fhir/R4/search.html#uri)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.spec.search.cases import Case, check

TITLE = "URI parameters"
INTRO = (
    "A uri matches exactly (case-sensitive, no normalisation). `:below` matches the given "
    "URI and everything under it; `:above` matches the URI and each of its parents, so "
    "`url:above=.../ValueSet/alpha/beta/_history/2` finds the definitions it derives from."
)
BASE = "http://example.org/fhir/ValueSet"


def _valueset(vid: str, url: str | None) -> dict[str, Any]:
    vs: dict[str, Any] = {"resourceType": "ValueSet", "id": vid, "status": "active"}
    if url:
        vs["url"] = url
    return vs


DATA = [
    _valueset("alpha", f"{BASE}/alpha"),
    _valueset("beta", f"{BASE}/alpha/beta"),
    _valueset("other", "http://other.org/vs"),
    _valueset("nourl", None),
]

CASES = [
    Case(f"ValueSet?url={BASE}/alpha", ("alpha",), "exact"),
    Case(f"ValueSet?url={BASE}", (), "no prefix matching without a modifier"),
    Case(f"ValueSet?url={BASE}/ALPHA", (), "case-sensitive"),
    Case("ValueSet?url:below=http://example.org/fhir", ("alpha", "beta"), ":below"),
    Case(f"ValueSet?url:below={BASE}/alpha/", ("alpha", "beta"), ":below, trailing slash"),
    Case("ValueSet?url:below=http://EXAMPLE.org/fhir", (), ":below is case-sensitive too"),
    Case("ValueSet?url:below=http://example.org/fhir/ValueSet/alph_", (), "no wildcards"),
    Case(f"ValueSet?url:above={BASE}/alpha/beta/_history/2", ("alpha", "beta"), ":above"),
    Case(f"ValueSet?url={BASE}/alpha,http://other.org/vs", ("alpha", "other"), "comma: OR"),
    Case("ValueSet?url:missing=true", ("nourl",), ":missing"),
    Case("ValueSet?url:contains=alpha", 400, "string modifiers do not apply"),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_uri(searchable: TestClient, case: Case) -> None:
    check(searchable, case)
