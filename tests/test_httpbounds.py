"""How a bounded server says the connections it refused (appliance/httpbounds.py); the
servers themselves are tried against silent clients in tests/slow_clients.py's checks."""

from __future__ import annotations

import logging
import socket
import struct

import pytest
from prometheus_client.registry import CollectorRegistry

from appliance.edge.testing import wait_until
from appliance.httpbounds import Refusals, Tally
from appliance.metricshttp import start_metrics_server
from appliance.transport.broker import free_port


def test_refusals_are_said_at_once_then_at_most_once_a_minute_with_their_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A flood of refused connections is a few lines an hour in the journal, not one each,
    and the ones after a line are said once the minute is over, even when none follow."""
    now = [1000.0]
    refusals = Refusals("127.0.0.1:8470", 64, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING):
        for client in ("10.0.0.5", "10.0.0.6", "10.0.0.7"):
            refusals.count(client)
        now[0] += 59.0
        refusals.say_due()  # the serving loop's look, each half second
        said_first = [record.getMessage() for record in caplog.records]
        now[0] += 1.0
        refusals.say_due()
        now[0] += 600.0
        refusals.say_due()
    said = [record.getMessage() for record in caplog.records]
    assert said_first == said[:1]
    assert said == [
        "HTTP server on 127.0.0.1:8470 refused 1 connection (the latest from 10.0.0.5): 64 "
        "open at once, the most it takes; refusals are said at most once a minute",
        "HTTP server on 127.0.0.1:8470 refused 2 connections (the latest from 10.0.0.7): 64 "
        "open at once, the most it takes; refusals are said at most once a minute",
    ]


def test_a_tally_says_its_first_at_once_then_the_count_once_a_minute_and_asks_for_a_later_look(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A server without a serving loop that looks often (the console's event loop) learns
    from ``count`` when to arrange a later look: once, for the first one held back."""
    now = [1000.0]
    tally = Tally(logging.getLogger("t"), "console: connections closed", clock=lambda: now[0])
    with caplog.at_level(logging.WARNING):
        asked = [tally.count(f"from 10.0.0.{index}") for index in range(4)]
        now[0] += 59.0
        assert tally.say_due()  # still waiting: under a minute since the first
        now[0] += 1.0
        assert not tally.say_due()
        assert not tally.say_due()  # nothing more to say
    assert asked == [False, True, False, False]
    assert [record.getMessage() for record in caplog.records] == [
        "console: connections closed: 1 since the last saying, the latest from 10.0.0.0; said "
        "at most once a minute",
        "console: connections closed: 3 since the last saying, the latest from 10.0.0.3; said "
        "at most once a minute",
    ]


def _hang_up_mid_request(port: int) -> None:
    """Send half a request's head, then reset the connection (no FIN: an RST)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def test_requests_ended_early_again_and_again_are_one_line_then_a_count(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str],
) -> None:
    """Each request that ended in an error (a client resetting its connection mid-request)
    was a warning of its own: a client doing so in a loop wrote as many lines as it liked."""
    port = free_port()
    httpd, thread = start_metrics_server(CollectorRegistry(), "127.0.0.1", port)
    try:
        with caplog.at_level(logging.WARNING):
            for _ in range(8):
                _hang_up_mid_request(port)
            assert wait_until(lambda: httpd.ended_early.unsaid == 7, 10)  # type: ignore[attr-defined]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)
    said = [r.getMessage() for r in caplog.records if "ended early" in r.getMessage()]
    assert said == [f"HTTP server on 127.0.0.1:{port}: requests ended early: 1 since the last "
                    "saying, the latest from 127.0.0.1: ConnectionResetError: [Errno 104] "
                    "Connection reset by peer; said at most once a minute"]
    assert "Traceback" not in capsys.readouterr().err
