"""A flood of model notices (anyone who may publish on ``.../model/update``, or a deploy gone
wrong) starts at most one check a second: each check fetches and verifies signed metadata
(about 0.1 s of a core), and checking back to back took a core from measuring."""

from __future__ import annotations

import threading
import time

import pytest
from updates_helpers import Fleet

from appliance.edge.testing import wait_until
from appliance.updates.kiosk import MIN_CHECK_GAP_S, ModelUpdater
from appliance.updates.serving import ServingModel

pytestmark = pytest.mark.broker

NOTICES = 30


def test_a_flood_of_notices_starts_a_check_a_second_at_most_and_a_lone_one_still_one(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    stop = threading.Event()
    updater = ModelUpdater(fleet.config("k1"), ServingModel(None), lambda _state: None, stop)
    monkeypatch.setattr(updater, "check_once", lambda: None)  # counted by ``checks``
    updater.start()
    try:
        assert wait_until(lambda: updater.checks == 1, 10)  # the check at start
        started_s, before = time.monotonic(), updater.checks
        for _ in range(NOTICES):
            seen = updater.checks
            updater.notify()
            wait_until(lambda s=seen: updater.checks > s, 0.1)  # unpaced: a check each
        flood_s = time.monotonic() - started_s
        assert updater.checks - before <= flood_s / MIN_CHECK_GAP_S + 2, (
            updater.checks - before, flood_s)
        assert wait_until(lambda: not updater.wake.is_set(), 10)  # the last notice answered
        seen = updater.checks
        updater.notify()
        assert wait_until(lambda: updater.checks > seen, 10)
    finally:
        stop.set()
        updater.join(10)


def test_notices_right_after_a_check_are_answered_once_the_gap_is_over(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    stop = threading.Event()
    updater = ModelUpdater(fleet.config("k1"), ServingModel(None), lambda _state: None, stop)
    checked_at: list[float] = []
    monkeypatch.setattr(updater, "check_once", lambda: checked_at.append(time.monotonic()))
    updater.start()
    try:
        assert wait_until(lambda: len(checked_at) == 1, 10)
        for _ in range(5):
            updater.notify()
        assert wait_until(lambda: len(checked_at) == 2, 10)
    finally:
        stop.set()
        updater.join(10)
    assert checked_at[1] - checked_at[0] >= MIN_CHECK_GAP_S
