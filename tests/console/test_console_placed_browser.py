"""A result whose kiosk's clock said 2000 (a dead CMOS battery), received today, is listed and
filtered by when the back office places its capture (today), not by that clock: on the
results page's first page and inside a "since yesterday" filter, in a real browser, in the
API and in the command line; its page and the API show both times."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from console_helpers import (
    Console,
    get_with,
    login_cookie,
    make_result,
    operator_page,
)
from playwright.sync_api import expect

from appliance.backoffice.schema import iso_utc, result_row
from appliance.backoffice.store import Batch, open_store
from appliance.cli import main

KIOSK_CLOCK = datetime(2000, 1, 1, 8, 0, tzinfo=UTC)
WRITTEN = "2000-01-01T08:00:00.000000Z"  # its captured_at as stored


@pytest.fixture(scope="module")
def late(console: Console) -> str:
    """Beside the seed (captured and placed on 2026-11-01): a result from kiosk-2000, whose
    clock said 2000-01-01 08:00, received now with a status that read that clock (as the
    ingest worker stores them); its measurement id."""
    result = make_result(100, "lagos", "kiosk-2000", "30-39").model_copy(
        update={"captured_at": KIOSK_CLOCK})
    now = datetime.now(UTC)
    store = open_store(console.store_url)
    try:
        store.write_batch(Batch(
            results=[result_row(result, iso_utc(now), result.to_json().decode())],
            clock_readings=[("lagos", "kiosk-2000", (KIOSK_CLOCK - now).total_seconds(),
                             iso_utc(now), None, None)]), 100)
    finally:
        store.close()
    return str(result.measurement_id)


def _yesterday() -> str:
    return (datetime.now(UTC).date() - timedelta(days=1)).isoformat()


def _placed_today(placed_at: str) -> bool:
    """Whether a stored time lies on today's or yesterday's UTC date (a test run across
    midnight)."""
    day = date.fromisoformat(placed_at[:10])
    return datetime.now(UTC).date() - day <= timedelta(days=1)


@pytest.fixture(scope="module")
def page(console: Console, chromium_browser: Any) -> Iterator[Any]:
    """A browser page logged in as the operator alice."""
    with operator_page(console, chromium_browser) as opened:
        yield opened


def test_the_results_page_lists_it_first_and_inside_since_yesterday(
    console: Console, late: str, page: Any
) -> None:
    page.goto(console.url + "/results?limit=10")
    first = page.locator("#results tr").nth(1)
    expect(first.locator("a")).to_have_attribute("href", f"/results/{late}")
    assert _placed_today(first.locator("a").inner_text())
    expect(first.locator("td.kiosk-clock")).to_have_text("2000-01-01T08:00:00")
    page.fill("input[name=from]", _yesterday())
    page.click("form.filter button[type=submit]")
    expect(page.locator("#results td a")).to_have_count(1)
    expect(page.locator("#matching")).to_have_text("1 result(s) match.")
    page.locator("#results td a").click()
    expect(page).to_have_url(console.url + f"/results/{late}")
    expect(page.locator("tr[data-time=captured_at] td").first).to_have_text(
        WRITTEN[:19] + "Z")  # to the second, as the list and every page say times
    for kind in ("received_at", "placed_at"):  # they were shown with their microseconds
        assert re.fullmatch(r"[0-9-]{10}T[0-9:]{8}Z", page.locator(
            f"tr[data-time={kind}] td").first.inner_text())
    expect(page.locator("tr[data-time=captured_at]")).to_contain_text("the kiosk's clock")
    placed = page.locator("tr[data-time=placed_at] td").first.inner_text()
    assert _placed_today(placed)
    expect(page.locator("tr[data-time=placed_at]")).to_contain_text(
        "as the back office places it")


def test_a_filter_on_its_kiosk_s_day_does_not_find_it(console: Console, late: str,
                                                      page: Any) -> None:
    page.goto(console.url + "/results?from=2000-01-01&to=2000-01-01")
    expect(page.locator("#none")).to_have_text("No results match.")


def test_the_api_gives_it_first_with_both_times_and_inside_since_yesterday(
    console: Console, late: str
) -> None:
    _, _, body = console.get("/api/v1/results?limit=5", console.token)
    newest = json.loads(body)["results"][0]
    assert newest["measurement_id"] == late
    assert newest["captured_at"] == WRITTEN
    assert _placed_today(newest["placed_at"])
    _, _, body = console.get(f"/api/v1/results?from={_yesterday()}", console.token)
    assert [r["measurement_id"] for r in json.loads(body)["results"]] == [late]
    _, _, body = console.get(f"/api/v1/results/{late}", console.token)
    stored = json.loads(body)["result"]
    assert stored["captured_at"] == WRITTEN
    assert stored["placed_at"] == newest["placed_at"]
    _, _, body = console.get("/api/v1/results?from=2000-01-01&to=2000-01-01", console.token)
    assert json.loads(body)["results"] == []


def test_the_csv_of_since_yesterday_holds_it_with_both_times(console: Console,
                                                             late: str) -> None:
    cookie, _ = login_cookie(console)
    status, _, body = get_with(console, f"/results.csv?from={_yesterday()}", cookie)
    assert status == 200
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert [(r["measurement_id"], r["captured_at"]) for r in rows] == [(late, WRITTEN)]
    assert _placed_today(rows[0]["placed_at"])


def test_the_command_line_lists_it_first_and_inside_since_yesterday(
    console: Console, late: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["results", "query", "--store", console.store_url, "--limit", "1"]) == 0
    newest = capsys.readouterr().out
    assert late in newest
    assert WRITTEN in newest
    assert "that clock was off" in newest
    assert main(["results", "query", "--store", console.store_url,
                 "--since", _yesterday()]) == 0
    since = capsys.readouterr().out
    assert late in since
    assert "1 result(s), newest first" in since
    assert main(["results", "export", "--store", console.store_url, "--since", _yesterday(),
                 "--format", "jsonl"]) == 0
    exported = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["measurement_id"], r["captured_at"]) for r in exported] == [(late, WRITTEN)]
    assert _placed_today(exported[0]["placed_at"])
