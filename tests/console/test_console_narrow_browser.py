"""The console in a narrow window (a phone, 390 px): every page fits its width; the header
wraps, so every link and Log out stay in reach, and a wide table scrolls inside itself."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from console_helpers import Console, browser_login

from appliance.browser import page_in

NARROW_PX = 390
PAGES = ("/fleet", "/results", "/results?limit=10&site=tokyo", "/cohort", "/rollouts",
         "/rollouts/r0llout1", "/pathology", "/pathology/job-1", "/dead-letters", "/tokens",
         "/account", "/docs")


@pytest.fixture(scope="module")
def narrow(console: Console, chromium_browser: Any) -> Iterator[Any]:
    """A browser page NARROW_PX wide, logged in as the operator alice."""
    with page_in(chromium_browser, NARROW_PX, 800) as opened:
        opened.goto(console.url + "/login")
        browser_login(opened)
        yield opened


@pytest.mark.parametrize("path", PAGES)
def test_every_page_fits_a_narrow_window(console: Console, narrow: Any, path: str) -> None:
    narrow.goto(console.url + path)
    assert narrow.evaluate("document.documentElement.scrollWidth") <= NARROW_PX, path
    for name in ("Tokens", "API"):  # the header's last links and Log out: in the window
        box = narrow.get_by_role("link", name=name, exact=True).bounding_box()
        assert box["x"] + box["width"] <= NARROW_PX, (path, name)
    logout = narrow.get_by_role("button", name="Log out").bounding_box()
    assert logout["x"] + logout["width"] <= NARROW_PX, path


def test_a_wide_table_scrolls_inside_itself_in_a_narrow_window(console: Console,
                                                                narrow: Any) -> None:
    narrow.goto(console.url + "/results")
    wrapper = narrow.locator("#results").locator("xpath=..")  # the table's scrolling region
    assert wrapper.evaluate("t => t.scrollWidth > t.clientWidth")  # its columns are all there
    wrapper.evaluate("t => { t.scrollLeft = t.scrollWidth; }")
    quality = narrow.locator("#results tr").nth(1).locator("td").last
    box = quality.bounding_box()
    assert box["x"] + box["width"] <= NARROW_PX  # scrolled to, the last column is in view


def test_a_wide_window_shows_the_tables_whole(console: Console, narrow: Any) -> None:
    narrow.set_viewport_size({"width": 1400, "height": 900})
    try:
        for path, table in (("/results", "#results"), ("/fleet", "#fleet")):
            narrow.goto(console.url + path)
            wrapper = narrow.locator(table).locator("xpath=..")
            assert wrapper.evaluate("t => t.scrollWidth <= t.clientWidth"), path
    finally:
        narrow.set_viewport_size({"width": NARROW_PX, "height": 800})
