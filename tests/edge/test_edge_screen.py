"""The kiosk screen files: newest result and its overlay, written off the delivery path."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

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


@pytest.mark.parametrize("temporary", ["last_result.json.tmp", ".last_overlay.png.tmp"])
def test_a_fifo_in_the_place_of_a_screen_files_temporary_is_not_waited_on(
    tmp_path: Path, temporary: str, caplog: pytest.LogCaptureFixture,
) -> None:
    """Whoever can write the state folder put a FIFO where the screen writes a file before
    renaming it: opened for writing, it waited for a reader for ever, and the screen thread
    showed no result again. It is removed, said once, and the files are written."""
    screen = KioskScreen(tmp_path / "screen", threading.Event())
    pipe = screen.folder / temporary
    os.mkfifo(pipe)
    item = result()
    thread = threading.Thread(target=screen.write,
                              args=(item, lambda: np.full((48, 64, 3), 90, np.uint8)),
                              daemon=True)
    with caplog.at_level(logging.WARNING, logger="appliance.outfile"):
        thread.start()
        thread.join(10)
        try:
            assert not thread.is_alive(), f"{temporary}: still waiting for a reader of the FIFO"
        finally:
            _unblock(thread, pipe)
    assert json.loads(screen.result_path.read_text())["measurement_id"] == item.measurement_id
    assert int(cv2.imread(str(screen.overlay_path)).mean()) == 90
    assert caplog.text.count(f"{pipe}: a FIFO, socket or device was in the place") == 1
    assert not list(screen.folder.glob("*.tmp")) + list(screen.folder.glob(".*.tmp"))


def _unblock(thread: threading.Thread, pipe: Path) -> None:
    """Give a writer waiting on ``pipe`` a reader (gone at once: its write fails) until the
    thread ends."""
    for _ in range(50):
        if not thread.is_alive():
            return
        with contextlib.suppress(OSError):
            os.close(os.open(pipe, os.O_RDONLY | os.O_NONBLOCK))
        thread.join(0.1)
