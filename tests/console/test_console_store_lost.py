"""A console whose PostgreSQL database goes away answers the 503 page (the API a 503 JSON) while
it is gone, never a 500, counts no login it could not judge, and works again once it is back."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from console_helpers import PASSWORD, Console, free_port, get_with, login_cookie, post_login

from appliance.backoffice.store import Store, open_store
from appliance.backoffice.storeurl import store_name
from appliance.config import ConsoleConfig
from appliance.console.app import SECURITY_HEADERS
from appliance.console.auth import add_user, create_token
from appliance.console.db import StorePool
from appliance.console.server import ConsoleThread

PG_SERVER = "postgresql://postgres@127.0.0.1:5432"
pytestmark = pytest.mark.postgres


def _admin(sql: str, *params: str) -> None:
    with psycopg.connect(f"{PG_SERVER}/test", autocommit=True) as admin:
        admin.execute(sql, params)


@pytest.fixture
def database() -> Iterator[str]:
    """A new PostgreSQL database (its name starts console_), dropped afterwards."""
    name = f"console_lost_{uuid.uuid4().hex[:12]}"
    _admin(f"CREATE DATABASE {name}")
    try:
        yield name
    finally:
        _admin(f"ALTER DATABASE {name} WITH ALLOW_CONNECTIONS true")
        _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _gone(name: str) -> None:
    """The database refuses new connections and ends the open ones (a server going down)."""
    _admin(f"ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false")
    _admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", name)


def _back(name: str) -> None:
    _admin(f"ALTER DATABASE {name} WITH ALLOW_CONNECTIONS true")


@pytest.fixture
def console(database: str, tmp_path: Path) -> Iterator[Console]:
    """The console on that database (two store connections), a user alice with a token; one
    failed login allowed."""
    url = f"{PG_SERVER}/{database}"
    store = open_store(url)
    try:
        add_user(store, "alice", "operator", PASSWORD)
        token = create_token(store, "alice").token
    finally:
        store.close()
    config = ConsoleConfig(port=free_port(), cohort_cache_s=0, login_max_failures=1)
    pool = StorePool(url, size=2)
    thread = ConsoleThread(config, pool, tmp_path)
    thread.start()
    assert thread.wait_started(), "console did not start"
    try:
        yield Console(f"http://127.0.0.1:{config.port}", token, token, url, tmp_path)
    finally:
        thread.stop()
        pool.close()


def test_a_lost_database_is_the_503_page_and_the_console_recovers(
    console: Console, database: str,
) -> None:
    cookie, _ = login_cookie(console)
    assert get_with(console, "/fleet", cookie)[0] == 200
    _gone(database)
    for _ in range(3):  # the connection that failed, then each slot's new one
        status, headers, body = get_with(console, "/fleet", cookie)
        assert status == 503, body  # on main: 500
        assert b"the console&#39;s store cannot be reached now (its log says why)" in body
        assert database.encode() not in body  # the database's name stays in the log
        seen = {name.lower(): value for name, value in headers.items()}
        assert {name: seen.get(name.lower()) for name in SECURITY_HEADERS} == SECURITY_HEADERS
    status, _, body = console.get("/api/v1/fleet", console.token)
    assert status == 503
    assert "cannot be reached now" in json.loads(body)["detail"]
    status, _, body = post_login(console)
    assert status == 503  # the login page says the store failed; on main: a bare 500
    assert b"could not check or record this login" in body
    _back(database)
    assert get_with(console, "/fleet", cookie)[0] == 200
    assert console.get("/api/v1/fleet", console.token)[0] == 200
    status, headers, _ = post_login(console)
    assert (status, headers["location"]) == (303, "/fleet")  # the unjudged login not counted


def test_connections_the_database_ended_while_idle_are_reopened_before_a_request_uses_them(
    console: Console, database: str,
) -> None:
    """A PostgreSQL restart (or an idle timeout) ends the console's idle connections: the next
    request on each failed with the 500 page (the API's 500 too), though the database was back."""
    cookie, _ = login_cookie(console)
    assert get_with(console, "/fleet", cookie)[0] == 200
    assert console.get("/api/v1/fleet", console.token)[0] == 200
    for _ in range(2):  # pages, then the API, each after the connections were ended
        _admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
               database)
        assert get_with(console, "/fleet", cookie)[0] == 200  # on main: 500
        assert console.get("/api/v1/fleet", console.token)[0] == 200


def test_a_connection_the_database_ends_during_a_request_is_a_503_and_the_next_one_works(
    console: Console, database: str, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A PostgreSQL restart between the pool's check of a connection and the request's query
    ended it under the request: the pool reopened it, but the request answered the 500 page,
    though the store was only briefly away."""
    cookie, _ = login_cookie(console)

    def ended_under_the_query(store: Store, *_: object,
                              **__: object) -> list[dict[str, object]]:
        store.query("SELECT pg_terminate_backend(pg_backend_pid())")  # as a restart ends it
        return []

    monkeypatch.setattr(Store, "rollout_rows", ended_under_the_query)
    with caplog.at_level(logging.WARNING, logger="appliance.console.app"):
        status, _, page = get_with(console, "/rollouts", cookie)
        api_status, _, body = console.get("/api/v1/rollouts", console.token)
    assert (status, api_status) == (503, 503), page  # on main: 500, 500
    assert b"the console&#39;s store cannot be reached now (its log says why)" in page
    assert "cannot be reached now" in json.loads(body)["detail"]
    assert b"terminating" not in page + body
    named = f"console store failed, {store_name(console.store_url)}: "
    assert [r for r in caplog.records if r.getMessage().startswith(named)]
    monkeypatch.undo()
    assert get_with(console, "/rollouts", cookie)[0] == 200  # the reopened connection
    assert console.get("/api/v1/rollouts", console.token)[0] == 200
