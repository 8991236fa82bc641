"""Dead-end furrows ("spurs"): furrow centre line that is no border between two hill cells.

A furrow that fades out before its next junction leaves the two hills on its sides one hill
region around its end, so the hill cells never draw it as a border; its visible part still
counts as furrow length (docs/measurement.md: the total centre-line length). Skin has such
dead ends of its own too. Spurs add length only, never cells.

Method (on the valley response of ``texture`` and the borders of its hill cells, at the
canonical 20 µm/px):
1. Clearance: the pixels more than ``CLEARANCE_PX`` from every cell border and from the frame
   edge. A wedge of furrow between two furrows meeting at an acute angle lies within a furrow
   half-width of both their borders (the widest furrow, 120 µm, is 6 px), so it stays out.
2. Centre line: the pixels of the clearance, not under a hair, whose valley response is above
   ``hills.FURROW_LEVEL`` and no lower than either neighbour across the furrow (the pixel
   direction nearest to the response's strongest downward curvature, from its Hessian).
3. Spurs: 8-connected pieces of that centre line that reach back to the clearance's edge
   (attached to the border network, where a dead end starts; a speck on a hill top floats),
   of at least ``MIN_SPUR_PX`` pixels, elongated (principal variances at least
   ``MIN_ELONGATION`` apart: a pore or a blot is round) and with a mean response above
   ``hills.STRONG_VALLEY`` (a clear furrow, not the noise of a hill top).
4. Length: each spur's principal extent (sqrt(12 variance + 1) px: a straight run of n pixels
   reads n at any angle) plus what its root hides in the band: the furrow runs on along the
   spur's axis to the border it leaves, so from the root outwards to the first pixel next to
   a border (at most ``MAX_ROOT_CLEARANCES`` clearances, else one clearance). A spur leaving
   a border square reads the clearance; one leaving a junction between two borders at a
   slant, more.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from appliance.skin.borders import rows_and_columns
from appliance.skin.hills import FURROW_LEVEL, STRONG_VALLEY, label_components
from appliance.skin.preprocess import disk

CLEARANCE_PX = 3.0  # 60 µm: half the widest furrow
MIN_SPUR_PX = 3
MIN_ELONGATION = 3.0  # ratio of the principal variances
MAX_ROOT_CLEARANCES = 3.0  # a root hidden further along its axis than this reads the clearance


@dataclass(frozen=True)
class Spurs:
    """The spurs' centre-line pixels, and each spur's length (work px) and direction."""

    mask: np.ndarray  # bool
    lengths_px: np.ndarray  # (n,) float
    angles_rad: np.ndarray  # (n,) float, direction of the spur's principal axis, 0..π

    @property
    def length_px(self) -> float:
        """Total length of the spurs in work pixels."""
        return float(self.lengths_px.sum())


def dead_end_furrows(response: np.ndarray, lines: np.ndarray, hair: np.ndarray) -> Spurs:
    """The spurs of a frame: visible furrow centre line off the cell borders (steps 1-4)."""
    border = lines.astype(np.uint8)
    border[0], border[-1], border[:, 0], border[:, -1] = 1, 1, 1, 1
    near = cv2.dilate(border, disk(2.0 * CLEARANCE_PX + 1.0))
    candidate = (near == 0) & (response > FURROW_LEVEL) & ~hair
    at = np.flatnonzero(candidate)
    at = at[_across_maximum(response, at)]
    mask = np.zeros(response.shape, dtype=bool)
    mask.ravel()[at] = True
    count, labels = label_components(mask, connectivity=8)
    piece = labels.ravel()[at]
    # the clearance's edge: its pixels next to the band around the borders
    root = cv2.dilate(near, np.ones((3, 3), np.uint8)).ravel()[at].view(bool)
    pieces = _Pieces.of(piece, count, at, response, root)
    keep = pieces.spurs()
    mask.ravel()[at[~keep[piece]]] = False
    lengths = pieces.extent_px[keep] + _root_lengths(border, pieces, keep)
    return Spurs(mask, lengths, pieces.angle_rad[keep] % np.pi)


@dataclass(frozen=True)
class _Pieces:
    """Per 8-connected piece of centre line (0: none): pixel count, mean response, centre,
    principal axis and extent, and the centre of its pixels on the clearance's edge (its root;
    ``roots``: how many)."""

    pixels: np.ndarray
    mean_response: np.ndarray
    centre: tuple[np.ndarray, np.ndarray]
    angle_rad: np.ndarray
    variances: tuple[np.ndarray, np.ndarray]  # along and across the principal axis
    roots: np.ndarray
    root: tuple[np.ndarray, np.ndarray]

    @classmethod
    def of(cls, piece: np.ndarray, count: int, at: np.ndarray, response: np.ndarray,
           root: np.ndarray) -> _Pieces:
        """The pieces of the pixels ``at`` (flat indices; ``piece``: each one's piece;
        ``root``: whether it lies on the clearance's edge)."""
        rows, cols = rows_and_columns(at, response.shape[1])
        pixels = np.bincount(piece, minlength=count).astype(np.float64)
        weight = np.maximum(pixels, 1.0)
        mean_x = np.bincount(piece, cols, count) / weight
        mean_y = np.bincount(piece, rows, count) / weight
        cxx = np.bincount(piece, cols * cols, count) / weight - mean_x**2
        cyy = np.bincount(piece, rows * rows, count) / weight - mean_y**2
        cxy = np.bincount(piece, cols * rows, count) / weight - mean_x * mean_y
        half_gap = np.sqrt(0.25 * (cxx - cyy) ** 2 + cxy * cxy)
        roots = np.bincount(piece, root, count)
        root_weight = np.maximum(roots, 1.0)
        return cls(pixels, np.bincount(piece, response.ravel()[at], count) / weight,
                   (mean_x, mean_y), 0.5 * np.arctan2(2.0 * cxy, cxx - cyy),
                   (0.5 * (cxx + cyy) + half_gap, 0.5 * (cxx + cyy) - half_gap), roots,
                   (np.bincount(piece, cols * root, count) / root_weight,
                    np.bincount(piece, rows * root, count) / root_weight))

    @property
    def extent_px(self) -> np.ndarray:
        """Length along the principal axis: n for a straight run of n pixels at any angle."""
        extent: np.ndarray = np.sqrt(12.0 * np.maximum(self.variances[0], 0.0) + 1.0)
        return extent

    def spurs(self) -> np.ndarray:
        """Which pieces are spurs (step 3)."""
        along, across = self.variances
        keep: np.ndarray = (
            (self.pixels >= MIN_SPUR_PX)
            & (along >= MIN_ELONGATION * np.maximum(across, 1.0 / 12.0))  # a pixel's own
            & (self.mean_response > STRONG_VALLEY)
            & (self.roots > 0)
        )
        keep[0] = False
        return keep


def _root_lengths(border: np.ndarray, pieces: _Pieces, keep: np.ndarray) -> np.ndarray:
    """Per spur (``keep``): the length its root hides in the band (step 4), from the root
    outwards along the principal axis to the first pixel next to a border, in whole pixel
    steps up to ``MAX_ROOT_CLEARANCES`` clearances; the clearance where none lies that far."""
    root_x, root_y = pieces.root[0][keep], pieces.root[1][keep]
    angle = pieces.angle_rad[keep]
    step_x, step_y = np.cos(angle), np.sin(angle)
    away = step_x * (root_x - pieces.centre[0][keep]) + step_y * (root_y - pieces.centre[1][keep])
    step_x, step_y = np.copysign(step_x, away * step_x), np.copysign(step_y, away * step_y)
    height, width = border.shape
    touching = cv2.dilate(border, np.ones((3, 3), np.uint8))
    distance = np.arange(1.0, MAX_ROOT_CLEARANCES * CLEARANCE_PX + 0.5)[:, None]  # (steps, 1)
    x = np.rint(root_x + distance * step_x).clip(0, width - 1).astype(np.int64)
    y = np.rint(root_y + distance * step_y).clip(0, height - 1).astype(np.int64)
    hit = touching[y, x] > 0  # (steps, spurs)
    hidden = np.where(hit.any(axis=0), distance[hit.argmax(axis=0), 0], CLEARANCE_PX)
    return hidden


def _across_maximum(response: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Which of the pixels ``at`` (flat indices, at least one pixel from the frame edge) are a
    maximum of the response across the furrow: along the pixel direction nearest to the
    Hessian's eigenvector of the most negative eigenvalue, which must be below 0."""
    width = response.shape[1]
    flat = response.ravel()
    centre = flat[at]
    dxx = flat[at + 1] + flat[at - 1] - 2.0 * centre
    dyy = flat[at + width] + flat[at - width] - 2.0 * centre
    dxy = 0.25 * (flat[at + width + 1] + flat[at - width - 1]
                  - flat[at + width - 1] - flat[at - width + 1])
    half_gap = np.sqrt(0.25 * (dxx - dyy) ** 2 + dxy * dxy)
    curving = 0.5 * (dxx + dyy) - half_gap < 0.0
    # the eigenvector of the larger eigenvalue lies at 0.5 atan2; across is a right angle on
    across = 0.5 * np.arctan2(2.0 * dxy, dxx - dyy) + 0.5 * np.pi
    direction = np.rint(across / (0.25 * np.pi)).astype(np.int64) % 4
    offset = np.array([1, width + 1, width, width - 1])[direction]
    maximum: np.ndarray = curving & (centre >= flat[at + offset]) & (centre >= flat[at - offset])
    return maximum
