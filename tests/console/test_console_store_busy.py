"""A SQLite store that cannot be used just now (another connection's lock held past the busy
timeout, a full disk) is the console's 503 (StoreUnreachableError), told apart from a bug in a
statement (a missing table: the error as raised, the 500) by SQLite's error code."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from console_helpers import running_console

import appliance.backoffice.store as store_module
from appliance.backoffice.store import open_store
from appliance.backoffice.storeerrors import explained, is_outage
from appliance.console.db import StorePool, StoreUnreachableError

BUSY_TIMEOUT_MS = 200


@pytest.fixture
def pool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StorePool]:
    """A console's pool on a new SQLite store whose statements wait 0.2 s for a lock."""
    monkeypatch.setattr(store_module, "SQLITE_BUSY_TIMEOUT_MS", BUSY_TIMEOUT_MS)
    opened = StorePool(f"sqlite:///{tmp_path / 'backoffice.sqlite3'}", size=1)
    try:
        yield opened
    finally:
        opened.close()


@contextmanager
def _locked(url: str) -> Iterator[None]:
    """Another connection writing to the store, holding its lock until the block ends."""
    writer = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        writer.execute("BEGIN EXCLUSIVE")
        yield
        writer.execute("ROLLBACK")
    finally:
        writer.close()


def test_a_lock_held_past_the_busy_timeout_is_the_unreachable_store(pool: StorePool) -> None:
    with _locked(pool.url), pytest.raises(StoreUnreachableError, match="database is locked"), \
            pool.store() as store:  # on main: sqlite3.OperationalError, the 500
        store.forget_expired_tokens()
    with pool.store() as store:  # the lock is gone: the same connection slot works again
        store.forget_expired_tokens()


def test_a_missing_table_is_still_the_error_it_is(pool: StorePool) -> None:
    with pytest.raises(sqlite3.OperationalError, match="no such table") as raised, \
            pool.store() as store:
        store._fetch("SELECT * FROM no_such_table")  # noqa: SLF001 - a statement with a bug
    assert not isinstance(raised.value, StoreUnreachableError)
    with pool.store() as store:
        store.forget_expired_tokens()


def _raised(run: object) -> BaseException:
    assert callable(run)
    try:
        run()
    except sqlite3.Error as exc:
        return exc
    raise AssertionError("no error")


def test_sqlite_errors_are_told_apart_by_their_code(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "SQLITE_BUSY_TIMEOUT_MS", BUSY_TIMEOUT_MS)
    url = f"sqlite:///{tmp_path / 'backoffice.sqlite3'}"
    open_store(url).close()
    conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None, timeout=0.2)
    full = sqlite3.connect(":memory:")
    full.execute("CREATE TABLE t (x)")
    full.execute("PRAGMA max_page_count=2")  # a disk that holds no more
    try:
        with _locked(url):
            busy = _raised(lambda: conn.execute("BEGIN IMMEDIATE"))
        no_room = _raised(lambda: full.executemany(
            "INSERT INTO t VALUES (?)", [("x" * 2000,)] * 10))
        assert "database or disk is full" in str(no_room)
        missing = _raised(lambda: conn.execute("SELECT * FROM no_such_table"))
        bad_sql = _raised(lambda: conn.execute("SELEC 1"))
    finally:
        conn.close()
        full.close()
    closed = _raised(lambda: conn.execute("SELECT 1"))  # Python's own, no SQLite code
    assert [is_outage(exc) for exc in (busy, no_room)] == [True, True]
    assert [is_outage(exc) for exc in (missing, bad_sql, closed)] == [False, False, False]
    assert explained(busy).endswith("(another program held it locked longer than the busy "
                                    "timeout: try again once that program is done)")
    assert explained(missing) == "no such table: no_such_table"


def test_an_api_answer_does_not_wait_out_a_lock_to_write_its_token_s_last_use(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """Under another program's write lock every API request whose token's last use was due
    waited the whole 30 s busy timeout to write it, then answered (measured: 30.6 s, 0.02 s
    without the lock); reads do not wait for a writer (WAL), so the answer itself was ready."""
    with running_console(tmp_path) as console:
        with _locked(console.store_url):
            status, _, _ = console.get("/api/v1/fleet", console.token)  # gives up after 10 s
            assert status == 200  # on main: the client's 10 s timeout, the console waiting
            assert "its last use was not recorded: database is locked" in caplog.text
            assert console.get("/api/v1/fleet", console.token)[0] == 200  # due: tried again
        assert console.get("/api/v1/fleet", console.token)[0] == 200  # the lock gone: written
        store = open_store(console.store_url)
        try:
            assert [t.last_used_at is not None for t in store.tokens("alice")] == [True]
        finally:
            store.close()
