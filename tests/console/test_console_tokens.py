"""API tokens expire (an expired one is refused as an unknown one is), record their last use at
most once a minute, and tokens made before expiry existed keep working, listed as such."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from console_helpers import PASSWORD, Console, free_port

from appliance.backoffice.accounts import LAST_USE_EVERY_S, TokenRow
from appliance.backoffice.migrations import MIGRATIONS
from appliance.backoffice.schema import iso_utc
from appliance.backoffice.store import Store, open_store
from appliance.cli import main
from appliance.cli_help_text import COMMAND_HELP
from appliance.config import ConsoleConfig
from appliance.console import EXPIRED_TOKEN_KEPT_DAYS, auth
from appliance.console.auth import AccessError, add_user, create_token
from appliance.console.db import FORGET_TOKENS_EVERY_S, StorePool
from appliance.console.server import ConsoleThread
from appliance.transport.payloads import utc_now
from tests.disk_helpers import fill, small_tmpfs
from tests.store_helpers import PG_URL


def _listed(store: Store, token: str) -> TokenRow:
    return next(t for t in store.tokens() if t.token_id == auth.token_id_of(token))


def _used_ago(store: Store, token: str, seconds: float) -> str:
    """Set the token's last use ``seconds`` back; the time written."""
    moment = iso_utc(utc_now() - timedelta(seconds=seconds))
    store.write("UPDATE console_tokens SET last_used_at = ? WHERE token_sha256 = ?",
                [(moment, auth.digest(token))])
    return moment


def test_an_expired_token_is_refused_and_listed_as_expired(store: Store) -> None:
    add_user(store, "ann", "viewer", PASSWORD)
    made = create_token(store, "ann", days=30, label="nightly export")
    expired = "an-expired-token-" + "x" * 20
    store.add_token(auth.digest(expired), "ann", "", -1.0)  # its lifetime over a second ago
    assert auth.bearer_login(store, f"Bearer {made.token}") is not None
    assert auth.bearer_login(store, f"Bearer {expired}") is None  # on main: no expiry at all
    fresh, old = _listed(store, made.token), _listed(store, expired)
    assert (fresh.label, fresh.expired, old.expired) == ("nightly export", False, True)
    assert fresh.expires_at == made.expires_at
    assert fresh.expires_at is not None
    assert fresh.created_at < fresh.expires_at  # 30 days on
    assert fresh.expires_at[:10] == iso_utc(utc_now() + timedelta(days=30))[:10]


def test_last_use_is_written_at_most_once_a_minute(store: Store) -> None:
    add_user(store, "ann", "viewer", PASSWORD)
    token = create_token(store, "ann").token
    assert _listed(store, token).last_used_at is None  # never used
    assert auth.bearer_login(store, f"Bearer {token}") is not None
    first = _listed(store, token).last_used_at
    assert first is not None
    recent = _used_ago(store, token, LAST_USE_EVERY_S / 2)
    assert auth.bearer_login(store, f"Bearer {token}") is not None
    assert _listed(store, token).last_used_at == recent  # not written again within the minute
    stale = _used_ago(store, token, LAST_USE_EVERY_S + 1)
    assert auth.bearer_login(store, f"Bearer {token}") is not None
    written = _listed(store, token).last_used_at
    assert written is not None
    assert written > stale


def test_a_last_use_that_cannot_be_written_is_said_once_until_one_is_written_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # every API request tried the write again and logged it again: a journal line per request
    # for as long as the disk stayed full
    caplog.set_level(logging.INFO, logger="appliance.console.auth")
    with small_tmpfs(tmp_path / "disk") as disk:
        store = open_store(f"sqlite:///{disk / 'store.sqlite3'}")
        try:
            add_user(store, "ann", "viewer", PASSWORD)
            token = create_token(store, "ann").token
            filler = fill(disk)
            answers = [auth.bearer_login(store, f"Bearer {token}") for _ in range(5)]
            assert all(login is not None and login.name == "ann" for login in answers)
            assert _listed(store, token).last_used_at is None  # none could be written
            said = [r.getMessage() for r in caplog.records]
            assert sum("its last use was not recorded" in line for line in said) == 1
            filler.unlink()
            assert auth.bearer_login(store, f"Bearer {token}") is not None
            assert _listed(store, token).last_used_at is not None
            assert "API tokens' last uses are recorded again" in caplog.text
            _used_ago(store, token, LAST_USE_EVERY_S + 1)
            filler = fill(disk)
            assert auth.bearer_login(store, f"Bearer {token}") is not None
            said = [r.getMessage() for r in caplog.records]
            assert sum("its last use was not recorded" in line for line in said) == 2
            filler.unlink()
            assert auth.bearer_login(store, f"Bearer {token}") is not None  # written: as before
        finally:
            store.close()


