"""The cohort page and API say when their figures were computed: a visit that finds them
stale gets the older figures while newer ones are computed in the background."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

from console_helpers import Console, get_with, login_cookie, make_result

from appliance.backoffice.schema import iso_utc, result_row
from appliance.backoffice.store import Batch, open_store
from appliance.cli import main
from appliance.edge.testing import wait_until


def _page(console: Console, cookie: str) -> tuple[int, str]:
    """How many results the cohort page counts, and when it says they were computed."""
    status, _, body = get_with(console, "/cohort", cookie)
    assert status == 200
    text = body.decode()
    total = re.search(r'<p id="cohort-total">(\d+) stored results', text)
    computed = re.search(r'<span id="computed-time">([0-9TZ:-]+)</span>', text)
    assert total
    assert computed, "the page does not say when its figures were computed"
    return int(total.group(1)), computed.group(1)


def test_figures_shown_after_new_results_say_when_they_were_computed(console: Console) -> None:
    """After new results, the first visit showed the figures of before them (here computed at
    the console's start; on a quiet console, hours old), with nothing to tell them from
    current ones: a newcomer who ran the demo again saw the cohort unchanged."""
    cookie, _ = login_cookie(console)
    before, first_time = _page(console, cookie)
    assert first_time <= datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    written_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    store = open_store(console.store_url)
    try:
        now = iso_utc(datetime.now(UTC))
        added = [make_result(1000 + index, "lyon", "k-late", "40-49") for index in range(3)]
        store.write_batch(Batch(results=[result_row(r, now, r.to_json().decode())
                                         for r in added]), 10)
    finally:
        store.close()
    seen: list[tuple[int, str]] = []
    wait_until(lambda: seen.append(_page(console, cookie)) or seen[-1][0] == before + 3, 10)
    new_time = seen[-1][1]
    assert seen[-1][0] == before + 3
    assert new_time >= written_at  # computed after the results were stored
    assert all(time <= new_time for total, time in seen if total == before)
    _, _, answer = console.get("/api/v1/cohort", console.token)
    assert json.loads(answer)["computed_at"] >= seen[-1][1]


def test_the_first_visit_after_an_erasure_no_longer_shows_the_erased_subject(
    console: Console,
) -> None:
    """Figures fresh enough to be shown named an erased subject's repeats until they aged
    past console.cohort_cache_s; the erasure, in another process, now has them computed again
    at the next request, which also says the period the stored results span."""
    cookie, _ = login_cookie(console)
    store = open_store(console.store_url)
    try:
        now = iso_utc(datetime.now(UTC))
        twice = [make_result(2000 + i, "lyon", "k-er", "30-39", "subj-erase-me")
                 for i in range(2)]
        store.write_batch(Batch(results=[result_row(r, now, r.to_json().decode())
                                         for r in twice]), 10)
    finally:
        store.close()
    assert wait_until(lambda: "subj-erase-me" in get_with(console, "/cohort", cookie)[2].decode(),
                      10)

    assert main(["results", "erase", "--store", console.store_url, "--subject",
                 "subj-erase-me", "--yes"]) == 0

    page = get_with(console, "/cohort", cookie)[2].decode()  # the very next visit
    assert "subj-erase-me" not in page
    assert re.search(r'<p id="period">Results captured from [0-9TZ:.-]+ to [0-9TZ:.-]+ '
                     r'\(capture times as the back office places them\)\.</p>', page)
    _, _, answer = console.get("/api/v1/cohort", console.token)
    assert "subj-erase-me" not in answer.decode()
