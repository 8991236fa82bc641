"""The analysis and commit threads: frames -> quality gate -> sessions -> measure -> outbox.

The analyser and classifier are injected (the daemon passes the real ones; tests may pass
fast fakes). A result reaches nothing else before the ``ResultCommitter`` has committed it to
the outbox: the MQTT link, the kiosk screen and the logs all see it afterwards.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from appliance import __version__
from appliance.capture.quality import FrameQuality, QualityGate, best_frame
from appliance.capture.replayed import FileStamp
from appliance.capture.sources import Frame
from appliance.edge.measure import Analyzer, Classifier, measure_frame
from appliance.edge.session import Burst, SessionTracker
from appliance.transport import payloads

log = logging.getLogger(__name__)

QUEUE_POLL_S = 0.5


# the kiosk screen's guidance: (the frame's quality, burst frames gathered, burst complete)
GateListener = Callable[[FrameQuality, int, bool], None]


@dataclass(frozen=True)
class Identity:
    """Who measured: the device, its site and where its results go."""

    device_id: str
    site: str
    result_topic: str


@dataclass(frozen=True)
class Accepted:
    """A result on its way to the outbox, with the drawer of the kiosk screen's picture (the
    marked frame: no caption band, the page says the numbers in the customer's language)."""

    result: payloads.Result
    draw_screen_picture: Callable[[], np.ndarray] | None
    topic: str
    stamp: FileStamp | None = None  # the saved file measured, recorded once committed


