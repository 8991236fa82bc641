"""How much wider than the furrow through it a pit is: its width over its arms' half-width.

The width half of telling a pore on a furrow or at a junction from the junction itself
(docs/measurement.md "Pores", the joint pass; docs/experiments/README.md "widerec", "widthpit").
A junction's dark middle is about as wide as its arms (up to about 1.8 times where a darker
disc is drawn on it); a pore wider than the furrow it lies on sticks out of the furrow's band,
however dark it is against the junctions around it.

Method, on the fine depth (10 µm/px) around each pit:
1. The dark mask: depth at least ``level`` (a share of the frame's furrow floor).
2. Its distance field in a window of ``REACH_UM`` around the pit, continuous in the depth: each
   mask pixel's distance to its nearest pixel off the mask, less where between the two the
   depth crosses ``level`` (linear between that pixel and one pixel towards the mask pixel).
   A binary distance transform steps by a pixel where one pixel leaves the mask; this one
   moves as the depth does, so the reading is continuous in the calibration.
3. The pit's inscribed radius: the largest distance within ``CENTRE_PX`` of its centre.
4. Its arms' half-width: the median of the distance field's local maxima (the ridges of the
   bands crossing it; a band crossed at a slant reads its own half-width too) on a ring
   ``BEYOND_UM`` beyond the inscribed radius, at ``SAMPLES`` angles.
The reading is their ratio; 0 (not read) where the pit is off the mask, where the mask reaches
past the window all round (a pit in a dark patch), where no band crosses the ring or where the
ring leaves the frame (the bands cut by the frame's edge read narrow).
"""

from __future__ import annotations

import cv2
import numpy as np

from appliance.skin.preprocess import FINE_UM_PER_PX

BEYOND_UM = 60.0  # the ring: this far beyond the pit's inscribed radius
REACH_UM = 320.0  # the window read around each pit (half its side)
SAMPLES = 96  # angles read on the ring
CENTRE_PX = 2  # the inscribed radius: the largest distance this near the centre (fine px)
EDGE_PX = 3.0  # the ring is read only where it stays this far inside the frame (fine px)
MIN_BAND_PX = 1.0  # a ridge on the ring under this half-width is no band


def over_arms(depth: np.ndarray, centres: np.ndarray, level: float) -> np.ndarray:
    """Per pit (``centres``: x, y fine px), its inscribed radius in the dark mask
    (``depth >= level``) over the median half-width of the mask's bands crossing a ring
    ``BEYOND_UM`` beyond it; 0 where not read (module docstring)."""
    reach = round(REACH_UM / FINE_UM_PER_PX)
    centres = np.asarray(centres, dtype=np.float64).reshape(-1, 2)
    if not len(centres):
        return np.zeros(0)
    patches, nearest, dark = _windows(depth, np.rint(centres).astype(np.intp), reach, level)
    # the pit's inscribed radius: the field's largest value near its centre (window coords)
    near = np.arange(-CENTRE_PX, CENTRE_PX + 0.25, 0.5)
    dx, dy = (grid.ravel() for grid in np.meshgrid(near, near))
    offset = centres - np.rint(centres) + reach
    rows = np.repeat(np.arange(len(centres)), len(dx))
    inscribed = _distance(patches, nearest, rows, (offset[:, :1] + dx).ravel(),
                          (offset[:, 1:] + dy).ravel(), level=level).reshape(len(centres), -1).max(
        axis=1)
    inscribed[dark] = 0.0  # dark past the window all round: not read
    return _ratio(patches, nearest, inscribed, centres, depth.shape, level=level)


