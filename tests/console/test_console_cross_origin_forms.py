"""A page of another origin on the console's own site (another port of its host) cannot log a
browser in as a user of its choosing (login CSRF): SameSite=Strict cookies reach the console
from such a page, and it can plant the login form's cookie with a token of its own."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from console_helpers import PASSWORD, Console, browser_login
from playwright.sync_api import expect

from appliance.browser import page_in


@contextmanager
def serving(page_html: str) -> Iterator[str]:
    """A web server on another port of 127.0.0.1 answering ``page_html`` to every GET; its
    address."""

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = page_html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def _planting_login_page(console: Console) -> str:
    """A page that plants the login form's cookie (its own token) for the console's host and
    sends the login form as victor, the attacker's account."""
    return ('<script>document.cookie = "appliance_login_csrf=PLANTED; path=/login";</script>'
            f'<form id="f" method="post" action="{console.url}/login">'
            '<input name="csrf" value="PLANTED"><input name="user" value="victor">'
            f'<input name="password" value="{PASSWORD}"><input name="next" value="/account">'
            '</form><script>document.getElementById("f").submit();</script>')


def test_a_page_on_another_port_cannot_log_the_browser_in(
    console: Console, chromium_browser: Any,
) -> None:
    with serving(_planting_login_page(console)) as attacker, page_in(chromium_browser) as page:
        page.goto(attacker)
        expect(page.locator("main")).to_contain_text("another origin")  # on main: victor's page
        assert page.url == console.url + "/login"
        assert not [c for c in page.context.cookies() if c["name"] == "appliance_session"]


def test_the_console_s_own_forms_still_work_in_the_browser(
    console: Console, chromium_browser: Any,
) -> None:
    with page_in(chromium_browser) as page:
        page.goto(console.url + "/login")
        browser_login(page, "victor")
        expect(page).to_have_url(console.url + "/fleet")
        page.click("header button[type=submit]")
        expect(page).to_have_url(console.url + "/login?logged_out=1")
