"""Every console answer carries its security headers: pages, the API, pictures, refusals and the
answer to a request that failed inside the console (500)."""

from __future__ import annotations

import json
import re
import socket
import sqlite3
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from console_helpers import (
    Console,
    browser_login,
    get_with,
    login_cookie,
    open_request,
    post,
    session_cookie,
)
from playwright.sync_api import expect

from appliance.browser import page_in
from appliance.console.app import SECURITY_HEADERS


def _assert_guarded(headers: dict[str, str], what: str) -> None:
    seen = {name.lower(): value for name, value in headers.items()}
    for name, value in SECURITY_HEADERS.items():
        assert seen.get(name.lower()) == value, (what, name, seen)
    assert "frame-ancestors 'none'" in seen["content-security-policy"], what
    assert seen["cache-control"] == "no-store", what  # results and patient pictures


@contextmanager
def _table_gone(console: Console, table: str) -> Iterator[None]:
    """The store without ``table`` for a while (a store older than the console, a broken one)."""
    path = console.store_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        db.execute(f"ALTER TABLE {table} RENAME TO {table}_away")
    try:
        yield
    finally:
        with sqlite3.connect(path) as db:
            db.execute(f"ALTER TABLE {table}_away RENAME TO {table}")


def test_a_request_that_fails_inside_the_console_keeps_its_security_headers(
    console: Console,
) -> None:
    cookie, _ = login_cookie(console)
    with _table_gone(console, "rollouts"):
        status, headers, body = get_with(console, "/rollouts", cookie)
        assert status == 500
        _assert_guarded(headers, "/rollouts")
        assert headers["content-type"].startswith("text/html")
        assert b"Failed (500)" in body
        assert b"no such table" not in body  # the cause goes to the log, not to the visitor
        status, headers, body = console.get("/api/v1/rollouts", console.token)
        assert status == 500
        _assert_guarded(headers, "/api/v1/rollouts")
        assert list(json.loads(body)) == ["detail"]
        assert b"no such table" not in body
    assert get_with(console, "/rollouts", cookie)[0] == 200


def test_an_api_refusal_before_any_handler_keeps_its_security_headers(console: Console) -> None:
    status, headers, body = console.get("/api/v1/fleet?" + "a" * 3000, console.token)
    assert status == 414
    _assert_guarded(headers, "414 of the API")
    assert b"query string of 3000 characters refused" in body


def test_no_answer_holding_results_or_pictures_is_kept_by_the_browser(console: Console) -> None:
    cookie, _ = login_cookie(console)
    _, _, page = get_with(console, "/results", cookie)
    result = re.search(rb'href="(/results/[0-9a-f-]{36})"', page)
    assert result
    for path in ("/login", "/fleet", "/results", result.group(1).decode(), "/results.csv",
                 "/rollouts", "/pathology/job-1", "/pathology/job-1/slides/0/heatmap",
                 "/pathology/job-1/slides/0/cam", "/results?site=<b>", "/no-such-page"):
        status, headers, _ = get_with(console, path, cookie)
        assert status in (200, 400, 404), path
        _assert_guarded(headers, path)
    for path in ("/api/v1/results", "/api/v1/pathology/jobs/job-1/slides/0/heatmap"):
        status, headers, _ = console.get(path, console.token)
        assert status == 200, path
        _assert_guarded(headers, path)


def test_after_logout_the_back_button_shows_no_result(
    console: Console, chromium_browser: Any,
) -> None:
    with page_in(chromium_browser, 1280, 900) as page:
        page.goto(console.url + "/results")
        browser_login(page)
        expect(page).to_have_url(console.url + "/results")
        page.locator("#results td a").first.click()
        expect(page.locator("#features")).to_be_visible()
        page.click("header button[type=submit]")
        expect(page).to_have_url(console.url + "/login?logged_out=1")
        page.go_back()
        expect(page).to_have_url(re.compile(re.escape(console.url) + r"/login\?next=/results/"))
        assert page.locator("#features").count() == 0
        expect(page.locator("input[name=password]")).to_be_visible()


