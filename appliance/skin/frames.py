"""Reading microscope frames from files, with errors that name the file and the problem."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

FRAME_HEIGHT_PX = 960
FRAME_WIDTH_PX = 1280
MAX_FRAME_BYTES = 50 * 1024 * 1024
_JPEG_MAGIC = b"\xff\xd8"
_JPEG_END = b"\xff\xd9"
_KNOWN_MAGIC = (_JPEG_MAGIC, b"\x89PNG", b"BM", b"II*\x00", b"MM\x00*", b"RIFF")


class FrameError(ValueError):
    """A file that is not a usable microscope frame; the message names the file and why."""


def load_frame(
    path: str | Path, expected_shape: tuple[int, int] | None = (FRAME_HEIGHT_PX, FRAME_WIDTH_PX)
) -> np.ndarray:
    """Read an image file as RGB uint8; it must be ``expected_shape`` (rows, cols) unless None."""
    file = Path(path)
    data = _read_bytes(file)
    rgb = decode_frame(data, str(file))
    if expected_shape is None:
        return rgb
    height, width = expected_shape
    if rgb.shape[:2] != (height, width):
        raise FrameError(
            f"{file}: wrong size {rgb.shape[1]}x{rgb.shape[0]} px; the microscope delivers "
            f"{width}x{height} px frames (resize or crop it, or check the camera mode)"
        )
    return rgb


def _read_bytes(file: Path) -> bytes:
    if not file.exists():
        raise FrameError(f"{file}: file not found; check the path")
    if not file.is_file():
        raise FrameError(f"{file}: not a regular file (a folder?); pass image files")
    size = file.stat().st_size
    if size == 0:
        raise FrameError(f"{file}: empty file (0 bytes); the capture was not saved")
    if size > MAX_FRAME_BYTES:
        raise FrameError(f"{file}: {size} bytes is larger than any microscope frame; refused")
    return file.read_bytes()


def decode_frame(data: bytes, name: str = "frame") -> np.ndarray:
    """Decode JPEG/PNG/BMP/TIFF bytes into RGB uint8, refusing truncated or non-image data."""
    if not data.startswith(_KNOWN_MAGIC):
        raise FrameError(f"{name}: not an image (no JPEG/PNG/BMP/TIFF signature); pass image files")
    if data.startswith(_JPEG_MAGIC) and not data.rstrip(b"\x00").endswith(_JPEG_END):
        raise FrameError(f"{name}: truncated JPEG (no end-of-image marker); copy the file again")
    buffer = np.frombuffer(data, dtype=np.uint8)
    bgr = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    if bgr is None or bgr.size == 0:
        raise FrameError(f"{name}: corrupt image data (could not decode); copy the file again")
    rgb: np.ndarray = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return rgb
