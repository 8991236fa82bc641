"""What the kiosk screen shows now: a small state machine fed by the pipeline and the page.

Phases: ``welcome`` (nobody at the scope: age band and consent can be chosen), ``guiding``
(the scope is on the way: plain-words guidance from the quality gate), ``measuring`` (good
frames are being gathered: burst progress), ``analysing`` (the best frame is measured) and
``result``. After ``idle_s`` without anyone at the scope the screen clears itself back to
``welcome``, forgetting the result, the customer's choices and their language.

Every visible change bumps a version number; the page's event stream waits on it. The
pipeline calls in from its threads and only takes a lock and compares a few values.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

from appliance.capture.quality import FrameQuality
from appliance.transport import payloads

# the quality gate's verdict -> the catalogue key of its guidance (messages.json)
GUIDANCE = {
    "no_contact": "guide_press",
    "moving": "guide_hold_still",
    "overexposed": "guide_too_bright",
    "underexposed": "guide_too_dark",
    "blurred": "guide_focus",
    "ok": "guide_hold_still",
}
# why the kiosk cannot measure now (catalogue keys): the outbox cannot write (its disk is full),
# the camera is gone, another kiosk runs with this one's device id
# the daemon is down for good (appliance/edge/out_of_order.py), and says why in ``detail``
DOWN_FOR_GOOD = "guide_out_of_order"
OUT_OF_ORDER = ("guide_paused_storage", "guide_paused_disk_full", "guide_camera_offline",
                "guide_duplicate_device", DOWN_FOR_GOOD)
# who knows why the kiosk cannot measure (said after the OUT_OF_ORDER guidance; edge/staff.py):
# staff were told (its status reached the broker), or the customer is asked to tell them
STAFF_TOLD, STAFF_ASK = "told", "ask"
# the burst's measurement failed: said until the scope is lifted and pressed on again
MEASURE_AGAIN = "guide_measure_again"
LANGUAGES = ("ja", "en")
AGE_BANDS = ("10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70-79", "80+")


class ScreenState:
    """The kiosk screen's state, shared by the pipeline threads and the screen server."""

    def __init__(self, burst_frames: int, idle_s: float, language: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.burst_frames, self.idle_s, self.default_language = burst_frames, idle_s, language
        self._clock = clock
        self._changed = threading.Condition()
        self._version = 0
        self._view: dict[str, Any] = {}
        self._lifted_since_result = False
        self._last_activity_s = clock()
        self._measurements = 0  # results started since the daemon started (one per customer)
        self.run_id = secrets.token_hex(8)  # this daemon run: a page's choice names the run
        self._clear()

    def _clear(self) -> None:
        self._view = self._cleared()

    def _update(self, **changes: Any) -> None:
        """Apply changes (lock held); wake the event streams when something visible changed."""
        if "guidance" in changes:  # who was told, and why, belong to the out-of-order guidance
            changes.setdefault("staff", None)
            changes.setdefault("detail", None)
        if all(self._view.get(k) == v for k, v in changes.items()):
            return
        self._view.update(changes)
        self._version += 1
        self._changed.notify_all()

    def on_gated(self, quality: FrameQuality, gathered: int, complete: bool) -> None:
        """One frame judged by the quality gate (analysis thread, every frame)."""
        with self._changed:
            if quality.verdict != "no_contact":
                self._last_activity_s = self._clock()
            phase = self._view["phase"]
            if complete:
                self._update(phase="analysing", guidance=None, progress=self.burst_frames)
            elif self._held() and not self._new_contact(quality):
                return
            elif quality.ok and gathered > 0:
                self._update(phase="measuring", guidance="guide_hold_still", progress=gathered)
            elif phase == "welcome" and quality.verdict == "no_contact":
                return
            else:
                self._update(phase="guiding", guidance=GUIDANCE[quality.verdict], progress=0)

    def set_out_of_order(self, why: str | None, staff_told: bool = False,
                         detail: dict[str, str] | None = None) -> None:
        """Say why the kiosk cannot measure now (a key of OUT_OF_ORDER), and whether staff
        were told of it or the customer should tell them (``detail``: what staff read there,
        a catalogue key and its words); or that it can measure again."""
        with self._changed:
            if why is not None:
                staff = STAFF_TOLD if staff_told else STAFF_ASK
                self._update(phase="guiding", guidance=why, staff=staff, progress=0,
                             detail=detail)
            elif self._view["guidance"] in OUT_OF_ORDER:
                self._update(phase="welcome", guidance=None, progress=0)

    def _held(self) -> bool:
        """Whether the screen keeps what it shows until a new contact (lock held): the burst
        being analysed, its result, or that it could not be measured."""
        return (self._view["phase"] in ("analysing", "result")
                or self._view["guidance"] == MEASURE_AGAIN)

    def _new_contact(self, quality: FrameQuality) -> bool:
        """After a result (or a failed measurement), a new contact starts only once the scope
        was lifted (lock held)."""
        if quality.verdict == "no_contact":
            self._lifted_since_result = True
            return False
        return self._lifted_since_result and self._view["phase"] != "analysing"

    def measurement_failed(self) -> None:
        """The burst's measurement failed (analysis thread): say so instead of 'analysing',
        which no result would ever end, until the scope is pressed on again."""
        with self._changed:
            self._lifted_since_result = False
            self._update(phase="guiding", guidance=MEASURE_AGAIN, progress=0)

    def show_result(self, view: dict[str, Any]) -> None:
        """A committed result is on screen (screen thread, after its overlay is written)."""
        with self._changed:
            self._last_activity_s = self._clock()
            self._lifted_since_result = False
            self._update(phase="result", guidance=None, progress=0, result=view)

    def set_subject(self, age_band: str | None, consent: bool,
                    measurement: int | None = None, run: str | None = None) -> None:
        """The customer's choices for the next measurement (from the page).

        With ``measurement`` (the count shown in the state) a choice that arrives after that
        measurement already started is refused, instead of slipping to the next customer; with
        ``run`` (the state's ``run``) so is one chosen on the page of a daemon run since ended
        (its count starts again at 0, and the page may still show the last customer's choices).
        """
        with self._changed:
            if run is not None and run != self.run_id:
                raise ValueError("chosen on the screen of a daemon run that has ended; "
                                 "choose again")
            if measurement is not None and measurement != self._measurements:
                raise ValueError(f"the measurement chosen for already started (the kiosk is "
                                 f"at measurement {self._measurements}); choose again")
            self._last_activity_s = self._clock()
            self._update(subject={"age_band": age_band, "consent": consent})

    def set_language(self, language: str) -> None:
        """The language the customer chose on screen."""
        if language not in LANGUAGES:
            raise ValueError(f"language {language!r}: use one of {', '.join(LANGUAGES)}")
        with self._changed:
            self._last_activity_s = self._clock()
            self._update(language=language)

    def take_subject(self, stated_band: str | None = None) -> payloads.Subject | None:
        """The subject block of the result being made (analysis thread); used once.

        Without consent nothing about the customer is sent, not even the age band. When nobody
        chose on the screen, ``stated_band`` (what a replayed synthetic customer states, and so
        agrees to keep; a real camera states nothing) is the answer.
        """
        with self._changed:
            chosen = self._view["subject"]
            self._measurements += 1
            self._update(subject=None)
        if chosen is None:
            return payloads.Subject(age_band=stated_band, consent=True) if stated_band else None
        if not chosen["consent"]:
            return None
        return payloads.Subject(age_band=chosen["age_band"], consent=True)

    def tick(self) -> None:
        """Clear the screen when nobody used it for ``idle_s`` (called about twice a second)."""
        with self._changed:
            idle = self._clock() - self._last_activity_s > self.idle_s
            if idle and self._view != self._cleared():
                self._clear()
                self._version += 1
                self._changed.notify_all()

    def _cleared(self) -> dict[str, Any]:
        return {"phase": "welcome", "guidance": None, "staff": None, "detail": None,
                "progress": 0, "result": None, "subject": None,
                "language": self.default_language}

    def snapshot(self) -> dict[str, Any]:
        """The state as the page reads it (with its version and the burst length)."""
        with self._changed:
            return self._snapshot()

    def wait_change(self, after_version: int, timeout_s: float) -> dict[str, Any] | None:
        """The state once its version passes ``after_version``; None after ``timeout_s``."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._version > after_version, timeout_s):
                return None
            return self._snapshot()

    def _snapshot(self) -> dict[str, Any]:
        """The view with its version, the burst length, the measurement count and the daemon
        run (lock held)."""
        return {**self._view, "version": self._version, "burst": self.burst_frames,
                "measurements": self._measurements, "run": self.run_id}
