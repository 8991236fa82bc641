"""Skin texture (kime): furrow detection, furrow centre lines, hills, and their metrics.

Method (on the flattened image of ``preprocess``, at the canonical 20 µm/px):
1. Valley response: a black top-hat (grey closing minus the image) with a disk wider than any
   furrow. It is two-sided: a pixel responds only when it is darker than skin on both sides,
   so illumination gradients, the bright/dark sides of an obliquely lit furrow wall and the
   edges of (already clipped) shine do not read as furrows, unlike one-sided second
   derivatives. The disk (140 µm) also sets the widest furrow the method can see.
2. Hysteresis threshold: strong valley pixels seed the furrows, weaker ones connected to them
   extend them, so faint secondary furrows are kept where they join the network.
3. Hills are the connected regions of non-furrow (at least ``MIN_HILL_AREA_UM2``); every pixel
   is then given to the nearest hill, so the borders between hills are the furrow centre lines
   and each hill's cell includes half of every furrow around it (docs/measurement.md).
4. Centre-line length and direction from those borders, segment by segment (``borders``):
   exact for straight segments at any angle and extended to the junction centres.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from appliance.skin.borders import BorderSegments, CrackMasks, border_segments
from appliance.skin.preprocess import WORK_UM_PER_PX, Prepared

STRONG_VALLEY = 0.06  # depth below the closing, in units of the hill level: a clear furrow
WEAK_VALLEY = 0.01  # a faint furrow, kept where it touches a clear one
TOPHAT_DIAMETER_UM = 140.0  # wider than the widest furrow (~120 µm), narrower than hills
MIN_HILL_AREA_UM2 = 3000.0  # smaller non-furrow islands are noise, not hills


@dataclass(frozen=True)
class Texture:
    """Furrow and hill geometry of one frame (work-scale arrays) and the texture metrics."""

    furrow_mask: np.ndarray  # bool: furrow pixels
    hill_labels: np.ndarray  # uint16 (int32 past 65,535 labels): every pixel's hill cell (1..n)
    centre_lines: np.ndarray  # bool: pixels on a border between two hill cells
    hill_cut: np.ndarray  # bool per label (index 0 unused): hill touches the frame edge
    segments: BorderSegments
    metrics: dict[str, float]


def furrow_mask(response: np.ndarray) -> np.ndarray:
    """Hysteresis threshold of the valley response: weak furrow pixels joined to strong ones."""
    count, labels = label_components(response > WEAK_VALLEY, connectivity=8)
    strong = np.flatnonzero(response > STRONG_VALLEY)
    keep = np.bincount(labels.ravel()[strong], minlength=count) > 0
    keep[0] = False
    mask: np.ndarray = np.take(keep, np.asarray(labels))  # np.take: 2x faster than keep[labels]
    return mask


def label_components(mask: np.ndarray, connectivity: int) -> tuple[int, np.ndarray]:
    """cv2.connectedComponents of a bool mask: uint16 labels when they fit, else int32.

    uint16 labels halve the memory traffic of every later pass over the label image and let
    ``label_areas`` count them with calcHist; OpenCV raises when they would overflow.
    """
    source = mask.view(np.uint8)
    try:
        count, labels = cv2.connectedComponents(source, connectivity=connectivity, ltype=cv2.CV_16U)
    except cv2.error:
        count, labels = cv2.connectedComponents(source, connectivity=connectivity)
    return int(count), labels


def label_areas(labels: np.ndarray, count: int) -> np.ndarray:
    """Pixels per label 0..count-1 (calcHist for uint16 labels: 2x faster than bincount)."""
    if labels.dtype == np.uint16:
        hist = cv2.calcHist([labels], [0], None, [count], [0, count])  # float32, exact counts
        areas: np.ndarray = hist.ravel().astype(np.int64)
        return areas
    return np.bincount(labels.ravel(), minlength=count)


def hill_cells(furrows: np.ndarray, um_per_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Label image of hill cells (nearest-hill partition) and the per-label frame-edge flag."""
    min_area_px = MIN_HILL_AREA_UM2 / um_per_px**2
    count, labels = label_components(~furrows, connectivity=4)
    big = label_areas(labels, count) >= min_area_px
    big[0] = False
    seeds = np.take(big, np.asarray(labels))
    flat_labels = labels.ravel()
    # DIST_LABEL_PIXEL numbers the zero (seed) pixels 1, 2, ... in raster order, the order
    # flatnonzero returns them in: so each number maps straight to its seed pixel's hill
    hill_of_seed_pixel = np.zeros(1 + int(np.count_nonzero(seeds)), dtype=labels.dtype)
    hill_of_seed_pixel[1:] = flat_labels[np.flatnonzero(seeds)]
    _, nearest = cv2.distanceTransformWithLabels(
        (~seeds).view(np.uint8), cv2.DIST_L2, 3, labelType=cv2.DIST_LABEL_PIXEL
    )
    cells: np.ndarray = np.take(hill_of_seed_pixel, np.asarray(nearest))
    touches = np.zeros(count, dtype=bool)
    for edge in (labels[0], labels[-1], labels[:, 0], labels[:, -1]):
        touches[edge] = True
    return cells, touches & big


