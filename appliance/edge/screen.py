"""The kiosk screen's files: the last result (JSON) and its picture, in state_dir.

The picture is the frame with hills, furrows and pores marked and no caption band: the page
says every number in the customer's language (``appliance analyze --overlay`` keeps the band).

Written only after the result is committed to the outbox, on the screen's own thread (the
overlay takes ~100 ms to draw and encode, which must not delay delivery), and replaced
atomically (write a temp file, then rename) so the screen never reads half a file. When
results come faster than the screen can draw, only the newest is shown.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from appliance.imagefile import write_image
from appliance.outfile import created_afresh
from appliance.transport.payloads import Result

log = logging.getLogger(__name__)

RESULT_FILE = "last_result.json"
OVERLAY_FILE = "last_overlay.png"
PNG_FAST = [cv2.IMWRITE_PNG_COMPRESSION, 1]
OverlayDrawer = Callable[[], np.ndarray]
ShownListener = Callable[[Result, bool], None]  # (the result, whether its overlay was written)


class KioskScreen(threading.Thread):
    """Publishes the newest result for the kiosk display as files in one folder."""

    def __init__(
        self, folder: Path, stop: threading.Event, on_shown: ShownListener | None = None
    ) -> None:
        super().__init__(name="KioskScreen", daemon=True)
        self.folder = folder
        self.stop_event = stop
        folder.mkdir(parents=True, exist_ok=True)
        self._latest: queue.Queue[tuple[Result, OverlayDrawer | None]] = queue.Queue(maxsize=1)
        self.shown = 0
        self._on_shown = on_shown  # the kiosk page, told once the files are in place

    @property
    def result_path(self) -> Path:
        """The JSON of the newest result."""
        return self.folder / RESULT_FILE

    @property
    def overlay_path(self) -> Path:
        """The overlay (PNG) of the newest result, when the analyser can draw one."""
        return self.folder / OVERLAY_FILE

    def show(self, result: Result, draw_overlay: OverlayDrawer | None) -> None:
        """Queue this result for the screen, replacing one not yet drawn (any thread)."""
        while True:
            try:
                self._latest.put_nowait((result, draw_overlay))
                return
            except queue.Full:
                with contextlib.suppress(queue.Empty):  # the screen thread just took it
                    self._latest.get_nowait()

    def run(self) -> None:
        """Draw and write results as they come; on stop, show the last one still queued."""
        try:
            while not (self.stop_event.is_set() and self._latest.empty()):
                try:
                    result, draw_overlay = self._latest.get(timeout=0.5)
                except queue.Empty:
                    continue
                self.write(result, draw_overlay)
        except Exception:
            log.exception("kiosk screen thread failed")  # the daemon exits for a restart

    def write(self, result: Result, draw_overlay: OverlayDrawer | None) -> None:
        """Replace the screen files with this result and show it; a file that cannot be
        written (a full disk) is logged, and the result is shown all the same (without its
        overlay when that one failed): the page waits on it."""
        overlay = draw_overlay is not None and self._wrote_overlay(draw_overlay)
        try:
            temp = self.result_path.with_suffix(".json.tmp")
            with created_afresh(temp) as stream:  # a FIFO left there is not waited on
                stream.write(result.to_json())
            os.replace(temp, self.result_path)
            self.shown += 1
        except OSError as exc:
            log.warning("kiosk screen file %s not updated: %s", self.result_path, exc)
        if self._on_shown is not None:
            self._on_shown(result, overlay)

    def _wrote_overlay(self, draw_overlay: OverlayDrawer) -> bool:
        """Draw and write the overlay; False (logged) when it cannot be."""
        try:
            overlay_rgb = draw_overlay()
            write_image(self.overlay_path, cv2.cvtColor(overlay_rgb, cv2.COLOR_RGB2BGR), PNG_FAST)
        except (OSError, ValueError) as exc:
            log.warning("kiosk screen overlay %s not updated: %s", self.overlay_path, exc)
            return False
        return True
