"""Measurement sessions: one result per contact of the scope with the skin, not per frame.

A contact starts when frames pass the quality gate (on skin, sharp, steady); the first
``burst_frames`` good frames in a row form the burst whose best frame is measured. The tracker
then waits until the scope is lifted (``rearm_frames`` not-ok frames in a row) before it
measures again, so a customer holding still gets one result. ``cmd/measure`` forces the next
burst to be measured even within the same contact. Saved stills are each their own session.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from appliance.capture.quality import FrameQuality
from appliance.capture.sources import Frame


@dataclass(frozen=True)
class Burst:
    """The good frames of one contact, ready for best-frame selection and measurement."""

    frames: tuple[Frame, ...]
    qualities: tuple[FrameQuality, ...]
    forced: bool = False


class SessionTracker:
    """Turns a stream of (frame, quality) into bursts, one per contact."""

    def __init__(self, burst_frames: int = 5, rearm_frames: int = 3) -> None:
        if burst_frames < 1 or rearm_frames < 1:
            raise ValueError("burst_frames and rearm_frames must be at least 1")
        self.burst_frames = burst_frames
        self.rearm_frames = rearm_frames
        self._armed = True
        self._not_ok_run = 0
        self._frames: list[Frame] = []
        self._qualities: list[FrameQuality] = []
        self._forced = threading.Event()

    @property
    def gathered(self) -> int:
        """Good frames gathered so far towards the current burst (burst progress)."""
        return len(self._frames)

    def request_measurement(self) -> bool:
        """Measure the next steady burst even if this contact was measured already; False
        when a request was pending already (this one changes nothing)."""
        pending = self._forced.is_set()
        self._forced.set()
        return not pending

    def feed(self, frame: Frame, quality: FrameQuality) -> Burst | None:
        """Take the next frame and its verdict; a completed burst comes back once."""
        if frame.still:
            return Burst((frame,), (quality,), self._take_forced()) if quality.ok else None
        if not quality.ok:
            self._frames.clear()
            self._qualities.clear()
            self._not_ok_run += 1
            if self._not_ok_run >= self.rearm_frames:
                self._armed = True
            return None
        self._not_ok_run = 0
        if not (self._armed or self._forced.is_set()):
            return None
        self._frames.append(frame)
        self._qualities.append(quality)
        if len(self._frames) < self.burst_frames:
            return None
        return self._complete()

    def _complete(self) -> Burst:
        burst = Burst(tuple(self._frames), tuple(self._qualities), self._take_forced())
        self._frames.clear()
        self._qualities.clear()
        self._armed = False
        return burst

    def _take_forced(self) -> bool:
        forced = self._forced.is_set()
        self._forced.clear()
        return forced
