"""A console whose PostgreSQL server hangs while its host stays up (a stalled disk, a stopped
process; tests/pg_cut.py): the check that a pooled connection still answers (SELECT 1, before
each request) waited for ever, holding the request and its connection; now it gives up after
store.ANSWER_WITHIN_S and the request is told the store cannot be reached (the 503 page)."""

from __future__ import annotations

import threading
import uuid

import psycopg
import pytest

from appliance.console.db import StorePool, StoreUnreachableError
from tests.pg_cut import cut_server
from tests.store_helpers import PG_URL

DEADLINE_S = 60.0  # far more than the check's 10 s and a reconnect's 2 s on a busy machine


def _borrowed(pool: StorePool) -> dict[str, object]:
    """What borrowing a store of ``pool`` for one request came to, on a thread of its own
    that the test waits for until DEADLINE_S: ``results`` counted, or the ``error``."""
    outcome: dict[str, object] = {}

    def borrow() -> None:
        try:
            with pool.store() as store:
                outcome["results"] = store.count_results()
        except StoreUnreachableError as exc:
            outcome["error"] = str(exc)

    thread = threading.Thread(target=borrow, name="request", daemon=True)
    thread.start()
    thread.join(DEADLINE_S)
    outcome["waiting"] = thread.is_alive()
    return outcome


@pytest.mark.postgres
def test_a_request_on_a_hung_server_is_told_the_store_cannot_be_reached() -> None:
    schema = f"pgtimeout_console_{uuid.uuid4().hex[:10]}"
    try:
        with cut_server() as relay:
            url = relay.url(query="connect_timeout=2")  # the reconnect to the hung server
            pool = StorePool(url, size=1, pg_schema=schema)
            try:
                relay.hang()
                hung = _borrowed(pool)
                relay.recover()
                back = _borrowed(pool)
            finally:
                pool.close()
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    assert hung["waiting"] is False
    assert str(hung["error"]).startswith(f"cannot connect to the PostgreSQL database {url}: ")
    assert "the server took the connection but said nothing" in str(hung["error"])
    assert back == {"results": 0, "waiting": False}
