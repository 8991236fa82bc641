"""The kiosk screen files: newest result and its overlay, written off the delivery path."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from appliance.edge.screen import KioskScreen
from appliance.edge.testing import FIXED_FEATURES
from appliance.transport import payloads
from tests.disk_helpers import fill, small_tmpfs


def result() -> payloads.Result:
    return payloads.Result(
        measurement_id=payloads.new_measurement_id(),
        device_id="kiosk-s",
        site="lab",
        captured_at=payloads.utc_now(),
        software_version="test",
        quality=payloads.Quality(verdict="ok"),
        features=FIXED_FEATURES,
    )


def test_screen_shows_the_newest_result_and_its_overlay(tmp_path: Path) -> None:
    stop = threading.Event()
    screen = KioskScreen(tmp_path / "screen", stop)
    drawn: list[int] = []

    def slow_overlay(value: int) -> np.ndarray:
        time.sleep(0.2)
        drawn.append(value)
        return np.full((48, 64, 3), value, dtype=np.uint8)

    results = [result() for _ in range(4)]
    for value, item in enumerate(results):
        screen.show(item, lambda v=value: slow_overlay(v * 50))
    screen.start()
    stop.set()
    screen.join(5)
    shown = json.loads(screen.result_path.read_text())
    assert shown["measurement_id"] == results[-1].measurement_id
    assert drawn == [150]  # results the screen could not keep up with were skipped
    overlay = cv2.imread(str(screen.overlay_path))
    assert overlay.shape == (48, 64, 3)
    assert int(overlay.mean()) == 150
    assert not list((tmp_path / "screen").glob("*.tmp*"))


def test_a_result_whose_screen_files_cannot_be_written_is_still_shown(tmp_path: Path) -> None:
    """Nearly full: the result's row fits the outbox, its 1 MB overlay does not. The page
    waited on 'analysing' for a result that never came; now it shows it, without a picture."""
    shown: list[tuple[str, bool]] = []
    with small_tmpfs(tmp_path / "disk", size="1m") as disk:
        screen = KioskScreen(disk / "screen", threading.Event(),
                             on_shown=lambda r, overlay: shown.append((r.measurement_id, overlay)))
        fill(disk)
        item = result()
        noise = np.random.default_rng(0).integers(0, 255, (960, 1280, 3), dtype=np.uint8)
        screen.write(item, lambda: noise)
    assert shown == [(item.measurement_id, False)]
