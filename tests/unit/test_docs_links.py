"""Every relative link in the README, GLOSSARY and docs/ points at a file that exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted(
    [ROOT / "README.md", ROOT / "GLOSSARY.md", ROOT / "CONTRIBUTING.md", *ROOT.glob("docs/**/*.md")]
)
# [text](target) outside code spans; the target up to a space, ')' or '#'.
LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)\s]*)?\)")
CODE = re.compile(r"```.*?```|`[^`\n]*`", re.DOTALL)


def _relative_links(page: Path) -> list[str]:
    text = CODE.sub("", page.read_text(encoding="utf-8"))
    return [
        target
        for target in LINK.findall(text)
        if not re.match(r"^[a-z][a-z0-9+.-]*:", target)  # http:, https:, mailto: …
    ]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    missing = [t for t in _relative_links(page) if not (page.parent / t).exists()]
    assert not missing, f"{page.relative_to(ROOT)} links to missing files: {missing}"


def test_the_link_finder_sees_links_and_skips_code_and_urls(tmp_path: Path) -> None:
    # Guard the guard: an ordinary link is found; code spans and absolute URLs are not.
    page = tmp_path / "page.md"
    page.write_text("See [a](b/c.md#x), `[no](code.md)` and [web](https://example.org).\n")
    assert _relative_links(page) == ["b/c.md"]