def test_every_link_of_an_error_page_works_under_its_own_csp(
    console: Console, chromium_browser: Any,
) -> None:
    with page_in(chromium_browser, 1280, 900) as page:
        blocked: list[str] = []
        page.on("console", lambda message: blocked.append(message.text)
                if "Content Security Policy" in message.text else None)
        page.goto(console.url + "/login")
        browser_login(page)
        expect(page).to_have_url(console.url + "/fleet")
        refused = console.url + "/results?site=%3Cb%3E"
        page.goto(refused)
        expect(page.locator(".error")).to_contain_text("site: '<b>' refused")
        # the header's, for a logged-in user (not its skip link, to this page's own main)
        links = page.locator("a:not([href^='#'])")
        assert links.count() >= 1
        for index in range(links.count()):
            page.goto(refused)
            with page.expect_navigation():
                links.nth(index).click()
            assert page.url != refused
        assert not blocked


def test_a_mistyped_parameter_is_a_400_page_naming_it(console: Console) -> None:
    status, headers, body = console.get("/login?failed=%3Cb%3Eyes")
    assert status == 400
    assert headers["content-type"].startswith("text/html")
    _assert_guarded(headers, "/login?failed=")
    assert b"failed: &#39;&lt;b&gt;yes&#39; refused" in body
    assert b"<b>yes" not in body


def test_a_form_sent_after_the_session_ended_leads_back_to_a_page(console: Console) -> None:
    status, headers, _ = post(console.url + "/logout", b"csrf=x", {
        "Content-Type": "application/x-www-form-urlencoded",
        "Cookie": session_cookie(console, "ended-or-expired")})
    assert status == 303
    assert headers["location"] == "/login?next=/fleet&ended=1"  # not next=/logout: a 405
    status, _, _ = get_with(console, "/logout", "")
    assert status == 405


def test_injected_markup_can_neither_re_point_links_nor_send_a_form_elsewhere(
    console: Console, chromium_browser: Any,
) -> None:
    with page_in(chromium_browser, 1280, 900) as page:
        page.goto(console.url + "/login")
        browser_login(page)
        expect(page).to_have_url(console.url + "/fleet")
        base = page.evaluate("""() => {
            document.head.insertAdjacentHTML('afterbegin', '<base href="http://127.0.0.1:9/">');
            return document.querySelector('header a[href="/results"]').href; }""")
        assert base == console.url + "/results"  # the <base> was ignored
        refused = page.evaluate("""() => new Promise(resolve => {
            document.addEventListener('securitypolicyviolation',
                                      event => resolve(event.effectiveDirective));
            const form = document.createElement('form');
            form.method = 'post';
            form.action = 'http://127.0.0.1:9/collect';
            document.body.append(form);
            form.submit(); })""")
        assert refused == "form-action"
        assert page.url == console.url + "/fleet"
        page.goto(console.url + "/fleet")
        page.click("header button[type=submit]")  # the console's own forms still work
        expect(page).to_have_url(console.url + "/login?logged_out=1")


def test_a_page_url_no_page_answers_is_an_error_page_and_the_api_keeps_json(
    console: Console,
) -> None:
    cookie, _ = login_cookie(console)
    status, headers, body = get_with(console, "/no-such-page/<b>", cookie)
    assert status == 404
    assert headers["content-type"].startswith("text/html")  # on main: JSON
    _assert_guarded(headers, "404 of a page")
    assert b"no page at /no-such-page/&lt;b&gt;" in body
    status, headers, body = post(console.url + "/fleet", b"", {"Cookie": cookie})
    assert status == 405
    assert headers["content-type"].startswith("text/html")
    assert headers["allow"] == "GET"
    assert b"/fleet does not take POST requests (only GET)" in body
    status, headers, body = console.get("/api/v1/no-such-call", console.token)
    assert status == 404
    assert headers["content-type"] == "application/json"
    assert b'"detail"' in body
    _assert_guarded(headers, "404 of the API")
    status, headers, body = post(console.url + "/api/v1/fleet", b"", {
        "Authorization": f"Bearer {console.token}"})
    assert (status, headers["content-type"], headers["allow"]) == (405, "application/json",
                                                                    "GET")


def _head(console: Console, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str],
                                                                          bytes]:
    return open_request(urllib.request.Request(console.url + path, headers=headers,
                                               method="HEAD"))


