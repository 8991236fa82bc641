"""In a real browser: an offline kiosk's last known camera state on the fleet page, and a
withheld grade told apart from a kiosk without a model on the results list."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from console_helpers import (
    NOT_VALIDATED_IN_SEED,
    WITHHELD_IN_SEED,
    Console,
    make_result,
    operator_page,
)
from playwright.sync_api import expect

from appliance.backoffice.schema import device_row, iso_utc, result_row
from appliance.backoffice.store import Batch, open_store
from appliance.transport import payloads


@pytest.fixture(scope="module")
def stored(console: Console) -> dict[str, str]:
    """Beside the seed: kiosk-5, online two hours ago and then gone (its last will, written
    when it connected, says nothing of the camera), and one result of a kiosk without a model."""
    now = datetime.now(UTC)
    connected = payloads.Status(device_id="kiosk-5", site="kyoto", state="offline",
                                at=now - timedelta(hours=3), software_version="0.1.0")
    birth = connected.model_copy(update={"state": "online", "camera": "online",
                                         "at": now - timedelta(hours=2, minutes=1)})
    unmodelled = make_result(60, "kyoto", "kiosk-5", "30-39").model_copy(
        update={"classification": None})
    store = open_store(console.store_url)
    try:
        store.write_batch(Batch(statuses=[device_row(birth, iso_utc(birth.at))]), 100)
        store.write_batch(Batch(statuses=[device_row(connected, iso_utc(now))],
                                results=[result_row(unmodelled, iso_utc(now),
                                                    unmodelled.to_json().decode())]), 100)
    finally:
        store.close()
    results = json.loads(console.get("/api/v1/results?limit=200", console.token)[2])["results"]
    (withheld,) = [r["measurement_id"] for r in results  # the seed's withheld grade
                   if r["captured_at"].startswith(f"2026-11-01T09:{WITHHELD_IN_SEED:02d}:")]
    return {"withheld": withheld, "no_model": unmodelled.measurement_id,
            "camera_reported_at": iso_utc(birth.at)}


@pytest.fixture(scope="module")
def page(console: Console, chromium_browser: Any) -> Iterator[Any]:
    """A browser page logged in as the operator alice."""
    with operator_page(console, chromium_browser) as opened:
        yield opened


def test_offline_kiosks_show_their_last_known_camera_state_or_that_it_is_unknown(
    console: Console, stored: dict[str, str], page: Any,
) -> None:
    page.goto(console.url + "/fleet")
    table = page.locator("#fleet")
    gone = table.locator("tr", has_text="kiosk-5")
    expect(gone.locator("td.offline")).to_have_text("offline")
    expect(gone.locator("td.camera")).to_have_text("last said online, 2h ago")
    expect(gone.locator("td.camera")).to_have_attribute(
        "title", f"as the kiosk last reported, sent at {stored['camera_reported_at'][:19]}Z; it is "
        "offline now")  # its clock, never read, is taken as right: one time
    never = table.locator("tr", has_text="kiosk-9")  # seeded offline, no camera ever reported
    expect(never.locator("td.camera")).to_have_text("unknown (offline)")
    expect(table.locator("tr", has_text="kiosk-1").locator("td.camera")).to_have_text("online")
    (api,) = [d for d in json.loads(console.get("/api/v1/fleet", console.token)[2])["devices"]
              if d["device_id"] == "kiosk-5"]
    assert (api["state"], api["camera"], api["camera_text"]) == ("offline", "online",
                                                                 "last said online, 2h ago")


def test_results_list_tells_a_withheld_grade_from_a_kiosk_without_a_model(
    console: Console, stored: dict[str, str], page: Any,
) -> None:
    page.goto(console.url + "/results?limit=200")
    rows = page.locator("#results tr")
    withheld = rows.filter(has=page.locator(f"a[href='/results/{stored['withheld']}']"))
    no_model = rows.filter(has=page.locator(f"a[href='/results/{stored['no_model']}']"))
    expect(withheld.locator("td.grade")).to_have_text("not given")
    expect(withheld.locator("td.grade abbr")).to_have_attribute(
        "title", "not given: the kiosk withheld the grade because the model reads features "
        "outside the validated range (furrow_density_mm_per_mm2, hill_density_per_mm2, "
        "hill_mean_area_mm2, furrow_mean_width_um, furrow_anisotropy, kime_score)")
    expect(no_model.locator("td.grade")).to_have_text("-")
    expect(no_model.locator("td.grade abbr")).to_have_attribute(
        "title", "not classified: no model on the kiosk, or its model failed (the kiosk's "
        "journal says which)")
    grades = page.locator("#results td.grade").all_inner_texts()
    assert grades.count("not given") == 1
    assert grades.count("-") == 1
    expect(page.locator("#grade-legend")).to_contain_text("not given: the kiosk measured but "
                                                          "withheld the grade")
    page.click(f"a[href='/results/{stored['no_model']}']")  # its page says the same
    expect(page.locator("main")).to_contain_text("Not classified: no model on the kiosk")
    listed = json.loads(console.get("/api/v1/results?limit=200", console.token)[2])["results"]
    assert {r["measurement_id"]: r["grade_withheld"] for r in listed if not r["label"]} == {
        stored["withheld"]: {"features": NOT_VALIDATED_IN_SEED[WITHHELD_IN_SEED],
                             "frame": False},
        stored["no_model"]: None,
    }  # the API's list says it too
