"""A PostgreSQL server that closes the connection at its first statement, right after it was
made (restarted, or the session ended by an administrator; tests/pg_cut.py): the store's
set-up statements (read-only, its schema) failed with psycopg's own error, which came out of
`appliance results` and `appliance fleet` as a traceback. Now it is the store's one line; so
it is, once store.SET_UP_WITHIN_S has passed, for a server that goes silent there instead."""

from __future__ import annotations

import threading

import pytest

from appliance.backoffice import store as store_module
from appliance.backoffice.pgconnect import server_wait_s
from appliance.backoffice.store import Store, StoreError
from appliance.cli import main
from tests.pg_cut import cut_server

CLOSED = "consuming input failed: server closed the connection unexpectedly "


@pytest.mark.postgres
@pytest.mark.parametrize("command", [["results", "query"], ["fleet"]])
def test_a_read_command_on_a_server_that_closes_at_once_says_so_in_one_line(
    command: list[str], capsys: pytest.CaptureFixture[str],
) -> None:
    with cut_server("close") as server:
        url = server.url()
        assert main([*command, "--store", url]) == 2
        assert server.cut.is_set()
    err = capsys.readouterr().err
    assert err.startswith(f"{' '.join(command)}: store error: cannot open the PostgreSQL "
                          f"database {url}: {CLOSED}")
    assert len(err.splitlines()) == 1


@pytest.mark.postgres
def test_a_writer_s_store_on_a_server_that_closes_at_once_is_a_store_error() -> None:
    """The back office, the console and the pathology server open it so (its schema made)."""
    with cut_server("close") as server, pytest.raises(StoreError) as refused:
        Store(server.url(), pg_schema="pgtimeout_never_made")
    assert str(refused.value).startswith(
        f"cannot open the PostgreSQL database {server.url()}: {CLOSED}")


@pytest.mark.postgres
def test_a_store_on_a_server_that_goes_silent_at_once_is_a_store_error_within_its_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A server that takes the connection, then says nothing to its first statement: the
    set-up waited for ever, and with it every service's open and reconnect (the pathology
    server's main loop, the ingest writer, the console's pool)."""
    monkeypatch.setattr(store_module, "SET_UP_WITHIN_S", 1.0)  # the test's patience, not 10 s
    raised: list[BaseException] = []

    def open_it(url: str) -> None:
        try:
            Store(url, pg_schema="pgtimeout_never_made")
        except BaseException as exc:  # what it raised is the answer
            raised.append(exc)

    with cut_server("silent") as server:
        opening = threading.Thread(target=open_it, args=(server.url(),), daemon=True)
        opening.start()
        opening.join(60)
        assert not opening.is_alive(), "the set-up still waited on the silent server"
    assert len(raised) == 1
    assert isinstance(raised[0], StoreError)
    assert str(raised[0]) == (f"cannot open the PostgreSQL database {server.url()}: no answer "
                              "from the server within 1 s: the connection was cut")


@pytest.mark.postgres
def test_a_url_s_own_connect_timeout_bounds_the_set_up_too() -> None:
    """The connection honoured the URL's connect_timeout; its set-up waited 10 s whatever the
    URL said (SET_UP_WITHIN_S is not patched here)."""
    raised: list[BaseException] = []

    def open_it(url: str) -> None:
        try:
            Store(url, pg_schema="pgsmall_never_made")
        except BaseException as exc:  # what it raised is the answer
            raised.append(exc)

    with cut_server("silent") as server:
        url = server.url(query="connect_timeout=3")
        opening = threading.Thread(target=open_it, args=(url,), daemon=True)
        opening.start()
        opening.join(60)
        assert not opening.is_alive(), "the set-up still waited on the silent server"
    assert len(raised) == 1
    assert str(raised[0]) == (f"cannot open the PostgreSQL database {url}: no answer "
                              "from the server within 3 s: the connection was cut")


@pytest.mark.postgres
def test_a_url_s_own_connect_timeout_bounds_the_check_that_a_connection_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The check that a connection still answers (the console's, before lending a pooled
    one) waited ANSWER_WITHIN_S, 10 s, whatever the URL said, while its set-up and connection
    honoured the URL's connect_timeout. Patched to 600 s here, the built-in bound would
    outlast the test's patience: the URL's 3 s ends it."""
    monkeypatch.setattr(store_module, "ANSWER_WITHIN_S", 600.0)
    answered: list[bool] = []
    with cut_server() as server:
        store = Store(server.url(query="connect_timeout=3"), pg_schema="pgsmall_answers")
        try:
            server.hang()
            checking = threading.Thread(target=lambda: answered.append(store.answers()),
                                        daemon=True)
            checking.start()
            checking.join(60)
            assert not checking.is_alive(), "the check still waited on the hung server"
        finally:
            store.close()
    assert answered == [False]


@pytest.mark.parametrize(("query", "bound_s"), [
    ("", 7.0), ("?connect_timeout=3", 3.0), ("?connect_timeout=0", None),
    ("?connect_timeout=-1", None),
])
def test_the_wait_for_a_new_connection_s_answers_is_the_url_s_connect_timeout(
    query: str, bound_s: float | None,
) -> None:
    """libpq's meaning: unset, the caller's default; 0 or less, no bound at all."""
    assert server_wait_s(f"postgresql://postgres@127.0.0.1:5432/test{query}", 7.0) == bound_s
