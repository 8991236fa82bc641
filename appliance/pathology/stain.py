"""Macenko stain normalisation (Macenko et al., ISBI 2009), as Kather 2019 applies it to tiles.

Optical density OD = -ln((I + 1) / I0). Transparent pixels (any OD channel below beta) are
dropped; the plane of the two largest eigenvectors of the OD covariance holds both stains; the
robust extremes (alpha and 100-alpha percentiles) of the angle in that plane are the H and E
vectors. Concentrations are scaled so their 99th percentile matches the reference, and the image
is rebuilt with the reference stain vectors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LIGHT_INTENSITY = 240.0
TRANSPARENT_OD = 0.15
ANGLE_PERCENTILE = 1.0
MIN_STAINED_PIXELS = 500
MAX_FIT_PIXELS = 200_000
CHANNEL_NAMES = ("red", "green", "blue")
# Reference H (column 0) and E (column 1) OD vectors and 99th-percentile concentrations,
# the values most Macenko implementations ship (from Macenko's reference slide).
REFERENCE_STAIN_OD = np.array([[0.5626, 0.2159], [0.7201, 0.8012], [0.4062, 0.5581]])
REFERENCE_MAX_CONCENTRATION = np.array([1.9705, 1.0308])


class StainError(ValueError):
    """The image has too little stained tissue to estimate its stain vectors."""


@dataclass(frozen=True)
class StainModel:
    """Stain vectors (3x2, columns H and E) and 99th-percentile concentrations of one image."""

    stain_od: np.ndarray
    max_concentration: np.ndarray

    def to_metadata(self) -> dict[str, list[float]]:
        """Plain lists for model metadata and reports."""
        return {
            "stain_od": [float(v) for v in self.stain_od.ravel()],
            "max_concentration": [float(v) for v in self.max_concentration],
        }


REFERENCE = StainModel(REFERENCE_STAIN_OD, REFERENCE_MAX_CONCENTRATION)


def optical_density(rgb: np.ndarray) -> np.ndarray:
    """Per-pixel optical density (float32, same shape) of an RGB uint8 image."""
    intensity = rgb.astype(np.float32) + 1.0
    od: np.ndarray = -np.log(np.minimum(intensity, LIGHT_INTENSITY) / LIGHT_INTENSITY)
    return od


def fit_stain_model(rgb: np.ndarray, seed: int = 0) -> StainModel:
    """Estimate H and E vectors and concentration scale of an RGB image (or pixel list Nx3)."""
    od = optical_density(rgb).reshape(-1, 3)
    stained = od[(od > TRANSPARENT_OD).all(axis=1)]
    if len(stained) < MIN_STAINED_PIXELS:
        raise StainError(_too_few_stained(od, len(stained)))
    if len(stained) > MAX_FIT_PIXELS:
        rows = np.random.default_rng(seed).choice(len(stained), MAX_FIT_PIXELS, replace=False)
        stained = stained[rows]
    stain_od = _stain_vectors(stained.astype(np.float64))
    concentration = _concentrations(stained, stain_od)
    max_concentration = np.percentile(concentration, 99, axis=1)
    return StainModel(stain_od, np.maximum(max_concentration, 1e-6))


def _too_few_stained(od: np.ndarray, stained: int) -> str:
    """Why too few pixels are stained: too little colour, or colour that one channel passes
    (a tile whose blue is clipped at 255 is vivid purple, not pale, yet no pixel of it
    absorbs blue light, which every mix of hematoxylin and eosin does)."""
    found = f"only {stained} stained pixels (need {MIN_STAINED_PIXELS})"
    coloured = od[(od > TRANSPARENT_OD).any(axis=1)]
    if len(coloured) < MIN_STAINED_PIXELS:
        return f"{found}; the image is background or too pale to normalise"
    passed = (coloured <= TRANSPARENT_OD).mean(axis=0)
    channel = int(np.argmax(passed))
    return (f"{found}: {passed[channel]:.0%} of its {len(coloured)} coloured pixels pass "
            f"{CHANNEL_NAMES[channel]} light through (optical density under {TRANSPARENT_OD}), "
            "which H&E stains absorb; its colours are clipped or not those of H&E")


def _stain_vectors(stained_od: np.ndarray) -> np.ndarray:
    """The two extreme stain directions in the plane of the two main OD eigenvectors."""
    _, eigenvectors = np.linalg.eigh(np.cov(stained_od.T))
    plane = eigenvectors[:, 1:3]
    plane = plane * np.where(plane.sum(axis=0) < 0, -1.0, 1.0)
    projected = stained_od @ plane
    angle = np.arctan2(projected[:, 1], projected[:, 0])
    low, high = np.percentile(angle, [ANGLE_PERCENTILE, 100 - ANGLE_PERCENTILE])
    v_low = plane @ np.array([np.cos(low), np.sin(low)])
    v_high = plane @ np.array([np.cos(high), np.sin(high)])
    # Hematoxylin absorbs red most: the vector with the larger red component is H.
    pair = (v_low, v_high) if v_low[0] > v_high[0] else (v_high, v_low)
    matrix = np.abs(np.stack(pair, axis=1))
    normed: np.ndarray = matrix / np.linalg.norm(matrix, axis=0, keepdims=True)
    return normed


def _concentrations(od_pixels: np.ndarray, stain_od: np.ndarray) -> np.ndarray:
    """Least-squares H and E concentrations (2xN) of OD pixels (Nx3)."""
    result: np.ndarray = np.linalg.pinv(stain_od) @ od_pixels.T
    return result


def stain_concentrations(rgb: np.ndarray, model: StainModel) -> np.ndarray:
    """H and E concentration maps (HxWx2, float32) of an RGB image under a stain model."""
    od = optical_density(rgb).reshape(-1, 3)
    concentration = _concentrations(od, model.stain_od).T.astype(np.float32)
    return concentration.reshape(*rgb.shape[:2], 2)


def normalize_stain(
    rgb: np.ndarray, source: StainModel, target: StainModel = REFERENCE
) -> np.ndarray:
    """Rebuild an RGB image (HxWx3 or NxHxWx3) with the target's stain vectors and scale.

    The rebuilt optical density is linear in the pixel's (concentrations under the source,
    rescaled, then the target's stain vectors: one 3x3 matrix M), so each output channel is
    ``LIGHT_INTENSITY * exp(-M[k] . od)``, a product of three 256-entry tables indexed by the
    pixel's levels: the same image as the per-pixel logarithm, product and exponential, in
    half the time."""
    scale = target.max_concentration / source.max_concentration
    matrix = target.stain_od @ (scale[:, None] * np.linalg.pinv(source.stain_od))
    levels = optical_density(np.arange(256, dtype=np.uint8)).astype(np.float64)
    tables = np.exp(-matrix[:, :, None] * levels[None, None, :])  # output x input x level
    flat = rgb.reshape(-1, 3)
    red, green, blue = flat[:, 0], flat[:, 1], flat[:, 2]
    result = np.empty(flat.shape, np.uint8)
    for channel in range(3):
        value = tables[channel, 0].take(red) * tables[channel, 1].take(green)
        value *= tables[channel, 2].take(blue)
        value *= LIGHT_INTENSITY
        np.clip(value, 0, 255, out=value)
        result[:, channel] = value  # truncated, as astype(np.uint8) did
    return result.reshape(rgb.shape)
