"""The console reads a hostile kiosk's text bounded and escaped: the withheld grade's reason on
the page and the API; every quality reason, score and grade probability on a result's page (cut
to length); every free text on the pages (control characters as visible escapes)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from console_helpers import Console, browser_login, get_with, login_cookie, make_result
from playwright.sync_api import expect

from appliance.backoffice.schema import iso_utc, result_row
from appliance.backoffice.store import Batch, open_store
from appliance.console.filters import parse_query
from appliance.console.views import SHOWN_REASON_CHARS, SHOWN_SCORES, result_detail, results_page
from appliance.edge.reasons import NOT_GRADED, NOT_MEASURED
from appliance.transport import payloads


def test_a_made_up_withheld_reason_names_only_known_features(tmp_path: Path) -> None:
    named = ", ".join(["<b>x</b>", "kime_score", *["pore_count"] * 20_000,
                       *(f"f{i}" for i in range(5_000))])
    hostile = make_result(1, "lab", "k1", "30-39").model_copy(update={
        "classification": None,
        # a row stored before the contract bounded a reason (payloads.Result): no validation
        "quality": payloads.Quality.model_construct(verdict="ok",
                                                    reasons=[f"{NOT_GRADED} ({named})"])})
    store = open_store(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    try:
        row = result_row(hostile, iso_utc(datetime.now(UTC)), hostile.to_json().decode())
        store.write_batch(Batch(results=[row]), 100)
        (item,) = results_page(store, parse_query({})).items
        detail = result_detail(store, hostile.measurement_id)
    finally:
        store.close()
    expected = {"features": ["kime_score", "pore_count"], "frame": False}
    assert item["grade_withheld"] == expected
    assert detail is not None
    assert detail["grade_withheld"] == expected


def _stored(store_url: str, result: payloads.Result) -> None:
    store = open_store(store_url)
    try:
        row = result_row(result, iso_utc(datetime.now(UTC)), result.to_json().decode())
        store.write_batch(Batch(results=[row]), 100)
    finally:
        store.close()


def test_a_result_page_shows_hostile_reasons_escaped_and_bounded(console: Console) -> None:
    # what the contract let through before it bounded a reason and the scores (payloads.Result),
    # as rows stored then still hold: 16 reasons, one of 200,000 characters, a right-to-left
    # override that would show "evil txt.exe" as "exe.txt live", terminal escapes; 4,000 scores
    spoof = f"{NOT_MEASURED}report \u202eevil txt.exe \x1b[31mred\x07"
    reasons = [spoof, NOT_MEASURED + "A" * 200_000,
               *(f"{NOT_MEASURED}<script>alert({i})</script>" for i in range(14))]
    hostile = make_result(1, "lab", "k-evil", "30-39").model_copy(update={
        "quality": payloads.Quality.model_construct(
            verdict="ok", reasons=reasons, scores={f"score-{i}": float(i) for i in range(4_000)})})
    _stored(console.store_url, hostile)
    cookie, _ = login_cookie(console)
    status, _, body = get_with(console, f"/results/{hostile.measurement_id}", cookie)
    page = body.decode()
    assert status == 200
    assert len(body) < 40_000  # the page of a plain result is about 5 KB
    assert "<script>alert(" not in page
    assert page.count("&lt;script&gt;alert(") == 14
    assert "\u202e" not in page
    assert "\x1b" not in page
    assert "\x07" not in page
    assert "report \\u202eevil txt.exe \\x1b[31mred\\u0007" in page  # shown, as escapes
    assert f"({200_000 + len(NOT_MEASURED) - SHOWN_REASON_CHARS} more characters)" in page
    assert f"score-{SHOWN_SCORES - 1}<" in page
    assert f"score-{SHOWN_SCORES}<" not in page
    assert f"and {4_000 - SHOWN_SCORES} more scores" in page
    # the API keeps what the kiosk sent, for audit (JSON escapes it; the contract bounds it)
    _, _, answer = console.get(f"/api/v1/results/{hostile.measurement_id}", console.token)
    assert json.loads(answer)["quality"]["reasons"] == reasons


def test_a_hostile_reason_does_not_widen_the_result_page(console: Console,
                                                         browser_page: Any) -> None:
    hostile = make_result(2, "lab", "k-evil", "30-39").model_copy(update={
        "quality": payloads.Quality.model_construct(verdict="ok",  # stored before the bound
                                                    reasons=[NOT_MEASURED + "A" * 5_000])})
    _stored(console.store_url, hostile)
    browser_page.goto(console.url + "/login?next=/fleet")
    browser_login(browser_page)
    expect(browser_page).to_have_url(console.url + "/fleet")
    browser_page.goto(console.url + f"/results/{hostile.measurement_id}")
    expect(browser_page.locator("#reasons")).to_contain_text("more characters")
    width_px = browser_page.viewport_size["width"]
    assert browser_page.evaluate("document.documentElement.scrollWidth") <= width_px


def test_a_hostile_kiosk_s_free_text_is_shown_escaped_on_every_page(console: Console) -> None:
    # rows stored before the contract refused what draws nothing in names and subject ids
    # (it bounds the reasons in length only); 3,000 labels' probabilities (a
    # row stored before the contract bounded them to a model's 64 labels: no validation)
    flip = "\u202e txt.exe\x1b[2J"
    grade = payloads.Classification.model_construct(model="grader" + flip, version="1" + flip,
                                    label="fine" + flip,
                                    probabilities={f"label-{i}": 0.5 for i in range(3_000)})
    hostile = make_result(3, "lab", "k-evil", "30-39").model_copy(update={
        "software_version": "0.1" + flip, "classification": grade,
        "subject": payloads.Subject.model_construct(subject_id="s" + flip, age_band="30-39",
                                                    consent=None)})
    _stored(console.store_url, hostile)
    cookie, _ = login_cookie(console)
    for path in ("/results?device=k-evil", f"/results/{hostile.measurement_id}"):
        status, _, body = get_with(console, path, cookie)
        page = body.decode()
        assert status == 200
        assert "fine\\u202e txt.exe\\x1b[2J" in page
        assert "\u202e" not in page
        assert "\x1b" not in page
    assert len(body) < 40_000
    assert f"label-{SHOWN_SCORES - 1}<" in page
    assert f"label-{SHOWN_SCORES}<" not in page
    assert f"and {3_000 - SHOWN_SCORES} more labels" in page


def test_characters_that_draw_nothing_are_shown_as_escapes_on_the_pages(console: Console) -> None:
    """A word joiner, tags or a Hangul filler made "0.1" and "0.1\u2060" read the same."""
    hidden = "\u2060\U000e0041\u3164\xad"
    shown = "\\u2060\\U000e0041\\u3164\\u00ad"
    grade = payloads.Classification.model_construct(model="grader", version="1" + hidden,
                                                    label="fine" + hidden,
                                                    probabilities={"fine": 1.0})
    hostile = make_result(4, "lab", "k-hidden", "30-39").model_copy(update={  # stored as sent
        "software_version": "0.1" + hidden, "classification": grade,
        "quality": payloads.Quality.model_construct(verdict="ok",
                                                    reasons=[NOT_MEASURED + "x" + hidden])})
    _stored(console.store_url, hostile)
    cookie, _ = login_cookie(console)
    for path in ("/results?device=k-hidden", f"/results/{hostile.measurement_id}"):
        status, _, body = get_with(console, path, cookie)
        page = body.decode()
        assert status == 200
        assert f"fine{shown}" in page
        assert not set(page) & set(hidden)
    assert f"0.1{shown}" in page
    assert f"x{shown}" in page
