"""Frame sources: the UVC microscope through OpenCV V4L2, and a folder of saved JPEGs.

A source is opened, read frame by frame and closed; a failure (unplugged, read error,
unreadable file) raises ``SourceError`` and the supervisor reopens the source with backoff.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from appliance.transport.payloads import utc_now

log = logging.getLogger(__name__)

FRAME_WIDTH_PX = 1280
FRAME_HEIGHT_PX = 960
DIRECTORY_POLL_S = 0.2
IMAGE_SUFFIXES = (".jpg", ".jpeg")


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
    name: str = ""
    age_band: str | None = None  # what the customer stated (e.g. "40-49"), when asked


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

    def open(self) -> None:
        """Open the device and fix its format, exposure and white balance where allowed."""
        import cv2  # noqa: PLC0415 - heavy import only when a camera is used

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

        if self._capture is None:
            raise SourceError(f"{self.device_path}: read before open")
        ok, bgr = self._capture.read()
        if not ok or bgr is None:
            raise SourceError(f"{self.device_path}: read failed (unplugged?)")
        if bgr.shape[:2] != (FRAME_HEIGHT_PX, FRAME_WIDTH_PX):
            raise SourceError(
                f"{self.device_path}: camera delivers {bgr.shape[1]}x{bgr.shape[0]}, not "
                f"{FRAME_WIDTH_PX}x{FRAME_HEIGHT_PX}; check the camera mode (MJPG 1280x960)"
            )
        self._count += 1
        return Frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), self._count)

    def close(self) -> None:
        """Release the camera."""
        if self._capture is not None:
            self._capture.release()
            self._capture = None


class DirectorySource:
    """Replays the JPEGs in a folder in name order, then picks up files saved later.

    The Scalar software saves one JPEG per capture with a time-ordered name, so name order is
    capture order. Each file is a still: measured on its own when it passes the quality gate.
    """

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)
        self.description = f"folder {folder}"
        self._seen: set[str] = set()
        self._count = 0

    def open(self) -> None:
        """Check the folder is there."""
        if not self.folder.is_dir():
            raise SourceError(f"{self.folder}: folder of frames not found; check camera.path")

    def read(self) -> Frame | None:
        """The next unseen JPEG in name order, or None (after a short wait) when none is new."""
        from appliance.skin.frames import FrameError, load_frame  # noqa: PLC0415

        try:
            names = sorted(p.name for p in self.folder.iterdir() if self._wanted(p))
        except OSError as exc:
            raise SourceError(f"{self.folder}: cannot list the folder ({exc})") from exc
        if not names:
            time.sleep(DIRECTORY_POLL_S)
            return None
        name = names[0]
        self._seen.add(name)
        try:
            rgb = load_frame(self.folder / name)
        except FrameError as exc:
            log.warning("skipped %s", exc)
            return None
        self._count += 1
        return Frame(rgb, self._count, still=True, name=name)

    def _wanted(self, path: Path) -> bool:
        return path.suffix.lower() in IMAGE_SUFFIXES and path.name not in self._seen

    def close(self) -> None:
        """Nothing to release; files already replayed stay replayed."""
