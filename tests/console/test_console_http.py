"""The console over real HTTP: access control, filters, keyset pages, CSV, hostile input."""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from argon2 import PasswordHasher
from console_helpers import (
    NOT_VALIDATED_IN_SEED,
    PASSWORD,
    UNMEASURED_KIME,
    WITHHELD_IN_SEED,
    Console,
    get_with,
    login_cookie,
    post,
    post_login,
    running_console,
    session_cookie,
)

from appliance.backoffice.schema import DeadLetter
from appliance.backoffice.store import Batch, Store, StoreError, open_store
from appliance.backoffice.storeurl import store_name
from appliance.console.auth import AccessError, add_user


@pytest.mark.parametrize("path", ["/api/v1/fleet", "/api/v1/results", "/api/v1/cohort",
                                  "/api/v1/rollouts", "/api/v1/rollouts/r0llout1",
                                  "/api/v1/pathology/jobs", "/api/v1/pathology/jobs/job-1",
                                  "/api/v1/results/0190e8a2-0000-7000-8000-000000000000"])
def test_api_without_a_valid_token_is_401(console: Console, path: str) -> None:
    for token in (None, "forged-token", console.token + "x"):
        status, headers, body = console.get(path, token)
        assert status == 401, (path, token)
        assert headers["www-authenticate"] == "Bearer"
        assert b"bearer token" in body


def test_pages_and_docs_need_a_login(console: Console) -> None:
    for path in ("/", "/fleet", "/results", "/results.csv", "/cohort", "/docs", "/openapi.json",
                 "/dead-letters", "/rollouts", "/rollouts/r0llout1", "/pathology",
                 "/pathology/job-1"):
        status, headers, _ = console.get(path)
        assert status == 303, path
        assert headers["location"].startswith("/login?next=")
    status, _, _ = console.get("/fleet", console.token)  # an API token is not a page login
    assert status == 303


def test_api_results_filter_and_keyset_pages_cover_every_match_once(console: Console) -> None:
    seen: list[str] = []
    path = "/api/v1/results?site=tokyo&limit=10"
    while path:
        status, _, body = console.get(path, console.token)
        assert status == 200
        page = json.loads(body)
        assert all(r["site"] == "tokyo" for r in page["results"])
        seen += [r["measurement_id"] for r in page["results"]]
        path = f"/api/v1/results?site=tokyo&limit=10&before={page['next']}" if page["next"] else ""
    assert len(seen) == len(set(seen)) == 40  # 2 of every 3 of the 60 seeded results
    times = [json.loads(console.get(f"/api/v1/results/{m}", console.token)[2])["result"]
             ["captured_at"] for m in seen[:3]]
    assert times == sorted(times, reverse=True)


def test_api_filters_by_device_date_and_grade(console: Console) -> None:
    _, _, body = console.get("/api/v1/results?device=kiosk-9&grade=coarse&limit=200",
                             console.token)
    rows = json.loads(body)["results"]
    assert rows
    assert all(r["device_id"] == "kiosk-9" and r["label"] == "coarse" for r in rows)
    _, _, body = console.get("/api/v1/results?from=2026-11-02&limit=200", console.token)
    assert json.loads(body)["results"] == []  # all seeded results are on 2026-11-01
    _, _, body = console.get("/api/v1/results?from=2026-11-01&to=2026-11-01&limit=200",
                             console.token)
    assert len(json.loads(body)["results"]) == 60


def test_the_last_day_a_date_can_name_is_a_filter_not_a_server_error(console: Console) -> None:
    # the day after 9999-12-31 (where "to" ends) is no date: every page and the CSV answered 500
    _, _, body = console.get("/api/v1/results?to=9999-12-31&limit=200", console.token)
    assert len(json.loads(body)["results"]) == 60
    _, _, body = console.get("/api/v1/results?from=9999-12-31&to=9999-12-31", console.token)
    assert json.loads(body)["results"] == []
    cookie, _ = login_cookie(console)
    for page in ("/results?to=9999-12-31", "/results.csv?to=9999-12-31"):
        status, _, _ = get_with(console, page, cookie)
        assert status == 200, page


@pytest.mark.parametrize(("query", "field"), [
    ("site=%27%3B+DROP+TABLE+results%3B--", "site"),
    ("from=2026-13-45", "from"),
    ("to=yesterday", "to"),
    ("from=2026-11-05&to=2026-11-01", "to"),
    ("grade=" + "x" * 65, "grade"),
    ("limit=100000", "limit"),
    ("before=not-a-cursor", "before"),
    ("colour=red", "colour"),
    ("limit=2&limit=3", "limit"),  # which one? the last was taken silently
    ("device=k1&grade=fine&device=k2", "device"),
    ("limit=10%0A", "limit"),  # Python's $ matched before a final new line (on main: 200)
])
def test_hostile_filters_are_refused_naming_the_field(console: Console, query: str,
                                                      field: str) -> None:
    status, _, body = console.get(f"/api/v1/results?{query}", console.token)
    assert status == 400
    assert json.loads(body)["detail"].startswith(f"{field}: ")
    _, _, still = console.get("/api/v1/results?limit=200", console.token)
    assert len(json.loads(still)["results"]) == 60  # nothing changed


