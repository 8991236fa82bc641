"""The OpenAPI document documents the calls an API token makes: a token reads it, as a
logged-in user does; an anonymous caller and a wrong token do not."""

from __future__ import annotations

import json
import urllib.request

from console_helpers import Console, get_with, login_cookie, open_request


def _paths(body: bytes) -> set[str]:
    return set(json.loads(body)["paths"])


def test_an_api_token_reads_the_openapi_document(console: Console) -> None:
    for token in (console.token, console.viewer_token):
        status, headers, body = console.get("/openapi.json", token)
        assert status == 200, body
        assert headers["content-type"] == "application/json"
        assert "/api/v1/results" in _paths(body)
    cookie, _ = login_cookie(console)  # the same document a browser session reads
    assert _paths(get_with(console, "/openapi.json", cookie)[2]) == _paths(body)


def test_an_anonymous_caller_gets_no_openapi_document(console: Console) -> None:
    status, headers, body = console.get("/openapi.json")
    assert status == 303
    assert headers["location"].startswith("/login?next=")
    assert b"/api/v1" not in body


def test_a_wrong_token_is_refused_as_the_api_refuses_it(console: Console) -> None:
    for token in ("not-a-token", console.token[:-2] + "xx"):
        status, headers, body = console.get("/openapi.json", token)
        assert status == 401
        assert headers["www-authenticate"] == "Bearer"
        assert json.loads(body)["detail"].startswith("a valid bearer token is required")
    cookie, _ = login_cookie(console)  # a wrong token is refused even beside a session
    status, _, _ = open_request(urllib.request.Request(console.url + "/openapi.json", headers={
        "Cookie": cookie, "Authorization": "Bearer not-a-token"}))
    assert status == 401


def test_the_docs_page_stays_for_browsers_with_a_login(console: Console) -> None:
    status, headers, _ = console.get("/docs", console.token)
    assert status == 303
    assert headers["location"].startswith("/login?next=")
