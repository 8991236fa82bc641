"""The API's pathology jobs and model rollouts lists: ``next`` leads through every row."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest
from console_helpers import Console, get_with, login_cookie

from appliance.backoffice.store import open_store


def walk(console: Console, path: str, key: str, id_key: str) -> list[str]:
    """Every id the API list at ``path`` answers, following ``next`` to the oldest."""
    shown: list[str] = []
    cursor: str | None = None
    while True:
        query = f"?{urlencode({'before': cursor})}" if cursor else ""
        status, _, body = console.get(path + query, console.token)
        assert status == 200, body
        answer = json.loads(body)
        assert 0 < len(answer[key]) <= 100
        shown += [row[id_key] for row in answer[key]]
        cursor = answer["next"]
        if cursor is None:
            return shown


def test_every_pathology_job_is_reachable_through_the_api(console: Console) -> None:
    from appliance.pathology.jobs import JobRequest, SlideRequest
    from appliance.pathology.jobstore import open_pathology_store

    store = open_pathology_store(console.store_url)
    try:  # accepted within a few milliseconds: many share a time, ordered by id then; each id
        # LOGIN/NAME, as a submitted job's, so the cursors carry a slash
        for n in range(150):
            request = JobRequest(f"lab-{n % 2}/api-{n:03d}",
                                 (SlideRequest("/slides/a.jpg", 1.0, "a"),),
                                 "2026-11-30T08:00:00.000000Z")
            assert store.accept(request, "server-1", 60.0)
        stored = {row[0] for row in store.query("SELECT job_id FROM pathology_jobs")}
    finally:
        store.close()
    shown = walk(console, "/api/v1/pathology/jobs", "jobs", "job_id")
    assert len(stored) == 151  # the seeded job-1 too
    assert len(shown) == len(set(shown))
    assert set(shown) == stored
    assert shown.index("lab-1/api-149") < shown.index("lab-0/api-000")  # newest first


def test_every_model_rollout_is_reachable_through_the_api(console: Console) -> None:
    store = open_store(console.store_url)
    try:  # ten started at each second: ordered by id within it
        store.write("INSERT INTO rollouts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [
            (f"api{n:03d}", "skin-texture-grade", "1.2.0", "update", "all", 1, "done", None,
             f"2026-11-20T10:00:{n // 10:02d}.000000Z", "2026-11-20T11:00:00.000000Z", "0" * 64)
            for n in range(150)])
        stored = {row[0] for row in store.query("SELECT rollout_id FROM rollouts")}
    finally:
        store.close()
    shown = walk(console, "/api/v1/rollouts", "rollouts", "rollout_id")
    assert len(stored) == 151  # the seeded r0llout1 too
    assert len(shown) == len(set(shown))
    assert set(shown) == stored
    assert shown.index("api149") < shown.index("api000")  # newest first


@pytest.mark.parametrize("path", ["/api/v1/rollouts", "/api/v1/pathology/jobs"])
# the last: a time in Arabic-Indic digits, which Python's \d took (any script's digits), so
# that a cursor no page makes was compared with the stored times as text
@pytest.mark.parametrize("before", ["abc", "2026-11-30T08:00:00Z~<b>", "2026-11-30~r1",
                                    "\u0662\u0660\u0662\u0666-\u0661\u0661-\u0663\u0660T"
                                    "\u0660\u0668:\u0660\u0660:\u0660\u0660Z~r1"])
def test_a_list_cursor_that_is_not_one_is_refused_naming_before(console: Console, path: str,
                                                                before: str) -> None:
    status, _, body = console.get(f"{path}?{urlencode({'before': before})}", console.token)
    assert status == 400
    assert json.loads(body)["detail"].startswith("before: ")


def test_openapi_documents_the_cursor_of_both_lists(console: Console) -> None:
    cookie, _ = login_cookie(console)
    paths: dict[str, Any] = json.loads(get_with(console, "/openapi.json", cookie)[2])["paths"]
    for path in ("/api/v1/rollouts", "/api/v1/pathology/jobs"):
        call = paths[path]["get"]
        (parameter,) = call["parameters"]
        assert (parameter["name"], parameter["in"]) == ("before", "query"), path
        assert "`next`" in parameter["description"], path
        assert "`next` continues the list" in call["description"], path
