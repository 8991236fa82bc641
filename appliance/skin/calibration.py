"""Spatial calibration: micrometres per pixel from a photo of a stage micrometer.

A stage micrometer shows parallel graduation lines a known distance apart, dark on a bright
field (lit from below) or bright on a dark one (lit from above). The method:

1. Direction and rough pitch of the grating from the strongest peak of the image spectrum
   above 1/64 cycles per px (a short scale's outline or a slow shading is no grating), halved
   when it was the grating's 2nd harmonic.
2. Turn the image so the lines stand upright.
3. Keep the band of rows where the grating is (the rows whose profile swings at the grating's
   pitch): a scale 100 px tall in a 960 px frame is averaged over its own rows only.
4. Locate every line centre in the band's column profile to a fraction of a pixel (where the
   dark lines fail the tests below, the profile mirrored within its range, for bright lines).
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
from typing import NamedTuple

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
SPECTRUM_BLOCK = 256  # rows, then columns, a spectrum pass takes at a time (bounds its scratch)
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
    grey = gray.astype(np.float32)
    angle_deg, rough_pitch_px = _dominant_grating(grey)
    upright = _rotate(grey, angle_deg)
    del grey
    profile = _band_profile(upright, rough_pitch_px)
    try:
        lines = _dark_lines(profile, rough_pitch_px)
    except CalibrationError as dark_refusal:
        lines = _bright_lines(profile, rough_pitch_px, dark_refusal)
    um_per_px = pitch_mm * 1000.0 / lines.pitch_px
    return Calibration(um_per_px, um_per_px * lines.pitch_sd_px / lines.pitch_px,
                       lines.pitch_px, lines.line_count, angle_deg, lines.contrast, lines.scatter)


def _dominant_grating(gray: np.ndarray) -> tuple[float, float]:
    """Direction (deg, of the lines' normal) and pitch (px) from the spectrum's top peak.

    The spectrum of a real image is symmetric, so only its half with non-negative horizontal
    frequencies is computed, in single precision and in blocks (``_windowed_half_spectrum``).
    """
    height, width = gray.shape
    transform = _windowed_half_spectrum(gray)
    spectrum = np.abs(transform)
    del transform
    spectrum = np.fft.fftshift(spectrum, axes=0)  # rows: vertical frequency, zero at cy
    cy = height // 2
    _clear_low_frequencies(spectrum, cy, height, width)
    py, px = np.unravel_index(int(np.argmax(spectrum)), spectrum.shape)
    prominence = float(spectrum[py, px]) / max(float(np.median(spectrum)), 1e-9)
    if prominence < MIN_PEAK_PROMINENCE:
        raise CalibrationError(
            f"no line grating (spectral peak only {prominence:.0f}x the background, need "
            f"{MIN_PEAK_PROMINENCE:.0f}x): photograph the micrometer scale in focus"
        )
    fy, fx = (py - cy) / height, px / width
    half = spectrum[cy + round((py - cy) / 2), round(px / 2)]
    if half >= FUNDAMENTAL_SHARE * spectrum[py, px]:  # the peak was the 2nd harmonic
        fy, fx = fy / 2.0, fx / 2.0
    angle_deg = (float(np.degrees(np.arctan2(fy, fx))) + 90.0) % 180.0 - 90.0
    return angle_deg, 1.0 / float(np.hypot(fx, fy))


def _windowed_half_spectrum(gray: np.ndarray) -> np.ndarray:
    """``np.fft.rfft2`` of the float32 image less its mean, under a Hann window, as complex64.

    Computed in blocks of rows (windowed as they go), then of columns, so that nothing
    image-sized but the result is allocated: numpy's own passes over a whole 48 Mpx photo take
    0.5 GB of scratch each.
    """
    height, width = gray.shape
    mean = np.float32(gray.mean())
    down = np.hanning(height).astype(np.float32)[:, None]
    across = np.hanning(width).astype(np.float32)
    spectrum = np.empty((height, width // 2 + 1), dtype=np.complex64)
    for top in range(0, height, SPECTRUM_BLOCK):
        rows = slice(top, top + SPECTRUM_BLOCK)
        spectrum[rows] = np.fft.rfft((gray[rows] - mean) * down[rows] * across, axis=1)
    for left in range(0, spectrum.shape[1], SPECTRUM_BLOCK):
        block = spectrum[:, left : left + SPECTRUM_BLOCK]
        block[...] = np.fft.fft(block, axis=0)
    return spectrum


def _clear_low_frequencies(spectrum: np.ndarray, cy: int, height: int, width: int) -> None:
    """Zero the frequencies under 1 / MAX_PITCH_PX cycles per px (in place): outlines and
    shading, not a grating. Only the small box around zero frequency is looked at."""
    rows = min(cy, int(height / MAX_PITCH_PX) + 1)
    cols = min(spectrum.shape[1], int(width / MAX_PITCH_PX) + 2)
    fy = np.arange(cy - rows, min(height, cy + rows + 1))
    fx = np.arange(cols)
    box = np.hypot(((fy - cy) / height)[:, None], (fx / width)[None, :]) < 1.0 / MAX_PITCH_PX
    spectrum[fy[0] : fy[-1] + 1, :cols][box] = 0.0


def _rotate(gray: np.ndarray, angle_deg: float) -> np.ndarray:
    height, width = gray.shape
    matrix = cv2.getRotationMatrix2D((width / 2.0, height / 2.0), angle_deg, 1.0)
    rotated: np.ndarray = cv2.warpAffine(
        gray, matrix, (width, height), flags=cv2.INTER_LINEAR, borderValue=float("nan")
    )
    return rotated


def _band_profile(upright: np.ndarray, pitch_px: float) -> np.ndarray:
    """Column means over the rows where the grating is (its strength at ``pitch_px``).

    Outside the turned photo ``upright`` is NaN. The strength is the row's swing around its
    mean projected on a cosine and a sine of the pitch, in single precision (a complex
    double-precision product would copy a 48 Mpx photo at 16 bytes a pixel).
    """
    known = ~np.isnan(upright)
    swing = np.where(known, upright, np.float32(0.0))
    counts_per_row = np.maximum(np.count_nonzero(known, axis=1), 1)
    row_means = (swing.sum(axis=1, dtype=np.float64) / counts_per_row).astype(np.float32)
    swing -= row_means[:, None]
    swing[~known] = 0.0
    phase = 2.0 * np.pi * np.arange(upright.shape[1]) / pitch_px
    strength = np.hypot(swing @ np.cos(phase).astype(np.float32),
                        swing @ np.sin(phase).astype(np.float32))
    del swing
    band = np.flatnonzero(strength >= BAND_LEVEL * float(strength.max()))
    counts = np.count_nonzero(known[band], axis=0)
    del known
    sums = np.zeros(upright.shape[1])
    for row in band:  # the band's rows one at a time: no copy of the band
        sums += np.nan_to_num(upright[row], nan=0.0)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


class _Lines(NamedTuple):
    """A grating's lines as read from the band's profile."""

    pitch_px: float
    pitch_sd_px: float  # standard uncertainty: line fit and centre-bias allowance
    line_count: int
    contrast: float
    scatter: float


def _dark_lines(profile: np.ndarray, pitch_px: float) -> _Lines:
    """The dark lines of ``profile``; CalibrationError naming the test they fail (too few,
    uneven, lines missing, faint)."""
    centres = _line_centres(profile, pitch_px)
    if len(centres) < MIN_LINES:
        raise CalibrationError(
            f"found only {len(centres)} graduation lines (need {MIN_LINES}): not a micrometer "
            "scale, or too little of it; photograph the scale in focus across the view"
        )
    pitch, fit_sd_px, scatter = _fit_pitch(centres)
    span_px = float(centres[-1] - centres[0])
    pitch_sd_px = math.hypot(fit_sd_px, pitch * CENTRE_BIAS_PX * math.sqrt(2.0) / span_px)
    contrast = _contrast(profile, centres)
    if contrast < MIN_CONTRAST:
        raise CalibrationError(
            f"the lines are faint (contrast {contrast:.0%}, need {MIN_CONTRAST:.0%}): not a "
            "stage micrometer, or out of focus; light the slide from below and focus on the scale"
        )
    return _Lines(pitch, pitch_sd_px, len(centres), contrast, scatter)


def _bright_lines(profile: np.ndarray, pitch_px: float, dark_refusal: CalibrationError) -> _Lines:
    """The bright lines of ``profile``, read as the dark lines of it mirrored within its range:
    a scale lit from above (a USB microscope's own ring light on a chrome-on-glass micrometer)
    shows bright lines on a dark field. Taken only where they pass every test; else the dark
    lines' refusal stands, as said for a scale lit from below."""
    mirrored = float(np.nanmax(profile)) + float(np.nanmin(profile)) - profile
    try:
        return _dark_lines(mirrored, pitch_px)
    except CalibrationError:
        raise dark_refusal from None


def _line_centres(profile: np.ndarray, pitch_px: float) -> np.ndarray:
    """Sub-pixel centres of the dark lines: darkness-weighted centroids of each dip."""
    valid = ~np.isnan(profile)
    darkness = np.where(valid, np.nanmax(profile) - profile, 0.0)
    on_scale = valid & _along_the_scale(darkness, pitch_px)
    level = 0.5 * (np.percentile(darkness[on_scale], 95) + np.percentile(darkness[on_scale], 5))
    above = darkness > level
    edges = np.flatnonzero(np.diff(above.astype(np.int8)))
    centres = []
    for start, stop in zip(edges[:-1] + 1, edges[1:] + 1, strict=True):
        if not above[start] or stop - start > 0.6 * pitch_px:
            continue
        weights = darkness[start:stop] - level
        centres.append(float(np.sum(np.arange(start, stop) * weights) / np.sum(weights)))
    return np.asarray(centres)


def _along_the_scale(darkness: np.ndarray, pitch_px: float) -> np.ndarray:
    """The columns from the first to the last where the profile swings at least half as much
    within two pitches as it does anywhere: a scale of 8 lines spans 80 px of a 1280 px frame,
    and the level between its lines and the field is read there, not over the field's noise
    beside it (where the lines were 2 % of the columns and the level fell into the noise)."""
    window = max(round(2 * pitch_px), 3)
    if darkness.size <= window:
        return np.ones(darkness.size, bool)
    windows = np.lib.stride_tricks.sliding_window_view(darkness, window)
    swing = windows.max(axis=1) - windows.min(axis=1)
    strong = np.flatnonzero(swing >= 0.5 * float(swing.max()))
    inside = np.zeros(darkness.size, bool)
    inside[strong[0]:strong[-1] + window] = True
    return inside


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
