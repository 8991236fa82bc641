"""The demo's lock in a PostgreSQL store (appliance/backoffice/demolock.py): one demo at a time
on a schema of a database, whatever folder or host it runs from; tests/backoffice/
test_backoffice_demo.py runs whole demos against it, kill -9 included."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.backoffice import demo
from appliance.backoffice.demolock import DemoLockError, demo_lock
from appliance.cli import main
from tests.pg_cut import cut_server
from tests.store_helpers import PG_URL


@pytest.fixture
def schemas() -> Iterator[tuple[str, str]]:
    """Two fresh schemas of the test database, dropped afterwards."""
    import psycopg

    names = tuple(f"locks_demolock_{uuid.uuid4().hex[:10]}" for _ in range(2))
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        for name in names:
            admin.execute(f"CREATE SCHEMA {name}")
        try:
            yield names[0], names[1]
        finally:
            for name in names:
                admin.execute(f"DROP SCHEMA {name} CASCADE")


def _url(schema: str, password: str = "") -> str:
    user = f"postgres:{password}" if password else "postgres"
    return f"postgresql://{user}@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"


@pytest.mark.postgres
def test_a_second_demo_lock_on_one_schema_is_refused_naming_the_demo_and_the_database(
    schemas: tuple[str, str],
) -> None:
    url = _url(schemas[0], password="s3cret-pw")  # trust auth: any password is taken
    with demo_lock(url), pytest.raises(DemoLockError) as refused, demo_lock(url):
        pass
    message = str(refused.value)
    assert message.startswith(f"another demo (pid {os.getpid()} on {socket.gethostname()}) "
                              "runs on this store now (the PostgreSQL database "
                              f"{_url(schemas[0], password='***')}, schema {schemas[0]}, "
                              "holds its lock)")
    assert "s3cret-pw" not in message
    with demo_lock(url):  # the first one's end dropped it
        pass


@pytest.mark.postgres
def test_demos_on_two_schemas_of_one_database_do_not_keep_each_other_off(
    schemas: tuple[str, str],
) -> None:
    """Two schemas are two stores: their kiosks and results never mix."""
    with demo_lock(_url(schemas[0])), demo_lock(_url(schemas[1])):
        pass


def test_a_postgresql_store_that_cannot_be_reached_fails_the_demo_before_it_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    calls: list[str | None] = []
    monkeypatch.setattr(demo, "run_demo",
                        lambda *a, **k: calls.append(k.get("store_url")) or 0)
    monkeypatch.chdir(tmp_path)
    url = "postgresql://postgres:s3cret-pw@127.0.0.1:1/test"  # nothing listens on port 1
    assert main(["demo", "--store", url]) == 2  # as fleet and store migrate refuse it
    err = capsys.readouterr().err
    assert err.startswith("demo: store error: cannot connect to the PostgreSQL database "
                          "postgresql://postgres:***@127.0.0.1:1/test: ")
    assert "s3cret-pw" not in err
    assert calls == []
    assert list(tmp_path.iterdir()) == []  # no ./state


@pytest.mark.postgres
def test_a_server_that_fails_the_lock_queries_fails_the_demo_naming_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """The server closes the lock's connection at its first query (restarted, or the session
    ended by an administrator, right after it was made): the store's one line, no traceback."""
    calls: list[str | None] = []
    monkeypatch.setattr(demo, "run_demo",
                        lambda *a, **k: calls.append(k.get("store_url")) or 0)
    monkeypatch.chdir(tmp_path)
    with cut_server("close") as server:
        url = server.url()
        assert main(["demo", "--store", url]) == 2  # before anything started: a store error
        assert server.cut.is_set()
    err = capsys.readouterr().err
    assert err.startswith(f"demo: store error: cannot take the demo's lock in the PostgreSQL "
                          f"database {url}: consuming input failed: server closed the connection "
                          "unexpectedly ")
    assert len(err.splitlines()) == 1
    assert calls == []