def test_api_takes_any_page_size_from_1_to_200(console: Console) -> None:
    newest = _ids(console)
    seen: list[str] = []
    path = "/api/v1/results?limit=1"
    for _ in range(3):  # one result per page, each page continuing the last
        status, _, body = console.get(path, console.token)
        assert status == 200, body
        page = json.loads(body)
        assert len(page["results"]) == 1
        seen.append(page["results"][0]["measurement_id"])
        path = f"/api/v1/results?limit=1&before={page['next']}"
    assert seen == newest[:3]
    assert len(_api(console, "/api/v1/results?limit=7")["results"]) == 7
    for refused in ("0", "201", "1.5", "-1", "+5", "%C2%B2", "1000"):
        status, _, body = console.get(f"/api/v1/results?limit={refused}", console.token)
        assert status == 400, refused
        assert json.loads(body)["detail"].startswith("limit: "), refused
        assert "a whole number from 1 to 200" in json.loads(body)["detail"]


def test_html_in_a_filter_is_echoed_escaped(console: Console) -> None:
    cookie, _ = login_cookie(console)
    status, _, body = get_with(console, "/results?device=%3Cscript%3Ealert(1)%3C/script%3E",
                               cookie)
    assert status == 400
    assert b"<script>alert(1)" not in body
    assert b"&lt;script&gt;alert(1)" in body or b"&#39;&lt;script&gt;" in body
    status, _headers, _ = get_with(console, "/results?site=" + "a" * 3000, cookie)
    assert status == 414


