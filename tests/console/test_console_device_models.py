"""A kiosk's model history on the console: the fleet page links each kiosk's model to a page
of its newest stored model reports (appliance/console/devicemodels.py), newest first, a
kiosk's own words escaped, behind the login like every page."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from console_helpers import Console, get_with, login_cookie, running_console

from appliance.backoffice.store import open_store
from appliance.backoffice.triage import Inbound, Triage
from appliance.console.devicemodels import REPORTS_SHOWN
from appliance.transport.payloads import ModelInfo, ModelState

HOSTILE = "<script>alert(1)</script>"


def _report(index: int, state: str, version: str, reason: str | None) -> Inbound:
    """Report number ``index`` of tokyo/kiosk-1 (a minute apart by its clock)."""
    report = ModelState(device_id="kiosk-1", site="tokyo", state=state,  # type: ignore[arg-type]
                        at=datetime.now(UTC) - timedelta(minutes=60 - index),
                        model=ModelInfo(name="skin", version=version), reason=reason,
                        running=ModelInfo(name="skin", version=version))
    return Inbound("appliance/tokyo/kiosk-1/model/state", report.to_json(), index, 1)


@pytest.fixture(scope="module")
def told(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Console, str]]:
    """A console whose store holds 12 reports of tokyo/kiosk-1, the last two a refusal with
    a hostile reason and a rollback; a logged-in cookie."""
    with running_console(tmp_path_factory.mktemp("models")) as console:
        store = open_store(console.store_url)
        try:
            reports = [_report(i, "installed", f"1.{i}.0", None) for i in range(10)]
            reports += [_report(10, "rejected", "2.0.0", HOSTILE),
                        _report(11, "rolled_back", "1.9.0", "health check failed")]
            store.write_batch(Triage("appliance", 2**20).sort(reports)[0], 100)
        finally:
            store.close()
        cookie, _ = login_cookie(console)
        yield console, cookie


def _rows(text: str) -> list[list[str]]:
    table = text.split('<table id="model-reports">', 1)[1].split("</table>", 1)[0]
    return [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in table.split("<tr>")[2:]]


def test_a_kiosk_s_page_shows_its_newest_model_reports_newest_first(
    told: tuple[Console, str],
) -> None:
    console, cookie = told
    status, _, body = get_with(console, "/fleet/tokyo/kiosk-1/models", cookie)
    text = body.decode()
    assert status == 200, text
    rows = _rows(text)
    assert len(rows) == REPORTS_SHOWN
    assert [row[2] for row in rows[:3]] == ["rolled_back", "rejected", "installed"]
    assert rows[1][3] == "skin 2.0.0"
    assert rows[0][7] == "health check failed"
    assert HOSTILE not in text
    assert rows[1][7] == "&lt;script&gt;alert(1)&lt;/script&gt;"


def test_the_fleet_page_links_each_kiosk_to_its_models_and_the_page_needs_a_login(
    told: tuple[Console, str],
) -> None:
    console, cookie = told
    _, _, body = get_with(console, "/fleet", cookie)
    assert 'href="/fleet/tokyo/kiosk-1/models"' in body.decode()
    assert get_with(console, "/fleet/tokyo/kiosk-1/models", "")[0] == 303  # to the login
    status, _, body = get_with(console, "/fleet/osaka/kiosk-9/models", cookie)  # no report
    assert status == 200
    assert "No model report of this kiosk is stored." in body.decode()
    assert get_with(console, "/fleet/tokyo/kiosk%20one/models", cookie)[0] == 400


def test_the_api_pages_through_every_report_of_a_kiosk_newest_first(
    told: tuple[Console, str],
) -> None:
    console, _ = told
    path = "/api/v1/fleet/tokyo/kiosk-1/model-reports"
    pages, query = [], "?limit=5"
    while True:
        status, _, body = console.get(path + query, console.viewer_token)
        assert status == 200, body
        answer = json.loads(body)
        pages.append([(row["state"], row["model_version"]) for row in answer["reports"]])
        if answer["next"] is None:
            break
        query = f"?limit=5&before={answer['next']}"
    assert [len(page) for page in pages] == [5, 5, 2]
    assert pages[0][:2] == [("rolled_back", "1.9.0"), ("rejected", "2.0.0")]
    assert pages[-1] == [("installed", "1.1.0"), ("installed", "1.0.0")]
    assert console.get(path + "?before=x", console.token)[0] == 400
    assert console.get(path)[0] == 401


def test_the_kiosk_s_clock_column_is_named_as_on_the_results_page(
    told: tuple[Console, str],
) -> None:
    """The results list heads the time a kiosk's clock wrote "kiosk's clock (UTC)"; this
    page headed the same kind of time "kiosk time (UTC)"."""
    console, cookie = told
    _, _, results = get_with(console, "/results", cookie)
    _, _, models = get_with(console, "/fleet/tokyo/kiosk-1/models", cookie)
    name = "<th>received (UTC)</th><th>kiosk's clock (UTC)</th>"
    assert ">kiosk's clock (UTC)</th>" in results.decode()
    assert name in models.decode()


def test_an_unknown_kiosk_s_models_are_not_found_on_the_page_or_in_the_api(
    told: tuple[Console, str],
) -> None:
    """A kiosk the fleet does not hold was answered 200 "No model report of this kiosk is
    stored" (and an empty list by the API), as if it were a known kiosk that sent none
    (osaka/kiosk-9 still is); an unknown id is a 404 everywhere else in the console."""
    console, cookie = told
    status, _, body = get_with(console, "/fleet/osaka/kiosk-7/models", cookie)
    assert status == 404
    assert "no kiosk kiosk-7 at site osaka" in body.decode()
    assert "No model report" not in body.decode()
    assert get_with(console, "/fleet/tokyo/kiosk-9/models", cookie)[0] == 404  # other site
    status, _, body = console.get("/api/v1/fleet/osaka/kiosk-7/model-reports",
                                  console.viewer_token)
    assert status == 404
    assert "no kiosk kiosk-7 at site osaka" in body.decode()
    status, _, body = console.get("/api/v1/fleet/osaka/kiosk-9/model-reports",
                                  console.viewer_token)
    assert (status, json.loads(body)) == (200, {"reports": [], "next": None})


def test_a_kiosk_known_by_its_model_reports_alone_is_found_past_its_oldest(
    told: tuple[Console, str],
) -> None:
    """A kiosk that sent a model report but no status or result is not in the fleet
    registry; the API's page past its oldest report is empty, not a 404."""
    console, _ = told
    report = ModelState(device_id="kiosk-3", site="nagoya", state="installed",
                        at=datetime.now(UTC), model=ModelInfo(name="skin", version="1.0.0"))
    store = open_store(console.store_url)
    try:
        store.write_batch(Triage("appliance", 2**20).sort([Inbound(
            "appliance/nagoya/kiosk-3/model/state", report.to_json(), 1, 1)])[0], 100)
    finally:
        store.close()
    path = "/api/v1/fleet/nagoya/kiosk-3/model-reports"
    status, _, body = console.get(path, console.viewer_token)
    (only,) = json.loads(body)["reports"]
    status, _, body = console.get(f"{path}?before={only['id']}", console.viewer_token)
    assert (status, json.loads(body)) == (200, {"reports": [], "next": None})
