"""A login from a browser that holds a session ends that session: the new cookie replaces it in
the browser, and the old one, left open, stayed valid for its whole lifetime for whoever had
copied it (a session fixed or stolen before the login), though no browser showed it any more."""

from __future__ import annotations

import re
from urllib.parse import urlencode

from console_helpers import PASSWORD, Console, get_with, login_cookie, post


def login_holding(console: Console, held: str, user: str,
                  password: str = PASSWORD) -> tuple[int, dict[str, str]]:
    """A login through the form from a browser that holds the session cookie ``held``."""
    _, answer, body = console.get("/login")
    csrf = re.search(rb'name="csrf" value="([^"]+)"', body)
    assert csrf
    form = {"csrf": csrf.group(1).decode(), "user": user, "password": password}
    status, headers, _ = post(console.url + "/login", urlencode(form).encode(), {
        "Content-Type": "application/x-www-form-urlencoded",
        "Cookie": f"{answer['set-cookie'].split(';')[0]}; {held}"})
    return status, headers


def test_logging_in_again_ends_the_session_the_browser_held(console: Console) -> None:
    held, _ = login_cookie(console, "victor")
    other, _ = login_cookie(console, "victor")  # another browser's session of the same user
    status, headers = login_holding(console, held, "alice")
    assert status == 303
    assert headers["set-cookie"].split(";")[0] != held
    assert get_with(console, "/fleet", headers["set-cookie"].split(";")[0])[0] == 200
    assert get_with(console, "/fleet", held)[0] == 303  # ended: back to the login page
    assert get_with(console, "/fleet", other)[0] == 200  # the user's other sessions go on


def test_a_refused_login_leaves_the_session_the_browser_held(console: Console) -> None:
    held, _ = login_cookie(console, "victor")
    status, headers = login_holding(console, held, "alice", "not the password")
    assert status == 303
    assert "failed=1" in headers["location"]
    assert get_with(console, "/fleet", held)[0] == 200