def furrow_width_um(
    depth: np.ndarray, centre_lines: np.ndarray, length_px: float, um_per_px: float
) -> float:
    """Mean furrow width at half depth: pixels darker than halfway to the local valley floor.

    The floor is the deepest point next to a centre line, spread 3 px around it; only pixels
    that close to a centre line (and with a floor deeper than 0.02) count.
    """
    if length_px <= 0:
        return 0.0
    floor = cv2.dilate(depth, np.ones((3, 3), np.uint8))
    floor_at_line = np.multiply(floor, centre_lines, out=floor)  # floor >= 0: np.where, 7x faster
    local_floor = cv2.dilate(floor_at_line, np.ones((7, 7), np.uint8))
    half_depth = (depth > 0.5 * local_floor) & (local_floor > 0.02)
    return float(np.count_nonzero(half_depth)) / length_px * um_per_px


def tophat_response(flat: np.ndarray) -> np.ndarray:
    """Black top-hat: how much darker a pixel is than the closing that fills narrow valleys."""
    smooth = cv2.GaussianBlur(flat, (0, 0), 0.7)
    size = int(TOPHAT_DIAMETER_UM / WORK_UM_PER_PX) | 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    response: np.ndarray = cv2.morphologyEx(smooth, cv2.MORPH_BLACKHAT, kernel)
    return response


def measure_texture(prepared: Prepared) -> Texture:
    """Furrows, centre lines and hills of a prepared frame, with the texture metrics."""
    um = prepared.um_per_work_px
    furrows = furrow_mask(tophat_response(prepared.flat_work))
    cells, cut = hill_cells(furrows, um)
    masks = CrackMasks.of(cells)
    segments = border_segments(cells, masks=masks)
    lines = masks.line_mask()
    metrics = {
        **_hill_metrics(cells, cut, um, prepared.frame_area_mm2),
        "furrow_density_mm_per_mm2": segments.total_length_px * um / 1000.0
        / prepared.frame_area_mm2,
        "furrow_mean_width_um": furrow_width_um(
            prepared.depth_work, lines, segments.total_length_px, um
        ),
        "furrow_anisotropy": segments.anisotropy(),
    }
    return Texture(furrows, cells, lines, cut, segments, metrics)


def _hill_metrics(
    cells: np.ndarray, cut: np.ndarray, um_per_px: float, area_mm2: float
) -> dict[str, float]:
    """Hill density (edge-cut hills count 1/2) and mean cell area of the hills inside."""
    areas_px = label_areas(cells, len(cut))
    present = areas_px > 0
    present[0] = False
    inside = present & ~cut
    whole = inside & ~_cells_on_border(cells, len(cut))
    mean_px = float(areas_px[whole].mean()) if np.any(whole) else 0.0
    return {
        "hill_density_per_mm2": (np.count_nonzero(inside) + 0.5 * np.count_nonzero(present & cut))
        / area_mm2,
        "hill_mean_area_mm2": mean_px * um_per_px * um_per_px / 1e6,
    }


def _cells_on_border(cells: np.ndarray, count: int) -> np.ndarray:
    on_border = np.zeros(count, dtype=bool)
    for edge in (cells[0], cells[-1], cells[:, 0], cells[:, -1]):
        on_border[edge] = True
    return on_border
