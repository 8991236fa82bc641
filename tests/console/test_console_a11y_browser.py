"""The console as a screen reader and a keyboard meet it, in a real browser (Debian
chromium): what a plot shows is said in text, and what a column or a grade means is said on
the page, not in a tooltip only."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from console_helpers import Console, make_result, operator_page
from playwright.sync_api import expect

from appliance.backoffice.schema import iso_utc, result_row
from appliance.backoffice.store import Batch, open_store
from appliance.transport import payloads


@pytest.fixture(scope="module")
def page(console: Console, chromium_browser: Any) -> Iterator[Any]:
    """A browser page logged in as the operator alice."""
    with operator_page(console, chromium_browser) as opened:
        yield opened


def test_each_cohort_plot_says_its_figures_in_text(console: Console, page: Any) -> None:
    """A plot was an image named "kime_score by age band" and nothing more: a screen reader
    heard neither the band means nor their intervals."""
    figures = json.loads(console.get("/api/v1/cohort", console.token)[2])["features"]
    page.goto(console.url + "/cohort")
    for key, feature in figures.items():
        plot = page.get_by_role("img", name=f"{key} by age band", exact=True)
        said = " ".join(f"{band['band']} {band['n']} {band['mean']:.4g} "
                        f"{band['ci95'][0]:.4g} to {band['ci95'][1]:.4g}"
                        for band in feature["bands"])
        expect(plot).to_have_accessible_description(re.compile(re.escape(said)))
    page.get_by_text("kime_score as a table").click()  # the same figures, to the eye
    rows = page.locator("#bands-kime_score tr")
    expect(rows).to_have_count(1 + len(figures["kime_score"]["bands"]))
    first = figures["kime_score"]["bands"][0]
    expect(rows.nth(1)).to_have_text(re.compile(f"^{first['band']}\\s*{first['n']}\\s*"
                                                f"{first['mean']:.4g}"))


@pytest.mark.parametrize(("path", "header", "said"), [
    ("/results", "placed (UTC)", "placed: the capture as the back office places it"),
    ("/results", "kiosk's clock (UTC)", "kiosk's clock: the capture time as the kiosk's"),
    ("/fleet", "oldest un-sent", "how long the oldest of them had waited, when the kiosk "
     "last reported"),
])
def test_what_a_column_means_is_said_on_the_page_not_in_a_tooltip_only(
    console: Console, page: Any, path: str, header: str, said: str,
) -> None:
    """The results list's two times and the fleet's un-sent results were explained only in
    tooltips (title), which neither a keyboard nor a touch screen opens."""
    page.goto(console.url + path)
    expect(page.get_by_text(said)).to_be_visible()
    column = page.get_by_role("columnheader", name=header, exact=True)
    expect(column).to_have_accessible_description(re.compile(re.escape(said)))


def test_a_withheld_grade_s_legend_says_where_to_read_why(console: Console, page: Any) -> None:
    page.goto(console.url + "/results?limit=200")
    expect(page.locator("#grade-legend")).to_contain_text("the result's page says which")


def test_a_near_tie_is_explained_on_the_results_page(console: Console, page: Any) -> None:
    """"between fine and normal" was explained only in its tooltip."""
    tied = make_result(0, "osaka", "kiosk-tie", "30-39").model_copy(update={
        "measurement_id": payloads.new_measurement_id(),
        "classification": payloads.Classification(
            model="skin-texture-grade", version="1", label="normal",
            probabilities={"fine": 0.44, "normal": 0.46, "coarse": 0.10})})
    store = open_store(console.store_url)
    try:
        store.write_batch(Batch(results=[result_row(tied, iso_utc(datetime.now(UTC)),
                                                    tied.to_json().decode())]), 10)
    finally:
        store.close()
    page.goto(console.url + "/results?device=kiosk-tie")
    expect(page.locator("#results td.grade")).to_have_text("between fine and normal")
    expect(page.get_by_text("between two grades: a near-tie, the model's two most probable "
                            "grades less than 0.15 apart")).to_be_visible()


def test_the_cohort_page_s_parts_are_headed_and_its_tables_named(console: Console,
                                                                 page: Any) -> None:
    """A screen reader's list of headings showed the page's title and the repeats only: the
    correlations and the plots had no heading, and no table a name."""
    page.goto(console.url + "/cohort")
    expect(page.get_by_role("heading", level=2)).to_have_text([
        "Correlation with age", "Each feature by age band",
        "Repeat measurements of the same subject"])
    for name, first_column in (("Correlation with age", "feature"),
                               ("Repeat measurements of the same subject", "subject")):
        table = page.get_by_role("table", name=name, exact=True)
        expect(table.get_by_role("columnheader").first).to_have_text(first_column)


@pytest.mark.parametrize(("path", "cells"), [
    ("/results?limit=10", [f"#results tr:nth-child(2) td:nth-child({n})" for n in (1, 2, 6)]),
    ("/tokens", ["#tokens tr:nth-child(2) td:nth-child(4)"]),  # created
])
def test_a_time_or_age_band_is_not_broken_at_its_hyphen_at_200_percent_zoom(
    console: Console, page: Any, path: str, cells: list[str],
) -> None:
    """At 200 % zoom (a 640 px wide window) a time in a table broke after its date's hyphen
    ("2026-11-" over "01T09:59:00") and an age band after its own ("60-" over "69")."""
    page.set_viewport_size({"width": 640, "height": 900})
    try:
        page.goto(console.url + path)
        for cell in cells:
            lines = page.locator(cell).first.evaluate(
                "cell => { const range = document.createRange(); range.selectNodeContents(cell);"
                " return new Set([...range.getClientRects()].map(r => Math.round(r.top))).size; }")
            assert lines == 1, cell
    finally:
        page.set_viewport_size({"width": 1280, "height": 900})


TABLE_PAGES = ("/fleet", "/results?limit=10", "/results/{id}", "/cohort", "/rollouts",
               "/rollouts/r0llout1", "/pathology", "/pathology/job-1", "/tokens", "/docs")


def test_every_table_scrolls_in_a_named_region_a_keyboard_reaches(console: Console,
                                                                 page: Any) -> None:
    """A table wider than the window (200 % zoom) scrolled sideways in an element no key
    reached (WCAG 2.1.1): each table's scrolling wrapper is a focusable region named for it."""
    newest = json.loads(console.get("/api/v1/results?limit=1", console.token)[2])
    paths = [path.format(id=newest["results"][0]["measurement_id"]) for path in TABLE_PAGES]
    for path in paths:
        page.goto(console.url + path)
        wrappers = page.locator("main table").evaluate_all(
            "tables => tables.map(t => { const w = t.parentElement; return [w.className,"
            " w.getAttribute('tabindex'), w.getAttribute('role'), w.getAttribute('aria-label'),"
            " w.children.length]; })")
        assert wrappers, path
        for wrapper in wrappers:
            assert wrapper[:3] == ["scroll", "0", "region"], (path, wrapper)
            assert wrapper[3].endswith(" (table)"), (path, wrapper)
            assert wrapper[4] == 1, (path, wrapper)  # the table alone
        names = [wrapper[3] for wrapper in wrappers]
        assert len(set(names)) == len(names), (path, names)  # each region told apart


