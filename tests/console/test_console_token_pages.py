"""The API tokens page is paged as the fleet is: TOKENS_SHOWN tokens a page, oldest first,
with First, Previous and Next (``after``, ``before``) reaching every one; it rendered every
token of the store on one page."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from console_helpers import (
    PASSWORD,
    Console,
    get_with,
    listed_page,
    login_cookie,
    running_console,
    walk_pages,
)

from appliance.backoffice.accounts import TokenRow
from appliance.backoffice.store import Store, open_store
from appliance.console.auth import add_user, create_token
from appliance.console.tokenpage import TOKENS_SHOWN

MANY = 2 * TOKENS_SHOWN + 30  # three pages of the operator's list
VIEWERS_OWN = TOKENS_SHOWN + 5  # two pages of the viewer's own


def _make(store: Store, name: str, count: int) -> None:
    for index in range(count):
        create_token(store, name, label=f"{name} {index}")


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Console, list[str]]]:
    """A console whose store holds MANY tokens of alice's and VIEWERS_OWN of vera's (a
    viewer); every token's id, in the store's order."""
    with running_console(tmp_path_factory.mktemp("tokens")) as console:
        store = open_store(console.store_url)
        try:
            add_user(store, "vera", "viewer", PASSWORD)
            _make(store, "alice", MANY)
            _make(store, "vera", VIEWERS_OWN)
            ids = [token.token_id for token in store.tokens()]
        finally:
            store.close()
        yield console, ids


ROW = r"<td><code>([0-9a-f]{16})</code></td>"  # the token ids a page lists


def _page(console: Console, cookie: str, path: str) -> tuple[list[str], dict[str, str], str]:
    return listed_page(console, cookie, path, ROW)


def _walk(console: Console, cookie: str, start: str, way: str) -> list[list[str]]:
    return walk_pages(console, cookie, start, way, row=ROW, per_page=TOKENS_SHOWN)


def test_many_tokens_are_shown_a_page_at_a_time_and_next_reaches_each_once(
    many: tuple[Console, list[str]],
) -> None:
    console, every_id = many
    cookie, _ = login_cookie(console)
    ids, links, text = _page(console, cookie, "/tokens")
    assert len(ids) == TOKENS_SHOWN
    assert f"{len(every_id)} token(s); {TOKENS_SHOWN} on this page, oldest first." in text
    assert set(links) == {"next"}
    assert links["next"].startswith("/tokens?after=")
    pages = _walk(console, cookie, "/tokens", "next")
    assert [token for page in pages for token in page] == every_id  # each once, in order
    _, last_links, _ = _page(console, cookie, _last_path(console, cookie))
    assert set(last_links) == {"first", "previous"}
    assert last_links["first"] == "/tokens"
    back = _walk(console, cookie, last_links["previous"], "previous")
    assert back == pages[-2::-1]  # Previous walks the same pages back to the first


def _last_path(console: Console, cookie: str) -> str:
    path = "/tokens"
    while "next" in (links := _page(console, cookie, path)[1]):
        path = links["next"]
    return path


def test_a_viewer_pages_through_its_own_tokens_only(many: tuple[Console, list[str]]) -> None:
    console, _ = many
    cookie, _ = login_cookie(console, "vera")
    pages = _walk(console, cookie, "/tokens", "next")
    assert [len(page) for page in pages] == [TOKENS_SHOWN, VIEWERS_OWN - TOKENS_SHOWN]
    store = open_store(console.store_url)
    try:
        own = [token.token_id for token in store.tokens("vera")]
    finally:
        store.close()
    assert [token for page in pages for token in page] == own


@pytest.mark.parametrize("query", ["after=nonsense", "before=2026-12-01T00:00:00Z~XYZ",
                                   "after=2026-12-01T00:00:00Z~0123456789abcdef"
                                   "&before=2026-12-01T00:00:00Z~0123456789abcdef"])
def test_a_cursor_no_page_made_is_refused_naming_its_field(
    many: tuple[Console, list[str]], query: str,
) -> None:
    console, _ = many
    cookie, _ = login_cookie(console)
    status, _, body = get_with(console, f"/tokens?{query}", cookie)
    assert status == 400
    assert re.search(r"\b(after|before)\b", body.decode())


def test_a_page_of_tokens_reads_the_same_on_each_store(store: Store) -> None:
    """The store's keyset page (by creation, then id) on SQLite and PostgreSQL alike."""
    add_user(store, "alice", "operator", PASSWORD)
    _make(store, "alice", 7)
    every: list[TokenRow] = store.tokens()
    first = store.token_page(None, 3)
    onward = store.token_page(None, 3, after=(first[-1].created_at, first[-1].token_id))
    back = store.token_page(None, 3, before=(onward[0].created_at, onward[0].token_id))
    assert [t.token_id for t in first + onward] == [t.token_id for t in every[:6]]
    assert back == first
    assert store.count_tokens() == 7
    assert store.count_tokens("nobody") == 0
