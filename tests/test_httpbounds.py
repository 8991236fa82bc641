"""How a bounded server says the connections it refused (appliance/httpbounds.py); the
servers themselves are tried against silent clients in tests/slow_clients.py's checks."""

from __future__ import annotations

import logging

import pytest

from appliance.httpbounds import Refusals, Tally


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
