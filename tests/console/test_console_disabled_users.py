"""A disabled console user cannot log in (answered as a wrong password is), its sessions and
API tokens stop at once, in a running console too, and it is listed as disabled; enabling it
brings its tokens back. The last enabled operator cannot be disabled, removed or made a
viewer."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest
from console_helpers import PASSWORD, Console, free_port, get_with, login_cookie, post_login

from appliance.backoffice.accounts import LastOperatorError, Login, Revoked
from appliance.backoffice.store import Store, StoreError, open_store
from appliance.backoffice.store_schema import LATEST_VERSION
from appliance.cli import main
from appliance.console import auth
from appliance.console.auth import AccessError, add_user, create_token
from appliance.console.db import StorePool
from tests.store_helpers import PG_URL


def test_a_disabled_user_is_out_until_enabled_and_gets_its_tokens_back(store: Store) -> None:
    add_user(store, "ops", "operator", PASSWORD)
    add_user(store, "ann", "viewer", PASSWORD)
    session = auth.open_session(store, Login("ann", "viewer"), 1)
    token = create_token(store, "ann").token
    assert auth.disable_user(store, "ann") == Revoked(sessions=1, tokens=1)
    assert auth.session_login(store, session.cookie) is None
    assert auth.bearer_login(store, f"Bearer {token}") is None
    assert auth.verify_password(store, "ann", PASSWORD) is None  # as a wrong password
    ann = next(u for u in store.users() if u.name == "ann")
    assert ann.disabled_at is not None
    assert (ann.sessions, ann.tokens) == (0, 1)  # the token kept, held back
    assert [t.user_disabled for t in store.tokens("ann")] == [True]  # listed so
    with pytest.raises(AccessError, match="disabled: enable it first"):
        create_token(store, "ann")
    auth.enable_user(store, "ann")
    assert [t.user_disabled for t in store.tokens("ann")] == [False]
    assert auth.bearer_login(store, f"Bearer {token}") == Login("ann", "viewer")
    assert auth.session_login(store, session.cookie) is None  # ended sessions stay ended
    assert auth.verify_password(store, "ann", PASSWORD) == Login("ann", "viewer")
    assert next(u for u in store.users() if u.name == "ann").disabled_at is None
    for unknown in (auth.disable_user, auth.enable_user):
        with pytest.raises(AccessError, match="no console user 'nobody'"):
            unknown(store, "nobody")


def test_the_last_enabled_operator_stays(store: Store) -> None:
    add_user(store, "ops", "operator", PASSWORD)
    add_user(store, "ann", "viewer", PASSWORD)
    for change in (lambda: auth.disable_user(store, "ops"),
                   lambda: auth.remove_user(store, "ops"),
                   lambda: add_user(store, "ops", "viewer", PASSWORD)):
        with pytest.raises(AccessError, match="'ops' is the last enabled operator"):
            change()
    assert auth.verify_password(store, "ops", PASSWORD) == Login("ops", "operator")
    add_user(store, "second", "operator", PASSWORD)
    auth.disable_user(store, "ops")  # another operator is enabled
    with pytest.raises(AccessError, match="'second' is the last enabled operator"):
        auth.disable_user(store, "second")
    auth.disable_user(store, "ann")  # viewers are never held


@pytest.mark.postgres
def test_two_operators_disabled_at_once_leave_one_enabled() -> None:
    """Each disable alone would pass; together, on two connections, one must see the other."""
    schema = f"console_disabled_{uuid.uuid4().hex[:12]}"
    owner = open_store(PG_URL, pg_schema=schema)
    try:
        for name in ("one", "two"):
            add_user(owner, name, "operator", PASSWORD)
        for _ in range(5):
            outcomes = _disable_together(schema, ("one", "two"))
            assert sorted(outcomes) == ["disabled", "refused"]
            for name in ("one", "two"):
                owner.enable_user(name)
    finally:
        owner.drop_postgres_schema(schema)
        owner.close()


def _disable_together(schema: str, names: tuple[str, ...]) -> list[str]:
    start = threading.Barrier(len(names))
    outcomes: list[str] = []

    def disable(name: str) -> None:
        store = open_store(PG_URL, pg_schema=schema)
        try:
            start.wait()
            store.disable_user(name)
            outcomes.append("disabled")
        except LastOperatorError:
            outcomes.append("refused")
        finally:
            store.close()

    threads = [threading.Thread(target=disable, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return outcomes


def test_a_disabled_users_old_session_token_and_password_stop_in_a_running_console(
    console: Console, capsys: pytest.CaptureFixture[str],
) -> None:
    store = open_store(console.store_url)
    try:
        add_user(store, "mallory", "viewer", PASSWORD)
        token = create_token(store, "mallory").token
    finally:
        store.close()
    cookie, _ = login_cookie(console, "mallory")
    wrong = post_login(console, "mallory", "not the password")
    assert main(["console", "user", "disable", "mallory", "--store", console.store_url]) == 0
    assert capsys.readouterr().out.strip() == (
        "disabled console user mallory: ended 1 open session(s); its 1 API token(s) stop "
        "working until it is enabled")
    status, headers, _ = get_with(console, "/fleet", cookie)
    assert (status, headers["location"]) == (303, "/login?next=/fleet&ended=1")
    unknown = console.get("/api/v1/fleet", "no-such-token-" + "q" * 20)
    refused = console.get("/api/v1/fleet", token)
    assert (refused[0], refused[2]) == (unknown[0], unknown[2])  # no oracle: 401 both
    assert refused[0] == 401
    status, headers, _ = post_login(console, "mallory", PASSWORD)
    assert (status, headers["location"]) == (wrong[0], wrong[1]["location"])  # no oracle
    assert "failed=1" in headers["location"]
    assert main(["console", "user", "list", "--store", console.store_url]) == 0
    row = next(line.split() for line in capsys.readouterr().out.splitlines()
               if line.startswith("mallory "))
    assert row[5] == "disabled"
    assert main(["console", "token", "list", "--user", "mallory", "--store",
                 console.store_url]) == 0
    assert " mallory (disabled) " in capsys.readouterr().out
    assert main(["console", "user", "enable", "mallory", "--store", console.store_url]) == 0
    capsys.readouterr()
    assert console.get("/api/v1/fleet", token)[0] == 200
    assert post_login(console, "mallory", PASSWORD)[0] == 303
    assert "failed" not in post_login(console, "mallory", PASSWORD)[1]["location"]


def test_disable_refuses_the_last_operator_and_unknown_users_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"sqlite:///{tmp_path / 'bo.sqlite3'}"
    store = open_store(url)
    try:
        add_user(store, "ops", "operator", PASSWORD)
    finally:
        store.close()
    assert main(["console", "user", "disable", "ops", "--store", url]) == 2
    assert "'ops' is the last enabled operator and cannot be disabled: add or enable another " \
           "operator first" in capsys.readouterr().err
    assert main(["console", "user", "enable", "nobody", "--store", url]) == 2
    assert "no console user 'nobody'" in capsys.readouterr().err
    store = open_store(url)
    try:
        assert auth.verify_password(store, "ops", PASSWORD) is not None
    finally:
        store.close()


def test_a_new_password_for_a_disabled_user_says_it_is_still_disabled(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """Setting a disabled user's password said only what it ended: whoever set it was left to
    find out from a login refused as a wrong password."""
    url = f"sqlite:///{tmp_path / 'bo.sqlite3'}"
    store = open_store(url)
    try:
        add_user(store, "ops", "operator", PASSWORD)
        add_user(store, "bob", "viewer", PASSWORD)
        store.disable_user("bob")
    finally:
        store.close()
    password_file = tmp_path / "pw"
    password_file.write_text("another long secret\n")
    assert main(["console", "user", "add", "bob", "--password-file", str(password_file),
                 "--store", url]) == 0
    assert capsys.readouterr().out.strip() == (
        "updated console user bob (viewer): ended 0 open session(s), revoked 0 API token(s); "
        "it is still disabled (console user enable bob lets it log in)")
    assert main(["console", "user", "add", "ops", "--role", "operator", "--password-file",
                 str(password_file), "--store", url]) == 0
    assert "disabled" not in capsys.readouterr().out


def test_a_console_does_not_serve_a_store_a_newer_appliance_migrated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An older console (rolled back) on a store a newer one migrated would ignore what it
    cannot read there, such as a user's disabled_at or a token's expiry: it refuses the store
    and changes nothing; read commands and store migrate still take it (additive migrations)."""
    url = f"sqlite:///{tmp_path / 'newer.sqlite3'}"
    newer = open_store(url)
    try:
        add_user(newer, "ops", "operator", PASSWORD)
        newer.write("INSERT INTO schema_migrations VALUES (?, ?, ?)",
                    [(LATEST_VERSION + 1, "from a newer appliance", "2027-01-01T00:00:00Z")])
    finally:
        newer.close()
    before = (tmp_path / "newer.sqlite3").read_bytes()
    with pytest.raises(StoreError, match=rf"schema version {LATEST_VERSION + 1}, newer than"):
        StorePool(url)
    monkeypatch.setenv("APPLIANCE__CONSOLE__PORT", str(free_port()))
    assert main(["console", "--store", url]) == 2
    printed = capsys.readouterr()
    assert "newer than this console's" in printed.err
    assert "console on" not in printed.out
    assert (tmp_path / "newer.sqlite3").read_bytes() == before
    assert main(["store", "migrate", "--store", url]) == 0  # left as it is, said so


