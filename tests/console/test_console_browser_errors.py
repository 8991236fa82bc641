"""The console in a fresh chromium: what the browser's developer tools say of its pages."""

from __future__ import annotations

from typing import Any

from console_helpers import Console, browser_login
from playwright.sync_api import expect

from appliance.browser import page_in


def test_no_page_of_the_console_shows_an_error_in_the_browser_s_console(
    console: Console, chromium_browser: Any,
) -> None:
    """Every page of the console asked the browser for /favicon.ico, which the console does
    not serve: a 404 in red in the developer tools' console of each page an operator opened."""
    errors: list[str] = []
    with page_in(chromium_browser, 1280, 900) as opened:
        opened.on("console", lambda message: errors.append(message.text)
                  if message.type == "error" else None)
        opened.goto(console.url + "/login")
        browser_login(opened)
        expect(opened).to_have_url(console.url + "/fleet")
        for link in opened.locator("header a").all():
            opened.goto(console.url + link.get_attribute("href"))
        opened.goto(console.url + "/results")
        opened.locator("#results td a").first.click()
        expect(opened.locator("h1")).to_contain_text("Result ")
        opened.goto(console.url + "/pathology")
        opened.locator("main td a").first.click()
        expect(opened.locator("h1")).to_contain_text("Pathology job ")
        opened.wait_for_load_state("networkidle")
    assert errors == []
