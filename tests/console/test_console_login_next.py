"""The login's ``next`` (where the browser goes after it) leads only to the console's own
pages: an address elsewhere, a scheme, a header break or markup is replaced by the fleet."""

from __future__ import annotations

import re
from urllib.parse import urlencode, urljoin, urlsplit

import pytest
from console_helpers import PASSWORD, Console, post

HOSTILE_NEXT = ("//evil.example", "/\\evil.example", "https://evil.example/", "/.//evil.example",
                "javascript:alert(1)", "/fleet\r\nSet-Cookie: planted=1", "\t//evil.example",
                "/results?site=<b>", "/%2F%2Fevil.example", "/%09/evil.example")


def _login_going_to(console: Console, next_path: str) -> tuple[str, str]:
    """The login page's hidden ``next`` for ``next_path``, and where its login leads."""
    status, headers, body = console.get("/login?" + urlencode({"next": next_path}))
    assert status == 200
    shown = re.search(rb'name="next" value="([^"]*)"', body)
    csrf = re.search(rb'name="csrf" value="([^"]+)"', body)
    assert shown
    assert csrf
    form = {"csrf": csrf.group(1).decode(), "user": "alice", "password": PASSWORD,
            "next": next_path}
    status, answer, _ = post(console.url + "/login", urlencode(form).encode(), {
        "Content-Type": "application/x-www-form-urlencoded",
        "Cookie": headers["set-cookie"].split(";")[0]})
    assert status == 303
    return shown.group(1).decode(), answer["location"]


@pytest.mark.parametrize("next_path", HOSTILE_NEXT)
def test_a_login_never_leads_off_the_console(console: Console, next_path: str) -> None:
    shown, location = _login_going_to(console, next_path)
    for target in (shown, location):
        resolved = urlsplit(urljoin(console.url + "/login", target))
        assert resolved.netloc == urlsplit(console.url).netloc, target
        assert resolved.scheme == "http", target
        assert "\r" not in target
        assert "\n" not in target
        assert "<" not in target
    assert "planted" not in location


def test_a_console_page_with_its_query_is_where_a_login_leads(console: Console) -> None:
    path = "/results?site=tokyo&limit=10&before=2026-11-01T09%3A30%3A00.000000Z~x"
    assert _login_going_to(console, path) == (path.replace("&", "&amp;"), path)


@pytest.mark.parametrize("next_path", ["/results\n", "/results?site=tokyo\n"])
def test_a_page_with_a_line_break_after_it_leads_to_the_fleet(console: Console,
                                                              next_path: str) -> None:
    """A line break ending ``next`` passed the check ($ matches before it): the form carried
    it and the login led to /results%0A, a page that is not there."""
    assert _login_going_to(console, next_path) == ("/fleet", "/fleet")  # on main: a 404 page