def _windows(depth: np.ndarray, whole: np.ndarray, reach: int,
             level: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each pit's window of the depth (side 2 reach + 1, the frame's edge replicated), each
    window pixel's nearest pixel off the mask (flat index; itself off the mask), and which
    windows lie on the mask all over."""
    side = 2 * reach + 1
    height, width = depth.shape
    patches = np.empty((len(whole), side, side), dtype=np.float32)
    nearest = np.empty((len(whole), side * side), dtype=np.intp)
    dark = np.zeros(len(whole), dtype=bool)
    for row, (x, y) in enumerate(whole):
        x0, y0 = max(x - reach, 0), max(y - reach, 0)
        x1, y1 = min(x + reach + 1, width), min(y + reach + 1, height)
        patch = depth[y0:y1, x0:x1]
        if patch.shape != (side, side):
            patch = np.pad(patch, ((y0 - (y - reach), y + reach + 1 - y1),
                                   (x0 - (x - reach), x + reach + 1 - x1)), mode="edge")
        patches[row] = patch
        mask = np.greater_equal(patches[row], level).view(np.uint8)
        off = np.flatnonzero(mask.ravel() == 0)
        dark[row] = len(off) == 0
        if dark[row] or len(off) == mask.size:
            nearest[row] = np.arange(side * side)
            continue
        _, labels = cv2.distanceTransformWithLabels(mask, cv2.DIST_L2, cv2.DIST_MASK_5,
                                                    labelType=cv2.DIST_LABEL_PIXEL)
        nearest[row] = off[labels.ravel() - 1]  # labels: pixels off the mask, raster order, from 1
    return patches, nearest, dark


def _sample(flat: np.ndarray, rows: np.ndarray, xs: np.ndarray, ys: np.ndarray,
            side: int) -> np.ndarray:
    """Bilinear values of the windows ``rows`` (flattened) at window coords (clamped)."""
    xs = np.clip(xs, 0.0, side - 1.001)
    ys = np.clip(ys, 0.0, side - 1.001)
    x0, y0 = xs.astype(np.intp), ys.astype(np.intp)
    fx, fy = xs - x0, ys - y0
    corner = y0 * side + x0
    result: np.ndarray = (
        (flat[rows, corner] * (1 - fx) + flat[rows, corner + 1] * fx) * (1 - fy)
        + (flat[rows, corner + side] * (1 - fx) + flat[rows, corner + side + 1] * fx) * fy)
    return result


def _distance(patches: np.ndarray, nearest: np.ndarray, rows: np.ndarray, xs: np.ndarray,
              ys: np.ndarray, *, level: float) -> np.ndarray:
    """The continuous distance field (module docstring, step 2) at window coords (xs, ys) of
    the windows ``rows``: from each point to the nearest of the pixels off the mask nearest to
    the four pixels around it, less the share of the way from there at which the depth rises
    through ``level``; 0 off the mask."""
    side = patches.shape[1]
    flat = patches.reshape(len(patches), -1)
    xs = np.clip(xs, 0.0, side - 1.001)
    ys = np.clip(ys, 0.0, side - 1.001)
    corner = ys.astype(np.intp) * side + xs.astype(np.intp)
    candidates = np.stack([nearest[rows, corner + offset] for offset in (0, 1, side, side + 1)])
    gaps = np.hypot(xs - candidates % side, ys - candidates // side)
    pick = np.argmin(gaps, axis=0)
    off = np.take_along_axis(candidates, pick[None], axis=0)[0]
    exact = np.take_along_axis(gaps, pick[None], axis=0)[0]
    bx, by = off % side, off // side
    step = np.maximum(exact, 1e-9)
    beyond = _sample(flat, rows, bx + (xs - bx) / step, by + (ys - by) / step, side)
    at = flat[rows, off]
    crossing = np.clip((level - at) / np.maximum(beyond - at, 1e-9), 0.0, 1.0)
    inside = _sample(flat, rows, xs, ys, side) >= level
    result: np.ndarray = np.where(inside, np.maximum(exact - crossing, 0.0), 0.0)
    return result


def _ratio(patches: np.ndarray, nearest: np.ndarray, inscribed: np.ndarray,
           centres: np.ndarray, shape: tuple[int, ...], *, level: float) -> np.ndarray:
    """The inscribed radius over the median band half-width on each pit's ring (0: not read)."""
    reach = patches.shape[1] // 2
    radius = inscribed + BEYOND_UM / FINE_UM_PER_PX
    height, width = shape
    room = np.minimum(np.minimum(centres[:, 0], centres[:, 1]),
                      np.minimum(width - 1 - centres[:, 0], height - 1 - centres[:, 1]))
    read = np.flatnonzero((inscribed > 0.0) & (radius < reach - 1)
                          & (room >= radius + EDGE_PX))
    result = np.zeros(len(centres))
    if not len(read):
        return result
    angles = np.arange(SAMPLES) * (2.0 * np.pi / SAMPLES)
    offset = centres[read] - np.rint(centres[read]) + reach
    xs = (offset[:, :1] + radius[read, None] * np.cos(angles)).ravel()
    ys = (offset[:, 1:] + radius[read, None] * np.sin(angles)).ravel()
    ring = _distance(patches, nearest, np.repeat(read, SAMPLES), xs, ys, level=level).reshape(
        len(read), SAMPLES)
    peak = ((ring >= np.roll(ring, 1, axis=1)) & (ring > np.roll(ring, -1, axis=1))
            & (ring >= MIN_BAND_PX))
    count = peak.sum(axis=1)
    ordered = np.sort(np.where(peak, ring, np.inf), axis=1)
    low = np.take_along_axis(ordered, np.maximum((count - 1) // 2, 0)[:, None], axis=1)[:, 0]
    high = np.take_along_axis(ordered, np.maximum(count // 2, 0)[:, None], axis=1)[:, 0]
    half_width = np.where(count > 0, (low + high) / 2.0, np.inf)
    result[read] = inscribed[read] / half_width
    return result
