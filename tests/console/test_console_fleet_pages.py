"""The fleet page is paged by site and device id: a site of thousands of kiosks is shown
FLEET_SHOWN at a time, and Next and Previous reach every one of them."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from console_helpers import (
    Console,
    get_with,
    listed_page,
    login_cookie,
    running_console,
    walk_pages,
)

from appliance.backoffice.schema import device_row, iso_utc
from appliance.backoffice.store import Batch, Store, open_store
from appliance.console.views import FLEET_SHOWN, fleet_page
from appliance.synthetic import fleet as fleetsim
from appliance.transport import payloads

BIG_SITE_KIOSKS = 250  # at one site: three pages
SEEN = "2026-12-01T00:00:00.000000Z"


def add_kiosks(store: Store, site: str, count: int, online_every: int = 2) -> None:
    """``count`` kiosks at ``site`` (every ``online_every``th online, the rest offline)."""
    store.write("INSERT INTO devices (site, device_id, state, last_seen) VALUES (?, ?, ?, ?)",
                [(site, f"k{n:04d}", "online" if n % online_every == 0 else "offline", SEEN)
                 for n in range(count)])


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Console, str]]:
    """A console whose store holds a site of BIG_SITE_KIOSKS kiosks; a logged-in cookie."""
    with running_console(tmp_path_factory.mktemp("fleet")) as console:
        store = open_store(console.store_url)
        try:
            add_kiosks(store, "big", BIG_SITE_KIOSKS)
        finally:
            store.close()
        cookie, _ = login_cookie(console)
        yield console, cookie


ROW = r'<td><a href="/results\?[^"]*">([^<]+)</a></td>'  # the device ids a page lists


def _page(console: Console, cookie: str, path: str) -> tuple[list[str], dict[str, str], str]:
    return listed_page(console, cookie, path, ROW)


def _walk(console: Console, cookie: str, start: str, way: str) -> list[list[str]]:
    return walk_pages(console, cookie, start, way, row=ROW, per_page=FLEET_SHOWN)


def test_a_site_of_many_kiosks_is_shown_a_page_at_a_time(big: tuple[Console, str]) -> None:
    console, cookie = big
    devices, links, text = _page(console, cookie, "/fleet?site=big")
    assert len(devices) == FLEET_SHOWN
    assert f"{BIG_SITE_KIOSKS} kiosk(s) at site big" in text
    assert f"{BIG_SITE_KIOSKS // 2} online; {FLEET_SHOWN} on this page" in text
    assert set(links) == {"next"}
    pages = _walk(console, cookie, "/fleet?site=big", "next")
    shown = [d for page in pages for d in page]
    assert shown == [f"k{n:04d}" for n in range(BIG_SITE_KIOSKS)]  # each once, by name
    last = f"/fleet?{urlencode({'site': 'big', 'after': 'big~' + shown[-51]})}"
    back = _walk(console, cookie, last, "previous")
    assert [d for page in reversed(back) for d in page] == shown  # and back to the first


def test_the_whole_fleet_is_paged_across_sites(big: tuple[Console, str]) -> None:
    console, cookie = big
    store = open_store(console.store_url)
    try:
        stored = store.query("SELECT site, device_id FROM devices ORDER BY site, device_id")
    finally:
        store.close()
    pages = _walk(console, cookie, "/fleet", "next")
    assert [d for page in pages for d in page] == [device for _, device in stored]
    assert {site for site, _ in stored} == {"big", "osaka", "tokyo"}
    _, links, _ = _page(console, cookie, _page(console, cookie, "/fleet")[1]["next"])
    assert links["first"] == "/fleet"
    assert "site=" not in links["next"]


@pytest.mark.parametrize("query", [{"after": "big"}, {"before": "big~<b>"},
                                   {"after": "big~k1", "before": "big~k2"},
                                   {"after": "a~" + "b" * 65}])
def test_a_fleet_cursor_that_is_not_one_is_refused(big: tuple[Console, str],
                                                   query: dict[str, str]) -> None:
    console, cookie = big
    status, _, body = get_with(console, f"/fleet?{urlencode(query)}", cookie)
    assert status == 400
    assert re.search(rb"(after|before): ", body)
    assert b"<b>" not in body


def _api(console: Console, path: str) -> dict[str, Any]:
    status, _, body = console.get(path, console.token)
    assert status == 200, body
    answer: dict[str, Any] = json.loads(body)
    return answer


def test_the_api_answers_every_kiosk_at_once_to_a_client_that_does_not_page(
    big: tuple[Console, str],
) -> None:
    console, _ = big
    store = open_store(console.store_url)
    try:
        stored = store.query("SELECT site, device_id FROM devices ORDER BY site, device_id")
    finally:
        store.close()
    answer = _api(console, "/api/v1/fleet")
    assert set(answer) == {"devices"}  # no `next`: the answer it always was
    assert [(d["site"], d["device_id"]) for d in answer["devices"]] == [tuple(r) for r in stored]
    assert len(stored) > BIG_SITE_KIOSKS


@pytest.mark.parametrize("limit", [1, 7, 100, 200])
def test_the_api_pages_the_fleet_when_asked_and_next_reaches_every_kiosk(
    big: tuple[Console, str], limit: int,
) -> None:
    console, _ = big
    every = _api(console, "/api/v1/fleet")["devices"]
    pages, path = [], f"/api/v1/fleet?limit={limit}"
    while True:
        answer = _api(console, path)
        assert set(answer) == {"devices", "next"}
        pages.append(answer["devices"])
        if answer["next"] is None:
            break
        path = f"/api/v1/fleet?{urlencode({'limit': limit, 'after': answer['next']})}"
    assert all(len(page) == limit for page in pages[:-1])
    assert 0 < len(pages[-1]) <= limit
    keys = ("site", "device_id")
    assert ([[d[k] for k in keys] for page in pages for d in page]
            == [[d[k] for k in keys] for d in every])  # each kiosk once, in the same order


def test_the_api_s_after_alone_pages_50_at_a_time(big: tuple[Console, str]) -> None:
    console, _ = big
    answer = _api(console, "/api/v1/fleet?after=big~k0100")
    assert [d["device_id"] for d in answer["devices"]] == [f"k{n:04d}" for n in range(101, 151)]
    assert answer["next"] == "big~k0150"


@pytest.mark.parametrize(("query", "refused"), [
    ({"limit": "0"}, "limit: '0' refused: a whole number from 1 to 200"),
    ({"limit": "201"}, "limit: '201' refused: a whole number from 1 to 200"),
    ({"limit": "ten", "after": "big~k0001"}, "limit: 'ten' refused: a whole number"),
    ({"after": "big"}, "after: 'big' refused: a site~device"),
    ({"after": "big~<b>"}, "after: 'big~<b>' refused: a site~device"),
    ({"before": "big~k0001"}, "before: 'big~k0001' refused: unknown parameter; use after, "
                              "limit"),  # the API pages forward only
])
def test_the_api_refuses_a_fleet_page_it_cannot_give(big: tuple[Console, str],
                                                     query: dict[str, str], refused: str) -> None:
    console, _ = big
    status, _, body = console.get(f"/api/v1/fleet?{urlencode(query)}", console.token)
    assert status == 400
    assert json.loads(body)["detail"].startswith(refused)


def test_a_fleet_page_reads_one_page_of_kiosks_on_each_backend(store: Store) -> None:
    add_kiosks(store, "s1", 150, online_every=3)
    add_kiosks(store, "s2", 30)
    first = fleet_page(store, "s1")
    assert [d["device_id"] for d in first.devices] == [f"k{n:04d}" for n in range(FLEET_SHOWN)]
    assert (first.total, first.online, first.previous) == (150, 50, None)
    assert first.next == ("s1", f"k{FLEET_SHOWN - 1:04d}")
    second = fleet_page(store, "s1", after=first.next)
    assert len(second.devices) == 50
    assert (second.next, second.previous) == (None, ("s1", f"k{FLEET_SHOWN:04d}"))
    again = fleet_page(store, "s1", before=second.previous)
    assert again.devices == first.devices
    assert (again.next, again.previous) == (first.next, None)
    across = fleet_page(store, None, after=("s1", "k0120"))
    assert [d["site"] for d in across.devices] == ["s1"] * 29 + ["s2"] * 30
    assert across.total == 180


def test_an_empty_fleet_says_so(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    try:
        empty = fleet_page(store, None)
    finally:
        store.close()
    assert (empty.devices, empty.total, empty.next, empty.previous) == ([], 0, None, None)


def test_the_openapi_document_names_the_fleet_s_paging(big: tuple[Console, str]) -> None:
    console, _ = big
    call = _api(console, "/openapi.json")["paths"]["/api/v1/fleet"]["get"]
    assert sorted(p["name"] for p in call["parameters"]) == ["after", "limit"]
    assert "`next`" in call["description"]
    assert all(not p["required"] for p in call["parameters"])


def test_a_kiosk_that_does_not_measure_says_why_on_the_fleet_page_and_in_the_api(
    tmp_path: Path,
) -> None:
    """A kiosk whose latest status says measuring is paused (payloads.py: measuring_paused)
    shows it in its state; a kiosk that measures, and one offline, show their state alone."""
    with running_console(tmp_path) as console:
        _check_paused_shown(console, login_cookie(console)[0])


def _check_paused_shown(console: Console, cookie: str) -> None:
    now = datetime.now(UTC)
    measuring = fleetsim.online_status("halted", "k-ok")
    paused = fleetsim.online_status("halted", "k-full").model_copy(
        update={"measuring_paused": "disk_full"})
    gone = paused.model_copy(update={"device_id": "k-gone", "state": "offline",
                                     "measuring_paused": None})
    store = open_store(console.store_url)
    try:
        store.write_batch(Batch(statuses=[device_row(s, iso_utc(now))
                                          for s in (measuring, paused, gone)]), 100)
    finally:
        store.close()
    _, _, text = _page(console, cookie, "/fleet?site=halted")
    states = dict(re.findall(r'<td><a href="/results\?[^"]*">([^<]+)</a></td>\s*'
                             r'<td class="([^"]+)">', text))
    assert states == {"k-full": "online paused", "k-gone": "offline", "k-ok": "online"}
    assert ">online, measuring paused: disk full</td>" in text
    status, _, body = console.get("/api/v1/fleet", console.token)
    assert status == 200
    shown = {d["device_id"]: (d["measuring_paused"], d["state_text"])
             for d in json.loads(body)["devices"] if d["site"] == "halted"}
    assert shown == {"k-full": ("disk_full", "online, measuring paused: disk full"),
                     "k-gone": (None, "offline"), "k-ok": (None, "online")}


def test_a_kiosk_on_its_repaired_outbox_copy_says_so_on_the_fleet_page_and_in_the_api(
    tmp_path: Path,
) -> None:
    """A kiosk whose latest status says it keeps its results in its repaired outbox copy
    (payloads.py: outbox_in_use) shows it in its state, in red as a paused kiosk is."""
    with running_console(tmp_path) as console:
        now = datetime.now(UTC)
        own = fleetsim.online_status("copied", "k-own")
        on_copy = fleetsim.online_status("copied", "k-copy").model_copy(
            update={"outbox_in_use": "repaired_copy"})
        both = on_copy.model_copy(update={"device_id": "k-both", "measuring_paused": "storage"})
        gone = on_copy.model_copy(update={"device_id": "k-gone", "state": "offline"})
        store = open_store(console.store_url)
        try:
            store.write_batch(Batch(statuses=[device_row(s, iso_utc(now))
                                              for s in (own, on_copy, both, gone)]), 100)
        finally:
            store.close()
        _, _, text = _page(console, login_cookie(console)[0], "/fleet?site=copied")
        states = dict(re.findall(r'<td><a href="/results\?[^"]*">([^<]+)</a></td>\s*'
                                 r'<td class="([^"]+)">', text))
        assert states == {"k-both": "online paused", "k-copy": "online paused",
                          "k-gone": "offline", "k-own": "online"}
        assert ">online, outbox on its repaired copy</td>" in text
        assert ">online, measuring paused: storage, outbox on its repaired copy</td>" in text
        status, _, body = console.get("/api/v1/fleet", console.token)
    assert status == 200
    shown = {d["device_id"]: (d["outbox_in_use"], d["state_text"])
             for d in json.loads(body)["devices"] if d["site"] == "copied"}
    assert shown == {
        "k-copy": ("repaired_copy", "online, outbox on its repaired copy"),
        "k-both": ("repaired_copy", "online, measuring paused: storage, outbox on its "
                   "repaired copy"),
        "k-gone": ("repaired_copy", "offline"), "k-own": (None, "online")}


def test_the_fleet_says_when_a_kiosk_sent_its_report_by_the_back_office_s_clock(
    tmp_path: Path,
) -> None:
    """An offline kiosk's camera and outbox are those it last reported; the fleet page said
    when by the kiosk's own clock alone (``status_at``: 2000-01-01 after a dead CMOS battery)
    beside "online, 2h ago" counted by the back office's, and the API gave no
    ``status_sent_at`` (when the back office places that report's sending) at all."""
    now = datetime.now(UTC)
    sent = iso_utc(now - timedelta(hours=2, minutes=1))
    reset = payloads.Status(device_id="k-2000", site="clocked", state="offline",
                            at=datetime(2000, 1, 1, tzinfo=UTC), camera="online",
                            outbox_depth=2, outbox_oldest_age_s=90.0)
    with running_console(tmp_path) as console:
        store = open_store(console.store_url)
        try:
            store.write_batch(Batch(statuses=[device_row(reset, iso_utc(now), sent)]), 100)
        finally:
            store.close()
        (api,) = [d for d in _api(console, "/api/v1/fleet")["devices"]
                  if d["device_id"] == "k-2000"]
        _, _, text = _page(console, login_cookie(console)[0], "/fleet?site=clocked")
        described = _api(console, "/openapi.json")["paths"]["/api/v1/fleet"]["get"]
    assert (api["status_at"], api["status_sent_at"]) == ("2000-01-01T00:00:00.000000Z", sent)
    assert api["camera_text"] == "last said online, 2h ago"
    reported = f"sent at {sent[:19]}Z (by its own clock 2000-01-01T00:00:00Z)"
    titles = dict(re.findall(r'<td class="(camera|oldest)" title="([^"]*)"', text))
    assert unescape(titles["camera"]) == (f"as the kiosk last reported, {reported}; it is "
                                          "offline now")
    assert unescape(titles["oldest"]) == f"when the kiosk reported, {reported}"
    assert "`status_sent_at`" in described["description"]
