"""A photo of a stage micrometer, as the kiosk microscope sees it, at a known µm per pixel.

A stage micrometer is a glass slide with a ruled scale: ``lines`` dark graduation lines
``pitch_mm`` apart, every 5th longer and every 10th longer still, on a bright transmitted-light
field. The frame is rendered 3x supersampled (so line edges fall between pixels as they do
optically), turned by ``angle_deg``, vignetted, blurred by the lens and given sensor noise. The
truth is the spec itself: ``um_per_px`` and the line pitch in pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

SUPERSAMPLE = 3
LONG_LINE_FACTORS = {10: 1.6, 5: 1.3}  # every 10th / 5th graduation is this much longer
MASK_ROWS = 240  # supersampled rows of the line mask worked out at once


@dataclass(frozen=True)
class MicrometerSpec:
    """What the photo shows; ``um_per_px`` is the truth a calibration must recover."""

    um_per_px: float = 10.0
    pitch_mm: float = 0.1
    lines: int = 101
    line_height_px: float = 100.0  # the short graduations
    line_width_fraction: float = 0.25  # of the pitch
    angle_deg: float = 0.0
    contrast: float = 0.65  # line darkness as a share of the bright field
    noise_sd: float = 3.0  # grey levels
    blur_sigma_px: float = 0.8
    seed: int = 0
    size_px: tuple[int, int] = (1280, 960)  # width, height

    @property
    def pitch_px(self) -> float:
        """Distance between neighbouring lines in pixels."""
        return self.pitch_mm * 1000.0 / self.um_per_px


def micrometer_frame(spec: MicrometerSpec) -> npt.NDArray[np.uint8]:
    """The RGB photo (height x width x 3) of the micrometer described by ``spec``."""
    width, height = spec.size_px
    fine = _line_mask(spec, width * SUPERSAMPLE, height * SUPERSAMPLE)
    dark = np.asarray(cv2.resize(fine, (width, height), interpolation=cv2.INTER_AREA))
    field = 225.0 * _vignette(width, height)
    sharp = field * (1.0 - spec.contrast * dark)
    grey = np.asarray(cv2.GaussianBlur(sharp, (0, 0), spec.blur_sigma_px), dtype=np.float64)
    grey = grey + np.random.default_rng(spec.seed).normal(0.0, spec.noise_sd, grey.shape)
    tint = np.array([0.97, 1.0, 0.99])  # the slightly green glass
    rgb: npt.NDArray[np.uint8] = np.clip(grey[:, :, None] * tint[None, None, :], 0, 255).astype(
        np.uint8
    )
    return rgb


def _line_mask(spec: MicrometerSpec, width: int, height: int) -> npt.NDArray[np.float32]:
    """1 inside a graduation line, 0 elsewhere, on the supersampled grid.

    Worked out a band of ``MASK_ROWS`` rows at a time: each pixel's value is the same
    element-wise float32 arithmetic as over the whole grid at once, without the whole grid's
    coordinate arrays (the 3840x2880 grid of a photo held some 800 MB of them)."""
    mask = np.empty((height, width), np.float32)
    for top in range(0, height, MASK_ROWS):
        bottom = min(height, top + MASK_ROWS)
        mask[top:bottom] = _line_band(spec, top, bottom, width)
    return mask


def _line_band(
    spec: MicrometerSpec, top: int, bottom: int, width: int
) -> npt.NDArray[np.bool_]:
    """Rows ``top`` to ``bottom`` of the line mask (True inside a line)."""
    scale = float(SUPERSAMPLE)
    ys, xs = np.mgrid[top:bottom, 0:width].astype(np.float32)
    xs = (xs + 0.5) / scale - spec.size_px[0] / 2.0
    ys = (ys + 0.5) / scale - spec.size_px[1] / 2.0
    angle = math.radians(spec.angle_deg)
    along_scale = xs * math.cos(angle) + ys * math.sin(angle)
    along_line = -xs * math.sin(angle) + ys * math.cos(angle)
    first = -(spec.lines - 1) / 2.0
    number = np.clip(np.round(along_scale / spec.pitch_px - first), 0, spec.lines - 1)
    centre = (number + first) * spec.pitch_px
    half_length = np.full(number.shape, spec.line_height_px / 2.0, dtype=np.float32)
    for every, factor in sorted(LONG_LINE_FACTORS.items()):
        half_length[number % every == 0] = spec.line_height_px * factor / 2.0
    inside: npt.NDArray[np.bool_] = (
        np.abs(along_scale - centre) <= spec.line_width_fraction * spec.pitch_px / 2.0
    ) & (np.abs(along_line) <= half_length)
    return inside


def _vignette(width: int, height: int) -> npt.NDArray[np.float32]:
    """Bright in the middle, 15 % darker in the corners (the microscope's ring light)."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    radius = np.hypot((xs - width / 2.0) / (width / 2.0), (ys - height / 2.0) / (height / 2.0))
    shade: npt.NDArray[np.float32] = (
        1.0 - 0.15 * np.clip(radius / math.sqrt(2.0), 0.0, 1.0) ** 2
    ).astype(np.float32)
    return shade
