"""A budget of warnings a minute that messages from outside can cause (appliance/logsafe.py)."""

from __future__ import annotations

import logging

import pytest

from appliance.logsafe import LineBudget


def test_the_first_lines_of_a_window_are_said_the_rest_counted_once_it_is_over(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [1000.0]
    budget = LineBudget(logging.getLogger("t"), "job requests refused", per_window=2,
                        clock=lambda: now[0])
    with caplog.at_level(logging.WARNING):
        for index in range(5):
            budget.warn("request %d refused", index)
        now[0] += 59.0
        budget.say_due()  # the window is not over: nothing more
        now[0] += 1.0
        budget.say_due()
        budget.warn("request %d refused", 5)  # the new window's budget
        now[0] += 600.0
        budget.say_due()  # nothing held back in that window: nothing said
    assert [record.getMessage() for record in caplog.records] == [
        "request 0 refused",
        "request 1 refused",
        "job requests refused: 3 more not said in the last 60 s (at most 2 said one by one a "
        "window)",
        "request 5 refused",
    ]
