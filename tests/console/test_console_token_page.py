"""The API tokens page: an operator sees and revokes every user's tokens, any other user only
its own; a revoke needs the session's CSRF token, and another user's token id is answered as
an unknown one."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from console_helpers import (
    PASSWORD,
    Console,
    browser_login,
    get_with,
    login_cookie,
    post,
    running_console,
    session_cookie,
)
from playwright.sync_api import expect

from appliance.backoffice.store import open_store
from appliance.browser import page_in
from appliance.console.app import SECURITY_HEADERS
from appliance.console.auth import add_user, create_token, disable_user
from tests.disk_helpers import fill, small_tmpfs

FORM = "application/x-www-form-urlencoded"


def _tokens_of(console: Console, name: str, role: str, count: int) -> list[tuple[str, str]]:
    """A new user ``name`` with ``count`` API tokens: (token, id) each."""
    store = open_store(console.store_url)
    try:
        add_user(store, name, role, PASSWORD)
        made = [create_token(store, name, label=f"{name} job {i}") for i in range(count)]
    finally:
        store.close()
    return [(m.token, m.token_id) for m in made]


def _revoke(console: Console, cookie: str, csrf: str, token_id: str) -> tuple[int, bytes]:
    """A revoke through the form: the status and page it ends on (a revoke done redirects to
    the tokens page, which says so)."""
    status, headers, body = post(console.url + "/tokens/revoke", urlencode(
        {"csrf": csrf, "id": token_id}).encode(), {"Content-Type": FORM, "Cookie": cookie})
    if status == 303:
        assert headers["location"].startswith("/tokens?")
        status, _, body = get_with(console, headers["location"], cookie)
    return status, body


def _works(console: Console, token: str) -> bool:
    return console.get("/api/v1/fleet", token)[0] == 200


def test_a_user_sees_and_revokes_only_its_own_tokens_in_the_browser(
    console: Console, chromium_browser: Any,
) -> None:
    (own, own_id), (kept, kept_id) = _tokens_of(console, "tina", "viewer", 2)
    [(other, other_id)] = _tokens_of(console, "tom", "viewer", 1)
    assert _works(console, own)  # its last use shows on the page
    with page_in(chromium_browser, 1280, 900) as page:
        page.goto(console.url + "/login")
        browser_login(page, "tina")
        page.click("header a[href='/tokens']")
        expect(page.locator("h1")).to_have_text("Your API tokens")
        rows = page.locator("#tokens tr")
        expect(rows).to_have_count(3)  # the header and tina's two
        expect(page.locator("#tokens")).not_to_contain_text(other_id)
        first = rows.nth(1)
        expect(first).to_contain_text("tina job 0")
        expect(first.locator("td").nth(5)).not_to_have_text("never")
        expect(rows.nth(2).locator("td").nth(5)).to_have_text("never")
        first.locator("button[type=submit]").click()
        expect(page.locator(".done")).to_have_text(
            f"Revoked API token {own_id} of tina: it is refused from now on.")
        expect(page.locator("#tokens tr")).to_have_count(2)
        expect(page.locator("#tokens")).to_contain_text(kept_id)
    assert (_works(console, own), _works(console, kept), _works(console, other)) == (
        False, True, True)


def test_another_users_token_id_is_answered_as_an_unknown_one(console: Console) -> None:
    _tokens_of(console, "uma", "viewer", 0)
    [(other, other_id)] = _tokens_of(console, "ulf", "viewer", 1)
    cookie, csrf = login_cookie(console, "uma")
    status, body = _revoke(console, cookie, csrf, other_id)
    unknown_status, unknown_body = _revoke(console, cookie, csrf, "0123456789abcdef")
    assert (status, unknown_status) == (404, 404)
    assert f"No API token {other_id} of yours; nothing was revoked.".encode() in body
    assert body.replace(other_id.encode(), b"ID") == unknown_body.replace(
        b"0123456789abcdef", b"ID")  # the same page: no oracle
    assert _works(console, other)
    _, _, page = get_with(console, "/tokens", cookie)
    assert other_id.encode() not in page


def test_an_operator_sees_and_revokes_every_users_tokens(console: Console) -> None:
    [(token, token_id)] = _tokens_of(console, "vera", "viewer", 1)
    [(_, held_id)] = _tokens_of(console, "wes", "viewer", 1)
    store = open_store(console.store_url)
    try:
        disable_user(store, "wes")
    finally:
        store.close()
    cookie, csrf = login_cookie(console, "alice")  # an operator
    status, headers, page = get_with(console, "/tokens", cookie)
    assert status == 200
    seen = {name.lower(): value for name, value in headers.items()}
    assert {name: seen.get(name.lower()) for name in SECURITY_HEADERS} == SECURITY_HEADERS
    assert b"<h1>API tokens</h1>" in page
    assert token_id.encode() in page
    assert token.encode() not in page  # never the token itself
    assert f"<tr><td>wes (disabled)</td><td>wes job 0</td><td><code>{held_id}".encode() in page
    status, body = _revoke(console, cookie, csrf, token_id)
    assert status == 200
    assert f"Revoked API token {token_id} of vera".encode() in body
    assert not _works(console, token)


def test_a_revoke_needs_the_sessions_csrf_token_and_a_login(console: Console) -> None:
    [(token, token_id)] = _tokens_of(console, "walt", "viewer", 1)
    cookie, _ = login_cookie(console, "walt")
    status, body = _revoke(console, cookie, "forged", token_id)
    assert status == 403
    assert b"CSRF token missing or wrong" in body
    other_cookie, other_csrf = login_cookie(console, "alice")  # another session's token
    assert _revoke(console, cookie, other_csrf, token_id)[0] == 403
    assert _works(console, token)
    status, _, _ = post(console.url + "/tokens/revoke", urlencode(
        {"csrf": "x", "id": token_id}).encode(), {"Content-Type": FORM})
    assert status == 303  # no session: to the login page
    status, headers, _ = get_with(console, "/tokens", session_cookie(console, "made-up"))
    assert (status, headers["location"]) == (303, "/login?next=/tokens&ended=1")
    assert _works(console, token)
    assert other_cookie != cookie


def test_a_malformed_token_id_is_refused_naming_the_field(console: Console) -> None:
    cookie, csrf = login_cookie(console, "alice")
    status, body = _revoke(console, cookie, csrf, "1234%")
    assert status == 400
    assert re.search(rb"id: &#39;1234%&#39; refused: a token id: 16 hex digits", body), body
    status, body = _revoke(console, cookie, csrf, "0123456789abcdef\n")  # $ let it pass
    assert status == 400
    assert b"refused: a token id: 16 hex digits" in body, body


def test_a_full_store_answers_the_api_without_last_use_and_says_a_revoke_failed(
    tmp_path: Path,
) -> None:
    with small_tmpfs(tmp_path / "disk", size="8m") as disk:
        (disk / "console").mkdir()
        with running_console(disk / "console") as console:
            [(token, token_id)] = _tokens_of(console, "xena", "viewer", 1)
            cookie, csrf = login_cookie(console, "xena")
            filler = fill(disk)
            assert _works(console, token)  # its first use could not be written: still served
            status, body = _revoke(console, cookie, csrf, token_id)
            assert status == 503
            assert f"could not revoke API token {token_id} (its log says why): it still " \
                   "works".encode() in body
            assert _works(console, token)  # as the page says
            filler.unlink()
            _, _, page = get_with(console, "/tokens", cookie)
            assert page.count(b">never</td>") == 1  # the use during the full disk: unwritten
            assert _works(console, token)
            _, _, page = get_with(console, "/tokens", cookie)
            assert b">never</td>" not in page
            assert _revoke(console, cookie, csrf, token_id)[0] == 200
            assert not _works(console, token)
