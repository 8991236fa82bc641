"""Pores: dark, roughly round depressions wider than the furrows.

Method (on the flattened work image at 20 µm/px, depth = 1 - relative level):
1. A grey opening of the depth with a disk 1.5x the frame's mean furrow width removes the
   furrows (and the narrow arms of furrows that run into a pore) and keeps blobs at least
   that wide: pores, and the wide centres of some furrow junctions. Only what rises above
   the typical junction depth (95th percentile of the opened depth on furrow pixels) is
   looked at.
2. Each blob's edge is at half depth, halfway between its deepest point (lightly smoothed,
   unopened image) and the mean depth of the skin in a ring around it: the usual edge of a
   soft-edged dark disc. A pore narrower than the opening disk loses its tip in the opening;
   its edge is taken at half the opened depth instead (found, but measured ~10 % large).
   Areas count a one-pixel ring round each blob in part, by a linear ramp of depth over the
   local slope (outside the blob's support the ramp runs to the hill level, depth 0).
3. A blob is a pore when it is at least ``JUNCTION_MARGIN`` times as deep as the junctions
   (pores are deep funnels, junctions only as dark as furrows), round (second-moment axis
   ratio, fill of its moment ellipse) and under ~0.5 mm across. Hairs are long (axis
   ratio), pigment spots shallow and wide (depth, size).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from appliance.skin.preprocess import Prepared, disk

SUPPORT_DEPTH = 0.10  # blobs at least this deep below the hill level are looked at
JUNCTION_MARGIN = 1.7  # pore core depth / junction depth: >= 1.7 for 99 % of synthetic pores
MIN_PORE_DEPTH = 0.45
MIN_AXIS_RATIO = 0.45  # minor / major axis of the moment ellipse
MIN_ELLIPSE_FILL = 0.70  # blob area / area of its moment ellipse
MAX_PORE_DIAMETER_UM = 500.0
OPENING_OVER_FURROW = 1.5  # the opening disk is this much wider than the mean furrow


@dataclass(frozen=True)
class Pores:
    """Detected pores: centres (work px), equivalent diameters (µm) and the metrics."""

    centres_work_px: np.ndarray  # (P, 2) x, y
    diameters_um: np.ndarray  # (P,)
    metrics: dict[str, float]


def opening_diameter_px(furrow_width_um: float, um_per_px: float) -> int:
    """The opening disk (odd px): wider than the furrows, narrower than most pores."""
    diameter_um = float(np.clip(OPENING_OVER_FURROW * furrow_width_um, 70.0, 140.0))
    return max(3, round(diameter_um / um_per_px) | 1)


@dataclass(frozen=True)
class _LabelPixels:
    """The labelled pixels of a label image: flat indices, their labels, the label count."""

    where: np.ndarray
    owner: np.ndarray
    count: int

    @classmethod
    def of(cls, labels: np.ndarray, count: int, mask: np.ndarray | None = None) -> _LabelPixels:
        """From a label image (``mask``: the same pixels as labels > 0, when at hand)."""
        where = np.flatnonzero(labels > 0 if mask is None else mask)
        return cls(where, labels.ravel()[where].astype(np.intp, copy=False), count)


def _blob_moments(pixels: _LabelPixels, width: int) -> dict[str, np.ndarray]:
    rows, cols = np.divmod(pixels.where, width)
    owner, count = pixels.owner, pixels.count
    n = np.maximum(np.bincount(owner, minlength=count).astype(np.float64), 1.0)
    mx = np.bincount(owner, cols, count) / n
    my = np.bincount(owner, rows, count) / n
    cxx = np.bincount(owner, cols * cols, count) / n - mx**2 + 1.0 / 12.0
    cyy = np.bincount(owner, rows * rows, count) / n - my**2 + 1.0 / 12.0
    cxy = np.bincount(owner, cols * rows, count) / n - mx * my
    root = np.sqrt(((cxx - cyy) / 2.0) ** 2 + cxy**2)
    major = np.sqrt(np.maximum((cxx + cyy) / 2.0 + root, 1e-9))
    minor = np.sqrt(np.maximum((cxx + cyy) / 2.0 - root, 1e-9))
    fill = n / (4.0 * np.pi * major * minor)
    return {"x": mx, "y": my, "n": n, "ratio": minor / major, "fill": fill}


def label_maxima(pixels: _LabelPixels, *images: np.ndarray) -> list[np.ndarray]:
    """Per label 1..count-1 the largest value of each image (index 0: 0); one sort for all."""
    results = [np.zeros(pixels.count) for _ in images]
    if pixels.where.size == 0:
        return results
    order = np.argsort(pixels.owner)
    owner, where = pixels.owner[order], pixels.where[order]
    starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
    for result, image in zip(results, images, strict=True):
        result[owner[starts]] = np.maximum.reduceat(image.ravel()[where], starts)
    return results


def label_mean(values: np.ndarray, pixels: _LabelPixels) -> np.ndarray:
    """Per label the mean value (0 where a label has no pixels)."""
    total = np.bincount(pixels.owner, values.ravel()[pixels.where], pixels.count)
    return total / np.maximum(np.bincount(pixels.owner, minlength=pixels.count), 1)


def _small_label_type(count: int) -> type[np.number[Any]]:
    """The smallest type OpenCV dilates that holds labels 0..count-1 exactly (uint8 fastest)."""
    if count <= 256:
        return np.uint8
    return np.uint16 if count <= 65536 else np.float32


def _half_depth_levels(
    support: np.ndarray, pixels: _LabelPixels, smooth: np.ndarray, opened: np.ndarray
) -> np.ndarray:
    """Per blob the level of its edge: half depth between its deepest point and the skin around.

    The skin depth is the mean in a ring 4-7 px out. A pore narrower than the opening disk
    loses its tip in the opening; then the edge is taken at half the opened depth, so the
    pore is still found (and measured a little large).
    """
    count = pixels.count
    level = np.full(count, np.inf)
    if count <= 1:
        return level
    labels = support.astype(_small_label_type(count))
    near = cv2.dilate(labels, disk(3))
    far = cv2.dilate(labels, disk(7))
    far[near > 0] = 0
    surround = label_mean(smooth, _LabelPixels.of(far, count))
    smooth_core, opened_core = label_maxima(pixels, smooth, opened)
    true_half = (smooth_core + surround) / 2.0
    opened_half = (opened_core + surround) / 2.0
    level[1:] = np.where(opened_core > true_half, true_half, opened_half)[1:]
    return level


def junction_depth(opened: np.ndarray, furrows: np.ndarray) -> float:
    """Typical depth of the widest furrow places (junctions) after the opening."""
    values = opened[furrows]
    if values.size == 0:
        return 0.0
    rank = int(0.95 * (values.size - 1))
    return float(np.partition(values, rank)[rank])


def measure_pores(prepared: Prepared, furrows: np.ndarray, furrow_width_um: float) -> Pores:
    """Find pores and measure count, density, mean equivalent diameter and area ratio."""
    um = prepared.um_per_work_px
    smooth = cv2.GaussianBlur(prepared.depth_work, (0, 0), 0.8)
    size = opening_diameter_px(furrow_width_um, um)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    opened = cv2.morphologyEx(smooth, cv2.MORPH_OPEN, kernel)
    junction = junction_depth(opened, furrows)
    above = opened > max(SUPPORT_DEPTH, junction)
    count, support = cv2.connectedComponents(above.view(np.uint8), connectivity=8)
    supported = _LabelPixels.of(support, count, above)
    level = _half_depth_levels(support, supported, smooth, opened)
    # blobs lie inside the support (level is inf outside): compare there only
    inside = supported.where[opened.ravel()[supported.where] > level[supported.owner]]
    region = np.zeros(support.shape, dtype=np.uint8)
    region.ravel()[inside] = 1
    count, blobs = cv2.connectedComponents(region, connectivity=8)
    maps = _DepthMaps(opened, smooth, support, level)
    pores = _select(blobs, _LabelPixels(inside, blobs.ravel()[inside], count), maps, junction, um)
    return _pore_result(pores, support.shape, um)


@dataclass(frozen=True)
class _Blobs:
    x: np.ndarray
    y: np.ndarray
    area_px: np.ndarray


@dataclass(frozen=True)
class _DepthMaps:
    opened: np.ndarray  # depth after the opening that removes furrows
    smooth: np.ndarray  # lightly smoothed depth
    support: np.ndarray  # int32 support blob of each pixel (0: none)
    level: np.ndarray  # per support blob: the half-depth level of its edge


def _soft_area_px(blobs: np.ndarray, count: int, maps: _DepthMaps) -> np.ndarray:
    """Blob areas with edge pixels counted by how far the level crosses them (linear ramp)."""
    grown = cv2.dilate(blobs.astype(_small_label_type(count)), np.ones((3, 3), np.uint8))
    grown[0, :] = grown[-1, :] = 0
    grown[:, 0] = grown[:, -1] = 0
    where = np.flatnonzero(grown > 0)
    owner = grown.ravel()[where].astype(np.intp, copy=False)
    flat = maps.opened.ravel()
    width = maps.opened.shape[1]
    right = flat[where - width + 1] + 2.0 * flat[where + 1] + flat[where + width + 1]
    left = flat[where - width - 1] + 2.0 * flat[where - 1] + flat[where + width - 1]
    below = flat[where + width - 1] + 2.0 * flat[where + width] + flat[where + width + 1]
    above = flat[where - width - 1] + 2.0 * flat[where - width] + flat[where - width + 1]
    gx, gy = (right - left) * 0.125, (below - above) * 0.125  # Sobel, at these pixels only
    slope = np.maximum(np.hypot(gx, gy), 1e-3)
    at_level = maps.level[maps.support.ravel()[where]]
    at_level = np.where(np.isfinite(at_level), at_level, 0.0)
    excess = (flat[where] - at_level) / slope
    return np.bincount(owner, np.clip(0.5 + excess, 0.0, 1.0), count)


def _select(
    blobs: np.ndarray, pixels: _LabelPixels, maps: _DepthMaps, junction: float, um_per_px: float
) -> _Blobs:
    """Keep the blobs that are deep, round and pore-sized."""
    count = pixels.count
    if count <= 1:
        empty = np.zeros(0)
        return _Blobs(empty, empty, empty)
    shape = _blob_moments(pixels, blobs.shape[1])
    area_px = _soft_area_px(blobs, count, maps)
    (core,) = label_maxima(pixels, maps.smooth)
    diameter_um = 2.0 * np.sqrt(area_px / np.pi) * um_per_px
    min_depth = max(MIN_PORE_DEPTH, JUNCTION_MARGIN * junction)
    keep = (
        (core >= min_depth)
        & (shape["ratio"] >= MIN_AXIS_RATIO)
        & (shape["fill"] >= MIN_ELLIPSE_FILL)
        & (diameter_um <= MAX_PORE_DIAMETER_UM)
        & (shape["n"] >= 3)
    )
    keep[0] = False
    return _Blobs(shape["x"][keep], shape["y"][keep], area_px[keep])


def _pore_result(blobs: _Blobs, shape: tuple[int, int], um_per_px: float) -> Pores:
    frame_mm2 = shape[0] * shape[1] * um_per_px * um_per_px / 1e6
    diameters_um = 2.0 * np.sqrt(blobs.area_px / np.pi) * um_per_px
    count = len(diameters_um)
    metrics = {
        "pore_count": float(count),
        "pore_density_per_cm2": count / (frame_mm2 / 100.0),
        "pore_mean_diameter_um": float(diameters_um.mean()) if count else 0.0,
        "pore_area_ratio": float(min(blobs.area_px.sum() / (shape[0] * shape[1]), 1.0)),
    }
    return Pores(np.stack([blobs.x, blobs.y], axis=1), diameters_um, metrics)
