"""PNG frames are decoded without libpng's raw lines on stderr, with OpenCV's pixels."""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from appliance.skin.frames import FrameError, decode_frame
from tests.skin_frames import generated


@lru_cache(maxsize=1)
def _png() -> bytes:
    rgb = generated(21, 0, "normal").image_rgb
    return bytes(cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1])


def _bits_flipped(png: bytes) -> bytes:
    damaged = bytearray(png)
    for tenth in range(2, 9):  # one flipped bit in each stretch of the compressed pixels
        damaged[len(damaged) * tenth // 10] ^= 0x10
    return bytes(damaged)


def _cut_in_half(png: bytes) -> bytes:
    return png[: len(png) // 2]


@pytest.mark.parametrize(("damage", "libpng_says"), [(_bits_flipped, "libpng error: IDAT"),
                                                     (_cut_in_half, "libpng error: ")])
def test_a_damaged_png_gets_the_verdict_without_libpng_s_raw_line(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], damage: Callable[[bytes], bytes],
    libpng_says: str,
) -> None:
    damaged = damage(_png())
    assert cv2.imdecode(np.frombuffer(damaged, np.uint8), cv2.IMREAD_COLOR) is None
    assert libpng_says in capfd.readouterr().err  # what libpng prints, unasked
    frame, good = tmp_path / "damaged.png", tmp_path / "good.png"
    frame.write_bytes(damaged)
    good.write_bytes(_png())
    done = subprocess.run([sys.executable, "-m", "appliance", "analyze", str(frame), str(good)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1, done.stderr  # one file refused
    (row,) = done.stdout.splitlines()[1:]
    assert row.startswith("good.png")
    assert " ok " in row  # the intact PNG is still measured
    verdict = f"analyze: {frame}: corrupt image data"
    assert done.stderr.count(verdict) == 1  # the damaged one is reported once, by the command
    for line in done.stderr.splitlines():  # log lines and the command's own verdict only
        assert " INFO " in line or line.startswith(verdict), line


def _pillow_png(array: np.ndarray, **save: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG", **save)  # type: ignore[arg-type]
    return buffer.getvalue()


def _opencv_png(array: np.ndarray) -> bytes:
    return bytes(cv2.imencode(".png", array)[1])


def _turned() -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = 6  # EXIF Orientation: turn 90 degrees clockwise to show
    return exif


_RNG = np.random.default_rng(7)
PNGS = {
    "16-bit grey": _opencv_png(_RNG.integers(0, 65535, (30, 40), np.uint16)),
    "16-bit colour": _opencv_png(_RNG.integers(0, 65535, (30, 40, 3), np.uint16)),
    "8-bit with alpha": _opencv_png(_RNG.integers(0, 255, (30, 40, 4), np.uint8)),
    "palette with transparency": _pillow_png(
        _RNG.integers(0, 255, (30, 40), np.uint8), transparency=0),
    "EXIF turned": _pillow_png(_RNG.integers(0, 255, (30, 40, 3), np.uint8),
                               exif=_turned()),
}


@pytest.mark.parametrize("kind", PNGS)
def test_png_pixels_are_those_opencv_gives(kind: str) -> None:
    png = PNGS[kind]
    opencv = cv2.cvtColor(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR),
                          cv2.COLOR_BGR2RGB)
    rgb = decode_frame(png, kind)
    assert rgb.dtype == np.uint8
    assert rgb.flags.writeable
    assert rgb.shape == opencv.shape
    assert np.array_equal(rgb, opencv)


def test_a_png_whose_header_is_damaged_is_refused_without_a_memory_address() -> None:
    """A flipped bit in the IHDR chunk (its CRC no longer matches): Pillow's own text names
    the in-memory buffer ("<_io.BytesIO object at 0x7f...>"), which means nothing to a user."""
    damaged = bytearray(_png())
    damaged[29] ^= 0x01  # a byte of the IHDR chunk's CRC (PNG spec 5.3): the size still reads
    with pytest.raises(FrameError) as refused:
        decode_frame(bytes(damaged), "frame.png", (960, 1280))
    assert str(refused.value) == ("frame.png: corrupt image data (header unreadable); copy the "
                                  "file again")
