"""Frame sources: what a source delivers and how it fails, and the UVC microscope through
OpenCV V4L2 (a folder of saved JPEGs is capture/folder.py).

A source is opened, read frame by frame and closed; a failure (unplugged, read error, an
unlistable folder or one that stops answering, a camera frozen on one picture) raises
``SourceError`` and the supervisor reopens the source with backoff.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from appliance.capture.replayed import FileStamp
from appliance.transport.payloads import utc_now

log = logging.getLogger(__name__)

FRAME_WIDTH_PX = 1280
FRAME_HEIGHT_PX = 960
MIN_FRAME_SIDE_PX = 16  # the quality gate judges a quarter-size copy of each frame
# A live camera whose lit picture has not changed at all for this long is frozen (sensor noise
# alone changes every frame); a dark field (the scope lifted, a lens cap) may rightly stay the same
FROZEN_S = 10.0


class SourceError(RuntimeError):
    """The camera or folder failed; the message names the device and what to check."""


@dataclass(frozen=True)
class Frame:
    """One camera frame with the moment it was captured."""

    rgb: np.ndarray
    index: int
    captured_at: datetime = field(default_factory=utc_now)
    captured_mono_s: float = field(default_factory=time.monotonic)
    still: bool = False  # a saved single image: its own session, no burst or motion check
    # a simulated customer's frame: the simulation waits for the kiosk rather than skip part
    # of a visit, so each customer gives one measurement (and the n-th measurement is the n-th
    # customer, whose choices the demo makes on the kiosk screen)
    simulated: bool = False
    name: str = ""
    age_band: str | None = None  # what the customer stated (e.g. "40-49"), when asked
    stamp: FileStamp | None = None  # the saved file it was read from (a folder source)


def unusable_picture(rgb: object) -> str | None:
    """What is wrong with a source's picture, said as what the camera delivers (None: it is
    8-bit, three channels, at least MIN_FRAME_SIDE_PX a side). A camera in another mode (grey,
    with alpha, 16 bits a channel) or a driver's garbage would otherwise stop the analysis
    thread at its first frame, and the kiosk would restart for ever on the same camera."""
    if not isinstance(rgb, np.ndarray):
        return f"pictures that are no pixel array ({type(rgb).__name__})"
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        shape = "x".join(str(side) for side in rgb.shape) or "a scalar"
        return f"pictures that are not 8-bit colour ({shape}, {rgb.dtype})"
    if min(rgb.shape[:2]) < MIN_FRAME_SIDE_PX:
        return (f"pictures of {rgb.shape[1]}x{rgb.shape[0]} px, below "
                f"{MIN_FRAME_SIDE_PX} px a side")
    return None


class FrameSource(Protocol):
    """What the capture supervisor drives."""

    description: str

    def open(self) -> None:
        """Open the device or folder; raise SourceError when it cannot be used."""

    def read(self) -> Frame | None:
        """The next frame, or None when none is ready yet; raise SourceError on failure."""

    def close(self) -> None:
        """Release the device."""


class UvcSource:
    """The Scalar microscope as a V4L2 camera: MJPG at 1280x960, exposure and WB fixed."""

    def __init__(self, device_path: str) -> None:
        self.device_path = device_path
        self.description = f"uvc camera {device_path}"
        self._capture: Any = None
        self._count = 0
        self._unchanged: _UnchangedPicture | None = None

    def open(self) -> None:
        """Open the device and fix its format, exposure and white balance where allowed."""
        import cv2  # noqa: PLC0415 - heavy import only when a camera is used

        from appliance.capture.quality import DARK_FIELD_MEAN_LEVEL  # noqa: PLC0415 - cv2 too

        if not Path(self.device_path).exists():
            raise SourceError(
                f"{self.device_path}: camera device not found; is the microscope plugged in "
                "(check the udev rule for /dev/scalar-microscope)?"
            )
        capture = cv2.VideoCapture(self.device_path, cv2.CAP_V4L2)
        if not capture.isOpened():
            raise SourceError(
                f"{self.device_path}: V4L2 cannot open the camera (busy? in the video group?)"
            )
        capture.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*"MJPG"))
        capture.set(cv2.CAP_PROP_FRAME_WIDTH, FRAME_WIDTH_PX)
        capture.set(cv2.CAP_PROP_FRAME_HEIGHT, FRAME_HEIGHT_PX)
        self._fix_exposure(capture)
        self._capture = capture
        self._unchanged = _UnchangedPicture(DARK_FIELD_MEAN_LEVEL)

    def _fix_exposure(self, capture: Any) -> None:
        """Manual exposure and white balance keep frames comparable between measurements."""
        import cv2  # noqa: PLC0415

        # V4L2 auto-exposure menu: 1 = manual, 3 = aperture priority (auto).
        fixed = {
            "manual exposure": capture.set(cv2.CAP_PROP_AUTO_EXPOSURE, 1),
            "fixed white balance": capture.set(cv2.CAP_PROP_AUTO_WB, 0),
        }
        for what, accepted in fixed.items():
            if not accepted:
                log.warning("%s: the camera refused %s; frames may vary", self.device_path, what)

    def read(self) -> Frame | None:
        """Grab one frame (converted from BGR to RGB)."""
        import cv2  # noqa: PLC0415

        if self._capture is None or self._unchanged is None:
            raise SourceError(f"{self.device_path}: read before open")
        ok, bgr = self._capture.read()
        if not ok or bgr is None:
            raise SourceError(f"{self.device_path}: read failed (unplugged?)")
        problem = unusable_picture(bgr)
        if problem is not None:
            raise SourceError(f"{self.device_path}: camera delivers {problem}; check the camera "
                              "mode (MJPG 1280x960)")
        if bgr.shape[:2] != (FRAME_HEIGHT_PX, FRAME_WIDTH_PX):
            raise SourceError(
                f"{self.device_path}: camera delivers {bgr.shape[1]}x{bgr.shape[0]}, not "
                f"{FRAME_WIDTH_PX}x{FRAME_HEIGHT_PX}; check the camera mode (MJPG 1280x960)"
            )
        if self._unchanged.for_s(bgr) > FROZEN_S:
            raise SourceError(
                f"{self.device_path}: the camera delivers the very same picture for over "
                f"{FROZEN_S:.0f} s (frozen?); reopening it"
            )
        self._count += 1
        return Frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), self._count)

    def close(self) -> None:
        """Release the camera."""
        if self._capture is not None:
            self._capture.release()
            self._capture = None


class _UnchangedPicture:
    """How long a live camera's lit picture has not changed at all, judged on a hash of every
    8th pixel each way (any sensor noise there changes it)."""

    def __init__(self, dark_level: float) -> None:
        self.dark_level = dark_level  # a mean grey level below it is a dark field
        self._digest = b""
        self._since_s = time.monotonic()

    def for_s(self, bgr: np.ndarray) -> float:
        """Seconds since the picture last changed; 0 for a dark field."""
        sample = np.ascontiguousarray(bgr[::8, ::8])
        now_s = time.monotonic()
        digest = hashlib.blake2b(sample.tobytes(), digest_size=16).digest()
        dark = float(sample.mean()) < self.dark_level
        if dark or digest != self._digest:
            self._digest, self._since_s = digest, now_s
        return 0.0 if dark else now_s - self._since_s


@runtime_checkable
class RecordsMeasured(Protocol):
    """A source that remembers which of its frames' results are committed (a folder)."""

    def record_measured(self, stamps: list[FileStamp]) -> None:
        """Remember these files as measured."""

    def record_not_measured(self, stamp: FileStamp) -> None:
        """Note a file whose frame gave no result (refused by the gate, or failed)."""

    def record_not_kept(self, stamp: FileStamp) -> None:
        """Note a file whose result a commit the outbox refused dropped: to be read again."""
