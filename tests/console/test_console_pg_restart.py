"""The console across a real PostgreSQL restart, crash and read-only start (tests/pg_cluster.py:
a server of the module's own): while the server is away every page, API call and login is the
503 answer that says the store cannot be reached now, never a 500; once it is back, the same
session and token work again, without a restart of the console."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from console_helpers import PASSWORD, Console, free_port, get_with, login_cookie, post_login

from appliance.backoffice.store import Store, open_store
from appliance.config import ConsoleConfig
from appliance.console.auth import add_user, create_token
from appliance.console.db import StorePool
from appliance.console.server import ConsoleThread
from tests.pg_cluster import HeldCall, PgCluster

pytestmark = pytest.mark.postgres
UNREACHABLE = b"the console&#39;s store cannot be reached now (its log says why)"


@pytest.fixture
def console_and_pool(pg_cluster: PgCluster, tmp_path: Path
                     ) -> Iterator[tuple[Console, StorePool]]:
    """The console on a new database of the test's server (two store connections), a user
    alice with a token; and its pool."""
    url = pg_cluster.database()
    store = open_store(url)
    try:
        add_user(store, "alice", "operator", PASSWORD)
        token = create_token(store, "alice").token
    finally:
        store.close()
    config = ConsoleConfig(port=free_port(), cohort_cache_s=0)
    pool = StorePool(url, size=2)
    thread = ConsoleThread(config, pool, tmp_path)
    thread.start()
    assert thread.wait_started(), "console did not start"
    try:
        yield Console(f"http://127.0.0.1:{config.port}", token, token, url, tmp_path), pool
    finally:
        thread.stop()
        pool.close()


@pytest.fixture
def console(console_and_pool: tuple[Console, StorePool]) -> Console:
    """The console of ``console_and_pool``."""
    return console_and_pool[0]


def _answers_503_while_away(console: Console, cookie: str) -> None:
    for _ in range(3):  # each pooled connection the server ended, then new ones it refuses
        status, _, body = get_with(console, "/fleet", cookie)
        assert status == 503, body
        assert UNREACHABLE in body
    status, _, body = console.get("/api/v1/results", console.token)
    assert status == 503, body
    assert "cannot be reached now" in json.loads(body)["detail"]
    status, _, body = post_login(console)
    assert status == 503, body
    assert b"could not check or record this login" in body


def _works_again(console: Console, cookie: str) -> None:
    assert get_with(console, "/fleet", cookie)[0] == 200
    assert console.get("/api/v1/results", console.token)[0] == 200
    status, headers, _ = post_login(console)
    assert (status, headers["location"]) == (303, "/fleet")


@pytest.mark.parametrize("how", ["restarted", "crashed"])
def test_the_console_answers_503_while_postgresql_is_down_and_recovers_by_itself(
    how: str, console: Console, pg_cluster: PgCluster,
) -> None:
    cookie, _ = login_cookie(console)
    assert get_with(console, "/fleet", cookie)[0] == 200
    if how == "restarted":
        pg_cluster.stop("fast")
    else:
        pg_cluster.kill()
        assert pg_cluster.wait_gone(30)
    try:
        _answers_503_while_away(console, cookie)
    finally:
        pg_cluster.start()
    _works_again(console, cookie)


def test_the_console_on_a_read_only_server_reads_and_answers_503_to_a_login(
    console: Console, pg_cluster: PgCluster,
) -> None:
    """A server back read-only (a standby not yet promoted): the pages read as before; a
    login, which records its session, cannot be recorded: the 503 answer, not a 500."""
    cookie, _ = login_cookie(console)
    pg_cluster.stop("fast")
    pg_cluster.configure("default_transaction_read_only", "on")
    pg_cluster.start()
    try:
        assert get_with(console, "/fleet", cookie)[0] == 200
        assert console.get("/api/v1/results", console.token)[0] == 200
        status, _, body = post_login(console)
        assert status == 503, body
        assert b"could not check or record this login" in body
    finally:
        pg_cluster.configure("default_transaction_read_only", "off")
        pg_cluster.reload()
    _works_again(console, cookie)


def _lend_every_connection(pool: StorePool, size: int) -> None:
    """Borrow ``size`` stores at once, so that each pooled connection is checked and used."""
    with contextlib.ExitStack() as held:
        for _ in range(size):
            held.enter_context(pool.store()).users()


def test_a_restart_is_one_warning_however_many_pooled_connections_it_closed(
    pg_cluster: PgCluster, caplog: pytest.LogCaptureFixture,
) -> None:
    """Four pooled connections closed by one restart: one WARNING line, not four; the next
    restart is said again."""
    pool = StorePool(pg_cluster.database(), size=4)
    try:
        _lend_every_connection(pool, 4)
        for restarts in (1, 2):
            pg_cluster.stop("fast")
            pg_cluster.start()
            with caplog.at_level(logging.DEBUG, logger="appliance.console.db"):
                _lend_every_connection(pool, 4)
            said = [record for record in caplog.records if "closed" in record.getMessage()]
            assert [r.levelno for r in said].count(logging.WARNING) == restarts
            assert len(said) == 4 * restarts  # the others at DEBUG
    finally:
        pool.close()


def test_a_restart_that_lands_in_a_page_request_is_one_warning_and_the_next_request_works(
    console_and_pool: tuple[Console, StorePool], pg_cluster: PgCluster,
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A fleet page's query meets PostgreSQL's restart: that request is the 503 answer, its
    connection is made again once the server is back (said at INFO), and the restart is one
    WARNING line, the 503's (before: three, with "not reopened yet" and "closed while idle"
    for the pool's other connection)."""
    console, pool = console_and_pool
    cookie, _ = login_cookie(console)
    _lend_every_connection(pool, 2)
    held = HeldCall(monkeypatch, Store, "device_page")
    answers: list[int] = []
    request = threading.Thread(
        target=lambda: answers.append(get_with(console, "/fleet", cookie)[0]), daemon=True)
    caplog.set_level(logging.INFO, logger="appliance.backoffice.store")
    held.armed.set()
    request.start()
    held.restart_under_it(pg_cluster)
    request.join(60)
    assert answers == [503]
    _works_again(console, cookie)
    _lend_every_connection(pool, 2)  # the other connection too
    loud = [(r.name, r.getMessage()) for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(loud) == 1, loud
    assert "console store failed" in loud[0][1], loud
    assert [r for r in caplog.records if "had closed the connection" in r.getMessage()]
