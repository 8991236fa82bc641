"""The results page goes both ways: Older and Newer lead to the pages beside it (keeping the
filter and the page size), and it says how many results match, counted up to a cap."""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from console_helpers import Console, get_with, login_cookie, make_result, open_request

from appliance.backoffice.queries import ResultFilter
from appliance.backoffice.schema import iso_utc, result_row
from appliance.backoffice.store import Batch, Store

SEEDED = 60  # console_helpers.seed: 20 at osaka, 40 at tokyo


def _page(console: Console, cookie: str, path: str) -> tuple[list[str], dict[str, str], str]:
    """The measurement ids a results page lists, its paging links by id, and its text."""
    status, _, body = get_with(console, path, cookie)
    text = body.decode()
    assert status == 200, text
    ids = re.findall(r'<a href="/results/([0-9a-f-]{36})">', text)
    links = {name: href.replace("&amp;", "&") for name, href in
             re.findall(r'<a id="(newest|newer|older)" href="([^"]+)"', text)}
    return ids, links, text


def test_newer_leads_back_page_by_page_keeping_filter_and_size(console: Console) -> None:
    cookie, _ = login_cookie(console)
    path, pages = "/results?site=tokyo&limit=10", []
    while True:  # Older to the oldest page
        ids, links, _ = _page(console, cookie, path)
        pages.append(ids)
        if "older" not in links:
            break
        path = links["older"]
    assert [len(ids) for ids in pages] == [10, 10, 10, 10]
    assert "newer" in links
    for expected in reversed(pages[:-1]):  # and Newer back to the newest
        path = links["newer"]
        assert "site=tokyo" in path
        assert "limit=10" in path
        ids, links, _ = _page(console, cookie, path)
        assert ids == expected
    assert "newer" not in links  # the newest page: nothing newer
    assert set(links) == {"older"}


def test_newest_is_shown_only_where_newer_does_not_lead_there(console: Console) -> None:
    """Page 2 showed "Newest" and "← Newer", two links to the same newest results."""
    cookie, _ = login_cookie(console)
    first, links, _ = _page(console, cookie, "/results?site=tokyo&limit=10")
    assert set(links) == {"older"}
    second, links, _ = _page(console, cookie, links["older"])
    assert set(links) == {"newer", "older"}
    assert links["newer"] == "/results?site=tokyo&limit=10"  # the newest page itself
    _, links, _ = _page(console, cookie, links["older"])
    assert set(links) == {"newest", "newer", "older"}
    assert links["newest"] == "/results?site=tokyo&limit=10"
    assert _page(console, cookie, links["newer"])[0] == second
    assert _page(console, cookie, links["newest"])[0] == first


def test_the_csv_link_keeps_the_filter_and_is_bare_without_one(console: Console) -> None:
    """Without a filter the link was `/results.csv?`, an empty query."""
    cookie, _ = login_cookie(console)
    links = {}
    for path in ("/results", "/results?limit=10", "/results?site=tokyo&limit=10"):
        text = _page(console, cookie, path)[2]
        links[path] = re.findall(r'<a id="csv" href="([^"]+)"', text)
    assert links == {"/results": ["/results.csv"], "/results?limit=10": ["/results.csv"],
                     "/results?site=tokyo&limit=10": ["/results.csv?site=tokyo"]}


def test_the_page_says_how_many_results_match(console: Console) -> None:
    cookie, _ = login_cookie(console)
    assert f"{SEEDED} result(s) match." in _page(console, cookie, "/results")[2]
    assert "20 result(s) match." in _page(console, cookie, "/results?site=osaka&limit=10")[2]
    # a site the fleet knows, on a day without results (one it does not know is refused)
    assert "0 result(s) match." in _page(console, cookie, "/results?site=osaka&from=2026-11-02")[2]


# the last two: a placed time in fullwidth digits, which Python's \d took (any script's
# digits): a cursor no page makes was compared with the stored times as text
FULLWIDTH_CURSOR = ("%EF%BC%92%EF%BC%90%EF%BC%92%EF%BC%96-11-01T09:00:00.000000Z~"
                    "0190e8a2-0000-7000-8000-000000000000")


@pytest.mark.parametrize(("query", "field"), [
    ("after=not-a-cursor", "after"),
    (f"after={FULLWIDTH_CURSOR}", "after"),
    (f"before={FULLWIDTH_CURSOR}", "before"),
    ("after=2026-11-01T09:00:00.000000Z~0190e8a2-0000-7000-8000-000000000000"
     "&before=2026-11-01T09:00:00.000000Z~0190e8a2-0000-7000-8000-000000000000", "before"),
])
def test_a_newer_cursor_that_is_not_one_is_refused(console: Console, query: str,
                                                   field: str) -> None:
    cookie, _ = login_cookie(console)
    status, _, body = get_with(console, f"/results?{query}", cookie)
    assert status == 400
    assert f"{field}: ".encode() in body


