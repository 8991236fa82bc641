"""A PostgreSQL server that closes the connection at its first statement, right after it was
made (restarted, or the session ended by an administrator; tests/pg_cut.py): the store's
set-up statements (read-only, its schema) failed with psycopg's own error, which came out of
`appliance results` and `appliance fleet` as a traceback. Now it is the store's one line."""

from __future__ import annotations

import pytest

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
    assert err.startswith(f"store error: cannot open the PostgreSQL database {url}: {CLOSED}")
    assert len(err.splitlines()) == 1


@pytest.mark.postgres
def test_a_writer_s_store_on_a_server_that_closes_at_once_is_a_store_error() -> None:
    """The back office, the console and the pathology server open it so (its schema made)."""
    with cut_server("close") as server, pytest.raises(StoreError) as refused:
        Store(server.url(), pg_schema="pgtimeout_never_made")
    assert str(refused.value).startswith(
        f"cannot open the PostgreSQL database {server.url()}: {CLOSED}")
