"""The capture thread: reads a frame source into a bounded queue and keeps the camera alive.

When the source fails (unplugged, read errors, no frames for ``stall_s``) the camera is
reported offline, closed and reopened with capped exponential backoff; the daemon keeps
running meanwhile. When the queue is full the oldest frame is dropped: a live camera should
show the newest picture, not a backlog. A still (a saved file from a ``directory`` source) is a
capture of its own and is never dropped: the runner waits for room instead, as it does for a
simulated customer's frame (the synthetic camera: its customers wait for the kiosk).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable

from appliance.capture.sources import Frame, FrameSource, SourceError, unusable_picture
from appliance.transport.backoff import Backoff

log = logging.getLogger(__name__)

BEAT_S = 1.0  # a waiting capture thread still beats this often for the watchdog (at most)


class CaptureRunner(threading.Thread):
    """Owns the frame source: open, read, detect failure, reopen with backoff."""

    def __init__(
        self,
        source: FrameSource,
        frames: queue.Queue[Frame],
        stop: threading.Event,
        *,
        stall_s: float | None = 5.0,
        reopen_initial_s: float = 0.5,
        reopen_cap_s: float = 30.0,
        beat_s: float = BEAT_S,
        on_camera_change: Callable[[bool], None] | None = None,
        on_frame: Callable[[Frame], None] | None = None,
    ) -> None:
        super().__init__(name="CaptureRunner", daemon=True)
        self.source = source
        self.frames = frames
        self.stop_event = stop
        self.stall_s = stall_s
        self.online = False
        self.frames_captured = 0
        self.frames_dropped = 0
        self.failures = 0  # reads that failed (then reopened)
        self.open_failures = 0  # opens that failed (the device missing, busy)
        self.last_beat_s = time.monotonic()
        self.beat_s = min(beat_s, BEAT_S)  # a quarter of the watchdog's limit, from the daemon
        self._on_camera_change = on_camera_change
        self._on_frame = on_frame  # the kiosk screen's live preview (must return at once)
        self._backoff = Backoff(reopen_initial_s, reopen_cap_s)
        self._last_frame_s = time.monotonic()

    def run(self) -> None:
        """Capture until the stop event is set."""
        try:
            while not self.stop_event.is_set():
                self.last_beat_s = time.monotonic()
                if self.online:
                    self._read_once()
                else:
                    self._open_once()
        except Exception:
            log.exception("capture thread failed")  # the watchdog notices the missing beats
        finally:
            self.source.close()

    def _open_once(self) -> None:
        try:
            self.source.open()
        except SourceError as exc:
            self.open_failures += 1
            delay_s = self._backoff.next_delay_s()
            log.warning("camera offline: %s; retrying in %.1f s", exc, delay_s)
            self._wait_beating(delay_s)
            return
        self._last_frame_s = time.monotonic()
        self._set_online(True)
        log.info("camera online: %s", self.source.description)

    def _read_once(self) -> None:
        try:
            frame = self.source.read()
        except SourceError as exc:
            self._fail(str(exc))
            return
        now_s = time.monotonic()
        if frame is None:
            if self.stall_s is not None and now_s - self._last_frame_s > self.stall_s:
                self._fail(f"{self.source.description}: no frame for {self.stall_s:.0f} s")
            return
        problem = unusable_picture(frame.rgb)
        if problem is not None:  # never handed on: it would stop the analysis thread
            self._fail(f"{self.source.description}: the camera delivers {problem}")
            return
        self._last_frame_s = now_s
        self._backoff.reset()
        self.frames_captured += 1
        self._enqueue(frame)
        if self._on_frame is not None:
            self._on_frame(frame)

    def _enqueue(self, frame: Frame) -> None:
        if frame.still or frame.simulated:
            self._enqueue_waiting(frame)
            return
        while True:
            try:
                self.frames.put_nowait(frame)
                return
            except queue.Full:
                # drop the oldest frame; if the consumer just took it, the retry finds room
                with contextlib.suppress(queue.Empty):
                    self.frames.get_nowait()
                    self.frames_dropped += 1

    def _enqueue_waiting(self, frame: Frame) -> None:
        """Put a frame on the queue once there is room (or give up when stopping)."""
        while not self.stop_event.is_set():
            self.last_beat_s = time.monotonic()
            try:
                self.frames.put(frame, timeout=0.5)
                return
            except queue.Full:
                continue

    def _fail(self, reason: str) -> None:
        self.failures += 1
        log.warning("camera failed: %s; reopening", reason)
        self.source.close()
        self._set_online(False)
        self._wait_beating(self._backoff.next_delay_s())

    def _wait_beating(self, delay_s: float) -> None:
        """Wait before the next reopen (or until stopped), beating for the watchdog: waiting
        for an unplugged camera is progress, and a wait longer than edge.watchdog_stall_s
        (the reopen cap may be ten minutes) stopped the pings, so systemd killed the kiosk."""
        deadline_s = time.monotonic() + delay_s
        while not self.stop_event.is_set():
            self.last_beat_s = time.monotonic()
            left_s = deadline_s - self.last_beat_s
            if left_s <= 0:
                return
            self.stop_event.wait(min(left_s, self.beat_s))

    @property
    def failed(self) -> bool:
        """Offline because the source failed (not merely not opened yet, as at start)."""
        return not self.online and (self.failures + self.open_failures) > 0

    def _set_online(self, online: bool) -> None:
        if online == self.online:
            return
        self.online = online
        if self._on_camera_change is not None:
            self._on_camera_change(online)