def test_every_template_s_table_is_in_a_named_scrolling_region() -> None:
    """The pages above and those the seeded store shows no table on (dead letters)."""
    templates = Path(__file__).resolve().parents[2] / "appliance/console/templates"
    wrapper = re.compile(r'<div class="scroll" tabindex="0" role="region" '
                         r'aria-label="[^"]+ \(table\)">$')
    tables = 0
    for template in templates.glob("*.html"):
        text = template.read_text()
        for found in re.finditer(r"<table\b", text):
            tables += 1
            assert wrapper.search(text[:found.start()]), (template.name, found.start())
    assert tables >= 18


def test_a_keyboard_reaches_a_wide_table_and_scrolls_it_at_200_percent_zoom(
    console: Console, page: Any,
) -> None:
    page.set_viewport_size({"width": 640, "height": 900})
    try:
        page.goto(console.url + "/results?limit=10")
        region = page.get_by_role("region", name="Results (table)", exact=True)
        assert region.evaluate("r => r.scrollWidth > r.clientWidth")  # it does scroll
        assert region.evaluate("r => r.scrollLeft") == 0
        for _ in range(80):  # Tab from the page's start, as a keyboard user goes
            page.keyboard.press("Tab")
            if region.evaluate("r => r === document.activeElement"):
                break
        expect(region).to_be_focused()
        page.keyboard.press("ArrowRight")
        page.wait_for_function("r => r.scrollLeft > 0", arg=region.element_handle())
        at_end = "r => r.scrollLeft + r.clientWidth >= r.scrollWidth - 1"
        for _ in range(60):  # on to the last column: every column reached
            if region.evaluate(at_end):
                break
            page.keyboard.press("ArrowRight")
            page.wait_for_timeout(50)  # the scroll's animation, between presses
        assert region.evaluate(at_end)
        last = page.locator("#results tr").nth(1).locator("td").last.bounding_box()
        assert last["x"] >= 0
        assert last["x"] + last["width"] <= 640
    finally:
        page.set_viewport_size({"width": 1280, "height": 900})