@pytest.mark.parametrize("days", [0, -1, 366, float("nan")])
def test_a_token_lifetime_out_of_range_is_refused(store: Store, days: float) -> None:
    add_user(store, "ann", "viewer", PASSWORD)
    with pytest.raises(AccessError, match="at most 365 days"):
        create_token(store, "ann", days=days)
    assert store.tokens() == []


@pytest.mark.parametrize("label", ["<b>x</b>", "\u202etxt.exe", "x" * 65, " leading",
                                   "nightly\n"])
def test_a_bad_token_label_is_refused(store: Store, label: str) -> None:
    add_user(store, "ann", "viewer", PASSWORD)
    with pytest.raises(AccessError, match="token label"):
        create_token(store, "ann", label=label)
    assert store.tokens() == []


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres",
                                                            marks=pytest.mark.postgres)])
def test_tokens_made_before_expiry_existed_keep_working_with_no_expiry(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'old.sqlite3'}" if backend == "sqlite" else PG_URL
    schema = None if backend == "sqlite" else f"console_tokens_{uuid.uuid4().hex[:12]}"
    with monkeypatch.context() as before_8:  # a store as it was before migration 8
        before_8.setattr("appliance.backoffice.store_schema.MIGRATIONS", MIGRATIONS[:7])
        old = open_store(url, pg_schema=schema)
    try:
        old.write("INSERT INTO console_users (name, password_hash, role, created_at) "
                  "VALUES (?, ?, ?, ?)", [("ann", auth.password_hash(PASSWORD), "viewer",
                                           "2026-01-02T03:04:05.000000Z")])  # as it did
        token = "a-token-of-an-older-console-" + "y" * 10
        old.write("INSERT INTO console_tokens (token_sha256, name, created_at) VALUES (?, ?, ?)",
                  [(auth.digest(token), "ann", "2026-01-02T03:04:05.000000Z")])
        assert 8 in old.migrate()
        assert auth.bearer_login(old, f"Bearer {token}") is not None
        listed = _listed(old, token)
        assert (listed.label, listed.expires_at, listed.expired) == ("", None, False)
        assert listed.last_used_at is not None  # the use just made
    finally:
        if schema is not None:
            old.drop_postgres_schema(schema)
        old.close()


