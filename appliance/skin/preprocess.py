"""Shared preprocessing for the texture and pore measurements.

Texture is measured on a 2x area-downscaled grey image (10 µm/px frames become 20 µm/px;
the narrowest furrows, ~25 µm, are still more than one pixel wide there) and the illumination
is flattened by dividing by the hill-level background: a grey closing fills the furrows and
pores, and a heavy blur of a further 8x smaller copy of it follows vignetting, tilt and
lamp fall-off without following the texture itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

WORK_SCALE = 2  # texture works on a 2x smaller image
BACKGROUND_SIGMA_UM = 600.0  # illumination varies over millimetres, hills over ~0.3 mm
BACKGROUND_CLOSING_UM = 160.0  # wider than furrows and most pores: the closing sees hill tops
SHINE_CLIP = 1.08  # relative level above the hill background treated as specular shine


@dataclass(frozen=True)
class Prepared:
    """The working images of one frame: grey (half size) and its flattened relative level."""

    rgb_half: np.ndarray  # uint8 RGB, half size
    gray_half: np.ndarray  # float32, 0..255
    flat_half: np.ndarray  # float32, 1.0 = hill level, lower = darker (furrows, pores)
    um_per_px_half: float
    shine_fraction: float
    depth_half: np.ndarray  # float32, 1 - flat_half clipped at 0: how far below the hill level


def disk(diameter_px: float) -> np.ndarray:
    """An elliptical (disk) structuring element at least 3 px across, odd size."""
    size = max(3, round(diameter_px) | 1)
    kernel: np.ndarray = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    return kernel


def prepare(rgb: np.ndarray, um_per_px: float) -> Prepared:
    """Downscale to half size, convert to grey and flatten the illumination."""
    height, width = rgb.shape[:2]
    half = cv2.resize(
        rgb, (width // WORK_SCALE, height // WORK_SCALE), interpolation=cv2.INTER_AREA
    )
    gray_u8 = cv2.cvtColor(half, cv2.COLOR_RGB2GRAY)
    um_half = um_per_px * WORK_SCALE
    background = hill_background(gray_u8, um_half)
    gray = gray_u8.astype(np.float32)
    flat = np.divide(gray, background, out=background)
    shine_fraction = float(np.count_nonzero(flat > SHINE_CLIP)) / flat.size
    # cv2.threshold in place: same values as np.minimum / np.maximum, 2x faster
    cv2.threshold(flat, SHINE_CLIP, 0.0, cv2.THRESH_TRUNC, dst=flat)
    depth = np.subtract(np.float32(1.0), flat)
    cv2.threshold(depth, 0.0, 0.0, cv2.THRESH_TOZERO, dst=depth)
    return Prepared(half, gray, flat, um_half, shine_fraction, depth)


def hill_background(gray: np.ndarray, um_per_px: float) -> np.ndarray:
    """The slowly varying level of the hill tops (furrows and pores closed, then blurred).

    The closing runs on the uint8 grey image (4x faster than float32, same values); the
    average that follows is taken in float32.
    """
    closing = cv2.morphologyEx(gray, cv2.MORPH_CLOSE, disk(int(BACKGROUND_CLOSING_UM / um_per_px)))
    closed = closing.astype(np.float32)
    small = cv2.resize(
        closed, (gray.shape[1] // 8, gray.shape[0] // 8), interpolation=cv2.INTER_AREA
    )
    sigma_small_px = BACKGROUND_SIGMA_UM / (um_per_px * 8)
    blurred = cv2.GaussianBlur(small, (0, 0), sigma_small_px, borderType=cv2.BORDER_REFLECT)
    background = cv2.resize(blurred, (gray.shape[1], gray.shape[0]), interpolation=cv2.INTER_LINEAR)
    result: np.ndarray = np.maximum(background, 1.0, out=background)
    return result
