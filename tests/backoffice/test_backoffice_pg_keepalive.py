"""A PostgreSQL server that goes silent after the connection was made (its host powered off, the
network between cut) is found dead by TCP within about a minute (appliance/backoffice/
pgconnect.py): every connection of the product carries libpq's keepalives and
tcp_user_timeout, where the kernel's defaults left a query waiting 2 h for an answer that never
came, and about 15 min for one the server never acknowledged. A store's session asks the
server for the same limits, so that a client that vanished inside a transaction does not hold
its locks for the server's 2 h.

Dropping packets needs a network namespace and a server of its own (root), which the suite does
not have: these tests look at the connection's socket, where the kernel keeps what it acts on,
and at the session's settings, which the server puts on its socket.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from appliance.backoffice.pgconnect import postgres_connection
from appliance.backoffice.store import Store
from tests.store_helpers import PG_URL


@contextmanager
def _tcp_options(url: str) -> Iterator[dict[str, int]]:
    """The keepalive and user-timeout options of a product connection's socket to ``url``."""
    conn = postgres_connection(url)
    try:
        with socket.socket(fileno=os.dup(conn.fileno())) as sock:
            yield {
                "keepalive": sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
                "idle_s": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
                "interval_s": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
                "count": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
                "user_timeout_ms": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
            }
    finally:
        conn.close()


@pytest.mark.postgres
def test_a_connection_probes_a_silent_server_and_drops_it_after_a_minute() -> None:
    """Probes after 30 s of silence, every 10 s; nothing acknowledged for 60 s: dead."""
    with _tcp_options(PG_URL) as options:
        assert options == {"keepalive": 1, "idle_s": 30, "interval_s": 10, "count": 3,
                           "user_timeout_ms": 60000}


@pytest.mark.postgres
def test_a_url_that_sets_its_own_tcp_limits_keeps_them() -> None:
    url = f"{PG_URL}?keepalives_idle=45&tcp_user_timeout=0"
    with _tcp_options(url) as options:
        assert (options["idle_s"], options["user_timeout_ms"]) == (45, 0)
        assert options["interval_s"] == 10


@pytest.mark.postgres
@pytest.mark.parametrize("read_only", [True, False])
def test_a_store_asks_the_server_to_find_it_dead_as_soon(read_only: bool) -> None:
    """A back office that vanished inside a transaction held its locks, and its peers waited,
    until the server's own keepalives found it: the system's 2 h."""
    store = Store(PG_URL, read_only=read_only)
    try:
        shown = [store.query(f"SHOW {name}")[0][0] for name in (
            "tcp_keepalives_idle", "tcp_keepalives_interval", "tcp_keepalives_count",
            "tcp_user_timeout")]
    finally:
        store.close()
    assert shown == ["30", "10", "3", "60000"]