def measurement_id_for(device_id: str, frame: Frame) -> str:
    """A fresh UUIDv7, or for a saved file one derived from the device and the file (name, size,
    modification time): measuring the same file again gives the same id (capture/replayed.py)."""
    if frame.stamp is None:
        return payloads.new_measurement_id()
    stamp = frame.stamp
    seed = b"\0".join((device_id.encode(), stamp.name_bytes,
                        f"{stamp.size_bytes}\0{stamp.mtime_ns}".encode()))
    return payloads.new_measurement_id(stamp.mtime_ns // 1_000_000, seed)


class AnalysisRunner(threading.Thread):
    """Gates every frame, tracks sessions and measures the best frame of each burst."""

    def __init__(
        self,
        frames: queue.Queue[Frame],
        results: queue.Queue[Accepted],
        stop: threading.Event,
        *,
        gate: QualityGate,
        sessions: SessionTracker,
        analyzer: Analyzer,
        classifier: Callable[[], Classifier | None],
        identity: Identity,
        um_per_px: float,
        limit: int | None = None,
        paused: threading.Event | None = None,
        held: threading.Event | None = None,
        on_gated: GateListener | None = None,
        subject: Callable[[str | None], payloads.Subject | None] | None = None,
        on_failed: Callable[[], None] | None = None,
        on_not_measured: Callable[[FileStamp], None] | None = None,
    ) -> None:
        super().__init__(name="AnalysisRunner", daemon=True)
        # set while results cannot be stored: live frames pass unmeasured, a saved capture waits
        self.paused = paused or threading.Event()
        # set while another live kiosk has this device id: nothing is measured under it
        self.held = held or threading.Event()
        self.frames_paused = 0
        self._on_gated = on_gated
        self._on_failed = on_failed  # the kiosk screen: the burst it shows gives no result
        self._on_not_measured = on_not_measured  # a folder source: this saved file gave none
        self._subject = subject  # what the customer chose on the kiosk screen, if anything
        self.frames, self.results, self.stop_event = frames, results, stop
        self.gate, self.sessions, self.analyzer = gate, sessions, analyzer
        self._classifier = classifier
        self.identity = identity
        self.um_per_px = um_per_px
        self.limit = limit
        self.frames_assessed = 0
        self.measurements = 0
        self.failures = 0
        self.finished = threading.Event()
        self.last_beat_s = time.monotonic()
        self._previous_rgb: np.ndarray | None = None

    def run(self) -> None:
        """Consume frames until stopped or until ``limit`` results were produced."""
        try:
            while not self.stop_event.is_set() and not self.finished.is_set():
                self.last_beat_s = time.monotonic()
                try:
                    frame = self.frames.get(timeout=QUEUE_POLL_S)
                except queue.Empty:
                    continue
                self._handle(frame)
        except Exception:
            log.exception("analysis thread failed")  # the watchdog notices the missing beats

    def _handle(self, frame: Frame) -> None:
        # the outbox cannot keep a result (never measure to drop it), or another kiosk has
        # this device id: a live frame is passed over; a saved capture waits (its folder
        # source reads each file once per run)
        if self._pausing() and not (frame.still and self._resumed()):
            self.frames_paused += 1
            self._previous_rgb = None
            return
        previous = None if frame.still else self._previous_rgb
        quality = self.gate.assess(frame.rgb, previous)
        self._previous_rgb = frame.rgb
        self.frames_assessed += 1
        burst = self.sessions.feed(frame, quality)
        if self._on_gated is not None:
            self._on_gated(quality, self.sessions.gathered, burst is not None)
        if burst is None:
            if frame.still and not quality.ok:
                self._say_not_measured(frame, quality)
                self._gave_no_result([frame])
            return
        try:
            accepted = self._measure(burst)
        except (ValueError, RuntimeError) as exc:
            self.failures += 1
            log.error("measurement of %s failed: %s", burst.frames[0].name or "a frame", exc)
            if self._on_failed is not None:
                self._on_failed()
            self._gave_no_result(burst.frames)
            return
        self._hand_over(accepted)

    def _gave_no_result(self, frames: Sequence[Frame]) -> None:
        """Tell the folder source which of its saved files gave no result."""
        for frame in frames:
            if frame.stamp is not None and self._on_not_measured is not None:
                self._on_not_measured(frame.stamp)

    def _resumed(self) -> bool:
        """Wait until measuring resumes (True) or the pipeline stops (False)."""
        while self._pausing():
            self.last_beat_s = time.monotonic()
            if self.stop_event.wait(QUEUE_POLL_S):
                return False
        return True

    def _pausing(self) -> bool:
        return self.paused.is_set() or self.held.is_set()

    def _say_not_measured(self, frame: Frame, quality: FrameQuality) -> None:
        """A saved capture is a session of its own: one the gate refuses is never measured, so
        the journal names it and why (a live camera's refused frames are not said: most are)."""
        log.warning("saved capture %s not measured: %s (%s)", frame.name, quality.verdict,
                    "; ".join(quality.reasons))

    def _measure(self, burst: Burst) -> Accepted:
        best = best_frame([f.rgb for f in burst.frames], list(burst.qualities))
        frame, quality = burst.frames[best], burst.qualities[best]
        measured = measure_frame(
            frame.rgb, self.um_per_px, quality, self.analyzer, self._classifier()
        )
        result = payloads.Result(
            measurement_id=measurement_id_for(self.identity.device_id, frame),
            device_id=self.identity.device_id,
            site=self.identity.site,
            captured_at=frame.captured_at,
            software_version=__version__,
            quality=measured.quality,
            features=measured.features,
            classification=measured.classification,
            subject=self._subject_for(frame),
            not_validated=list(measured.not_validated),
        )
        return Accepted(result, measured.draw_marked_frame, self.identity.result_topic, frame.stamp)

    def _subject_for(self, frame: Frame) -> payloads.Subject | None:
        """The kiosk screen's choice where one was made; else what a replayed customer stated
        (and so agreed to keep: a subject goes only with consent)."""
        if self._subject is not None:
            return self._subject(frame.age_band)
        return payloads.Subject(age_band=frame.age_band, consent=True) if frame.age_band else None

    def _hand_over(self, accepted: Accepted) -> None:
        while not self.stop_event.is_set():
            self.last_beat_s = time.monotonic()
            try:
                self.results.put(accepted, timeout=QUEUE_POLL_S)
            except queue.Full:
                continue
            self.measurements += 1
            if self.limit is not None and self.measurements >= self.limit:
                self.finished.set()
            return

