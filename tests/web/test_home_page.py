"""The home page in a real browser."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page, expect

from tests.web.conftest import LiveServer


def test_home_page_shows_platform_status(
    page: Page, live_server: LiveServer, screenshots: Path
) -> None:
    url = live_server.url
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    failed: list[str] = []
    page.on("requestfailed", lambda request: failed.append(request.url))
    response = page.goto(url + "/")
    assert response is not None and response.ok
    expect(page).to_have_title("Platform status – sharedcare")
    expect(page.get_by_role("heading", name="Platform status", level=1)).to_be_visible()
    figures = page.locator("[data-figure]")
    expect(figures).to_have_count(4)
    expect(page.locator('[data-figure="Patient records"]')).to_contain_text("0")
    expect(page.get_by_text("No feeds are connected yet")).to_be_visible()
    # The NHS.UK frontend stylesheet loaded and applied: the header is NHS blue.
    header_colour = page.locator("header.nhsuk-header").evaluate(
        "el => getComputedStyle(el).backgroundColor"
    )
    assert header_colour == "rgb(0, 94, 184)"
    page.screenshot(path=str(screenshots / "home.png"), full_page=True)
    assert errors == [], "JavaScript errors on the page"
    assert failed == [], "requests for page assets failed"
