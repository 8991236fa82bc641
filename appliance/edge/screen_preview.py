"""The kiosk screen's live preview: the newest camera frame as JPEG, for an MJPEG stream.

The capture thread hands over each frame by reference (``offer`` takes a lock and stores it:
microseconds, nothing is copied or encoded on the camera's path). Encoding happens only when
a page is watching, at most ``fps`` times a second, on the stream's own thread, at a reduced
width; one encoding is shared by every watcher. Pictures go only to the loopback page.
"""

from __future__ import annotations

import threading

import cv2
import numpy as np

from appliance.capture.sources import Frame

JPEG_QUALITY = 70


class PreviewFeed:
    """The newest frame, and its JPEG once somebody asks for it."""

    def __init__(self, width_px: int) -> None:
        self.width_px = width_px
        self._new_frame = threading.Condition()
        self._rgb: np.ndarray | None = None
        self._number = 0
        self._encoded: tuple[int, bytes] = (0, b"")
        self._encode_lock = threading.Lock()

    def offer(self, frame: Frame) -> None:
        """The capture thread's newest frame (returns at once)."""
        with self._new_frame:
            self._rgb = frame.rgb
            self._number += 1
            self._new_frame.notify_all()

    def next_jpeg(self, after: int, timeout_s: float) -> tuple[int, bytes] | None:
        """The first frame newer than ``after`` as JPEG, or None when none came in time."""
        with self._new_frame:
            if not self._new_frame.wait_for(lambda: self._number > after, timeout_s):
                return None
            number, rgb = self._number, self._rgb
        assert rgb is not None  # set together with _number
        with self._encode_lock:
            if self._encoded[0] != number:
                self._encoded = (number, self.encode(rgb))
            return self._encoded

    def encode(self, rgb: np.ndarray) -> bytes:
        """One preview picture: scaled to ``width_px`` wide, JPEG."""
        height, width = rgb.shape[:2]
        if width > self.width_px:
            size = (self.width_px, round(height * self.width_px / width))
            rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_LINEAR)
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                                [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise ValueError("preview frame could not be encoded as JPEG")
        return bytes(jpeg)
