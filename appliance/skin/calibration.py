"""Spatial calibration: micrometres per pixel from a photo of a stage micrometer.

A stage micrometer shows parallel dark graduation lines a known distance apart. The method:

1. Direction and rough pitch of the grating from the strongest peak of the image spectrum
   above 1/64 cycles per px (a short scale's outline or a slow shading is no grating), halved
   when it was the grating's 2nd harmonic.
2. Turn the image so the lines stand upright.
3. Keep the band of rows where the grating is (the rows whose profile swings at the grating's
   pitch): a scale 100 px tall in a 960 px frame is averaged over its own rows only.
4. Locate every line centre in the band's column profile to a fraction of a pixel.
5. Number the lines from their spacings and fit centre position against line number: the slope
   is the pitch in pixels, ``um_per_px = pitch_mm * 1000 / pitch_px``. The uncertainty combines
   the fit's standard error with an allowance for a common sub-pixel bias of the line centres.

Only a micrometer passes: the result is refused unless the lines are many, dark against the
field and evenly spaced (skin furrows, fabric or print are not), and the refusal says which test
failed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

MIN_LINES = 8
MIN_PEAK_PROMINENCE = 50.0  # a ruled scale's peak stands far above the noise floor
MIN_CONTRAST = 0.2  # line darkness as a share of the field between the lines
MAX_SPACING_SCATTER = 0.02  # rms deviation of line centres from the fit, as a share of the pitch
MAX_MISSING_SHARE = 0.1  # lines missing between the first and last found
MAX_PITCH_PX = 64.0  # coarser gratings give too few lines across the frame
FUNDAMENTAL_SHARE = 0.3  # a spectral peak at half the top one's frequency this strong is the pitch
# Line centres can be biased by a fraction of a pixel in the same direction along the scale
# (shading across the field, interpolation when turning the image), which the fit's residuals
# do not show; the uncertainty allows this much at each end of the scale
# (benchmarks/calibration.py measures how often the printed interval covers the truth).
CENTRE_BIAS_PX = 0.15
BAND_LEVEL = 0.3  # rows whose grating strength is at least this share of the strongest row


class CalibrationError(ValueError):
    """The image does not show a usable micrometer scale; the message says what to change."""


@dataclass(frozen=True)
class Calibration:
    """The measured scale, how sure it is, and the grating evidence behind it."""

    um_per_px: float
    um_per_px_sd: float  # standard uncertainty: line fit and centre-bias allowance
    pitch_px: float
    line_count: int
    angle_deg: float
    contrast: float  # line darkness as a share of the field
    spacing_scatter: float  # rms residual of the line fit as a share of the pitch


def calibrate_from_micrometer(gray: np.ndarray, pitch_mm: float) -> Calibration:
    """Measure µm per pixel from a grey micrometer image whose lines are pitch_mm apart."""
    if not math.isfinite(pitch_mm) or pitch_mm <= 0:
        raise CalibrationError(
            f"--mm must be a finite positive number (got {pitch_mm}): the line spacing in mm"
        )
    angle_deg, rough_pitch_px = _dominant_grating(gray.astype(np.float32))
    upright = _rotate(gray.astype(np.float32), angle_deg)
    profile = _band_profile(upright, rough_pitch_px)
    centres = _line_centres(profile, rough_pitch_px)
    if len(centres) < MIN_LINES:
        raise CalibrationError(
            f"found only {len(centres)} graduation lines (need {MIN_LINES}): not a micrometer "
            "scale, or too little of it; photograph the scale in focus across the view"
        )
    pitch_px, fit_sd_px, scatter = _fit_pitch(centres)
    span_px = float(centres[-1] - centres[0])
    pitch_sd_px = math.hypot(fit_sd_px, pitch_px * CENTRE_BIAS_PX * math.sqrt(2.0) / span_px)
    contrast = _contrast(profile, centres)
    if contrast < MIN_CONTRAST:
        raise CalibrationError(
            f"the lines are faint (contrast {contrast:.0%}, need {MIN_CONTRAST:.0%}): not a "
            "stage micrometer, or out of focus; light the slide from below and focus on the scale"
        )
    um_per_px = pitch_mm * 1000.0 / pitch_px
    return Calibration(um_per_px, um_per_px * pitch_sd_px / pitch_px, pitch_px, len(centres),
                       angle_deg, contrast, scatter)


def _dominant_grating(gray: np.ndarray) -> tuple[float, float]:
    """Direction (deg, of the lines' normal) and pitch (px) from the spectrum's top peak."""
    height, width = gray.shape
    window = np.outer(np.hanning(height), np.hanning(width)).astype(np.float32)
    spectrum = np.abs(np.fft.fftshift(np.fft.fft2((gray - gray.mean()) * window)))
    cy, cx = height // 2, width // 2
    fy_grid, fx_grid = np.ogrid[-cy : height - cy, -cx : width - cx]
    spectrum[np.hypot(fy_grid / height, fx_grid / width) < 1.0 / MAX_PITCH_PX] = 0.0
    spectrum[:cy, :] = 0.0  # the spectrum is symmetric: search one half
    py, px = np.unravel_index(int(np.argmax(spectrum)), spectrum.shape)
    prominence = float(spectrum[py, px]) / max(float(np.median(spectrum[cy:, :])), 1e-9)
    if prominence < MIN_PEAK_PROMINENCE:
        raise CalibrationError(
            f"no line grating (spectral peak only {prominence:.0f}x the background, need "
            f"{MIN_PEAK_PROMINENCE:.0f}x): photograph the micrometer scale in focus"
        )
    fy, fx = (py - cy) / height, (px - cx) / width
    half = spectrum[cy + round((py - cy) / 2), cx + round((px - cx) / 2)]
    if half >= FUNDAMENTAL_SHARE * spectrum[py, px]:  # the peak was the 2nd harmonic
        fy, fx = fy / 2.0, fx / 2.0
    angle_deg = (float(np.degrees(np.arctan2(fy, fx))) + 90.0) % 180.0 - 90.0
    return angle_deg, 1.0 / float(np.hypot(fx, fy))


def _rotate(gray: np.ndarray, angle_deg: float) -> np.ndarray:
    height, width = gray.shape
    matrix = cv2.getRotationMatrix2D((width / 2.0, height / 2.0), angle_deg, 1.0)
    rotated: np.ndarray = cv2.warpAffine(
        gray, matrix, (width, height), flags=cv2.INTER_LINEAR, borderValue=float("nan")
    )
    return rotated


def _band_profile(upright: np.ndarray, pitch_px: float) -> np.ndarray:
    """Column means over the rows where the grating is (its strength at ``pitch_px``)."""
    known = ~np.isnan(upright)
    row_means = np.sum(np.where(known, upright, 0.0), axis=1, keepdims=True) / np.maximum(
        np.count_nonzero(known, axis=1, keepdims=True), 1
    )
    swing = np.where(known, upright - row_means, 0.0)
    wave = np.exp(-2j * np.pi * np.arange(upright.shape[1]) / pitch_px)
    strength = np.abs(swing @ wave)
    band = strength >= BAND_LEVEL * float(strength.max())
    counts = np.count_nonzero(~np.isnan(upright[band]), axis=0)
    sums = np.nansum(upright[band], axis=0, dtype=np.float64)
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


def _contrast(profile: np.ndarray, centres: np.ndarray) -> float:
    """How much darker the lines are than the field between them (0 none, 1 black)."""
    field = float(np.nanpercentile(profile, 90))
    lines = float(np.nanmean(np.interp(centres, np.arange(len(profile)), profile)))
    return (field - lines) / field if field > 0 else 0.0


def _fit_pitch(centres: np.ndarray) -> tuple[float, float, float]:
    """Pitch (px), its standard error (px) and the rms scatter (share of the pitch) of an
    evenly spaced set of line centres; CalibrationError when they are not evenly spaced."""
    spacings = np.diff(centres)
    typical = float(np.median(spacings))
    steps = np.round(spacings / typical)
    if np.any(steps < 1) or float(np.max(np.abs(spacings / typical - steps))) > 0.25:
        raise CalibrationError(
            "the dark lines are not evenly spaced: not a stage micrometer (skin, fabric or print "
            "give irregular lines); photograph the micrometer's scale"
        )
    missing = float(steps.sum()) - len(spacings)
    if missing > MAX_MISSING_SHARE * len(centres):
        raise CalibrationError(
            f"{missing:.0f} of {len(centres) + missing:.0f} lines are missing along the scale: "
            "dust, a scratch or not a micrometer; clean the slide or move to a clear part"
        )
    numbers = np.concatenate([[0.0], np.cumsum(steps)])
    (slope, intercept), cov = np.polyfit(numbers, centres, 1, cov=True)
    scatter = float(np.sqrt(np.mean((centres - (slope * numbers + intercept)) ** 2))) / slope
    if scatter > MAX_SPACING_SCATTER:
        raise CalibrationError(
            f"the line spacing varies by {scatter:.0%} of the pitch (a micrometer's by under "
            f"{MAX_SPACING_SCATTER:.0%}): not a stage micrometer, or a distorted photo"
        )
    return float(slope), float(math.sqrt(cov[0, 0])), scatter