def _add(store: Store, count: int) -> list[str]:
    """``count`` results at site s, one a minute; their ids, newest first."""
    results = [make_result(index, "s", "k1", "30-39") for index in range(count)]
    now = iso_utc(datetime.now(UTC))
    store.write_batch(Batch(results=[result_row(r, now, r.to_json().decode())
                                     for r in results]), 1000)
    return [str(r.measurement_id) for r in reversed(results)]


def test_a_newer_page_reads_the_results_just_newer_on_each_backend(store: Store) -> None:
    newest_first = _add(store, 30)
    where = ResultFilter(site="s")
    page = store.page_results(("placed_at", "measurement_id"), where, None, 10)
    assert [row[1] for row in page] == newest_first[:10]
    oldest_shown = store.page_results(("placed_at", "measurement_id"), where, None, 30)[-5]
    newer = store.page_results(("measurement_id",), where, None, 10, after=tuple(oldest_shown))
    assert [row[0] for row in newer] == newest_first[15:25]  # newest first, just newer


def test_the_count_stops_at_its_cap_on_each_backend(store: Store) -> None:
    _add(store, 30)
    exact = store.count_results_up_to(ResultFilter(site="s"), 30)
    assert (exact.counted, exact.more, exact.text()) == (30, False, "30 result(s)")
    capped = store.count_results_up_to(ResultFilter(), 25)
    assert (capped.counted, capped.more, capped.text()) == (25, True,
                                                            "more than 25 result(s)")
    assert store.count_results_up_to(ResultFilter(site="elsewhere"), 25).counted == 0


def test_the_api_goes_back_with_previous_as_after(console: Console) -> None:
    pages, path = [], "/api/v1/results?site=tokyo&limit=15"
    while True:
        status, _, body = console.get(path, console.token)
        assert status == 200, body
        answer = json.loads(body)
        pages.append([r["measurement_id"] for r in answer["results"]])
        if answer["next"] is None:
            break
        path = f"/api/v1/results?site=tokyo&limit=15&before={answer['next']}"
    assert [len(ids) for ids in pages] == [15, 15, 10]
    for expected in reversed(pages[:-1]):
        assert answer["previous"] is not None
        status, _, body = console.get(f"/api/v1/results?site=tokyo&limit=15&after="
                                      f"{answer['previous']}", console.token)
        answer = json.loads(body)
        assert [r["measurement_id"] for r in answer["results"]] == expected
    assert answer["previous"] is None  # the newest page


@pytest.mark.parametrize(("query", "field"), [
    ("before=not-a-cursor", "before"),
    ("after=2026-11-01T09:00:00Z~x", "after"),
    ("after=2026-11-01T09:00:00.000000Z~0190e8a2-0000-7000-8000-000000000000"
     "&before=2026-11-01T09:00:00.000000Z~0190e8a2-0000-7000-8000-000000000000", "before"),
    ("limit=7", "limit"),
])
def test_the_csv_refuses_a_cursor_or_size_the_results_page_refuses(console: Console,
                                                                   query: str,
                                                                   field: str) -> None:
    cookie, _ = login_cookie(console)
    status, _, body = get_with(console, f"/results.csv?site=osaka&{query}", cookie)
    assert status == 400, body
    assert f"{field}: ".encode() in body


def test_the_csv_holds_every_page_whatever_cursor_it_is_given(console: Console) -> None:
    cookie, _ = login_cookie(console)
    _, links, _ = _page(console, cookie, "/results?site=osaka&limit=10")
    older = links["older"].partition("?")[2]  # a real cursor, and a page size
    status, _, body = get_with(console, f"/results.csv?{older}", cookie)
    assert status == 200, body
    assert len(body.decode().splitlines()) == 1 + 20  # the header and all of osaka's


def test_a_head_of_the_csv_answers_its_headers_without_running_the_export(
    console: Console, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """HEAD /results.csv was routed as the GET and read the export's first page (a page of
    1000 rows) only for uvicorn to drop the body; a client checking the link before it
    downloads ran the export twice."""
    cookie, _ = login_cookie(console)
    exported: list[Sequence[str]] = []  # the columns of each page of results read
    page_results = Store.page_results

    def counted(store: Store, columns: Sequence[str], *args: Any, **kwargs: Any) -> Any:
        exported.append(columns)
        return page_results(store, columns, *args, **kwargs)

    monkeypatch.setattr(Store, "page_results", counted)
    path, headers = "/results.csv?site=osaka", {"Cookie": cookie}
    status, head, body = open_request(urllib.request.Request(
        console.url + path, headers=headers, method="HEAD"))
    assert (status, body) == (200, b"")
    assert exported == []  # on main: one page read
    status, got, body = get_with(console, path, cookie)
    assert status == 200
    assert len(body.decode().splitlines()) == 1 + 20
    assert len(exported) == 1  # the GET reads it: the spy sees the export's query
    for name in ("content-type", "content-disposition"):
        assert head[name] == got[name], name
    assert "content-length" not in head  # the GET's is streamed: its length is not known
    status, _, body = open_request(urllib.request.Request(
        console.url + "/results.csv?site=<b>", headers=headers, method="HEAD"))
    assert status == 400  # the filter is checked as for the GET
