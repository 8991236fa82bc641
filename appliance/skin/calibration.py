"""Spatial calibration: micrometres per pixel from a photo of a stage micrometer.

The micrometer shows parallel dark graduation lines a known distance apart. We find their
direction from the strongest peak of the image spectrum, turn the image so the lines stand
upright, average the columns into a profile, locate every line centre to a fraction of a
pixel and fit a straight line to centre position against line number: its slope is the
line pitch in pixels, and ``um_per_px = pitch_mm * 1000 / pitch_px``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

MIN_LINES = 4
MIN_PEAK_PROMINENCE = 50.0  # a ruled scale's peak stands far above the noise floor


class CalibrationError(ValueError):
    """The image does not show a usable micrometer scale; the message says what to change."""


@dataclass(frozen=True)
class Calibration:
    """The measured scale: µm per pixel, the line pitch in px and how many lines were used."""

    um_per_px: float
    pitch_px: float
    line_count: int
    angle_deg: float


def calibrate_from_micrometer(gray: np.ndarray, pitch_mm: float) -> Calibration:
    """Measure µm per pixel from a grey micrometer image whose lines are pitch_mm apart."""
    if pitch_mm <= 0:
        raise CalibrationError(f"--mm must be positive (got {pitch_mm}): the line spacing in mm")
    angle_deg, rough_pitch_px = _dominant_grating(gray.astype(np.float32))
    upright = _rotate(gray.astype(np.float32), angle_deg)
    centres = _line_centres(_column_profile(upright), rough_pitch_px)
    if len(centres) < MIN_LINES:
        raise CalibrationError(
            f"found only {len(centres)} graduation lines (need {MIN_LINES}); "
            "photograph more of the scale, in focus"
        )
    numbers = np.round((centres - centres[0]) / rough_pitch_px)
    pitch_px = float(np.polyfit(numbers, centres, 1)[0])
    return Calibration(pitch_mm * 1000.0 / pitch_px, pitch_px, len(centres), angle_deg)


def _dominant_grating(gray: np.ndarray) -> tuple[float, float]:
    """Direction (deg, of the lines' normal) and pitch (px) from the spectrum's top peak."""
    height, width = gray.shape
    window = np.outer(np.hanning(height), np.hanning(width)).astype(np.float32)
    spectrum = np.abs(np.fft.fftshift(np.fft.fft2((gray - gray.mean()) * window)))
    cy, cx = height // 2, width // 2
    spectrum[cy - 2 : cy + 3, cx - 2 : cx + 3] = 0.0
    spectrum[:cy, :] = 0.0  # the spectrum is symmetric: search one half
    py, px = np.unravel_index(int(np.argmax(spectrum)), spectrum.shape)
    prominence = float(spectrum[py, px]) / max(float(np.median(spectrum[cy:, :])), 1e-9)
    if prominence < MIN_PEAK_PROMINENCE:
        raise CalibrationError(
            f"no clear line pattern (spectral peak only {prominence:.0f}x the background); "
            "photograph the micrometer scale in focus, lines filling the view"
        )
    fy, fx = (py - cy) / height, (px - cx) / width
    frequency = float(np.hypot(fx, fy))
    if frequency == 0.0 or float(spectrum.max()) <= 0.0:
        raise CalibrationError("no periodic line pattern found; is this a stage micrometer?")
    angle_deg = (float(np.degrees(np.arctan2(fy, fx))) + 90.0) % 180.0 - 90.0
    return angle_deg, 1.0 / frequency


def _rotate(gray: np.ndarray, angle_deg: float) -> np.ndarray:
    height, width = gray.shape
    matrix = cv2.getRotationMatrix2D((width / 2.0, height / 2.0), angle_deg, 1.0)
    rotated: np.ndarray = cv2.warpAffine(
        gray, matrix, (width, height), flags=cv2.INTER_LINEAR, borderValue=float("nan")
    )
    return rotated


def _column_profile(upright: np.ndarray) -> np.ndarray:
    """Mean of each column over the rows the rotation left fully inside the image."""
    valid_rows = ~np.isnan(upright).any(axis=1)
    if np.count_nonzero(valid_rows) >= 8:
        return np.asarray(upright[valid_rows].mean(axis=0), dtype=np.float64)
    counts = np.count_nonzero(~np.isnan(upright), axis=0)
    sums = np.nansum(upright, axis=0, dtype=np.float64)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _line_centres(profile: np.ndarray, pitch_px: float) -> np.ndarray:
    """Sub-pixel centres of the dark lines: darkness-weighted centroids of each dip."""
    valid = ~np.isnan(profile)
    darkness = np.where(valid, np.nanmax(profile) - profile, 0.0)
    level = 0.5 * (np.percentile(darkness[valid], 95) + np.percentile(darkness[valid], 5))
    above = darkness > level
    edges = np.flatnonzero(np.diff(above.astype(np.int8)))
    centres = []
    for start, stop in zip(edges[:-1] + 1, edges[1:] + 1, strict=True):
        if not above[start] or stop - start > 0.6 * pitch_px:
            continue
        weights = darkness[start:stop] - level
        centres.append(float(np.sum(np.arange(start, stop) * weights) / np.sum(weights)))
    return np.asarray(centres)
