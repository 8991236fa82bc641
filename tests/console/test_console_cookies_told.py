"""Every cookie the console sets is told in the threat model (README.md's table, which
docs/threat-model.md keeps row for row), by its name, with the flags it is really sent with:
the login-name cookie that a refused login sets was in no row."""

from __future__ import annotations

import http.client
import re
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from console_helpers import PASSWORD, Console

README = Path(__file__).resolve().parents[2] / "README.md"


def _threat_rows() -> list[str]:
    section = README.read_text().split("### Threat model", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| ")]


def _send(console: Console, method: str, path: str, body: str = "",
          cookie: str = "") -> tuple[list[str], bytes]:
    """One request; every Set-Cookie header of its answer (urllib keeps only one) and body."""
    parts = urlsplit(console.url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    headers = {"Content-Type": "application/x-www-form-urlencoded"} if body else {}
    if cookie:
        headers["Cookie"] = cookie
    try:
        connection.request(method, path, body=body.encode() or None, headers=headers)
        answer = connection.getresponse()
        return answer.headers.get_all("Set-Cookie") or [], answer.read()
    finally:
        connection.close()


def _login(console: Console, password: str) -> list[str]:
    """A login through the form as alice: the cookies its GET /login and POST set."""
    form_cookies, page = _send(console, "GET", "/login")
    csrf = re.search(rb'name="csrf" value="([^"]+)"', page)
    assert csrf
    fields = urlencode({"csrf": csrf.group(1).decode(), "user": "alice",
                        "password": password, "next": "/fleet"})
    posted, _ = _send(console, "POST", "/login", fields, form_cookies[0].split(";")[0])
    return form_cookies + posted


def _set_cookies(console: Console) -> dict[str, list[str]]:
    """Name (its port as ``<port>``) -> attributes, lower case, of every cookie the console
    sets (not deletes) through a refused login and one that succeeds."""
    port = str(urlsplit(console.url).port)
    cookies: dict[str, list[str]] = {}
    for header in _login(console, "not the password") + _login(console, PASSWORD):
        pair, *attributes = (part.strip() for part in header.split(";"))
        name, value = pair.split("=", 1)
        if value.strip('"'):
            cookies[name.replace(port, "<port>")] = [a.lower() for a in attributes]
    return cookies


def test_every_cookie_the_console_sets_is_told_in_the_threat_model_with_its_flags(
    console: Console,
) -> None:
    cookies = _set_cookies(console)
    assert set(cookies) == {"appliance_login_csrf_<port>", "appliance_login_name_<port>",
                            "appliance_session_<port>"}
    rows = _threat_rows()
    for name, attributes in cookies.items():
        told = [row for row in rows if f"`{name}`" in row]
        assert told, f"the threat model names no cookie {name}"
        row = told[0]
        assert ("httponly" in attributes) == ("HttpOnly" in row), name
        assert "samesite=strict" in attributes
        assert "SameSite=Strict" in row, name
        path = next(a for a in attributes if a.startswith("path=")).removeprefix("path=")
        assert path == "/" or f"`{path}`" in row, f"{name}: its path {path} is not told"


def test_the_login_name_cookie_s_row_says_how_long_it_is_kept(console: Console) -> None:
    cookies = _set_cookies(console)
    max_age_s = next(int(a.removeprefix("max-age=")) for a in
                     cookies["appliance_login_name_<port>"] if a.startswith("max-age="))
    row = next(row for row in _threat_rows() if "`appliance_login_name_<port>`" in row)
    assert f"{max_age_s // 60} minutes" in row
