"""How a bounded server says the connections it refused (appliance/httpbounds.py); the
servers themselves are tried against silent clients in tests/slow_clients.py's checks."""

from __future__ import annotations

import logging

import pytest

from appliance.httpbounds import Refusals


def test_refusals_are_said_at_once_then_at_most_once_a_minute_with_their_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A flood of refused connections is a few lines an hour in the journal, not one each,
    and the ones after a line are said once the minute is over, even when none follow."""
    now = [1000.0]
    refusals = Refusals("127.0.0.1:8470", clock=lambda: now[0])
    with caplog.at_level(logging.WARNING):
        for client in ("10.0.0.5", "10.0.0.6", "10.0.0.7"):
            refusals.count(client, 64)
        now[0] += 59.0
        refusals.say_due(64)  # the serving loop's look, each half second
        said_first = [record.getMessage() for record in caplog.records]
        now[0] += 1.0
        refusals.say_due(64)
        now[0] += 600.0
        refusals.say_due(64)
    said = [record.getMessage() for record in caplog.records]
    assert said_first == said[:1]
    assert said == [
        "HTTP server on 127.0.0.1:8470 refused 1 connection (the latest from 10.0.0.5): 64 "
        "open at once, the most it takes; refusals are said at most once a minute",
        "HTTP server on 127.0.0.1:8470 refused 2 connections (the latest from 10.0.0.7): 64 "
        "open at once, the most it takes; refusals are said at most once a minute",
    ]