def test_login_refuses_a_forged_csrf_token_and_a_wrong_password(console: Console) -> None:
    status, headers, _ = console.get("/login")
    cookie = headers["set-cookie"].split(";")[0]
    form = {"csrf": "forged", "user": "alice", "password": PASSWORD}
    status, headers, body = post(console.url + "/login", urlencode(form).encode(), {
        "Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie})
    assert status == 403
    assert b"CSRF token missing or wrong" in body
    assert "appliance_session" not in headers.get("set-cookie", "")
    form["csrf"] = cookie.split("=", 1)[1]
    form["password"] = "wrong password!"
    status, headers, _ = post(console.url + "/login", urlencode(form).encode(), {
        "Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie})
    assert status == 303
    assert "failed=1" in headers["location"]
    big = urlencode({**form, "user": "a" * 5000}).encode()
    status, _, body = post(console.url + "/login", big, {
        "Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie})
    assert status == 413
    assert b"at most 4096" in body


def test_password_checks_in_progress_leave_store_connections_to_other_requests(
    console: Console, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Checking a password (argon2id) is slow on purpose; anyone can start one. Hold as many
    # checks as the pool has connections, each stopped inside the hash: the API still answers.
    release, inside = threading.Event(), threading.Semaphore(0)
    real_verify = PasswordHasher.verify

    def slow_verify(hasher: PasswordHasher, stored: str, password: str) -> bool:
        inside.release()
        release.wait(30)
        return bool(real_verify(hasher, stored, password))

    monkeypatch.setattr(PasswordHasher, "verify", slow_verify)
    status, headers, _ = console.get("/login")
    cookie = headers["set-cookie"].split(";")[0]
    form = urlencode({"csrf": cookie.split("=", 1)[1], "user": "mallory",
                      "password": "wrong password!"}).encode()  # no such user: hashed alike
    logins = [threading.Thread(target=post, args=(console.url + "/login", form, {
        "Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie}))
        for _ in range(4)]  # the console's pool holds 4 connections
    for login in logins:
        login.start()
    try:
        for _ in logins:
            assert inside.acquire(timeout=10)
        status, _, _ = console.get("/api/v1/fleet", console.token)
        assert status == 200  # was 503: no free store connection within 10 s
    finally:
        release.set()
        for login in logins:
            login.join(30)


def test_a_user_name_with_too_many_failed_logins_is_refused_before_any_hash(
    console: Console, monkeypatch: pytest.MonkeyPatch
) -> None:
    hashes = []
    real_verify = PasswordHasher.verify

    def counted(hasher: PasswordHasher, stored: str, password: str) -> bool:
        hashes.append(password)
        return bool(real_verify(hasher, stored, password))

    monkeypatch.setattr(PasswordHasher, "verify", counted)
    status, headers, _ = console.get("/login")
    cookie = headers["set-cookie"].split(";")[0]
    form_headers = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie}

    def attempt(user: str, password: str) -> tuple[int, dict[str, str], bytes]:
        form = {"csrf": cookie.split("=", 1)[1], "user": user, "password": password}
        return post(console.url + "/login", urlencode(form).encode(), form_headers)

    for guess in range(5):  # console.login_max_failures
        status, headers, _ = attempt("eve", f"guess {guess}")
        assert (status, "failed=1" in headers["location"]) == (303, True)
    assert len(hashes) == 5
    status, headers, body = attempt("eve", "guess 5")
    assert status == 429
    assert 800 <= int(headers["retry-after"]) <= 900  # the oldest failure leaves the window
    assert b"Too many failed logins: try again in 15 min." in body
    assert len(hashes) == 5  # refused before the hash: guessing costs the console nothing
    assert "appliance_session" not in headers.get("set-cookie", "")
    cookie_alice, _ = login_cookie(console)  # another name from the same address still may
    assert cookie_alice.startswith(session_cookie(console, ""))


def test_logins_refused_for_too_many_failures_are_one_line_then_a_count(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """Each login refused for too many failed ones was a warning of its own: anyone could post
    the form in a loop and write as many lines as the console answered requests."""
    with running_console(tmp_path, login_max_failures=2) as console:
        statuses = [post_login(console, "mallory", f"guess {guess}")[0] for guess in range(8)]
    assert statuses == [303, 303] + [429] * 6
    said = [r.getMessage() for r in caplog.records if "too many failed" in r.getMessage()]
    assert said == ["console: logins refused for too many failed ones: 1 since the last "
                    "saying, the latest for mallory from 127.0.0.1; said at most once a minute"]


def test_logout_needs_the_session_csrf_token(console: Console) -> None:
    cookie, csrf = login_cookie(console)
    form_headers = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie}
    status, _, _ = post(console.url + "/logout", b"csrf=forged", form_headers)
    assert status == 403
    assert get_with(console, "/fleet", cookie)[0] == 200  # still logged in
    status, _, _ = post(console.url + "/logout", urlencode({"csrf": csrf}).encode(), form_headers)
    assert status == 303
    assert get_with(console, "/fleet", cookie)[0] == 303  # the session is gone


def test_csv_export_has_every_matching_result(console: Console) -> None:
    cookie, _ = login_cookie(console)
    status, headers, body = get_with(console, "/results.csv?site=osaka", cookie)
    assert status == 200
    assert headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert len(rows) == 20
    assert {r["site"] for r in rows} == {"osaka"}
    assert float(rows[0]["kime_score"]) > 0
    _, _, body = get_with(console, "/results.csv", cookie)
    every = list(csv.DictReader(io.StringIO(body.decode())))
    marked = sorted(r["not_validated"].split(",") for r in every if r["not_validated"])
    assert marked == sorted(NOT_VALIDATED_IN_SEED.values())


def test_viewers_do_not_see_dead_letters(console: Console) -> None:
    viewer, _ = login_cookie(console, "victor")
    assert get_with(console, "/dead-letters", viewer)[0] == 403
    operator, _ = login_cookie(console, "alice")
    assert get_with(console, "/dead-letters", operator)[0] == 200


def test_dead_letters_page_cuts_a_long_topic(console: Console) -> None:
    store = open_store(console.store_url)
    try:
        store.write_batch(Batch(dead_letters=[DeadLetter(
            "2026-11-26T00:00:02.000000Z", "appliance/x/" + "k" * 60_000, "bad", 3, b"x", None,
        )]), 10)
    finally:
        store.close()
    operator, _ = login_cookie(console, "alice")
    status, _, page = get_with(console, "/dead-letters", operator)
    assert status == 200
    assert len(page) < 30_000
    assert f"appliance/x/{'k' * 188}... (59812 more characters)".encode() in page


def test_dead_letters_page_names_the_kiosks_whose_only_copies_the_bounds_pruned(
    console: Console,
) -> None:
    """The count the ingest worker keeps when the bounds prune a confirmed refused result
    (tests/backoffice/test_backoffice_store.py) is on the page, a long device name cut."""
    operator, _ = login_cookie(console, "alice")
    assert b"LOST" not in get_with(console, "/dead-letters", operator)[2]
    store = open_store(console.store_url)
    try:
        store.write("INSERT INTO pruned_only_copies VALUES (?, ?, ?, ?)",
                    [("lab", "k" * 60_000, 3, "2026-11-26T00:00:02.000000Z")])
        page = get_with(console, "/dead-letters", operator)[2]
    finally:
        store.write("DELETE FROM pruned_only_copies", [()])
        store.close()
    assert b"LOST: the dead-letter bounds pruned 3 refused result(s)" in page
    assert f"lab/{'k' * 96}... (59904 more characters) 3 (last 2026-11-26".encode() in page


def test_user_names_roles_and_passwords_are_checked(console: Console) -> None:
    store = open_store(console.store_url)
    try:
        for name, role, password in (("bob", "admin", PASSWORD), ("bob", "viewer", "short"),
                                     ("<b>", "viewer", PASSWORD), ("bob\n", "viewer", PASSWORD)):
            with pytest.raises(AccessError):
                add_user(store, name, role, password)
        assert store.user("bob") is None
        assert store.user("bob\n") is None
    finally:
        store.close()


def test_openapi_lists_the_api(console: Console) -> None:
    cookie, _ = login_cookie(console)
    status, _, body = get_with(console, "/openapi.json", cookie)
    paths = json.loads(body)["paths"]
    assert status == 200
    assert {"/api/v1/fleet", "/api/v1/results", "/api/v1/results/{measurement_id}",
            "/api/v1/cohort"} <= set(paths)
    status, _, page = get_with(console, "/docs", cookie)
    assert status == 200
    assert b"GET /api/v1/results/{measurement_id}" in page
    assert b"<script" not in page  # readable offline, under the strict CSP
    assert b"For an offline kiosk, <code>camera</code>, the versions" in page
    assert b"`" not in page  # the docstrings' backticks are set as code, not shown



def test_the_api_page_gives_each_call_a_summary_a_description_and_its_answers(
    console: Console,
) -> None:
    """The API page joined a lowercase summary to its description ("...camera and outbox: For
    an offline kiosk, ..."), each call's answer read "200 Successful Response", and the path
    parameters of jobs, pictures and rollouts had no description."""
    cookie, _ = login_cookie(console)
    paths = json.loads(get_with(console, "/openapi.json", cookie)[2])["paths"]
    operations = [(path, op) for path, methods in paths.items() for op in methods.values()]
    assert len(operations) >= 9
    for path, op in operations:
        summary, description = op["summary"], op.get("description", "")
        assert summary[0].isupper(), path
        assert not summary.endswith("."), path
        assert description, path
        assert description.rstrip(".") != summary, path
        assert op["responses"]["200"]["description"] != "Successful Response", path
        assert all(parameter.get("description") for parameter in op.get("parameters", [])), path
    _, _, body = get_with(console, "/docs", cookie)
    page = body.decode()
    assert "Successful Response" not in page
    assert "outbox: For" not in page
    assert ("<p><strong>Every kiosk with its state, versions, camera and outbox</strong></p>\n"
            "<p>For an offline kiosk, <code>camera</code>") in page
    assert "<li>200: <code>devices</code>, one object a kiosk" in page


def test_openapi_says_the_results_filter_days_are_utc_days(console: Console) -> None:
    cookie, _ = login_cookie(console)
    paths = json.loads(get_with(console, "/openapi.json", cookie)[2])["paths"]
    described = {parameter["name"]: parameter["description"]
                 for parameter in paths["/api/v1/results"]["get"]["parameters"]}
    assert "a UTC day: results captured from its 00:00 UTC" in described["from"]
    assert "a UTC day: results captured before the next day's 00:00 UTC" in described["to"]


def test_openapi_lists_the_answers_the_api_gives_400_and_404_not_422(console: Console) -> None:
    """FastAPI listed 422 Validation Error for every call with parameters, an answer the
    console never gives (bad input is 400, naming the field), and no 404 where one comes."""
    cookie, _ = login_cookie(console)
    paths = json.loads(get_with(console, "/openapi.json", cookie)[2])["paths"]
    answers = {path: set(ops["get"]["responses"]) for path, ops in paths.items() if "get" in ops}
    assert not [path for path, codes in answers.items() if "422" in codes]
    unknown = "0190e8a2-0000-7000-8000-000000000000"
    for url, path, given in (
        ("/api/v1/results?limit=abc", "/api/v1/results", 400),
        (f"/api/v1/results/{unknown}", "/api/v1/results/{measurement_id}", 404),
        ("/api/v1/rollouts/nosuch1", "/api/v1/rollouts/{rollout_id}", 404),
        ("/api/v1/pathology/jobs/no-such-job", "/api/v1/pathology/jobs/{job_id}", 404),
    ):
        assert console.get(url, console.token)[0] == given, url
        assert str(given) in answers[path], path


def test_every_api_error_is_one_json_shape_the_openapi_document_names(console: Console) -> None:
    """Refused input (400, 413, 414) answered ``{"error": ...}`` and every other refusal
    FastAPI's ``{"detail": ...}``: a client had to read two shapes. Now every one is
    ``{"detail": TEXT}``, and the OpenAPI document names that body for each error answer."""
    token = {"Authorization": f"Bearer {console.token}"}
    refusals = [
        (console.get("/api/v1/results?limit=abc", console.token), 400, "limit: "),
        (console.get("/api/v1/fleet?colour=red", console.token), 400, "colour: "),
        (console.get("/api/v1/rollouts/%3Cb%3E", console.token), 400, "rollout id: "),
        (console.get("/api/v1/fleet"), 401, "a valid bearer token is required"),
        (console.get(f"/api/v1/results/{ONE_RESULT}", console.token), 404, "no stored result"),
        (console.get("/api/v1/no-such-call", console.token), 404, "Not Found"),
        (post(console.url + "/api/v1/fleet", b"", token), 405, "Method Not Allowed"),
        (post(console.url + "/api/v1/fleet", b"x" * 5000, token), 413, "request body of 5000"),
        (console.get("/api/v1/fleet?" + "a" * 3000, console.token), 414, "query string of 3000"),
    ]
    for (status, headers, body), expected, text in refusals:
        assert (status, headers["content-type"]) == (expected, "application/json"), body
        answer = json.loads(body)
        assert list(answer) == ["detail"], answer  # on main: {"error": ...} for 400, 413, 414
        assert answer["detail"].startswith(text), answer
    cookie, _ = login_cookie(console)
    document = json.loads(get_with(console, "/openapi.json", cookie)[2])
    assert document["components"]["schemas"]["ApiError"]["required"] == ["detail"]
    for path, operations in document["paths"].items():
        for code, answer in operations["get"]["responses"].items():
            if code >= "400":
                body = answer["content"]["application/json"]["schema"]
                assert body == {"$ref": "#/components/schemas/ApiError"}, (path, code)


def test_a_store_error_inside_a_handler_is_a_503_naming_the_store_only_in_the_log(
    console: Console, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """A StoreError raised by the store a handler borrowed (not by the pool lending it) was a
    500, though a store that could not be reached was a 503: a store outage is a 503 either way,
    its cause and the store's name in the log, never in the answer."""
    cookie, _ = login_cookie(console)
    cause = f"cannot read the SQLite store {console.store_url}: disk I/O error"

    def refused(*_: object, **__: object) -> None:
        raise StoreError(cause)

    monkeypatch.setattr(Store, "rollout_rows", refused)
    with caplog.at_level(logging.WARNING, logger="appliance.console.app"):
        status, _, page = get_with(console, "/rollouts", cookie)
        api_status, _, body = console.get("/api/v1/rollouts", console.token)
    assert (status, api_status) == (503, 503)  # on main: 500, 500
    assert b"the console&#39;s store cannot be reached now (its log says why)" in page
    assert json.loads(body) == {"detail": "the console's store cannot be reached now (its log "
                                "says why); try again shortly"}
    assert b"disk I/O" not in page + body
    logged = [r.getMessage() for r in caplog.records if "disk I/O error" in r.getMessage()]
    assert len(logged) == 2
    assert logged[0].startswith(f"console store failed, {store_name(console.store_url)}: ")
    monkeypatch.undo()
    assert console.get("/api/v1/rollouts", console.token)[0] == 200


def test_store_failures_answered_again_and_again_are_said_within_a_budget_a_minute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """Each 503 for a failed store was a line of its own: any request with a session cookie
    asks the store, so a client repeating one while the store was away wrote a line each."""

    def refused(*_: object, **__: object) -> None:
        raise StoreError("cannot read the SQLite store: disk I/O error")

    with running_console(tmp_path) as console:
        cookie, _ = login_cookie(console)
        monkeypatch.setattr(Store, "rollout_rows", refused)
        with caplog.at_level(logging.WARNING, logger="appliance.console.app"):
            statuses = {get_with(console, "/rollouts", cookie)[0] for _ in range(15)}
    assert statuses == {503}
    logged = [r.getMessage() for r in caplog.records if "disk I/O error" in r.getMessage()]
    assert len(logged) == 10  # on main: 15; the 5 others are counted, said after the minute


def _flagged(console: Console) -> dict[str, list[str]]:
    """measurement id -> not_validated, of every seeded result that names any (via the API)."""
    _, _, body = console.get("/api/v1/results?limit=200", console.token)
    rows = json.loads(body)["results"]
    flagged = {}
    for row in rows:
        detail = json.loads(console.get(f"/api/v1/results/{row['measurement_id']}",
                                        console.token)[2])
        assert detail["not_validated"] == row["not_validated"]  # list and detail agree
        if detail["not_validated"]:
            flagged[row["measurement_id"]] = detail["not_validated"]
    return flagged


def test_one_result_measured_whole_has_no_empty_validity_column(console: Console) -> None:
    """Every row of a result measured whole ended in an empty cell, the column kept for
    "outside the validated range": a blank bordered column beside the numbers (seen on the
    demo's results in chromium)."""
    flagged = _flagged(console)
    status, _, body = console.get("/api/v1/results?limit=200", console.token)
    assert status == 200
    whole = next(r["measurement_id"] for r in json.loads(body)["results"]
                 if r["measurement_id"] not in flagged)
    cookie, _ = login_cookie(console)
    _, _, page = get_with(console, f"/results/{whole}", cookie)
    assert page.count(b"<tr data-key=") == 16
    assert b'class="validity"' not in page
    texture = next(m for m, keys in flagged.items() if "kime_score" in keys)
    _, _, page = get_with(console, f"/results/{texture}", cookie)
    assert page.count(b'<td class="validity">') == 16  # the column stays where one is outside


def test_one_result_shows_not_measured_instead_of_the_number(console: Console) -> None:
    flagged = _flagged(console)
    assert sorted(flagged.values()) == sorted(NOT_VALIDATED_IN_SEED.values())
    texture = next(m for m, keys in flagged.items() if "kime_score" in keys)
    cookie, _ = login_cookie(console)
    _, _, page = get_with(console, f"/results/{texture}", cookie)
    row = re.search(rb'<tr data-key="kime_score">.*?</tr>', page, re.S)
    assert row
    assert b'<td class="value not-measured">not measured</td>' in row.group(0)
    assert b"outside the validated range" in row.group(0)
    assert str(UNMEASURED_KIME).encode() not in row.group(0)  # the number is not shown
    measured = re.search(rb'<tr data-key="pore_count">.*?</tr>', page, re.S)
    assert measured
    assert b"not measured" not in measured.group(0)
    assert page.count(b"not measured</td>") == len(flagged[texture])


def _api(console: Console, path: str) -> dict[str, Any]:
    answer: dict[str, Any] = json.loads(console.get(path, console.token)[2])
    return answer


def test_api_gives_no_number_for_a_feature_not_measured(console: Console) -> None:
    flagged = _flagged(console)
    texture = next(m for m, keys in flagged.items() if "kime_score" in keys)
    keys = flagged[texture]
    detail = _api(console, f"/api/v1/results/{texture}")
    assert {k for k, v in detail["features"].items() if v is None} == set(keys)
    assert detail["not_validated_raw"]["kime_score"] == UNMEASURED_KIME  # kept apart, for audit
    assert set(detail["not_validated_raw"]) == set(keys)
    clean = next(m for m in _ids(console) if m not in flagged)
    measured = _api(console, f"/api/v1/results/{clean}")
    assert None not in measured["features"].values()
    assert measured["not_validated_raw"] == {}
    (row,) = [r for r in _api(console, "/api/v1/results?limit=200")["results"]
              if r["measurement_id"] == texture]
    assert (row["kime_score"], row["hill_density_per_mm2"], row["furrow_density_mm_per_mm2"]) \
        == (None, None, None)
    assert isinstance(row["pore_count"], int)  # measured: its number
    assert row["not_validated_raw"]["kime_score"] == UNMEASURED_KIME


def _ids(console: Console) -> list[str]:
    return [r["measurement_id"] for r in _api(console, "/api/v1/results?limit=200")["results"]]


def test_api_and_page_say_why_a_grade_was_withheld(console: Console) -> None:
    answers = [_api(console, f"/api/v1/results/{m}") for m in _ids(console)]
    withheld = [a for a in answers if a["grade_withheld"]]
    assert len(withheld) == 1
    (detail,) = withheld
    assert detail["classification"] is None
    assert detail["grade_withheld"] == {"features": NOT_VALIDATED_IN_SEED[WITHHELD_IN_SEED],
                                        "frame": False}
    graded_but_unmeasured = [a for a in answers if a["not_validated"] and a["classification"]]
    assert graded_but_unmeasured  # pores too small: this grade does not need them
    assert all(a["grade_withheld"] is None for a in graded_but_unmeasured)
    cookie, _ = login_cookie(console)
    mid = detail["result"]["measurement_id"]
    _, _, page = get_with(console, f"/results/{mid}", cookie)
    assert (b'<p id="withheld">Not graded: the kiosk withheld the grade because the model reads '
            b"features outside the validated range (furrow_density_mm_per_mm2, ") in page
    assert b"no model on the kiosk" not in page


def test_results_list_shows_n_m_in_cells_not_measured(console: Console) -> None:
    flagged = _flagged(console)
    texture = next(m for m, keys in flagged.items() if "kime_score" in keys)
    cookie, _ = login_cookie(console)
    _, _, page = get_with(console, "/results?limit=200", cookie)
    row = re.search(rb'href="/results/' + texture.encode() + rb'">.*?</tr>', page, re.S)
    assert row
    cells = dict(re.findall(rb'<td class="(\w+)(?: not-measured)?">(.*?)</td>', row.group(0)))
    for key in (b"kime_score", b"hill_density_per_mm2", b"furrow_density_mm_per_mm2"):
        assert b">n/m</abbr>" in cells[key]
    assert cells[b"pore_count"].isdigit()  # measured: its number
    assert b'title="not measured: outside the validated range"' in row.group(0)
    assert b'id="nm-legend"' in page
    assert b"n/m: not measured" in page
    assert page.count(b">n/m</abbr>") == 3  # index 5 flags pore size, not a listed column
    status, _, measured_only = get_with(console, "/results?site=osaka&limit=10", cookie)
    assert status == 200  # the page's own choices: 10, 25, 50, 100, 200
    assert b'id="results"' in measured_only
    assert b"nm-legend" not in measured_only


def test_cohort_page_and_api_leave_out_values_not_measured(console: Console) -> None:
    _, _, body = console.get("/api/v1/cohort", console.token)
    figures = json.loads(body)["features"]
    assert figures["kime_score"]["not_measured_left_out"] == 1
    assert figures["pore_count"]["not_measured_left_out"] == 0
    assert figures["kime_score"]["pearson"]["n"] == 53
    assert figures["pore_count"]["pearson"]["n"] == 54
    cookie, _ = login_cookie(console)
    _, _, page = get_with(console, "/cohort", cookie)
    left_out = sum(f["not_measured_left_out"] for f in figures.values())
    assert re.search(rf'<p id="left-out">{left_out} value\(s\) left out of these figures: '
                     r"not measured".encode(), page)
    assert left_out == 1 + 6  # pore size of index 5; the five texture features and kime of 7
    kime = re.search(rb"<tr><td>kime_score</td>.*?</tr>", page, re.S)
    assert kime
    assert kime.group(0).endswith(b'<td class="left-out">1</td></tr>')


def test_rollouts_show_each_rollout_and_where_each_kiosk_stands(console: Console) -> None:
    _, _, body = console.get("/api/v1/rollouts", console.token)
    (rollout,) = json.loads(body)["rollouts"]
    assert (rollout["rollout_id"], rollout["state"]) == ("r0llout1", "halted")
    assert rollout["devices"] == {"refused": 1, "assigned": 1}
    _, _, body = console.get("/api/v1/rollouts/r0llout1", console.token)
    devices = json.loads(body)["device_states"]
    assert [(d["device_id"], d["phase"], d["state"]) for d in devices] == [
        ("kiosk-1", "canary", "refused"), ("kiosk-2", "wave 1", "assigned")]
    assert console.get("/api/v1/rollouts/nope", console.token)[0] == 404
    status, _, body = console.get("/api/v1/rollouts/%3Cb%3E", console.token)
    assert status == 400
    assert json.loads(body)["detail"].startswith("rollout id: ")
    cookie, _ = login_cookie(console)
    status, _, page = get_with(console, "/rollouts/r0llout1", cookie)
    assert status == 200
    assert b"canary kiosk-1 refused: self-test failed" in page
    assert get_with(console, "/rollouts", cookie)[0] == 200


def test_a_rollout_links_each_kiosk_s_site_and_device_as_the_fleet_does(
    console: Console,
) -> None:
    """The rollout page's site and device cells were plain text, where the fleet page links a
    site to its kiosks and a device to its results."""
    cookie, _ = login_cookie(console)
    pages = [get_with(console, path, cookie)[2].decode() for path in ("/rollouts/r0llout1",
                                                                      "/fleet?site=tokyo")]
    rollout, fleet = (re.findall(r'<td><a (?:class="site" )?href="([^"]+)">(kiosk-1|tokyo)</a>',
                                 page) for page in pages)
    assert rollout[:2] == [("/fleet?site=tokyo", "tokyo"),
                           ("/results?site=tokyo&amp;device=kiosk-1", "kiosk-1")]
    assert set(rollout[:2]) <= set(fleet)


def test_pathology_jobs_show_state_and_slide_results(console: Console) -> None:
    _, _, body = console.get("/api/v1/pathology/jobs", console.token)
    (job,) = json.loads(body)["jobs"]
    assert (job["job_id"], job["state"], job["slides_stored"]) == ("job-1", "done", 2)
    _, _, body = console.get("/api/v1/pathology/jobs/job-1", console.token)
    slides = json.loads(body)["slides"]
    assert [(s["slide"], s["label"], s["score"]) for s in slides] == [
        ("a", "MSI", 0.91), ("b", "unsupported", None)]
    # what the model computed for the unsupported slide: kept apart, for audit only
    assert (slides[1]["msi_tile_share"], slides[1]["mean_probability"]) == (None, None)
    assert slides[1]["unsupported_raw"] == {"score": 0.97, "mean_probability": 0.97,
                                            "msi_tile_share": 0.4}
    assert (slides[0]["msi_tile_share"], slides[0]["unsupported_raw"]) == (0.4, {})
    assert console.get("/api/v1/pathology/jobs/nope", console.token)[0] == 404
    status, _, body = console.get("/api/v1/pathology/jobs/%3Cb%3E", console.token)
    assert status == 400
    assert json.loads(body)["detail"].startswith("job id: ")
    cookie, _ = login_cookie(console)
    status, _, page = get_with(console, "/pathology/job-1", cookie)
    assert status == 200
    assert b"tissue unlike the model&#39;s training data" in page
    assert get_with(console, "/pathology", cookie)[0] == 200


ONE_RESULT = "0190e8a2-0000-7000-8000-000000000000"
API_WITHOUT_PARAMETERS = ("/api/v1/cohort", "/api/v1/rollouts/r0llout1",
                          "/api/v1/pathology/jobs/job-1",
                          "/api/v1/pathology/jobs/job-1/slides/0/heatmap",
                          f"/api/v1/results/{ONE_RESULT}", "/openapi.json")
# /fleet takes site (test_console_walk_browser.py); the lists take before, not site
# /dead-letters takes site and device (test_console_dead_letters_site.py refuses another)
PAGES_WITHOUT_PARAMETERS = ("/", "/cohort", "/docs", "/rollouts",
                            "/rollouts/r0llout1", "/pathology", "/pathology/job-1",
                            "/pathology/job-1/slides/0/heatmap", f"/results/{ONE_RESULT}",
                            "/account")


def test_every_page_and_api_call_refuses_a_parameter_it_does_not_take(console: Console) -> None:
    for path in API_WITHOUT_PARAMETERS:  # each answered as if there were no limit
        status, _, body = console.get(f"{path}?limit=5", console.token)
        assert status == 400, path
        assert json.loads(body)["detail"] == ("limit: '5' refused: unknown parameter; this "
                                             "address takes none"), path
    for path in ("/api/v1/rollouts", "/api/v1/pathology/jobs"):  # the lists take before only
        status, _, body = console.get(f"{path}?limit=5", console.token)
        assert (status, json.loads(body)["detail"]) == (
            400, "limit: '5' refused: unknown parameter; use before"), path
    status, _, body = console.get("/api/v1/fleet?site=osaka", console.token)  # pages only
    assert (status, json.loads(body)["detail"]) == (
        400, "site: 'osaka' refused: unknown parameter; use after, limit")
    cookie, _ = login_cookie(console)
    for path in PAGES_WITHOUT_PARAMETERS:
        status, _, body = get_with(console, f"{path}?site=%3Cb%3E", cookie)
        assert status == 400, path
        assert b"site: &#39;&lt;b&gt;&#39; refused: unknown parameter" in body, path
    status, _, body = console.get("/login?next=/fleet&colour=red")
    assert (status, b"colour: &#39;red&#39; refused: unknown parameter; use ended, failed, "
            b"logged_out, next" in body) == (400, True)
    assert console.get("/login?next=/fleet&next=/cohort")[0] == 400  # which one?
    assert console.get("/login?next=/cohort")[0] == 200
    status, _, body = get_with(console, "/results.csv?site=lab&limit=10&colour=red", cookie)
    assert (status, b"colour: &#39;red&#39; refused" in body) == (400, True)


def test_the_tokens_cohort_and_fleet_pages_say_times_to_the_second_in_utc(
    console: Console,
) -> None:
    """The tokens table, the cohort's period and the fleet's tooltips showed times to the
    microsecond (the tokens' columns not headed UTC), where every other table says "(UTC)"
    and shows seconds."""
    cookie, _ = login_cookie(console)
    assert console.get("/api/v1/fleet", console.token)[0] == 200  # a token's last use
    second = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d"
    tokens = get_with(console, "/tokens", cookie)[2].decode()
    table = tokens.split('<table id="tokens">', 1)[1].split("</table>", 1)[0]
    assert "<th>created (UTC)</th><th>expires (UTC)</th><th>last used (UTC)</th>" in table
    cells = re.findall(rf"<td[^>]*>(?:expired )?({second}[^<]*)</td>", table)
    assert len(cells) >= 5  # created and expires of each token, the used one's last use
    assert all(re.fullmatch(second, cell) for cell in cells), cells
    cohort = get_with(console, "/cohort", cookie)[2].decode()
    assert re.search(rf'<p id="period">Results captured from {second}Z to {second}Z ', cohort)
    fleet = get_with(console, "/fleet", cookie)[2].decode()
    stamped = [t for t in re.findall(r'title="([^"]*)"', fleet) if re.search(r"\d\dT\d\d", t)]
    assert len(stamped) >= 4
    assert not [t for t in stamped if re.search(r"\d\d\.\d+", t)], stamped
