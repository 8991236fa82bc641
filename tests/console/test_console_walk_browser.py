"""What an operator walking the console in a real browser (Debian chromium) ran into."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from console_helpers import Console, browser_login, make_result, running_console
from playwright.sync_api import expect

from appliance.backoffice import accounts
from appliance.backoffice.schema import dead_letter, iso_utc, result_row
from appliance.backoffice.store import Batch, Store, open_store
from appliance.browser import page_in
from appliance.transport import payloads
from appliance.transport.payloads import utc_now

# grades a model may name in the language of its users; the results table shows them
GRADES = ("très fin", "きめ細かい")


@pytest.fixture(scope="module")
def page(console: Console, chromium_browser: Any) -> Iterator[Any]:
    """A browser page logged in as the operator alice, with one result of each of GRADES."""
    results = [make_result(index, "paris", f"k-{index}", "30-39").model_copy(update={
        "classification": payloads.Classification(model="m", version="1", label=grade,
                                                  probabilities={grade: 1.0})})
        for index, grade in enumerate(GRADES)]
    store = open_store(console.store_url)
    try:
        now = iso_utc(datetime.now(UTC))
        store.write_batch(Batch(results=[result_row(r, now, r.to_json().decode())
                                         for r in results]), 100)
    finally:
        store.close()
    with page_in(chromium_browser, 1280, 900) as opened:
        opened.goto(console.url + "/login")
        browser_login(opened)
        yield opened


@pytest.mark.parametrize("grade", GRADES)
def test_a_grade_in_any_script_the_table_shows_can_be_filtered_on(console: Console, page: Any,
                                                                  grade: str) -> None:
    page.goto(console.url + "/results?site=paris")
    expect(page.locator("#results td.grade", has_text=grade)).to_have_count(1)
    page.fill("input[name=grade]", grade)
    page.click("form.filter button[type=submit]")
    expect(page.locator(".error")).to_have_count(0)
    expect(page.locator("#results td.grade")).to_have_text([grade])
    expect(page.locator("input[name=grade]")).to_have_value(grade)
    status, _, body = console.get(f"/api/v1/results?grade={page.url.split('grade=')[1]}",
                                  console.token)
    assert status == 200
    assert [r["label"] for r in json.loads(body)["results"]] == [grade]


@pytest.mark.parametrize("hostile", ["<b>fine</b>", "fine' OR '1'='1", "fine\u202e", " -fine"])
def test_a_grade_with_markup_quotes_or_controls_is_still_refused(console: Console, page: Any,
                                                                 hostile: str) -> None:
    page.goto(console.url + "/results")
    page.fill("input[name=grade]", hostile)
    page.click("form.filter button[type=submit]")
    expect(page.locator(".error")).to_contain_text("grade:")
    expect(page.locator(".error")).to_contain_text("refused")
    assert page.locator("main b").count() == 0


def test_newest_keeps_the_filter_and_the_page_size(console: Console, page: Any) -> None:
    page.goto(console.url + "/results?site=tokyo&limit=10")
    first_page = page.locator("#results td a").all_inner_texts()
    assert len(first_page) == 10
    newest = page.get_by_role("link", name="Newest")
    expect(newest).to_have_count(0)  # the first page is the newest
    page.click("#older")
    page.click("#older")
    newest.click()
    expect(page.locator("select[name=limit]")).to_have_value("10")
    assert page.locator("#results td a").all_inner_texts() == first_page
    assert set(page.locator("#results tr td:nth-child(3)").all_inner_texts()) == {"tokyo"}


def test_every_kept_dead_letter_can_be_paged_to(console: Console, page: Any) -> None:
    store = open_store(console.store_url)
    try:
        store.write_batch(Batch(dead_letters=[
            dead_letter(f"2026-11-26T00:{n // 60:02d}:{n % 60:02d}.000000Z",
                        f"appliance/lab/k{n}/result", f"refused {n}", b"{}")
            for n in range(250)]), 10_000)
        kept = store.count_dead_letters()
    finally:
        store.close()
    page.goto(console.url + "/dead-letters")
    topics: list[str] = []
    while True:
        rows = page.locator("main table tr td:nth-child(2)").all_inner_texts()
        assert 0 < len(rows) <= 100
        topics += rows
        if page.locator("#older").count() == 0:
            break
        shown = page.url
        page.click("#older")
        # the click returns once the next page is on its way, not loaded: read it once loaded
        # (read at once, it was an empty page now and then under load)
        page.wait_for_url(lambda url, shown=shown: url != shown)
    assert len(topics) == len(set(topics)) == kept >= 250
    assert topics[0] == "appliance/lab/k249/result"  # newest first
    assert topics[-1] == "appliance/lab/k0/result"
    expect(page.locator("main")).to_contain_text(f"older of {kept} kept")
    page.get_by_role("link", name="Newest").click()
    expect(page.locator("main table tr td:nth-child(2)").first).to_have_text(
        "appliance/lab/k249/result")


@pytest.mark.parametrize("before", ["abc", "-1", "0", "9" * 30, "1 OR 1=1"])
def test_a_dead_letter_page_that_is_no_number_is_refused(console: Console, page: Any,
                                                        before: str) -> None:
    answer = page.goto(console.url + "/dead-letters?" + urlencode({"before": before}))
    assert answer.status == 400
    expect(page.locator(".error")).to_contain_text("before:")


def test_dead_letters_before_pages_by_number_newest_first(store: Store) -> None:
    store.write_batch(Batch(dead_letters=[
        dead_letter("2026-11-26T00:00:00.000000Z", f"appliance/lab/k{n}/result", "refused", b"{}")
        for n in range(5)]), 100)
    first = store.dead_letters_before(None, 2)
    assert [letter.topic for _, letter in first] == ["appliance/lab/k4/result",
                                                     "appliance/lab/k3/result"]
    rest = store.dead_letters_before(first[-1][0], 10)
    assert [letter.topic for _, letter in rest] == [f"appliance/lab/k{n}/result"
                                                    for n in (2, 1, 0)]
    assert store.dead_letters_before(rest[-1][0], 10) == []


def test_every_time_a_page_shows_or_takes_names_its_zone(console: Console, page: Any) -> None:
    page.goto(console.url + "/results")
    expect(page.locator("label", has=page.locator("input[name=from]"))).to_contain_text("UTC")
    expect(page.locator("label", has=page.locator("input[name=to]"))).to_contain_text("UTC")
    expect(page.locator("main table th").first).to_contain_text("UTC")
    store = open_store(console.store_url)  # a letter of its own: the page shows no table
    try:                                     # without one, whatever ran before
        store.write_batch(Batch(dead_letters=[dead_letter(
            "2026-11-26T00:00:00.000000Z", "appliance/lab/k0/result", "refused", b"{}")]), 100)
    finally:
        store.close()
    page.goto(console.url + "/dead-letters")
    expect(page.locator("main table th").first).to_have_text("received (UTC)")


def test_a_session_whose_time_ran_out_is_told_so(page: Any, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The store ends a session on its clock (this host's for SQLite): the test moves that
    clock past the session's hours instead of waiting them out."""
    hours, ahead = 1.0, [timedelta()]
    monkeypatch.setattr(accounts, "utc_now", lambda: utc_now() + ahead[0])
    context = page.context.browser.new_context()  # a browser of its own, on its own console
    browser = context.new_page()
    with running_console(tmp_path, session_hours=hours) as short:
        browser.goto(short.url + "/login")
        browser_login(browser)
        expect(browser).to_have_url(short.url + "/fleet")
        ahead[0] = timedelta(hours=hours, seconds=1)
        browser.goto(short.url + "/results")
        expect(browser).to_have_url(short.url + "/login?next=/results&ended=1")
        expect(browser.locator(".error")).to_contain_text("its time ran out")
        browser_login(browser)
        expect(browser).to_have_url(short.url + "/results")
    context.close()