def test_token_list_shows_label_expiry_and_last_use_and_http_refuses_expired_as_unknown(
    console: Console, capsys: pytest.CaptureFixture[str],
) -> None:
    store = open_store(console.store_url)
    try:
        add_user(store, "kim", "viewer", PASSWORD)
        expired = "an-expired-token-of-kim-" + "z" * 16
        store.add_token(auth.digest(expired), "kim", "", -1.0)
    finally:
        store.close()
    assert main(["console", "token", "create", "kim", "--days", "7", "--label", "ci job",
                 "--store", console.store_url]) == 0
    printed = capsys.readouterr()
    token = printed.out.strip()
    assert "It expires at 20" in printed.err
    assert console.get("/api/v1/fleet", token)[0] == 200
    unknown = console.get("/api/v1/fleet", "no-such-token-" + "q" * 20)
    refused = console.get("/api/v1/fleet", expired)
    assert (refused[0], refused[2]) == (unknown[0], unknown[2])  # no oracle: 401 both
    assert refused[0] == 401
    assert main(["console", "token", "list", "--user", "kim", "--store",
                 console.store_url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ID", "USER", "LABEL", "CREATED", "EXPIRES", "LAST", "USED"]
    rows = {line.split()[0]: line for line in lines[1:]}
    made, old = rows[auth.token_id_of(token)], rows[auth.token_id_of(expired)]
    assert " ci job " in made
    assert " expired 20" in old
    assert old.rstrip().endswith(" never")
    assert not made.rstrip().endswith(" never")  # the API call above was its first use


@pytest.mark.parametrize("days", ["0", "366", "nan", "soon"])
def test_token_create_refuses_a_lifetime_out_of_range_naming_the_option(
    console: Console, capsys: pytest.CaptureFixture[str], days: str,
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["console", "token", "create", "alice", "--days", days, "--store",
              console.store_url])
    assert exited.value.code == 2
    assert "--days" in capsys.readouterr().err


def test_tokens_expired_30_days_ago_are_forgotten_when_a_token_is_made(store: Store) -> None:
    """Expired tokens were kept and listed forever."""
    add_user(store, "ann", "viewer", PASSWORD)
    day_s = 86400.0
    long_gone, recent = "long-expired-token-" + "l" * 20, "lately-expired-token-" + "r" * 20
    store.add_token(auth.digest(recent), "ann", "", -(EXPIRED_TOKEN_KEPT_DAYS - 1) * day_s)
    store.add_token(auth.digest(long_gone), "ann", "", -(EXPIRED_TOKEN_KEPT_DAYS + 1) * day_s)
    ageless = "a-token-made-before-expiry-" + "n" * 10
    store.write("INSERT INTO console_tokens (token_sha256, name, label, created_at) "
                "VALUES (?, ?, ?, ?)", [(auth.digest(ageless), "ann", "", "2026-01-02T03:04:05Z")])
    assert len(store.tokens()) == 3  # listed, as expired, until a token is made
    made = create_token(store, "ann").token
    listed = {t.token_id: t.expired for t in store.tokens()}
    assert listed == {auth.token_id_of(recent): True, auth.token_id_of(ageless): False,
                      auth.token_id_of(made): False}


def test_tokens_expired_30_days_ago_are_forgotten_when_the_console_starts(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'bo.sqlite3'}"
    store = open_store(url)
    try:
        add_user(store, "ann", "viewer", PASSWORD)
        long_gone = "long-expired-token-" + "l" * 20
        store.add_token(auth.digest(long_gone), "ann", "",
                        -(EXPIRED_TOKEN_KEPT_DAYS + 1) * 86400.0)
        kept = create_token(store, "ann").token
        StorePool(url, size=1).close()  # what `appliance console` opens at start
        assert [t.token_id for t in store.tokens()] == [auth.token_id_of(kept)]
    finally:
        store.close()
    assert f"expired {EXPIRED_TOKEN_KEPT_DAYS} days ago" in COMMAND_HELP["console token list"][0]


def test_a_running_console_forgets_tokens_expired_30_days_ago_at_most_once_an_hour(
    tmp_path: Path,
) -> None:
    """They were forgotten only when a token was made or the console started: a console that
    ran for months kept them, and `console token list` showed them."""
    url = f"sqlite:///{tmp_path / 'bo.sqlite3'}"
    store = open_store(url)
    add_user(store, "ann", "viewer", PASSWORD)
    kept = create_token(store, "ann").token
    now_s = [1000.0]
    pool = StorePool(url, size=1, clock=lambda: now_s[0])
    config = ConsoleConfig(port=free_port(), cohort_cache_s=0)
    thread = ConsoleThread(config, pool, tmp_path)
    thread.start()
    try:
        assert thread.wait_started(), "console did not start"
        console = Console(f"http://127.0.0.1:{config.port}", kept, kept, url, tmp_path)
        long_gone = "long-expired-token-" + "l" * 20  # expired after the console started
        store.add_token(auth.digest(long_gone), "ann", "", -(EXPIRED_TOKEN_KEPT_DAYS + 1) * 86400.0)
        now_s[0] += FORGET_TOKENS_EVERY_S - 1
        assert console.get("/api/v1/fleet", kept)[0] == 200
        assert len(store.tokens()) == 2  # not an hour yet: one DELETE an hour at most
        now_s[0] += 1
        assert console.get("/api/v1/fleet", long_gone)[0] == 401
        assert [t.token_id for t in store.tokens()] == [auth.token_id_of(kept)]  # on main: both
        assert console.get("/api/v1/fleet", kept)[0] == 200
    finally:
        thread.stop()
        pool.close()
        store.close()
