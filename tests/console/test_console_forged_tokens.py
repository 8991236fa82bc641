"""A forged CSRF token or session mark that holds a non-ASCII character is refused as any
forged one is (403 for a form; a tokens or account page that says nothing was done), never a
server error: hmac.compare_digest raises TypeError for a str holding such a character."""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit

import pytest
from console_helpers import PASSWORD, Console, get_with, login_cookie, post

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
FORGED = "é" * 43  # as long as a real token, one character outside ASCII


@pytest.mark.parametrize(("path", "fields"), [
    ("/logout", {}),
    ("/tokens/revoke", {"id": "0" * 16}),
    ("/account/password", {"password": PASSWORD, "new_password": "another password",
                           "new_password_again": "another password"}),
])
def test_a_form_with_a_non_ascii_csrf_token_is_refused_not_a_server_error(
        console: Console, path: str, fields: dict[str, str]) -> None:
    cookie, _ = login_cookie(console)
    status, _, body = post(console.url + path, urlencode({**fields, "csrf": FORGED}).encode(),
                           {**FORM, "Cookie": cookie})
    assert status == 403, body[:300]
    assert b"CSRF token missing or wrong" in body
    assert get_with(console, "/fleet", cookie)[0] == 200  # nothing done: still logged in


def test_a_login_with_a_non_ascii_csrf_token_is_refused_not_a_server_error(
        console: Console) -> None:
    port = urlsplit(console.url).port
    for planted in ("plain", FORGED):  # the form's token, or the cookie's, not ASCII
        status, headers, body = post(console.url + "/login", urlencode(
            {"csrf": FORGED, "user": "alice", "password": PASSWORD}).encode(),
            {**FORM, "Cookie": f"appliance_login_csrf_{port}={planted}".encode().decode(
                "latin-1")})
        assert status == 403, body[:300]
        assert "appliance_session" not in headers.get("set-cookie", "")


@pytest.mark.parametrize("path", [
    "/tokens?" + urlencode({"revoked": "0" * 16, "of": "alice", "mark": FORGED}),
    "/account?" + urlencode({"ended": "1", "revoked": "1", "mark": FORGED}),
])
def test_a_page_linked_with_a_non_ascii_mark_says_nothing_was_done(
        console: Console, path: str) -> None:
    cookie, _ = login_cookie(console)
    status, _, body = get_with(console, path, cookie)
    assert status == 200, body[:300]
    assert b"Revoked API token" not in body
    assert b"Password changed" not in body
