"""The console in a real browser (Debian chromium via Playwright): what an operator clicks."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from console_helpers import Console, browser_login
from playwright.sync_api import expect

from appliance.browser import page_in


@pytest.fixture(scope="module")
def page(console: Console, chromium_browser: Any) -> Iterator[Any]:
    """A browser page logged in as the operator alice, through the login form."""
    with page_in(chromium_browser, 1280, 900) as opened:
        opened.goto(console.url + "/results")
        expect(opened).to_have_url(console.url + "/login?next=/results")
        browser_login(opened, "alice", "not the password")
        expect(opened.locator(".error")).to_contain_text("Wrong user name or password")
        browser_login(opened)
        expect(opened).to_have_url(console.url + "/results")
        yield opened


def test_fleet_page_shows_online_and_offline_kiosks(console: Console, page: Any) -> None:
    page.goto(console.url + "/fleet")
    table = page.locator("#fleet")
    expect(table).to_contain_text("kiosk-1")
    row = table.locator("tr", has_text="kiosk-1")
    expect(row.locator("td.online")).to_have_text("online")
    expect(row).to_contain_text("0.1.0")
    expect(row.locator("td.oldest")).to_have_text("12m")  # the oldest un-sent result's wait
    expect(table.locator("tr", has_text="kiosk-9").locator("td.offline")).to_have_text("offline")
    expect(page.locator("main")).to_contain_text("3 kiosk(s), 1 online")


def test_results_filter_and_older_pages(console: Console, page: Any) -> None:
    page.goto(console.url + "/results")
    page.fill("input[name=device]", "kiosk-9")
    page.fill("input[name=grade]", "coarse")
    page.click("form.filter button[type=submit]")
    rows = page.locator("#results tr")
    expect(rows.first).to_be_visible()
    grades = page.locator("#results td.grade").all_inner_texts()
    assert grades
    assert set(grades) == {"coarse"}
    assert set(page.locator("#results tr td:nth-child(4)").all_inner_texts()) == {"kiosk-9"}
    page.goto(console.url + "/results?limit=25")
    expect(page.locator("#results tr")).to_have_count(26)  # header + 25
    first_page = page.locator("#results td a").all_inner_texts()
    page.click("#older")
    expect(page.locator("#results tr")).to_have_count(26)
    assert not set(first_page) & set(page.locator("#results td a").all_inner_texts())


def test_hostile_filter_is_refused_and_shown_as_text(console: Console, page: Any) -> None:
    page.goto(console.url + "/results")
    page.fill("input[name=site]", "<img src=x onerror=alert(1)>")
    page.click("form.filter button[type=submit]")
    error = page.locator(".error")
    expect(error).to_contain_text("site: '<img src=x onerror=alert(1)>' refused")
    assert page.locator("main img").count() == 0  # shown as text, not markup


def test_csv_download_has_the_filtered_results(console: Console, page: Any) -> None:
    page.goto(console.url + "/results?site=osaka")
    with page.expect_download() as info:
        page.click("#csv")
    path = info.value.path()
    rows = list(csv.DictReader(io.StringIO(Path(path).read_text())))
    assert len(rows) == 20
    assert {r["site"] for r in rows} == {"osaka"}


def test_cohort_page_plots_each_feature_by_age_band(console: Console, page: Any) -> None:
    page.goto(console.url + "/cohort")
    expect(page.locator("#cohort-total")).to_contain_text("54 stored results with an age band")
    assert page.locator("figure svg.plot").count() == 10  # 9 texture/pore features + kime
    kime = page.locator("#correlations tr", has_text="kime_score")
    expect(kime).to_contain_text("-0.")  # kime falls with age in the seeded cohort
    expect(page.locator("#repeats")).to_contain_text("subj-0")


def test_pathology_job_page_shows_each_slide_s_heatmap_and_cam(console: Console,
                                                               page: Any) -> None:
    page.goto(console.url + "/pathology/job-1")
    row = page.locator("#slides tr", has_text="MSI")
    for picture, width_px in (("heatmap", 64), ("cam", 96)):
        image = row.locator(f"img.{picture}")
        expect(image).to_be_visible()
        page.wait_for_function("img => img.complete", arg=image.element_handle())
        assert image.evaluate("img => img.naturalWidth") == width_px  # loaded and decoded
    expect(page.locator("#slides tr", has_text="unsupported")).to_contain_text("no heatmap")
    page.click("#slides img.cam")  # the picture opens on its own, full size
    expect(page).to_have_url(console.url + "/pathology/job-1/slides/0/cam")


def test_a_withheld_grade_is_explained_on_the_results_page(console: Console, page: Any) -> None:
    results = json.loads(console.get("/api/v1/results?limit=200", console.token)[2])["results"]
    texture = [r["measurement_id"] for r in results if "kime_score" in r["not_validated"]]
    assert len(texture) == 1
    page.goto(console.url + "/results?limit=200")
    page.click(f"a[href='/results/{texture[0]}']")
    expect(page.locator("#withheld")).to_contain_text(
        "Not graded: the kiosk withheld the grade because the model reads features outside "
        "the validated range (furrow_density_mm_per_mm2, hill_density_per_mm2")
    kime = page.locator("#features tr[data-key=kime_score] td.value")
    expect(kime).to_have_text("not measured")
    assert "no model" not in page.inner_text("main")
