"""Two consoles on one host (two stores, say, on :8080 and :8081) in one real browser: a
browser sends a host's cookies to each of its ports, so cookies of one name had a login to
one console replace the other's session (logging the browser out of it), and a login form
opened on one break a form left open on the other. Each console's cookies carry its port."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from console_helpers import browser_login, running_console
from playwright.sync_api import expect

from appliance.browser import page_in


def test_a_browser_stays_logged_in_to_two_consoles_on_one_host(
    tmp_path: Path, chromium_browser: Any,
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with (running_console(tmp_path / "a") as first, running_console(tmp_path / "b") as second,
          page_in(chromium_browser, 1280, 900) as page_a):
        page_b = page_a.context.new_page()
        page_a.goto(first.url + "/login")  # a form left open while the other console is used
        page_b.goto(second.url + "/login")
        browser_login(page_b)
        expect(page_b).to_have_url(second.url + "/fleet")
        browser_login(page_a)
        expect(page_a).to_have_url(first.url + "/fleet")
        for page, console in ((page_b, second), (page_a, first)):
            page.goto(console.url + "/results")
            expect(page).to_have_url(console.url + "/results")  # no login page: still in
            expect(page.get_by_role("button", name="Log out")).to_be_visible()
        names = {cookie["name"] for cookie in page_a.context.cookies()}
        ports = {first.url.rsplit(":", 1)[1], second.url.rsplit(":", 1)[1]}
        assert {f"appliance_session_{port}" for port in ports} <= names
