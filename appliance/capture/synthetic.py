"""The synthetic camera: simulated customers using the microscope, one after another.

Each customer is one skin frame from a ``SkinFactory`` (``appliance.synthetic.camera`` draws
them with the skin generator, or as a cheap texture): the scope approaches (blurred frames),
rests on the skin (identical, steady frames), then is lifted (a dark field, no contact). So the
quality gate and the measurement sessions see what the real kiosk sees, and every customer
yields exactly one measurement: no frame of theirs is dropped for a newer one
(``Frame.simulated``: the capture thread waits for room), so a kiosk slower than the visits (a
measurement that takes longer than a visit, on a busy machine) slows the customers down
instead of skipping some. Asked for their age band, a customer answers with ``age_band``
(``synthetic.camera.stated_age_band``: the decade their skin was generated for).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from appliance.capture.sources import Frame

SkinFactory = Callable[[int], np.ndarray]
AgeBandOf = Callable[[int], str | None]  # customer index -> the age band they state
LIFTED_LEVEL = 0.03  # the LEDs shine into the air: a nearly black field


@dataclass(frozen=True)
class CustomerScript:
    """How many frames each phase of one customer's visit lasts (each 0 or more, at least
    one frame in all)."""

    approach_frames: int = 4
    rest_frames: int = 8
    lift_frames: int = 4

    def __post_init__(self) -> None:
        for name in ("approach_frames", "rest_frames", "lift_frames"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"CustomerScript {name}={value!r}: a whole number of frames, "
                                 "0 or more")
        if self.total_frames == 0:
            raise ValueError("CustomerScript: a visit of no frames; give one phase a frame")

    @property
    def total_frames(self) -> int:
        """Frames per customer."""
        return self.approach_frames + self.rest_frames + self.lift_frames


def defocused(rgb: np.ndarray, sigma_px: float) -> np.ndarray:
    """The frame out of focus by a Gaussian of ``sigma_px`` (blurred at 1/8 size: cheap).

    A blur as wide as the frame or wider leaves its mean colour everywhere, and is given as
    that: the Gaussian's cost grows with its width (a long approach's first frame asked for
    sigma ~6e6 px, hours of CPU), the mean's does not."""
    height, width = rgb.shape[:2]
    if sigma_px >= max(height, width):
        mean = rgb.reshape(height * width, -1).mean(axis=0)
        return np.broadcast_to(np.rint(mean).astype(rgb.dtype), rgb.shape).copy()
    small = cv2.resize(rgb, (width // 8, height // 8), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma_px / 8.0)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


class SyntheticSource:
    """Frames of simulated customers: approach (blurred), rest (steady), lift (no contact)."""

    def __init__(
        self,
        skin: SkinFactory,
        fps: float = 15.0,
        script: CustomerScript | None = None,
        age_band: AgeBandOf | None = None,
    ) -> None:
        self.description = "synthetic camera"
        self._age_band_of = age_band
        self._customer_age_band: str | None = None
        self.fps = fps
        self.script = script or CustomerScript()
        self._skin = skin
        self._customer = -1
        self._customer_rgb: np.ndarray | None = None
        self._lifted_rgb: np.ndarray | None = None
        self._frame_count = 0
        self._next_due_s = 0.0

    def open(self) -> None:
        """Start pacing from now."""
        self._next_due_s = time.monotonic()

    def read(self) -> Frame | None:
        """The next frame of the current customer's visit, paced at ``fps``."""
        self._pace()
        phase_index = self._frame_count % self.script.total_frames
        if phase_index == 0:
            self._customer += 1
            self._customer_rgb = self._skin(self._customer)
            stated = self._age_band_of
            self._customer_age_band = stated(self._customer) if stated else None
            self._lifted_rgb = None
        assert self._customer_rgb is not None  # set on the first frame of every customer
        rgb = self._phase_frame(self._customer_rgb, phase_index)
        self._frame_count += 1
        return Frame(rgb, self._frame_count, name=f"customer-{self._customer}",
                     age_band=self._customer_age_band, simulated=True)

    def _pace(self) -> None:
        if self.fps <= 0:
            return
        wait_s = self._next_due_s - time.monotonic()
        if wait_s > 0:
            time.sleep(wait_s)
        self._next_due_s = max(self._next_due_s, time.monotonic() - 1.0) + 1.0 / self.fps

    def _phase_frame(self, skin_rgb: np.ndarray, phase_index: int) -> np.ndarray:
        script = self.script
        if phase_index < script.approach_frames:
            # Defocus shrinks as the scope comes closer, but every approach frame is blurred.
            sigma_px = 16.0 + 6.0 * (script.approach_frames - 1 - phase_index)
            return defocused(skin_rgb, sigma_px)
        if phase_index < script.approach_frames + script.rest_frames:
            return skin_rgb
        if self._lifted_rgb is None:
            self._lifted_rgb = cv2.convertScaleAbs(skin_rgb, alpha=LIFTED_LEVEL)
        return self._lifted_rgb

    def close(self) -> None:
        """Nothing to release; the next open continues with the next frame."""
