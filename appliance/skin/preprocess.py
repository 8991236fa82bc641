"""Shared preprocessing for the texture and pore measurements: one canonical scale.

1. Resample to ``WORK_UM_PER_PX`` (20 µm/px) by area averaging, whatever the frame's calibrated
   scale: a 10 µm/px frame is halved, a 7 µm/px one shrunk to 0.35x, a 13 µm/px one to 0.65x.
   From here on every kernel, area limit and threshold is a fixed number of work pixels, so no
   feature can step when the calibration moves a little (docs/measurement.md "Scale"); lengths
   and areas are converted back to µm with the exact work scale of this frame. The narrowest
   furrows (~25 µm) are still more than one work pixel wide.
2. Grey level, and illumination flattened by dividing by the hill-level background: a grey
   closing fills the furrows and pores, and a heavy blur of a further 8x smaller copy of it
   follows vignetting, tilt and lamp fall-off without following the texture itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from appliance.skin.scale_range import MAX_UM_PER_PX, MIN_UM_PER_PX

WORK_UM_PER_PX = 20.0  # the canonical scale every measurement runs at
FINE_UM_PER_PX = 10.0  # the pores' profiles are read at twice that resolution
BACKGROUND_SIGMA_UM = 600.0  # illumination varies over millimetres, hills over ~0.3 mm
BACKGROUND_CLOSING_UM = 160.0  # wider than furrows and most pores: the closing sees hill tops
SHINE_CLIP = 1.08  # relative level above the hill background treated as specular shine


@dataclass(frozen=True)
class Prepared:
    """The working images of one frame at the canonical scale, and that scale exactly."""

    rgb_work: np.ndarray  # uint8 RGB at ~WORK_UM_PER_PX
    flat_work: np.ndarray  # float32, 1.0 = hill level, lower = darker (furrows, pores)
    um_per_work_px: float  # exact scale of the work images (close to WORK_UM_PER_PX)
    frame_px_per_work_px: float  # frame pixels per work pixel (for drawing on the frame)
    frame_area_mm2: float  # the whole frame's area at its calibrated scale
    depth_work: np.ndarray  # float32, 1 - flat_work clipped at 0: how far below the hill level
    depth_fine: np.ndarray  # the same depth at ~FINE_UM_PER_PX (small pores are 5 px across)
    um_per_fine_px: float  # exact scale of depth_fine
    # sigma (fine px) of the 5 x 5 Gaussian depth_fine was smoothed by (``prepare``), 0: none
    fine_smoothed_px: float = 0.0


def disk(diameter_px: float) -> np.ndarray:
    """An elliptical (disk) structuring element at least 3 px across, odd size."""
    size = max(3, round(diameter_px) | 1)
    kernel: np.ndarray = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    return kernel


def on_grid(points_px: np.ndarray, scale: float) -> np.ndarray:
    """Pixel positions (x, y; pixel centres at integers) on a grid ``scale`` times as fine:
    the pixels' edges, not their centres, line up between the two."""
    moved: np.ndarray = (points_px + 0.5) * scale - 0.5
    return moved


def work_size(width_px: int, height_px: int, um_per_px: float) -> tuple[int, int]:
    """The frame's size in work pixels (at least 16 x 16)."""
    factor = um_per_px / WORK_UM_PER_PX
    return max(16, round(width_px * factor)), max(16, round(height_px * factor))