def test_head_answers_as_get_without_a_body(console: Console) -> None:
    cookie, _ = login_cookie(console)
    for path, headers in (("/login", {}), ("/fleet", {"Cookie": cookie}),
                          ("/results.csv?site=osaka", {"Cookie": cookie}),
                          ("/api/v1/fleet", {"Authorization": f"Bearer {console.token}"})):
        status, answer, body = _head(console, path, headers)
        assert status == 200, path  # on main: 405
        assert body == b"", path
        _assert_guarded(answer, f"HEAD {path}")
        _, got, _ = open_request(urllib.request.Request(console.url + path, headers=headers))
        assert answer["content-type"] == got["content-type"], path
    status, answer, _ = _head(console, "/fleet", {})
    assert (status, answer["location"]) == (303, "/login?next=/fleet")  # a login, as for GET
    assert _head(console, "/logout", {"Cookie": cookie})[0] == 405


def test_a_missing_page_shows_the_error_page_in_the_browser(
    console: Console, chromium_browser: Any,
) -> None:
    with page_in(chromium_browser, 1280, 900) as page:
        answer = page.goto(console.url + "/no-such-page")
        assert answer is not None
        assert answer.status == 404
        expect(page.locator("h1")).to_have_text("Not found (404)")
        expect(page.locator(".error")).to_have_text("no page at /no-such-page")
        page.click("main a[href='/fleet']")
        expect(page).to_have_url(console.url + "/login?next=/fleet")


def test_a_missing_page_keeps_the_header_of_a_logged_in_user(
    console: Console, chromium_browser: Any,
) -> None:
    """The 404 of a URL no page answers (and the 405, the 400 of a refused query) had no
    header, unlike every other page of a logged-in user: no navigation, no logout. Logged
    out, it still names the login-guarded pages only."""
    with page_in(chromium_browser, 1280, 900) as page:
        page.goto(console.url + "/login")
        browser_login(page)
        expect(page).to_have_url(console.url + "/fleet")
        for path, status in (("/no-such-page", 404), ("/fleet?bogus=1", 400)):
            answer = page.goto(console.url + path)
            assert answer is not None
            assert answer.status == status, path
            expect(page.locator("header a[href='/cohort']")).to_be_visible()
            expect(page.locator("header")).to_contain_text("alice")
            expect(page.locator("main a[href='/fleet']")).to_have_count(0)  # the header's
        page.click("header a[href='/results']")
        expect(page).to_have_url(console.url + "/results")
        page.goto(console.url + "/no-such-page")
        page.click("header button[type=submit]")  # Log out, from the error page
        expect(page).to_have_url(re.compile(r"/login"))
        page.goto(console.url + "/no-such-page")
        expect(page.locator("header")).to_have_count(0)


def test_a_missing_result_job_rollout_or_picture_page_says_not_found_404(
    console: Console,
) -> None:
    cookie, _ = login_cookie(console)
    for path in ("/results/0190e8a2-0000-7000-8000-000000000000", "/pathology/nope",
                 "/rollouts/nope", "/pathology/job-1/slides/99/heatmap"):
        status, _, body = get_with(console, path, cookie)
        assert status == 404, path
        assert b"<title>Not found (404) - appliance console</title>" in body, path
        assert b"<h1>Not found (404)</h1>" in body, path


def _raw_answer(console: Console, request: bytes) -> tuple[str, dict[str, str]]:
    """What the server answers ``request`` sent on a socket of its own: the status line and
    the headers (uvicorn answers a request it cannot parse itself, outside the app)."""
    host, _, port = console.url.removeprefix("http://").partition(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while b"\r\n\r\n" not in answer and (chunk := sock.recv(65536)):
            answer += chunk
    head = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    return head[0], dict(line.split(": ", 1) for line in head[1:])


def test_a_request_uvicorn_cannot_parse_is_refused_with_the_security_headers(
    console: Console,
) -> None:
    for request in (b"GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: " + b"a" * 200_000
                    + b"\r\n\r\n", b"NOT AN HTTP REQUEST\r\n\r\n"):
        status, headers = _raw_answer(console, request)
        assert status == "HTTP/1.1 400 Bad Request"
        _assert_guarded(headers, "uvicorn's 400")  # on main: content-type and connection only
