"""The console answers only requests that name it by an IP address, ``localhost`` or a name in
``console.server_names``: a web page whose own name was pointed at 127.0.0.1 (DNS rebinding)
reached a loopback console from the browser of anyone on that host (or with an SSH tunnel to
it) and could guess passwords there, or fail logins until every loopback login was refused."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

import pytest
from console_helpers import PASSWORD, Console, open_request, post, running_console

from appliance.config.loader import ConfigError, config_from_mapping
from appliance.console.hostnames import host_refusal, own_names

REBOUND = "attacker.example"  # a name its owner's DNS answered with 127.0.0.1


def _get(console: Console, path: str, host: str, token: str | None = None) -> tuple[
        int, dict[str, str], bytes]:
    headers = {"Host": host} | ({"Authorization": f"Bearer {token}"} if token else {})
    return open_request(urllib.request.Request(console.url + path, headers=headers))


def _login_under(console: Console, host: str) -> tuple[int, dict[str, str], bytes]:
    """A right password sent to /login under ``host``, with a login form's CSRF cookie and
    token as the console gave them under its own address."""
    status, answer, body = console.get("/login")
    csrf = re.search(rb'name="csrf" value="([^"]+)"', body)
    assert status == 200
    assert csrf
    fields = {"csrf": csrf.group(1).decode(), "user": "alice", "password": PASSWORD}
    return post(console.url + "/login", urlencode(fields).encode(), {
        "Host": host, "Content-Type": "application/x-www-form-urlencoded",
        "Cookie": answer["set-cookie"].split(";")[0]})


def test_a_request_naming_another_host_is_refused_before_any_page_or_login(
        tmp_path: Path) -> None:
    with running_console(tmp_path) as console:
        port = console.url.rpartition(":")[2]
        page = _get(console, "/login", f"{REBOUND}:{port}")
        login = _login_under(console, f"{REBOUND}:{port}")
        api = _get(console, "/api/v1/fleet", f"{REBOUND}:{port}", console.token)
    for status, headers, _ in (page, login, api):
        assert status == 400  # on main: 200, 303 (logged in), 200
        assert "set-cookie" not in {name.lower() for name in headers}
        assert headers["content-security-policy"].startswith("default-src 'self'")
    said = page[2].decode()
    assert f"not to {REBOUND}" in said
    assert "console.server_names" in said
    assert json.loads(api[2])["detail"].startswith("this console answers to ")


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST.",
                                  "[::1]:{port}", "192.0.2.10:{port}", "console.example.org",
                                  "Console.Example.Org:443"])
def test_addresses_localhost_and_the_configured_names_are_answered(
        tmp_path: Path, host: str) -> None:
    with running_console(tmp_path, server_names=["console.example.org"]) as console:
        port = console.url.rpartition(":")[2]
        status, _, _ = _get(console, "/api/v1/fleet", host.format(port=port), console.token)
        status_login, headers, _ = _login_under(console, host.format(port=port))
    assert status == 200
    assert status_login == 303
    assert headers["location"] == "/fleet"


@pytest.mark.parametrize("entry", ["", "*", "a b", "http://console.example.org",
                                   "console.example.org:443", "-a.example", "a..example"])
def test_a_server_name_must_be_a_host_name(entry: str) -> None:
    with pytest.raises(ConfigError) as refused:
        config_from_mapping({"console": {"server_names": [entry]}}, environ={})
    assert f"console.server_names: {entry!r} is no host name" in str(refused.value)


def test_server_names_are_kept_in_lower_case_without_a_final_dot() -> None:
    config = config_from_mapping({}, environ={
        "APPLIANCE__CONSOLE__SERVER_NAMES": "[Console.Example.ORG., backoffice]"})
    assert config.console.server_names == ["console.example.org", "backoffice"]
    assert config_from_mapping({}, environ={}).console.server_names == []


def test_the_name_the_console_is_bound_to_is_its_own() -> None:
    names = own_names("BackOffice.example.", ["console.example.org"])
    assert host_refusal("backoffice.example:8080", names) is None
    assert host_refusal("console.example.org", names) is None
    assert host_refusal("0.0.0.0:8080", own_names("0.0.0.0", [])) is None
    assert host_refusal(f"{REBOUND}:8080", names)
