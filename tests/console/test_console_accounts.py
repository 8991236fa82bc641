"""Ending access: a new password or a removed user ends the user's sessions and API tokens in
a running console at once, a token is revoked by its id, and a login can end the user's other
sessions."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from console_helpers import (
    PASSWORD,
    Console,
    browser_login,
    free_port,
    get_with,
    login_cookie,
    post,
    post_login,
    running_console,
    session_cookie,
)
from playwright.sync_api import expect

from appliance.backoffice.accounts import MAX_SESSIONS_PER_USER, Login, Revoked
from appliance.backoffice.store import Store, open_store
from appliance.browser import page_in
from appliance.cli import main
from appliance.config import ConsoleConfig
from appliance.console import auth
from appliance.console.auth import add_user, create_token
from appliance.console.db import StorePool
from appliance.console.server import ConsoleThread
from tests.disk_helpers import fill, small_tmpfs


def test_each_store_ends_sessions_and_tokens_of_one_user_only(store: Store) -> None:
    for name in ("ann", "bob"):
        add_user(store, name, "viewer", PASSWORD)
    sessions = [auth.open_session(store, Login(name, "viewer"), 1) for name in ("ann", "ann",
                                                                                "bob")]
    tokens = [create_token(store, name).token for name in ("ann", "ann", "bob")]
    assert [(row.sessions, row.tokens) for row in store.users()] == [(2, 2), (1, 1)]
    fresh = auth.open_session(store, Login("ann", "viewer"), 1, end_others=True)
    assert [auth.session_login(store, s.cookie) is None for s in (*sessions, fresh)] == [
        True, True, False, False]
    assert auth.revoke_token(store, auth.token_id_of(tokens[0])) == "ann"
    assert [auth.bearer_login(store, f"Bearer {t}") is None for t in tokens] == [
        True, False, False]
    assert add_user(store, "ann", "operator", PASSWORD) == Revoked(sessions=1, tokens=1)
    ann = store.users()[0]
    assert (ann.name, ann.role, ann.sessions, ann.tokens) == ("ann", "operator", 0, 0)
    assert auth.remove_user(store, "bob") == Revoked(sessions=1, tokens=1)
    assert [row.name for row in store.users()] == ["ann"]
    assert store.tokens() == []
    kept, ended = (auth.open_session(store, Login("ann", "operator"), 1) for _ in range(2))
    create_token(store, "ann")
    changed = store.change_password("ann", auth.password_hash("another password"),
                                    auth.digest(kept.cookie))
    assert changed == Revoked(sessions=1, tokens=1)
    assert auth.session_login(store, kept.cookie) is not None
    assert auth.session_login(store, ended.cookie) is None
    assert auth.verify_password(store, "ann", "another password") is not None
    many = [auth.open_session(store, Login("ann", "operator"), 1)
            for _ in range(MAX_SESSIONS_PER_USER + 2)]
    open_now = [auth.session_login(store, s.cookie) is not None for s in (kept, *many)]
    assert open_now == [False] * 3 + [True] * MAX_SESSIONS_PER_USER  # the oldest ended


def _user_with_token(console: Console, name: str) -> str:
    store = open_store(console.store_url)
    try:
        add_user(store, name, "viewer", PASSWORD)
        return create_token(store, name).token
    finally:
        store.close()


def _password_file(tmp_path: Path, password: str) -> str:
    path = tmp_path / "password"
    path.write_text(password + "\n")
    return str(path)


def _still_in(console: Console, cookie: str, token: str) -> tuple[bool, bool]:
    """Whether the session cookie still opens a page and the token still reads the API."""
    page, _, _ = get_with(console, "/fleet", cookie)
    api, _, _ = console.get("/api/v1/fleet", token)
    return page == 200, api == 200


def test_a_new_password_ends_the_users_sessions_and_revokes_its_tokens(
    console: Console, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    token = _user_with_token(console, "carol")
    cookie, _ = login_cookie(console, "carol")
    other_token = _user_with_token(console, "dave")
    other_cookie, _ = login_cookie(console, "dave")
    assert _still_in(console, cookie, token) == (True, True)
    assert main(["console", "user", "add", "carol", "--password-file",
                 _password_file(tmp_path, "a brand new password"), "--store",
                 console.store_url]) == 0
    assert capsys.readouterr().out.strip() == (
        "updated console user carol (viewer): ended 1 open session(s), revoked 1 API token(s)")
    assert _still_in(console, cookie, token) == (False, False)  # on main: the token still read
    assert _still_in(console, other_cookie, other_token) == (True, True)


def test_a_removed_user_is_out_at_once_and_gone_from_the_list(
    console: Console, capsys: pytest.CaptureFixture[str],
) -> None:
    token = _user_with_token(console, "erin")
    cookie, _ = login_cookie(console, "erin")
    assert main(["console", "user", "list", "--store", console.store_url]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0].split() == ["USER", "ROLE", "CREATED", "SESSIONS", "API", "TOKENS",
                                 "STATE"]
    erin = next(line.split() for line in listed if line.startswith("erin "))
    assert (erin[1], erin[3], erin[4], erin[5]) == ("viewer", "1", "1", "enabled")
    assert main(["console", "user", "remove", "erin", "--store", console.store_url]) == 0
    assert capsys.readouterr().out.strip() == (
        "removed console user erin: ended 1 open session(s), revoked 1 API token(s)")
    assert _still_in(console, cookie, token) == (False, False)
    assert main(["console", "user", "list", "--store", console.store_url]) == 0
    assert not [line for line in capsys.readouterr().out.splitlines() if line.startswith("erin ")]
    assert main(["console", "user", "remove", "erin", "--store", console.store_url]) == 2
    assert "no console user 'erin'" in capsys.readouterr().err


def test_a_token_is_listed_by_its_id_and_revoked_alone(
    console: Console, capsys: pytest.CaptureFixture[str],
) -> None:
    _user_with_token(console, "frank")
    assert main(["console", "token", "create", "frank", "--store", console.store_url]) == 0
    printed = capsys.readouterr()
    second = printed.out.strip()
    assert main(["console", "token", "list", "--user", "frank", "--store",
                 console.store_url]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert rows[0] == ["ID", "USER", "LABEL", "CREATED", "EXPIRES", "LAST", "USED"]
    assert [row[1] for row in rows[1:]] == ["frank", "frank"]
    second_id = rows[2][0]
    assert f"Its id is {second_id}" in printed.err  # create names the id it is listed by
    assert second not in str(rows)  # the list never shows a token itself
    assert console.get("/api/v1/fleet", second)[0] == 200
    assert main(["console", "token", "revoke", second_id, "--store", console.store_url]) == 0
    assert capsys.readouterr().out.strip() == f"revoked API token {second_id} of frank"
    assert console.get("/api/v1/fleet", second)[0] == 401
    assert main(["console", "token", "list", "--user", "frank", "--store",
                 console.store_url]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]] == [
        rows[1][0]]  # the other token stays
    assert main(["console", "token", "revoke", second_id, "--store", console.store_url]) == 2
    assert f"no API token {second_id}" in capsys.readouterr().err
    assert main(["console", "token", "revoke", "1234%", "--store", console.store_url]) == 2
    assert "16 hex digits expected" in capsys.readouterr().err


def test_a_login_can_log_out_the_users_other_sessions(
    console: Console, chromium_browser: Any,
) -> None:
    _user_with_token(console, "grace")
    earlier, _ = login_cookie(console, "grace")
    kept, _ = login_cookie(console, "grace")
    with page_in(chromium_browser, 1280, 900) as page:
        page.goto(console.url + "/login")
        browser_login(page, "grace")  # without the box: the earlier sessions stay
        expect(page).to_have_url(console.url + "/fleet")
        assert get_with(console, "/fleet", kept)[0] == 200
        page.click("header button[type=submit]")
        browser_login(page, "grace", end_others=True)
        expect(page).to_have_url(console.url + "/fleet")
        expect(page.locator("header")).to_contain_text("grace (viewer)")
        page.reload()  # the new session itself goes on
        expect(page).to_have_url(console.url + "/fleet")
    for cookie in (earlier, kept):
        status, headers, _ = get_with(console, "/fleet", cookie)
        assert (status, headers["location"]) == (303, "/login?next=/fleet&ended=1")
    status, _, page = get_with(console, "/login?next=/fleet&ended=1", earlier)
    assert status == 200
    assert b"Your session has ended (a logout, a newer login that logged out the others" in page


def _fill_password_form(page: Any, current: str, new: str, again: str) -> None:
    page.fill("#password input[name=password]", current)
    page.fill("#password input[name=new_password]", new)
    page.fill("#password input[name=new_password_again]", again)
    page.click("#password button[type=submit]")


def test_a_user_changes_its_password_in_the_console_and_keeps_only_this_session(
    console: Console, chromium_browser: Any,
) -> None:
    token = _user_with_token(console, "heidi")
    earlier, _ = login_cookie(console, "heidi")
    new = "a new and longer secret"
    with page_in(chromium_browser, 1280, 900) as page:
        page.goto(console.url + "/login")
        browser_login(page, "heidi")
        page.click("header a[href='/account']")
        expect(page.locator("h1")).to_have_text("Account: heidi (viewer)")
        _fill_password_form(page, "not the password", new, new)
        expect(page.locator(".error")).to_have_text(
            "The current password is wrong; the password is unchanged.")
        _fill_password_form(page, PASSWORD, new, new + "!")
        expect(page.locator(".error")).to_have_text(
            "The two new passwords differ; the password is unchanged.")
        assert _still_in(console, earlier, token) == (True, True)
        _fill_password_form(page, PASSWORD, new, new)
        expect(page.locator(".done")).to_have_text(
            "Password changed: 1 other session(s) ended, 1 API token(s) revoked. "
            "This session goes on.")
        page.click("header a[href='/fleet']")
        expect(page).to_have_url(console.url + "/fleet")  # this session goes on
    assert _still_in(console, earlier, token) == (False, False)
    store = open_store(console.store_url)
    try:
        assert auth.verify_password(store, "heidi", new) == Login("heidi", "viewer")
        assert auth.verify_password(store, "heidi", PASSWORD) is None
    finally:
        store.close()


def test_a_password_change_needs_the_sessions_csrf_token(console: Console) -> None:
    _user_with_token(console, "ivan")
    cookie, _ = login_cookie(console, "ivan")
    form = urlencode({"csrf": "forged", "password": PASSWORD, "new_password": "x" * 12,
                      "new_password_again": "x" * 12}).encode()
    status, _, _ = post(console.url + "/account/password", form, {
        "Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie})
    assert status == 403
    store = open_store(console.store_url)
    try:
        assert auth.verify_password(store, "ivan", PASSWORD) is not None
    finally:
        store.close()


def test_a_stolen_session_cannot_guess_the_password_faster_than_the_login_form(
    tmp_path: Path,
) -> None:
    with running_console(tmp_path, login_max_failures=1) as console:
        cookie, csrf = login_cookie(console, "victor")
        answers = []
        for current in ("a first guess!", PASSWORD):
            form = urlencode({"csrf": csrf, "password": current, "new_password": "x" * 12,
                              "new_password_again": "x" * 12}).encode()
            status, headers, _ = post(console.url + "/account/password", form, {
                "Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie})
            answers.append((status, "retry-after" in headers))
    assert answers == [(403, False), (429, True)]  # the right one too, within the window


def test_a_logout_or_login_the_store_cannot_record_is_said_so(
    tmp_path: Path,
) -> None:
    with small_tmpfs(tmp_path / "disk", size="8m") as disk:
        (disk / "console").mkdir()
        with running_console(disk / "console") as console:
            cookie, csrf = login_cookie(console)
            filler = fill(disk)
            status, headers, body = post(console.url + "/logout", urlencode(
                {"csrf": csrf}).encode(), {"Content-Type": "application/x-www-form-urlencoded",
                                           "Cookie": cookie})
            assert status == 503  # on main: 500, and the browser kept the session
            assert headers["set-cookie"].startswith(session_cookie(console, '"";'))
            assert b"whoever holds its cookie can use it until it expires" in body
            assert get_with(console, "/fleet", cookie)[0] == 200  # as the page says
            status, _, body = post_login(console)
            assert status == 503  # on main: a bare 500 page
            assert b"could not check or record this login (its log says why)" in body
            status, _, body = post(console.url + "/account/password", urlencode({
                "csrf": csrf, "password": PASSWORD, "new_password": "n" * 12,
                "new_password_again": "n" * 12}).encode(), {
                "Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie})
            assert status == 503
            assert b"could not record the new password (its log says why)" in body
            filler.unlink()
            assert post(console.url + "/logout", urlencode({"csrf": csrf}).encode(), {
                "Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie})[0] == 303
            assert get_with(console, "/fleet", cookie)[0] == 303


def test_a_refused_form_never_shows_a_password_back(console: Console) -> None:
    secret = "my-real-secret-" * 20  # 300 characters: over the limit
    status, _, body = post_login(console, "alice", secret)
    assert status == 400
    assert b"password: &#39;300 characters&#39; refused: at most 256 characters" in body
    assert b"my-real-secret" not in body  # on main: its first 80 characters
    _, headers, _ = console.get("/login")
    status, _, body = post(console.url + "/login", b"password=my-real-secret\xff\xfe", {
        "Content-Type": "application/x-www-form-urlencoded",
        "Cookie": headers["set-cookie"].split(";")[0]})
    assert status == 400
    assert b"form: &#39;25 bytes&#39; refused" in body
    assert b"my-real-secret" not in body


def test_a_login_or_password_change_the_store_could_not_record_counts_no_failure(
    tmp_path: Path,
) -> None:
    """With one failure allowed, a right password the full store could not record was counted
    as a failed login: once the store worked again the user was refused (429) for the window."""
    with small_tmpfs(tmp_path / "disk", size="8m") as disk:
        (disk / "console").mkdir()
        with running_console(disk / "console", login_max_failures=1) as console:
            cookie, csrf = login_cookie(console)
            filler = fill(disk)
            assert post_login(console)[0] == 503
            status, _, _ = post(console.url + "/account/password", urlencode({
                "csrf": csrf, "password": PASSWORD, "new_password": "n" * 12,
                "new_password_again": "n" * 12}).encode(), {
                "Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie})
            assert status == 503
            filler.unlink()
            status, headers, _ = post_login(console)
            assert (status, headers["location"]) == (303, "/fleet")  # on main: 429
            status, _, body = post(console.url + "/account/password", urlencode({
                "csrf": csrf, "password": PASSWORD, "new_password": "n" * 12,
                "new_password_again": "n" * 12}).encode(), {
                "Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie})
            assert status == 303, body  # on main: 429 (done: 303 to the account page)
            assert post_login(console, password="not the password")[0] == 303  # failed=1
            assert post_login(console)[0] == 429  # a wrong one still counts


def test_a_login_the_busy_console_could_not_check_counts_no_failure(tmp_path: Path) -> None:
    """With every store connection taken (a busy console) a login is the 503 page before any
    password is checked, but it counted as a failed login: with one failure allowed, the
    user's next login, with the console free again, was refused (429)."""
    url = f"sqlite:///{tmp_path / 'backoffice.sqlite3'}"
    store = open_store(url)
    add_user(store, "alice", "operator", PASSWORD)
    store.close()
    config = ConsoleConfig(port=free_port(), cohort_cache_s=0, login_max_failures=1)
    pool = StorePool(url, size=1, wait_s=0.2)
    thread = ConsoleThread(config, pool, tmp_path)
    thread.start()
    assert thread.wait_started(), "console did not start"
    console = Console(f"http://127.0.0.1:{config.port}", "", "", url, tmp_path)
    try:
        with pool.store():  # the console's one connection taken
            status, _, body = post_login(console)
            assert status == 503, body
            assert b"no free store connection" in body
        status, headers, _ = post_login(console)
        assert (status, headers["location"]) == (303, "/fleet")  # on main: 429
        assert post_login(console, password="not the password")[0] == 303  # failed=1
        assert post_login(console)[0] == 429  # a wrong one still counts
    finally:
        thread.stop()
        pool.close()
