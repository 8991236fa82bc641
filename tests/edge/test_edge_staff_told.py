"""The kiosk screen says staff were told why it cannot measure only when they were: its status
reporting the state reached the broker (edge/staff.py). In a real browser (Debian chromium via
Playwright) on a running daemon whose camera fails."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from appliance.browser import page_in
from appliance.config import config_from_mapping
from appliance.edge.staff import StaffNotice
from appliance.edge.testing import FlakySource, fast_daemon, fast_source, wait_until
from appliance.transport.broker import free_port

OFFLINE_EN = "The microscope is not responding, so nothing can be measured right now."
OFFLINE_JA = "顕微鏡が応答していないため、ただいま測定できません。"


@contextmanager
def unplugged_kiosk(tmp_path: Path, host: str, port: int) -> Iterator[tuple[Any, str]]:
    """A kiosk daemon whose camera is unplugged from the start, with its broker at host:port;
    yields the daemon and its screen's address."""
    prefix = f"test/staff-{uuid.uuid4().hex[:10]}"
    config = config_from_mapping({
        "device": {"id": "kiosk-s", "site": f"lab-{prefix[-10:]}"},
        "camera": {"source": "synthetic"},
        "mqtt": {"host": host, "port": port, "topic_prefix": prefix},
        "state_dir": str(tmp_path / "state"),
        "edge": {"synthetic_fps": 15, "camera_reopen_cap_s": 0.5},
        "screen": {"port": free_port(), "language": "en"},
    }, "test", environ={})
    flaky = FlakySource(fast_source(config))
    flaky.failing.set()
    daemon = fast_daemon(config, source=flaky)
    thread = threading.Thread(target=daemon.run, daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: daemon.display.server is not None, 5)
        yield daemon, f"http://127.0.0.1:{config.screen.port}/"
    finally:
        daemon.request_stop()
        thread.join(10)


def test_a_kiosk_off_the_broker_asks_the_customer_to_tell_staff(
    tmp_path: Path, chromium_browser: Any,
) -> None:
    """With the broker unreachable nobody learnt that the camera was gone, and the screen told
    the customer that staff had been told."""
    with unplugged_kiosk(tmp_path, "127.0.0.1", free_port()) as (daemon, address), \
            page_in(chromium_browser, 1280, 800) as page:
        page.goto(address, wait_until="domcontentloaded")
        guidance = page.locator("#guidance")
        expect(guidance).to_have_text(f"{OFFLINE_EN} Please tell a member of staff.")
        page.click("#lang-ja")
        expect(guidance).to_have_text(f"{OFFLINE_JA}お手数ですが、近くのスタッフにお知らせください。")
        assert not daemon.link.connected
        assert "told" not in page.inner_text("#guidance")


@pytest.mark.broker
def test_a_kiosk_whose_status_reached_the_broker_says_staff_were_told(
    mqtt_broker: Any, tmp_path: Path, chromium_browser: Any
) -> None:
    with unplugged_kiosk(tmp_path, mqtt_broker.host, mqtt_broker.port) as (daemon, address), \
            page_in(chromium_browser, 1280, 800) as page:
        page.goto(address, wait_until="domcontentloaded")
        guidance = page.locator("#guidance")
        expect(guidance).to_have_text(f"{OFFLINE_EN} Staff have been told.", timeout=15_000)
        assert daemon.link.connected
        page.click("#lang-ja")
        expect(guidance).to_have_text(f"{OFFLINE_JA}スタッフに連絡済みです。")


class _Link:
    """The MQTT link as the notice sees it: statuses asked for, and when one reached the
    broker (a clock of whole seconds)."""

    def __init__(self) -> None:
        self.asked = 0
        self.reached_s: float | None = None
        self.connected = True

    def send_status(self) -> None:
        self.asked += 1

    def status_reached_since(self, since_s: float) -> bool:
        return self.connected and self.reached_s is not None and self.reached_s >= since_s


def test_staff_are_told_only_by_a_status_built_after_the_state_began() -> None:
    now = [10.0]
    link = _Link()
    notice = StaffNotice(link, clock=lambda: now[0])
    link.reached_s = 9.0  # the last status, from before the camera went
    assert notice.told("guide_camera_offline") is False
    assert link.asked == 1  # a fresh status, which reports the camera offline
    link.reached_s = 10.0
    assert notice.told("guide_camera_offline") is True
    link.connected = False
    assert notice.told("guide_camera_offline") is False  # the link is down now


def test_measuring_paused_is_told_once_a_status_built_after_the_pause_reached_the_broker() -> None:
    """Measuring paused (storage, a full disk) is in the status (``measuring_paused``): a fresh
    one is asked for, and staff count as told once it reached the broker."""
    now = [10.0]
    link = _Link()
    link.reached_s = 9.0  # the last status, from before the pause
    notice = StaffNotice(link, clock=lambda: now[0])
    for why in ("guide_paused_storage", "guide_paused_disk_full"):
        now[0] += 1.0
        asked = link.asked
        assert notice.told(why) is False
        assert link.asked == asked + 1
        link.reached_s = now[0]
        assert notice.told(why) is True


def test_a_state_the_status_does_not_report_never_claims_staff_were_told() -> None:
    """A held-back kiosk (a duplicate device id) is in no status that reaches the back office:
    the customer is asked to tell staff."""
    link = _Link()
    link.reached_s = 1e9
    notice = StaffNotice(link, clock=lambda: 0.0)
    assert notice.told("guide_duplicate_device") is False
    assert link.asked == 0
    assert notice.told(None) is False