def test_a_kiosk_s_link_on_the_fleet_page_shows_its_own_results_only(console: Console,
                                                                    page: Any) -> None:
    # two sites that both named a kiosk "k-0" (the fleet is keyed by site and device)
    twin = make_result(40, "lyon", "k-0", "30-39")
    store = open_store(console.store_url)
    try:
        now = iso_utc(datetime.now(UTC))
        store.write_batch(Batch(results=[result_row(twin, now, twin.to_json().decode())]), 100)
    finally:
        store.close()
    page.goto(console.url + "/fleet")
    page.locator("#fleet tr", has_text="paris").get_by_role("link", name="k-0", exact=True).click()
    expect(page.locator("#results tr td:nth-child(4)")).to_have_text(["k-0"])
    assert page.locator("#results tr td:nth-child(3)").all_inner_texts() == ["paris"]


def _paged_through(page: Any, url: str, cells: str) -> list[str]:
    """The ids in ``cells`` of every page from ``url`` on, following Older until it is gone:
    at most 100 a page, none twice."""
    page.goto(url)
    shown: list[str] = []
    while True:
        ids = page.locator(cells).all_inner_texts()
        assert 0 < len(ids) <= 100
        shown += ids
        if page.locator("#older").count() == 0:
            break
        page.click("#older")
    assert len(shown) == len(set(shown))
    return shown


