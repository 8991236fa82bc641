"""The console's store pool reopens a connection only when the store failed on it: a handler's
own error raised while it holds a store (a 404, say) gives the same connection back, and stays
the error it is even when the database could not be reopened just then."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import HTTPException

from appliance.backoffice.store import Store, StoreError
from appliance.console.db import StorePool, StoreUnreachableError


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[StorePool]:
    """A console's pool of one connection on a new SQLite store."""
    opened = StorePool(f"sqlite:///{tmp_path / 'backoffice.sqlite3'}", size=1)
    try:
        yield opened
    finally:
        opened.close()


def _connection(store: Store) -> object:
    return store._conn  # noqa: SLF001 - which connection the pool lent is what is tested


def _reopening_fails(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make every reopen fail as a database that went away would; the stores it was tried on."""
    tried: list[str] = []

    def refused(store: Store) -> None:
        tried.append(store.url)
        raise StoreError("cannot connect to the store: it went away")

    monkeypatch.setattr(Store, "reconnect", refused)
    return tried


def test_a_404_raised_while_holding_a_store_keeps_its_connection(pool: StorePool) -> None:
    with pool.store() as store:
        held = _connection(store)
    with pytest.raises(HTTPException) as raised, pool.store() as store:
        raise HTTPException(404, "no pathology job job-9")
    assert raised.value.status_code == 404
    with pool.store() as store:
        assert _connection(store) is held  # on main: a new connection
        store.forget_expired_tokens()


def test_a_404_stays_a_404_when_the_store_could_not_be_reopened(
        pool: StorePool, monkeypatch: pytest.MonkeyPatch) -> None:
    tried = _reopening_fails(monkeypatch)
    with pytest.raises(HTTPException) as raised, pool.store():
        raise HTTPException(404, "no rollout r9")  # on main: StoreUnreachableError, the 503
    assert (raised.value.status_code, tried) == (404, [])
    with pool.store() as store:
        store.forget_expired_tokens()


def test_a_bug_in_a_statement_keeps_the_connection_it_ran_on(pool: StorePool) -> None:
    with pool.store() as store:
        held = _connection(store)
    with pytest.raises(sqlite3.OperationalError, match="no such table"), \
            pool.store() as store:
        store.query("SELECT * FROM no_such_table")
    with pool.store() as store:
        assert _connection(store) is held


def test_a_store_failure_is_still_reopened_and_the_503_when_it_cannot_be(
        pool: StorePool, monkeypatch: pytest.MonkeyPatch) -> None:
    with pool.store() as store:
        held = _connection(store)
    with pytest.raises(StoreError), pool.store():
        raise StoreError("the store refused")
    with pool.store() as store:
        assert _connection(store) is not held  # reopened for the next request
    tried = _reopening_fails(monkeypatch)
    with pytest.raises(StoreUnreachableError, match="could not be reopened"), pool.store():
        raise StoreError("the store refused")
    assert tried == [pool.url]
