"""An operator narrows the dead-letters page to a site, then a kiosk, in a real browser (Debian
chromium), with the form's site and device fields, and types a site that is none."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from console_helpers import Console, operator_page
from playwright.sync_api import expect

from appliance.backoffice.schema import dead_letter
from appliance.backoffice.store import Batch, open_store

TOPICS = ("appliance/lab/k1/result", "appliance/lab/k2/status", "appliance/clinic/k1/result",
          "appliance/labx/k1/result", "other/lab/k1/result")


@pytest.fixture(scope="module")
def page(console: Console, chromium_browser: Any) -> Iterator[Any]:
    """The operator alice's page, with a dead letter on each of TOPICS."""
    store = open_store(console.store_url)
    try:
        store.write_batch(Batch(dead_letters=[
            dead_letter(f"2026-11-26T02:00:0{n}.000000Z", topic, "refused", b"{}")
            for n, topic in enumerate(TOPICS)]), 100)
    finally:
        store.close()
    with operator_page(console, chromium_browser) as opened:
        yield opened


def _filter(page: Any, site: str, device: str) -> None:
    page.fill("input[name=site]", site)
    page.fill("input[name=device]", device)
    with page.expect_navigation():
        page.click("form.filter button[type=submit]")


def test_the_form_narrows_the_letters_to_a_site_then_to_a_kiosk(console: Console,
                                                                 page: Any) -> None:
    page.goto(console.url + "/dead-letters")
    topics = page.locator("#letters tr td:nth-child(2)")
    expect(topics).to_have_count(len(TOPICS))
    _filter(page, "lab", "")
    expect(topics).to_have_text(["appliance/lab/k2/status", "appliance/lab/k1/result"])
    expect(page.locator("#kept")).to_contain_text("2 newest of 2 kept from site 'lab'")
    expect(page.locator("input[name=site]")).to_have_value("lab")
    _filter(page, "lab", "k1")
    expect(topics).to_have_text(["appliance/lab/k1/result"])
    _filter(page, "", "k1")
    expect(topics).to_have_text(["appliance/labx/k1/result", "appliance/clinic/k1/result",
                                 "appliance/lab/k1/result"])


def test_a_site_that_is_none_is_refused_with_the_field_marked(console: Console,
                                                             page: Any) -> None:
    page.goto(console.url + "/dead-letters?device=k1")
    page.fill("input[name=site]", "../x")
    with page.expect_navigation() as answered:
        page.click("form.filter button[type=submit]")
    assert answered.value.status == 400
    expect(page.locator("#refused")).to_have_text(
        "Filter refused, nothing was looked up: site: '../x' refused: not a site id "
        "(letters, digits, '.', '_' and '-', starting with a letter or digit, at most 64 "
        "characters). Correct it above and filter again.")
    site = page.locator("input[name=site]")
    expect(site).to_have_attribute("aria-invalid", "true")
    expect(site).to_be_focused()
    expect(site).to_have_value("../x")
    expect(page.locator("input[name=device]")).to_have_value("k1")
    expect(page.locator("#letters")).to_have_count(0)
