"""X-Forwarded-For and -Proto are believed only from the proxies in console.trusted_proxies
(none by default): any other client, a local user on 127.0.0.1 included, cannot name the
address its failed logins count against."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from console_helpers import (
    PASSWORD,
    Console,
    open_request,
    post,
    post_login,
    running_console,
)

from appliance.config.loader import ConfigError, config_from_mapping


def _login(console: Console, user: str, password: str, forwarded: dict[str, str]) -> tuple[
        int, dict[str, str]]:
    """One login through the form, the request carrying the ``forwarded`` headers."""
    status, headers, _ = post_login(console, user, password, forwarded)
    return status, headers


def _fail_from(console: Console, addresses: list[str]) -> None:
    """A wrong password from each of ``addresses`` (as the request says), each for another
    user name."""
    for attempt, address in enumerate(addresses):
        status, _ = _login(console, f"guess{attempt}", "not the password",
                           {"X-Forwarded-For": address})
        assert status == 303  # back to the form, failed


def test_by_default_no_client_names_its_own_address(tmp_path: Path) -> None:
    with running_console(tmp_path, login_max_failures=1) as console:  # an address: 4
        _fail_from(console, [f"10.9.0.{n}" for n in range(4)])  # a new address each, it says
        status, headers = _login(console, "alice", PASSWORD, {"X-Forwarded-For": "10.9.1.1"})
    assert status == 429  # on main: 303, the forged address had no failures
    assert int(headers["retry-after"]) > 0


def test_a_trusted_proxy_s_forwarded_address_and_scheme_are_believed(tmp_path: Path) -> None:
    with running_console(tmp_path, login_max_failures=1,
                         trusted_proxies=["127.0.0.0/8"]) as console:
        _fail_from(console, ["198.51.100.7"] * 4)
        status, _ = _login(console, "alice", PASSWORD, {"X-Forwarded-For": "198.51.100.7"})
        assert status == 429
        status, headers = _login(console, "alice", PASSWORD, {
            "X-Forwarded-For": "198.51.100.8", "X-Forwarded-Proto": "https"})
    assert status == 303
    assert headers["location"] == "/fleet"
    assert "secure" in headers["set-cookie"].lower()  # the visitor used HTTPS at the proxy


@pytest.mark.parametrize("entry", ["localhost", "*", "10.0.0.300", ""])
def test_a_trusted_proxy_must_be_an_address_or_network(entry: str) -> None:
    with pytest.raises(ConfigError) as refused:
        config_from_mapping({"console": {"trusted_proxies": [entry]}}, environ={})
    assert (f"console.trusted_proxies: {entry!r} is no IP address or network; write e.g. "
            "127.0.0.1") in str(refused.value)


def test_an_address_with_host_bits_is_taken_as_its_network() -> None:
    config = config_from_mapping({}, environ={
        "APPLIANCE__CONSOLE__TRUSTED_PROXIES": "[10.0.0.5/24, '::1', 127.0.0.1]"})
    assert config.console.trusted_proxies == ["10.0.0.0/24", "::1/128", "127.0.0.1/32"]
    assert config_from_mapping({}, environ={}).console.trusted_proxies == []


def test_behind_a_trusted_tls_proxy_the_login_form_s_cookie_is_secure_too(tmp_path: Path) -> None:
    """The login form's CSRF cookie lacked Secure where the session cookie had it: a browser
    sent it over plain HTTP to the same host."""
    with running_console(tmp_path, trusted_proxies=["127.0.0.0/8"]) as console:
        request = urllib.request.Request(console.url + "/login",
                                         headers={"X-Forwarded-Proto": "https"})
        status, headers, _ = open_request(request)
        _, plain, _ = console.get("/login")
    assert status == 200
    assert headers["set-cookie"].startswith(f"appliance_login_csrf_{urlsplit(console.url).port}=")
    assert "secure" in headers["set-cookie"].lower()  # on main: not
    assert "secure" not in plain["set-cookie"].lower()  # plain HTTP: it would not be kept


def test_behind_a_trusted_tls_proxy_the_session_cookie_is_a_host_only_one(
        tmp_path: Path) -> None:
    """Behind TLS the session cookie is named __Host-: a browser keeps such a cookie only
    Secure, of path / and from this host, so a page on a sibling name cannot plant one for
    the whole domain (and of two cookies of one name the console read the last, which a
    browser sends after the host's own)."""
    https = {"X-Forwarded-Proto": "https"}
    with running_console(tmp_path, trusted_proxies=["127.0.0.0/8"]) as console:
        port = urlsplit(console.url).port
        status, headers = _login(console, "alice", PASSWORD, https)
        assert status == 303
        name, _, value = headers["set-cookie"].split(";")[0].partition("=")
        attributes = headers["set-cookie"].lower()

        def fleet_with(cookie: str) -> int:
            request = urllib.request.Request(console.url + "/fleet",
                                             headers={**https, "Cookie": cookie})
            return open_request(request)[0]

        own = fleet_with(f"{name}={value}")
        planted = fleet_with(f"appliance_session_{port}={value}")
        page = open_request(urllib.request.Request(
            console.url + "/fleet", headers={**https, "Cookie": f"{name}={value}"}))[2]
        csrf = re.search(rb'name="csrf" value="([^"]+)"', page)
        assert csrf
        _, logout, _ = post(console.url + "/logout", b"csrf=" + csrf.group(1), {
            **https, "Cookie": f"{name}={value}",
            "Content-Type": "application/x-www-form-urlencoded"})
    assert name == f"__Host-appliance_session_{port}"  # on main: appliance_session_PORT
    assert "secure" in attributes
    assert "path=/" in attributes
    assert "domain" not in attributes
    assert own == 200
    assert planted == 303  # a cookie any name of the domain could set is not the session
    forgotten = logout["set-cookie"].lower()  # a browser drops a __Host- one only so
    assert forgotten.startswith(f"__host-appliance_session_{port}=")
    assert "secure" in forgotten
    assert "max-age=0" in forgotten
