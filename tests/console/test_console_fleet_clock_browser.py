"""In a real browser: the fleet page shows each kiosk's clock offset as its latest live status
read it, flagged over a minute so an operator sees which kiosk's NTP to fix, and a blank for a
kiosk never read; the API says the same."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from console_helpers import Console, operator_page
from playwright.sync_api import expect

from appliance.backoffice.schema import device_row, iso_utc
from appliance.backoffice.store import Batch, open_store
from appliance.transport import payloads


@pytest.fixture(scope="module")
def read(console: Console) -> None:
    """Beside the seed (kiosk-9: never read): kiosk-7, whose clock a dead CMOS battery put at
    2000-01-01, read two minutes ago, and kiosk-8, 12 s ahead."""
    now = datetime.now(UTC)
    store = open_store(console.store_url)
    try:
        for device, at in (("kiosk-7", datetime(2000, 1, 1, tzinfo=UTC)),
                           ("kiosk-8", now + timedelta(seconds=12))):
            status = payloads.Status(device_id=device, site="kyoto", state="online", at=at)
            read_at = iso_utc(now - timedelta(minutes=2))
            store.write_batch(Batch(statuses=[device_row(status, read_at)], clock_readings=[
                ("kyoto", device, (at - now).total_seconds(), read_at, None, None)]), 100)
    finally:
        store.close()


@pytest.fixture(scope="module")
def page(console: Console, chromium_browser: Any) -> Iterator[Any]:
    """A browser page logged in as the operator alice."""
    with operator_page(console, chromium_browser) as opened:
        yield opened


def test_the_fleet_page_shows_each_kiosk_s_clock_and_flags_one_off(
    console: Console, read: None, page: Any,
) -> None:
    page.goto(console.url + "/fleet")
    table = page.locator("#fleet")
    expect(table.locator("th").nth(4)).to_have_text("clock")
    wrong = table.locator("tr", has_text="kiosk-7").locator("td.clock")
    expect(wrong).to_have_text(
        re.compile(r"^2\dy \d{1,3}d behind \(check its NTP\), read 2m ago$"))
    expect(wrong).to_have_class("clock off")
    expect(wrong).to_have_css("color", "rgb(179, 38, 30)")  # red, as an offline kiosk
    right = table.locator("tr", has_text="kiosk-8").locator("td.clock")
    expect(right).to_have_text(re.compile(r"^1\ds ahead, read 2m ago$"))
    expect(right).to_have_class("clock")
    never = table.locator("tr", has_text="kiosk-9").locator("td.clock")
    expect(never).to_have_text("-")
    expect(never).to_have_attribute("title", "no live status of the kiosk has read its clock yet")
    devices = {d["device_id"]: d for d in
               json.loads(console.get("/api/v1/fleet", console.token)[2])["devices"]}
    assert devices["kiosk-7"]["clock_off"] is True
    assert devices["kiosk-7"]["clock_ahead_s"] < -26 * 365 * 86400
    assert devices["kiosk-9"]["clock_text"] == "-"
