"""The dead-letters page narrowed to a site or a kiosk with the results page's ``site`` and
``device`` fields, as `results dead-letters --site/--device` narrows the terminal's table
(tests/backoffice/test_backoffice_site_letters_report.py): letters chosen by the topic they came
on under the console's ``mqtt.topic_prefix``, exact and case-sensitive; a value the results page
refuses is refused the same way, the form shown again as it was sent. Before, the page took no
filter (``site`` was an unknown parameter)."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from console_helpers import Console, get_with, login_cookie, running_console

from appliance.backoffice.schema import dead_letter
from appliance.backoffice.store import Batch, open_store

TOPICS = (
    "appliance/lab/k1/result",
    "appliance/lab/k2/result",
    "appliance/clinic/k1/result",
    "appliance/k1/lab/result",  # site k1: a device id that is another topic's site
    "appliance/Lab/k1/result",  # another case
    "appliance/labx/k1/result",  # a site whose name starts with another's
    "other/lab/k1/result",  # another prefix
)
NORTH = 105  # letters of site north: more than a page (100)


def _keep_letters(url: str, topics: list[str]) -> None:
    store = open_store(url)
    try:
        store.write_batch(Batch(dead_letters=[
            dead_letter(f"2026-11-26T01:{n // 60:02d}:{n % 60:02d}.000000Z", topic,
                        f"refused {n}", b"{}") for n, topic in enumerate(topics)]), 10_000)
    finally:
        store.close()


@pytest.fixture(scope="module")
def letters(console: Console) -> Console:
    _keep_letters(console.store_url,
                  [*TOPICS, *(f"appliance/north/n{n}/result" for n in range(NORTH))])
    return console


@pytest.fixture(scope="module")
def operator(letters: Console) -> str:
    return login_cookie(letters)[0]


def _page(console: Console, cookie: str, query: dict[str, str]) -> tuple[int, str]:
    status, _, body = get_with(console, "/dead-letters?" + urlencode(query), cookie)
    return status, html.unescape(body.decode())


def _topics(text: str) -> list[str]:
    return re.findall(r'<tr><td class="time">[^<]*</td><td>([^<]*)</td>', text)


@pytest.mark.parametrize(("query", "chosen", "said"), [
    ({"site": "lab"}, ["appliance/lab/k1/result", "appliance/lab/k2/result"],
     "2 newest of 2 kept from site 'lab'"),
    ({"device": "k1"}, ["appliance/lab/k1/result", "appliance/clinic/k1/result",
                        "appliance/Lab/k1/result", "appliance/labx/k1/result"],
     "4 newest of 4 kept from device 'k1' (of any site)"),
    ({"site": "lab", "device": "k1"}, ["appliance/lab/k1/result"],
     "1 newest of 1 kept from kiosk 'k1' of site 'lab'"),
    ({"site": "Lab"}, ["appliance/Lab/k1/result"], "1 newest of 1 kept from site 'Lab'"),
])
def test_the_site_and_device_fields_choose_letters_by_their_topic_under_the_prefix(
    letters: Console, operator: str, query: dict[str, str], chosen: list[str], said: str,
) -> None:
    status, text = _page(letters, operator, query)
    assert status == 200, text
    assert sorted(_topics(text)) == sorted(chosen)
    assert said in text
    for name, value in query.items():
        assert f'name="{name}" value="{value}"' in text  # the form keeps the filter


def test_a_site_no_letter_came_from_says_so_and_under_which_prefix(
    letters: Console, operator: str,
) -> None:
    status, text = _page(letters, operator, {"site": "annex"})
    assert status == 200
    assert _topics(text) == []
    assert (f"No dead letter from site 'annex' is kept (of {len(TOPICS) + NORTH} kept; their "
            "topics are read under the topic prefix appliance, mqtt.topic_prefix of the "
            "console's config)") in text


def test_older_and_newest_keep_the_filter(letters: Console, operator: str) -> None:
    status, text = _page(letters, operator, {"site": "north"})
    assert status == 200
    first = _topics(text)
    assert len(first) == 100
    older = re.search(r'<a id="older" href="([^"]+)"', text)
    assert older is not None
    assert older.group(1).startswith("/dead-letters?site=north&before=")
    status, _, body = get_with(letters, older.group(1), operator)
    rest = _topics(html.unescape(body.decode()))
    assert status == 200
    assert len(rest) == NORTH - 100
    assert {t.split("/")[1] for t in first + rest} == {"north"}
    assert len(set(first + rest)) == NORTH
    assert '<a href="/dead-letters?site=north">Newest</a>' in body.decode()


# lab/k1/x: lab/k1 is a kiosk in the device field, as `--device lab/k1` is
HOSTILE = ["../x", "x" * 65, "\x00", "lab\x00", "lab/k1/x", "<b>lab</b>", "lab' OR '1'='1",
           "l" * 1900]


@pytest.mark.parametrize("field", ["site", "device"])
@pytest.mark.parametrize("value", HOSTILE, ids=[f"hostile{n}" for n in range(len(HOSTILE))])
def test_a_hostile_site_or_device_is_refused_as_the_results_page_refuses_it(
    letters: Console, operator: str, field: str, value: str,
) -> None:
    """400, the form shown again with the field marked, nothing looked up; the results page
    refuses the same value with the same words."""
    query = {field: value, "limit": "10"}
    status, _, raw = get_with(letters, "/dead-letters?" + urlencode({field: value}), operator)
    text = html.unescape(raw.decode())
    assert status == 400, text
    assert b"\x00" not in raw
    assert b"<b>lab" not in raw
    assert _topics(text) == []
    assert 'id="letters"' not in text
    refused = re.search(r'id="refused">Filter refused, nothing was looked up: ([^\n]*)\. '
                        "Correct it above", text)
    assert refused is not None
    assert refused.group(1).startswith(f"{field}: ")
    longest = 64 if field == "site" else 129  # a device field may hold SITE/DEVICE
    assert re.search(rf'<input name="{field}" value="[^"]*" maxlength="{longest}" '
                     'aria-invalid="true" aria-describedby="refused" autofocus>', text)
    _, _, on_results = get_with(letters, "/results?" + urlencode(query), operator)
    assert refused.group(1) in html.unescape(on_results.decode())


def test_a_refused_page_keeps_the_filter_as_it_was_sent(letters: Console, operator: str) -> None:
    status, text = _page(letters, operator, {"site": "lab", "before": "1 OR 1=1"})
    assert status == 400
    assert "Filter refused, nothing was looked up: before: '1 OR 1=1' refused" in text
    assert 'name="site" value="lab"' in text
    status, text = _page(letters, operator, {"site": "lab", "sites": "lab"})
    assert status == 400
    assert "sites: 'lab' refused: unknown parameter; use site, device, before" in text


def test_a_viewer_gets_no_dead_letters_page_for_a_refused_filter(letters: Console) -> None:
    """The page is for operators: a viewer's filter, good or not, is answered 403 (the role
    is checked first), an unknown parameter (refused before any page runs) 400, on the error
    page, never the dead-letters page."""
    viewer = login_cookie(letters, "victor")[0]
    for query, expected in (({"site": "lab"}, 403), ({"site": "../x"}, 403),
                            ({"sites": "lab"}, 400)):
        status, text = _page(letters, viewer, query)
        assert status == expected, (query, status)
        assert "<h1>Dead letters</h1>" not in text, query


@pytest.fixture
def other_prefix(tmp_path: Path) -> Iterator[Any]:
    with running_console(tmp_path, topic_prefix="fleet-x") as console:
        _keep_letters(console.store_url, ["fleet-x/lab/k1/result", "appliance/lab/k1/result"])
        yield console


def test_a_console_on_another_prefix_chooses_the_topics_under_it(other_prefix: Console) -> None:
    cookie = login_cookie(other_prefix)[0]
    for query in ({"site": "lab"}, {"device": "k1"}, {"site": "lab", "device": "k1"}):
        status, text = _page(other_prefix, cookie, query)
        assert status == 200
        assert _topics(text) == ["fleet-x/lab/k1/result"], query
    _, text = _page(other_prefix, cookie, {"site": "clinic"})
    assert "read under the topic prefix fleet-x" in text
