"""What a new operator walking the console in a real browser (Debian chromium) ran into: which
page the header says is open, and how an error page names what went wrong."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from console_helpers import Console, browser_login, operator_page
from playwright.sync_api import expect

from appliance.backoffice.queries import ConsoleQueries
from appliance.backoffice.storeerrors import StoreError


@pytest.fixture(scope="module")
def page(console: Console, chromium_browser: Any) -> Iterator[Any]:
    """A browser page logged in as the operator alice."""
    with operator_page(console, chromium_browser) as opened:
        yield opened


# each page and the header link that leads to it (a single result is one of the results)
OPEN_LINK = [("/fleet", "Fleet"), ("/results", "Results"), ("/cohort", "Cohort"),
             ("/rollouts", "Rollouts"), ("/rollouts/r0llout1", "Rollouts"),
             ("/pathology", "Pathology"), ("/pathology/job-1", "Pathology"),
             ("/dead-letters", "Dead letters"), ("/docs", "API"), ("/tokens", "Tokens"),
             ("/account", "alice")]


@pytest.mark.parametrize(("path", "link"), OPEN_LINK)
def test_the_header_says_which_page_is_open_to_the_eye_and_to_a_screen_reader(
    console: Console, page: Any, path: str, link: str,
) -> None:
    page.goto(console.url + path)
    current = page.locator("header a[aria-current=page]")
    expect(current).to_have_count(1)
    expect(current).to_have_text(link)
    expect(current).to_have_class("on")  # underlined
    expect(page.locator("header a.on")).to_have_count(1)
    expect(page.get_by_role("navigation", name="console pages")
           .get_by_role("link", name="Fleet", exact=True)).to_be_visible()


@pytest.mark.parametrize("case", [
    (RuntimeError("a bug"), "Failed (500)", "the console could not answer this request"),
    (StoreError("disk I/O error"), "Unavailable (503)", "store cannot be reached now"),
])
def test_an_error_page_calls_the_console_s_own_failure_no_refusal(
    console: Console, page: Any, monkeypatch: pytest.MonkeyPatch,
    case: tuple[Exception, str, str],
) -> None:
    """A failure inside the console (500) or of its store (503) was headed "Refused", as if
    the operator had asked for something wrong; a refusal is still called one."""
    failure, heading, says = case

    def fails(*_: object, **__: object) -> None:
        raise failure

    monkeypatch.setattr(ConsoleQueries, "rollout_rows", fails)
    page.goto(console.url + "/rollouts")
    expect(page.locator("h1")).to_have_text(heading)
    expect(page.locator("main .error")).to_contain_text(says)
    monkeypatch.undo()
    page.goto(console.url + "/rollouts?before=x")
    expect(page.locator("h1")).to_have_text("Refused (400)")
    page.goto(console.url + "/rollouts/none")
    expect(page.locator("h1")).to_have_text("Not found (404)")


def test_the_job_page_names_its_pictures_as_its_heading_does(console: Console,
                                                             page: Any) -> None:
    """The column is headed "heatmap and CAM" (and an unsupported slide's picture is a "CAM:
    under audit"); the pictures' alt texts and the missing ones said "cam"."""
    page.goto(console.url + "/pathology/job-1")
    expect(page.locator("#slides th").last).to_have_text("heatmap and CAM (select to enlarge)")
    expect(page.get_by_role("img", name="heatmap of slide a", exact=True)).to_be_visible()
    expect(page.get_by_role("img", name="CAM of slide a", exact=True)).to_be_visible()
    unsupported = page.locator("#slides tr", has_text="unsupported")
    expect(unsupported.locator("td.pictures")).to_have_text("no heatmap no CAM")


def test_a_rollout_of_one_canary_says_so_in_the_console_s_count_words(console: Console,
                                                                     page: Any) -> None:
    """The seeded rollout has one canary: its page said "1 canaries"; counts elsewhere read
    "0 takeover(s)", "7 kiosk(s)"."""
    page.goto(console.url + "/rollouts/r0llout1")
    expect(page.locator("main p").first).to_contain_text("update to site tokyo, 1 canary kiosk(s);")


def test_each_revoke_button_names_the_token_it_revokes(console: Console, page: Any) -> None:
    """An operator sees every user's tokens, each row with its Revoke button: to a screen
    reader, which lists a page's buttons by name, they were all one "Revoke"."""
    page.goto(console.url + "/tokens")
    ids = page.locator("#tokens td code").all_inner_texts()
    assert len(ids) >= 2  # alice's and victor's
    for token_id in ids:
        button = page.get_by_role("button", name=f"Revoke token {token_id}", exact=True)
        expect(button).to_have_count(1)
        expect(button).to_have_text("Revoke")
        expect(page.locator("#tokens tr", has=button)).to_contain_text(token_id)


@pytest.mark.parametrize(("path", "title"), [
    ("/rollouts/r0llout1", "Rollout r0llout1"),
    ("/pathology/job-1", "Pathology job job-1"),
    ("/fleet/tokyo/kiosk-1/models", "Models of tokyo/kiosk-1"),
    ("/rollouts?before=x", "Refused (400)"),
    ("/rollouts/none", "Not found (404)"),
])
def test_a_page_s_title_names_what_it_shows(console: Console, page: Any, path: str,
                                            title: str) -> None:
    """Tabs and history told one result, rollout or job from another by the URL alone: their
    titles were "Result", "Rollout", "Pathology job" (a kiosk's models page named its kiosk),
    and an error page's a bare status ("400")."""
    page.goto(console.url + path)
    expect(page.locator("h1")).to_contain_text(title)
    expect(page).to_have_title(f"{title} - appliance console")


def test_a_result_s_title_names_its_measurement(console: Console, page: Any) -> None:
    page.goto(console.url + "/results?limit=10")
    page.locator("#results td a").first.click()
    measurement_id = page.url.rsplit("/", 1)[1]
    expect(page).to_have_title(f"Result {measurement_id} - appliance console")


@pytest.mark.parametrize(("path", "first_field"), [("/results", "site"),
                                                    ("/account", "password")])
def test_a_keyboard_skips_the_header_to_the_page_itself(console: Console, page: Any,
                                                        path: str, first_field: str) -> None:
    """Without a mouse, every page began with the header's ten links and its account link
    and Log out, tabbed through on each page before its own fields."""
    page.goto(console.url + path)
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    box = skip.bounding_box()
    assert box is not None
    assert box["x"] >= 0
    assert box["y"] >= 0  # in view while it has the focus
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    expect(page.locator(f"main [name={first_field}]")).to_be_focused()


def test_a_logout_is_said_on_the_login_page_it_leads_to(console: Console, page: Any) -> None:
    """Log out led to the bare login form, as if nothing had happened; the page says so now,
    and a login page asked for otherwise does not."""
    context = page.context.browser.new_context()  # a session of its own: the module's stays
    try:
        mine = context.new_page()
        mine.goto(console.url + "/login")
        browser_login(mine)
        expect(mine).to_have_url(console.url + "/fleet")
        mine.get_by_role("button", name="Log out").click()
        expect(mine.get_by_role("status")).to_have_text("You are logged out.")
        expect(mine.locator("input[name=user]")).to_be_focused()
        mine.go_back()  # the page before: its session is gone, so the login page again
        expect(mine.locator("input[name=password]")).to_be_visible()
        expect(mine.get_by_text("You are logged out.")).to_have_count(0)
        mine.goto(console.url + "/login?logged_out=1&failed=1")
        expect(mine.get_by_text("You are logged out.")).to_have_count(0)
    finally:
        context.close()