@pytest.mark.parametrize("path", ["/pathology/job-1", "/rollouts/r0llout1"])
def test_a_time_in_a_sentence_is_not_broken_at_its_hyphen_at_200_percent_zoom(
    console: Console, page: Any, path: str,
) -> None:
    """A job's and a rollout's "submitted 2026-11-" over "30T08:00:00Z"."""
    page.set_viewport_size({"width": 640, "height": 900})
    try:
        page.goto(console.url + path)
        lines = page.locator("main p").first.evaluate(
            """p => [...p.innerText.matchAll(/[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z/g)].map(m => {
                 const walker = document.createTreeWalker(p, NodeFilter.SHOW_TEXT);
                 let node; while ((node = walker.nextNode()) && !node.data.includes(m[0])) {}
                 const range = document.createRange(), at = node.data.indexOf(m[0]);
                 range.setStart(node, at); range.setEnd(node, at + m[0].length);
                 return new Set([...range.getClientRects()].map(r => Math.round(r.top))).size;
               })""")
        assert lines == [1, 1]
    finally:
        page.set_viewport_size({"width": 1280, "height": 900})


def test_each_kiosk_s_model_link_names_its_kiosk(console: Console, page: Any) -> None:
    """The link to a kiosk's model reports was named by its model alone, "-" for a kiosk
    that reported none: a screen reader's list of links held one "-" for each of them."""
    page.goto(console.url + "/fleet")
    for kiosk in ("osaka/kiosk-9", "tokyo/kiosk-1", "tokyo/kiosk-2"):
        link = page.get_by_role("link", name=f"no model reported: model reports of {kiosk}",
                                exact=True)
        expect(link).to_have_text("-")
        expect(link).to_have_attribute("href", f"/fleet/{kiosk}/models")


def test_the_login_page_s_heading_says_it_is_the_login(console: Console, page: Any) -> None:
    """Its one heading said "appliance console", which a screen reader's list of headings
    gives for no page in particular."""
    context = page.context.browser.new_context()
    try:
        fresh = context.new_page()
        fresh.goto(console.url + "/login")
        expect(fresh.get_by_role("heading", level=1)).to_have_text(
            "Log in to the appliance console")
    finally:
        context.close()


def test_the_links_to_the_pages_beside_are_a_landmark_and_never_an_empty_line(
    console: Console, page: Any,
) -> None:
    """Older and Newer were a bare paragraph after the table, which a screen reader's list of
    landmarks did not offer; a page with none beside it kept that paragraph, empty."""
    page.goto(console.url + "/results?limit=10")
    pages = page.get_by_role("navigation", name="pages of results", exact=True)
    pages.get_by_role("link", name="Older").click()
    expect(page.get_by_role("navigation", name="pages of results", exact=True)
           .get_by_role("link", name="Newer")).to_be_visible()
    for path in ("/dead-letters", "/fleet", "/rollouts", "/pathology"):  # one page each
        page.goto(console.url + path)
        expect(page.locator("main h1")).to_be_visible()
        assert page.locator("main p:empty").count() == 0, path
        expect(page.locator("main nav")).to_have_count(0)
