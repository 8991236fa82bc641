"""The retained status follows the outbox depth: a change is published within
DEPTH_REFRESH_S, not only every status_interval_s (the fleet table shows both with last_seen)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from appliance.edge import status


class _Link:
    def __init__(self) -> None:
        self.sent = 0

    def send_status(self) -> None:
        self.sent += 1


def _daemon(depth: list[int]) -> Any:
    outbox = SimpleNamespace(depth=lambda: depth[0])
    config = SimpleNamespace(edge=SimpleNamespace(status_interval_s=3600.0, metrics_port=None))
    return SimpleNamespace(config=config, outbox=outbox, link=_Link())


def test_a_changed_outbox_depth_is_published_without_waiting_for_the_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(status, "DEPTH_REFRESH_S", 0.0)
    depth = [5]
    daemon = _daemon(depth)
    reporter = status.DeviceStatus(daemon)
    reporter.maybe_publish()
    assert daemon.link.sent == 1  # the first depth seen
    reporter.maybe_publish()
    assert daemon.link.sent == 1  # unchanged: the hourly interval applies
    depth[0] = 0  # everything delivered
    reporter.maybe_publish()
    assert daemon.link.sent == 2


def test_depth_changes_are_rate_limited(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(status, "DEPTH_REFRESH_S", 3600.0)
    depth = [5]
    daemon = _daemon(depth)
    reporter = status.DeviceStatus(daemon)
    for value in range(10):
        depth[0] = value
        reporter.maybe_publish()
    assert daemon.link.sent == 0