def prepare(rgb: np.ndarray, um_per_px: float, fine_smooth_px: float = 0.0) -> Prepared:
    """Resample to the canonical scale, convert to grey and flatten the illumination; with
    ``fine_smooth_px``, the fine depth smoothed by a 5 x 5 Gaussian of that sigma, in place (for
    a caller that reads only the smoothed one: one large image less to write and hold)."""
    if not MIN_UM_PER_PX <= um_per_px <= MAX_UM_PER_PX:
        raise ValueError(f"um_per_px must be within {MIN_UM_PER_PX:g}..{MAX_UM_PER_PX:g} µm per "
                         f"pixel, got {um_per_px}")
    height, width = rgb.shape[:2]
    size = work_size(width, height, um_per_px)
    shrink = size[0] < width
    work = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    gray_u8 = cv2.cvtColor(work, cv2.COLOR_RGB2GRAY)
    background = hill_background(gray_u8)
    fine = work_size(width, height, um_per_px * WORK_UM_PER_PX / FINE_UM_PER_PX)
    depth_fine = _fine_depth(rgb, background, fine)
    if fine_smooth_px:
        cv2.GaussianBlur(depth_fine, (5, 5), fine_smooth_px, dst=depth_fine)
    # as float32 / float32, one pass, over the background (read last by the fine depth)
    flat = cv2.divide(gray_u8, background, dst=background, dtype=cv2.CV_32F)
    depth = _depth(flat)
    area_mm2 = width * height * um_per_px * um_per_px / 1e6
    um_work = um_per_px * width / size[0]
    return Prepared(work, flat, um_work, width / size[0], area_mm2, depth, depth_fine,
                    um_per_px * width / fine[0], fine_smooth_px)


def _resampled(gray: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``gray`` at ``size`` (width, height): area average to shrink, bilinear to enlarge, and
    ``gray`` itself when it has that size already (a 10 µm/px frame is its own fine image)."""
    if size == (gray.shape[1], gray.shape[0]):
        return gray
    shrink = size[0] < gray.shape[1]
    resized: np.ndarray = cv2.resize(
        gray, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return resized


def _fine_depth(rgb: np.ndarray, background: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Depth at the fine scale: 1 - grey / hill background, never below 0.

    Shine is not clipped first: it would not change a depth clipped at 0. The division writes
    over the enlarged background, so the fine scale costs one large buffer, not two.
    """
    gray_fine = _resampled(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), size)
    depth: np.ndarray = cv2.resize(background, size, interpolation=cv2.INTER_LINEAR)
    cv2.divide(gray_fine, depth, dst=depth, dtype=cv2.CV_32F)
    np.subtract(np.float32(1.0), depth, out=depth)
    cv2.threshold(depth, 0.0, 0.0, cv2.THRESH_TOZERO, dst=depth)
    return depth


def _depth(flat: np.ndarray) -> np.ndarray:
    """1 - the flattened level, shine clipped, never below 0 (``flat`` is clipped in place)."""
    # cv2.threshold in place: same values as np.minimum / np.maximum, 2x faster
    cv2.threshold(flat, SHINE_CLIP, 0.0, cv2.THRESH_TRUNC, dst=flat)
    depth: np.ndarray = np.subtract(np.float32(1.0), flat)
    cv2.threshold(depth, 0.0, 0.0, cv2.THRESH_TOZERO, dst=depth)
    return depth


def hill_background(gray: np.ndarray) -> np.ndarray:
    """The slowly varying level of the hill tops (furrows and pores closed, then blurred).

    The closing runs on the uint8 grey image (4x faster than float32, same values); the
    average that follows is taken in float32.
    """
    closing = cv2.morphologyEx(gray, cv2.MORPH_CLOSE, disk(BACKGROUND_CLOSING_UM / WORK_UM_PER_PX))
    closed = closing.astype(np.float32)
    small = cv2.resize(
        closed, (gray.shape[1] // 8, gray.shape[0] // 8), interpolation=cv2.INTER_AREA
    )
    sigma_small_px = BACKGROUND_SIGMA_UM / (WORK_UM_PER_PX * 8)
    blurred = cv2.GaussianBlur(small, (0, 0), sigma_small_px, borderType=cv2.BORDER_REFLECT)
    # enlarged over the closing (read by then)
    background = cv2.resize(blurred, (gray.shape[1], gray.shape[0]), dst=closed,
                            interpolation=cv2.INTER_LINEAR)
    # never divide by 0; OpenCV takes the scalar (its type stubs list arrays only)
    result: np.ndarray = cv2.max(background, 1.0, dst=background)  # type: ignore[call-overload]
    return result
