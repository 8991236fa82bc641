"""A filter value the back office never heard of (a typo: grade=fien, site=tokio) is refused,
400, naming the field and the values it knows, on the API, the results page and the CSV: an
empty answer would tell the client there are no such results. A known value that selects
nothing is still an empty answer. (The fleet page says "No kiosk at site X." itself.)"""

from __future__ import annotations

import json
import urllib.request

import pytest
from console_helpers import Console, get_with, login_cookie, open_request, seed

from appliance.backoffice.queries import ResultFilter
from appliance.backoffice.store import Store
from appliance.console.filters import InputError
from appliance.console.knownvalues import refuse_unknown_values
from appliance.modelbuild.labels import GRADE_LABELS


@pytest.mark.parametrize(("query", "field", "named"), [
    ("grade=fien", "grade", "did you mean fine?; the grades known: fine, normal, coarse"),
    ("grade=excellent", "grade", "no stored result and not the shipped model has this grade; "
                                 "the grades known: fine, normal, coarse"),
    ("site=tokio", "site", "did you mean tokyo?; the fleet's sites: osaka, tokyo"),
    ("device=kiosk-7", "device", "the fleet's device ids: kiosk-1, kiosk-2, kiosk-9"),
    ("site=osaka&device=kiosk-1", "device", "no kiosk of this id is at site osaka; it is at "
                                            "tokyo"),
    ("site=osaka&device=kiosk-7", "device", "the device ids at osaka: kiosk-9"),
    ("device=kiosk-1&grade=Fine", "grade", "did you mean fine?"),  # labels match exactly
])
def test_an_unknown_filter_value_is_refused_naming_the_known_ones(
        console: Console, query: str, field: str, named: str) -> None:
    status, _, body = console.get(f"/api/v1/results?{query}", console.token)
    assert status == 400, body  # on main: 200 and "results": []
    detail = json.loads(body)["detail"]
    assert detail.startswith(f"{field}: "), detail
    assert named in detail, detail


def test_known_values_that_select_nothing_are_an_empty_answer(console: Console) -> None:
    for query in ("site=osaka&grade=coarse&from=2026-11-02", "device=kiosk-9&from=2026-11-02",
                  "site=tokyo&device=kiosk-2&grade=fine&to=2026-10-31"):
        status, _, body = console.get(f"/api/v1/results?{query}", console.token)
        assert status == 200, (query, body)
        assert json.loads(body)["results"] == [], query


def test_the_pages_and_the_csv_refuse_an_unknown_value_as_the_api_does(console: Console) -> None:
    cookie, _ = login_cookie(console)
    for path, shown in (("/results?grade=fien", b"did you mean fine?"),
                        ("/results.csv?site=tokio", b"did you mean tokyo?")):
        status, _, body = get_with(console, path, cookie)
        assert status == 400, path  # on main: 200, an empty list, or a CSV of its header alone
        assert shown in body, path
        head_status, _, _ = open_request(_head(console, path, cookie))
        assert head_status == 400, path  # the HEAD is refused as its GET is
    status, _, body = get_with(console, "/results.csv?site=osaka&grade=coarse", cookie)
    assert status == 200


def test_a_grade_the_shipped_model_gives_is_known_before_any_result_carries_it(
        store: Store) -> None:
    """A new fleet with no result yet: "coarse", a grade the shipped model gives, is a known
    value that selects nothing, not a typo (before: refused, since no stored result carried
    it); a typo is still refused, naming the model's grades."""
    for grade in GRADE_LABELS:
        refuse_unknown_values(store, ResultFilter(label=grade))
    with pytest.raises(InputError, match="did you mean coarse"):
        refuse_unknown_values(store, ResultFilter(label="corse"))


def _head(console: Console, path: str, cookie: str) -> urllib.request.Request:
    return urllib.request.Request(console.url + path, headers={"Cookie": cookie}, method="HEAD")


def test_the_store_reads_the_known_values_on_each_backend(store: Store) -> None:
    assert (store.stored_labels(10), store.fleet_sites_of()) == ([], [])  # none yet
    seed(store)
    assert store.stored_labels(10) == ["coarse", "fine", "normal"]  # the ungraded one: none
    assert store.stored_labels(2) == ["coarse", "fine"]
    assert store.label_stored("normal")
    assert not store.label_stored("norma")
    assert store.fleet_sites_of() == ["osaka", "tokyo"]
    assert store.fleet_sites_of("kiosk-2") == ["tokyo"]  # in the fleet by its results alone
    assert store.fleet_device_ids("osaka") == ["kiosk-9"]