def test_every_pathology_job_can_be_paged_to(console: Console, page: Any) -> None:
    from appliance.pathology.jobs import JobRequest, SlideRequest
    from appliance.pathology.jobstore import open_pathology_store

    store = open_pathology_store(console.store_url)
    try:  # accepted within a few milliseconds: many share a time, ordered by id then
        for n in range(230):
            request = JobRequest(f"walk-{n:03d}", (SlideRequest("/slides/a.jpg", 1.0, "a"),),
                                 "2026-11-30T08:00:00.000000Z")
            assert store.accept(request, "server-1", 60.0)
        stored = {row[0] for row in store.query("SELECT job_id FROM pathology_jobs")}
    finally:
        store.close()
    shown = _paged_through(page, console.url + "/pathology", "main table tr td:nth-child(2)")
    assert set(shown) == stored
    assert shown.index("walk-229") < shown.index("walk-000")  # newest first
    page.get_by_role("link", name="Newest").click()
    expect(page.locator("main table tr td:nth-child(2)")).to_have_count(100)


def test_every_model_rollout_can_be_paged_to(console: Console, page: Any) -> None:
    store = open_store(console.store_url)
    try:  # ten started at each second: ordered by id within it
        store.write("INSERT INTO rollouts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [
            (f"walk{n:03d}", "skin-texture-grade", "1.2.0", "update", "all", 1, "done", None,
             f"2026-11-20T10:00:{n // 10:02d}.000000Z", "2026-11-20T11:00:00.000000Z", "0" * 64)
            for n in range(150)])
        stored = {row[0] for row in store.query("SELECT rollout_id FROM rollouts")}
    finally:
        store.close()
    shown = _paged_through(page, console.url + "/rollouts", "#rollouts tr td:nth-child(2)")
    assert set(shown) == stored
    assert shown.index("walk149") < shown.index("walk000")  # newest first
    page.get_by_role("link", name="Newest").click()
    expect(page.locator("#rollouts tr td:nth-child(2)")).to_have_count(100)


@pytest.mark.parametrize("path", ["/rollouts", "/pathology"])
@pytest.mark.parametrize("before", ["abc", "2026-11-30T08:00:00Z~<b>", "2026-11-30~r1"])
def test_a_list_cursor_that_is_not_one_is_refused(console: Console, page: Any, path: str,
                                                  before: str) -> None:
    answer = page.goto(console.url + path + "?" + urlencode({"before": before}))
    assert answer.status == 400
    expect(page.locator(".error")).to_contain_text("before:")


def test_the_fleet_narrows_to_one_site(console: Console, page: Any) -> None:
    page.goto(console.url + "/fleet")
    every = page.locator("#fleet tr td:nth-child(1)").all_inner_texts()
    assert {"tokyo", "osaka", "paris"} <= set(every)
    page.locator("#fleet a.site", has_text="tokyo").first.click()
    expect(page).to_have_url(console.url + "/fleet?site=tokyo")
    sites = page.locator("#fleet tr td:nth-child(1)").all_inner_texts()
    assert set(sites) == {"tokyo"}
    assert len(sites) == every.count("tokyo")
    expect(page.locator("main")).to_contain_text(f"{len(sites)} kiosk(s) at site tokyo")
    page.get_by_role("link", name="every site").click()
    expect(page.locator("#fleet tr td:nth-child(1)")).to_have_count(len(every))
    page.goto(console.url + "/fleet?site=nowhere")
    expect(page.locator("main")).to_contain_text("No kiosk at site nowhere.")


def test_a_fleet_site_that_is_no_identifier_is_refused(console: Console, page: Any) -> None:
    answer = page.goto(console.url + "/fleet?" + urlencode({"site": "<b>x</b>"}))
    assert answer.status == 400
    expect(page.locator(".error")).to_contain_text("site: '<b>x</b>' refused")
    assert page.locator("main b").count() == 0


@pytest.mark.parametrize(("form_page", "button"), [("/tokens", "Revoke"),
                                                   ("/account", "Change password")])
def test_a_form_sent_after_the_session_ended_leads_back_to_its_page(
        console: Console, page: Any, form_page: str, button: str) -> None:
    context = page.context.browser.new_context()
    mine = context.new_page()
    mine.goto(console.url + "/login")
    browser_login(mine, "victor")
    mine.goto(console.url + form_page)
    page.goto(console.url + "/login")  # victor logs in elsewhere and ends his other sessions
    browser_login(page, "victor", end_others=True)
    for field in ("password", "new_password", "new_password_again"):
        if mine.locator(f"input[name={field}]").count():
            mine.fill(f"input[name={field}]", "a new password nobody knows")
    mine.get_by_role("button", name=button).first.click()
    expect(mine.locator(".error")).to_contain_text("Your session has ended")
    browser_login(mine, "victor")
    expect(mine).to_have_url(console.url + form_page)
    context.close()
    page.goto(console.url + "/login")
    browser_login(page)  # the module's page is alice's again
