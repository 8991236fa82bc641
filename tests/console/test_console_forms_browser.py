"""What the console's forms keep for the person filling them in, in a real browser (Debian
chromium): a refused filter keeps the form's other values, a wrong password the user name,
and a revoke or a password change done is not sent again by a reload."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from console_helpers import PASSWORD, Console, browser_login, operator_page
from playwright.sync_api import expect

from appliance.backoffice.store import open_store
from appliance.browser import page_in
from appliance.console.auth import add_user, create_token


@pytest.fixture(scope="module")
def page(console: Console, chromium_browser: Any) -> Iterator[Any]:
    """A browser page logged in as the operator alice."""
    with operator_page(console, chromium_browser) as opened:
        yield opened


@pytest.fixture
def fresh(page: Any) -> Iterator[Any]:
    """A page of its own (no cookies) in the module page's browser."""
    with page_in(page.context.browser, 1280, 900) as opened:
        yield opened


def _filter(page: Any, values: dict[str, str]) -> None:
    """Fill in the results page's filter form (per page: 25) and send it."""
    for name, value in values.items():
        page.fill(f"form.filter input[name={name}]", value)
    page.select_option("form.filter select[name=limit]", "25")
    page.click("form.filter button[type=submit]")


@pytest.mark.parametrize(("refused", "values", "says"), [
    ("grade", {"site": "tokyo", "device": "kiosk-1", "grade": "fine;"},
     "grade: 'fine;' refused"),
    ("to", {"site": "tokyo", "from": "2026-11-01", "to": "2026-10-31"},
     "to: '2026-10-31' refused: a day on or after from (2026-11-01)"),
])
def test_a_refused_filter_keeps_the_form_s_other_values(
    console: Console, page: Any, refused: str, values: dict[str, str], says: str,
) -> None:
    """A refused filter was an error page without the form: the person typed every field
    again to correct one."""
    page.goto(console.url + "/results")
    _filter(page, values)
    expect(page.locator("#refused")).to_contain_text(says)
    expect(page.locator("h1")).to_have_text("Results")
    for name, value in values.items():
        expect(page.locator(f"form.filter input[name={name}]")).to_have_value(value)
    expect(page.locator("form.filter select[name=limit]")).to_have_value("25")
    field = page.locator(f"form.filter input[name={refused}]")
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(field).to_have_accessible_description(re.compile(re.escape(says)))
    expect(field).to_be_focused()
    expect(page.locator("#results")).to_have_count(0)  # nothing was looked up
    page.fill(f"form.filter input[name={refused}]", "fine" if refused == "grade" else "")
    page.click("form.filter button[type=submit]")
    expect(page.locator("#matching")).to_contain_text("match")
    expect(page.locator("#refused")).to_have_count(0)
    assert set(page.locator("#results tr td:nth-child(3)").all_inner_texts()) == {"tokyo"}


def test_a_filter_given_twice_in_the_address_keeps_its_first_value(console: Console,
                                                                 page: Any) -> None:
    """A parameter given twice is refused before the page runs; the form keeps the first."""
    page.goto(console.url + "/results?site=tokyo&device=kiosk-2&device=kiosk-1")
    expect(page.locator("#refused")).to_contain_text("device: 'kiosk-1' refused: given more "
                                                     "than once")
    expect(page.locator("form.filter input[name=site]")).to_have_value("tokyo")
    expect(page.locator("form.filter input[name=device]")).to_have_value("kiosk-2")


def test_a_wrong_password_keeps_the_user_name_typed(console: Console, fresh: Any) -> None:
    """A wrong password emptied the user name too: the person typed both again; the cursor
    now waits in the password field."""
    fresh.goto(console.url + "/results?site=tokyo")
    browser_login(fresh, "victor", "not the password")
    expect(fresh.locator(".error")).to_contain_text("Wrong user name or password")
    expect(fresh.locator("input[name=user]")).to_have_value("victor")
    password = fresh.locator("input[name=password]")
    expect(password).to_have_value("")
    expect(password).to_be_focused()
    fresh.keyboard.type(PASSWORD)
    fresh.keyboard.press("Enter")
    expect(fresh).to_have_url(console.url + "/results?site=tokyo")


def test_a_password_typed_as_the_user_name_is_not_shown_back(console: Console,
                                                             fresh: Any) -> None:
    fresh.goto(console.url + "/login")
    browser_login(fresh, PASSWORD, "victor")  # the two fields the wrong way round
    expect(fresh.locator(".error")).to_contain_text("Wrong user name or password")
    expect(fresh.locator("input[name=user]")).to_have_value("")
    expect(fresh.locator("input[name=user]")).to_be_focused()


def test_reloading_the_page_after_a_revoke_does_not_send_it_again(console: Console,
                                                                  page: Any) -> None:
    """The revoke's answer was the page itself, at /tokens/revoke: a reload sent the revoke
    again, and the page then said no such token was there."""
    store = open_store(console.store_url)
    try:
        token_id = create_token(store, "victor", label="to revoke").token_id
    finally:
        store.close()
    page.goto(console.url + "/tokens")
    page.get_by_role("button", name=f"Revoke token {token_id}", exact=True).click()
    done = f"Revoked API token {token_id} of victor: it is refused from now on."
    expect(page.locator(".done")).to_have_text(done)
    reload_sends_only_a_get(page, "API tokens", done)  # and what was done is still said
    expect(page.locator("#tokens")).not_to_contain_text(token_id)


