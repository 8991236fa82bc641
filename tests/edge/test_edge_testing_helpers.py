"""The polling helper the fault tests, update tests and benchmarks wait with."""

from __future__ import annotations

import time

from appliance.edge.testing import wait_until


def test_wait_until_returns_once_the_condition_holds() -> None:
    calls = []

    def third_time() -> bool:
        calls.append(1)
        return len(calls) >= 3

    assert wait_until(third_time, timeout_s=5.0, poll_s=0.001)
    assert len(calls) == 3  # stopped polling as soon as it held


def test_wait_until_gives_up_after_the_timeout() -> None:
    started_s = time.monotonic()
    assert not wait_until(lambda: False, timeout_s=0.1, poll_s=0.01)
    assert time.monotonic() - started_s >= 0.1
