"""The search reference page is generated from the spec tables and must be current."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_search_reference_page_is_current() -> None:
    spec = importlib.util.spec_from_file_location(
        "gen_search_docs", ROOT / "scripts/gen_search_docs.py"
    )
    assert spec is not None and spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    page = (ROOT / "docs/reference/search.md").read_text()
    assert page == generator.render(), (
        "docs/reference/search.md is stale: run python scripts/gen_search_docs.py"
    )