def test_a_revoke_link_made_elsewhere_says_nothing_was_revoked(console: Console,
                                                              page: Any) -> None:
    """The page says a token was revoked only after this session revoked it."""
    page.goto(console.url + "/tokens?revoked=0123456789abcdef&of=victor&mark=" + "0" * 32)
    expect(page.locator("h1")).to_have_text("API tokens")
    expect(page.locator(".done")).to_have_count(0)


def test_reloading_the_page_after_a_password_change_does_not_send_it_again(
    console: Console, fresh: Any,
) -> None:
    """The change's answer was the page itself: a reload sent the form again, the old
    password now wrong, which counted as a failed login, and the page said "The current
    password is wrong"."""
    store = open_store(console.store_url)
    try:
        add_user(store, "pat", "viewer", PASSWORD)
    finally:
        store.close()
    fresh.goto(console.url + "/login")
    browser_login(fresh, "pat")
    fresh.goto(console.url + "/account")
    new = "a new and longer secret"
    for field, value in (("password", PASSWORD), ("new_password", new),
                         ("new_password_again", new)):
        fresh.fill(f"#password input[name={field}]", value)
    fresh.click("#password button[type=submit]")
    done = ("Password changed: 0 other session(s) ended, 0 API token(s) revoked. This "
            "session goes on.")
    expect(fresh.locator(".done")).to_have_text(done)
    reload_sends_only_a_get(fresh, "Account: pat (viewer)", done)
    fresh.goto(console.url + "/account?ended=5&revoked=9&mark=" + "0" * 32)  # made elsewhere
    expect(fresh.locator(".done")).to_have_count(0)


def test_the_fleet_is_narrowed_to_a_site_by_its_name(console: Console, page: Any) -> None:
    """A site was reached only through a link to it in a page of the fleet: among thousands
    of kiosks, 100 a page, a clinic's own site could be many pages away."""
    page.goto(console.url + "/fleet")
    page.get_by_label("site").fill("osaka")
    page.keyboard.press("Enter")
    expect(page).to_have_url(console.url + "/fleet?site=osaka")
    expect(page.locator("#fleet tr")).to_have_count(2)  # the header and kiosk-9
    expect(page.locator("#fleet")).to_contain_text("kiosk-9")
    expect(page.get_by_label("site")).to_have_value("osaka")


def test_a_refused_site_stays_in_the_fleet_s_site_field(console: Console, page: Any) -> None:
    """A site name the fleet refused was an error page: what was typed, and the field to
    correct it in, were gone."""
    page.goto(console.url + "/fleet")
    page.get_by_label("site").fill("os aka")
    page.keyboard.press("Enter")
    says = ("site: 'os aka' refused: not a site id (letters, digits, '.', '_' and '-', "
            "starting with a letter or digit, at most 64 characters)")
    expect(page.locator("#refused")).to_contain_text(says)
    field = page.get_by_label("site")
    expect(field).to_have_value("os aka")
    expect(field).to_have_accessible_description(re.compile(re.escape(says)))
    expect(field).to_be_focused()
    expect(page.locator("#fleet")).to_have_count(0)
    field.fill("osaka")
    page.keyboard.press("Enter")
    expect(page.locator("#fleet")).to_contain_text("kiosk-9")


def test_a_site_pasted_with_a_blank_after_it_is_refused_as_sent_not_read_as_another(
        console: Console, page: Any) -> None:
    """The site field was stripped: "osaka " (pasted from a list) was read as osaka, a site
    id that is none taken as another, where `--site "osaka "` is refused; and the refused
    form showed "osaka", so sending it again passed with no word."""
    page.goto(console.url + "/results")
    page.get_by_label("site").fill("osaka ")
    with page.expect_navigation() as answered:
        page.keyboard.press("Enter")
    assert answered.value.status == 400
    says = ("site: 'osaka ' refused: not a site id (letters, digits, '.', '_' and '-', "
            "starting with a letter or digit, at most 64 characters)")
    expect(page.locator("#refused")).to_contain_text(says)
    field = page.get_by_label("site")
    expect(field).to_have_value("osaka ")
    expect(field).to_be_focused()
    field.fill("osaka")
    page.get_by_label("device").fill("osaka/kiosk-9")
    page.keyboard.press("Enter")
    expect(page.locator("#refused")).to_have_count(0)
    expect(page.get_by_label("device")).to_have_value("osaka/kiosk-9")
    expect(page.locator("#results")).to_contain_text("kiosk-9")
    assert set(page.locator("#results tr td:nth-child(3)").all_inner_texts()) == {"osaka"}


def reload_sends_only_a_get(page: Any, heading: str, done: str) -> None:
    """A reload of the page a form's 303 led to asks for it again (one GET, no form sent
    again) and shows ``heading`` and what was done, with no error."""
    sent: list[str] = []
    page.on("request", lambda request: sent.append(request.method))
    page.reload()
    expect(page.locator("h1")).to_have_text(heading)
    assert sent == ["GET"]
    expect(page.locator(".error")).to_have_count(0)
    expect(page.locator(".done")).to_have_text(done)