def test_account_commands_refuse_a_store_a_newer_appliance_migrated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """An older appliance's `console user add` (remove, disable, enable, token create, revoke)
    wrote there as if it knew the account rules a newer one keeps: it set passwords and made
    tokens the console itself refuses to serve. Each now refuses, exit 2, naming both schema
    versions, and changes nothing; `console user list` (a read) still reads it."""
    url = f"sqlite:///{tmp_path / 'newer.sqlite3'}"
    newer = open_store(url)
    try:
        add_user(newer, "ops", "operator", PASSWORD)
        add_user(newer, "ann", "viewer", PASSWORD)
        token = create_token(newer, "ann").token
        newer.write("INSERT INTO schema_migrations VALUES (?, ?, ?)",
                    [(LATEST_VERSION + 1, "from a newer appliance", "2027-01-01T00:00:00Z")])
    finally:
        newer.close()
    before = (tmp_path / "newer.sqlite3").read_bytes()
    password_file = tmp_path / "pw"
    password_file.write_text("another long secret\n")
    token_id = auth.token_id_of(token)
    for command in (["user", "add", "bob", "--password-file", str(password_file)],
                    ["user", "add", "ann", "--password-file", str(password_file)],
                    ["user", "remove", "ann"], ["user", "disable", "ann"],
                    ["user", "enable", "ann"], ["token", "create", "ann"],
                    ["token", "revoke", token_id]):
        assert main(["console", *command, "--store", url]) == 2, command
        err = capsys.readouterr().err
        assert f"schema version {LATEST_VERSION + 1}, newer than this appliance's " \
               f"{LATEST_VERSION}" in err, command
        assert "changes nothing" in err, command
        assert "account rules there (disabled users, token expiry)" in err, command
        assert (tmp_path / "newer.sqlite3").read_bytes() == before, command
    assert main(["console", "user", "list", "--store", url]) == 0
    assert "ann" in capsys.readouterr().out
