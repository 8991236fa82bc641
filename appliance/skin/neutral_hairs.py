"""Grey and white hairs: strands greyer than the skin around them, told from shine by shape.

``hills.hair_mask`` finds brown hairs by their colour: their blue falls against their red, as
melanin absorbs. A grey or white hair takes none of the skin's red, so its blue/red ratio
*rises* against the skin around it, where furrows and pores, shadows, keep the skin's ratio.
Left unfound it reads as a furrow: it cuts every hill it crosses. Shine (white light off hill
tops) lifts the ratio too, so colour alone is not enough; a hair is told by its shape. At the
canonical 20 µm/px (``preprocess``):
1. Greyer pixels: the white top-hat of the blue/red ratio (by a square wider than the thickest
   hair, ``STRAND_MAX_PX``) above ``contrast``.
2. Long: on a 4x coarser grid (a cell is greyer where a hair's width of it is), the components
   spanning at least ``STRAND_MIN_EXTENT_PX`` (1 mm: several hill diameters, longer than any
   furrow piece between its junctions or any cluster of shine facets). A frame without one
   stops here.
3. Narrow: what survives an opening by that square is a blob (shine on a hill top, a pale
   spot), not a strand, and is taken out; a hair keeps its width all along, where it crosses
   furrows too. What is left must still span ``STRAND_MIN_EXTENT_PX``.
4. Greyer than the skin, not only than its surround: the strand's mean ratio lies above the
   frame's by ``contrast`` (a strip of skin between two brown hairs rises against them, not
   against the skin).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from appliance.skin.borders import rows_and_columns

# Set on the project's generator only (preset wide, seeds 11 and 12: the greyer components of
# its grey hairs span 146-507 work px, every other one at most 82, a strip of skin between two
# brown hairs, most under 40); never on the second renderer, the blind renderers or seed 1.
STRAND_MAX_PX = 7  # 140 µm: wider than the thickest hair (110 µm) with its blur
STRAND_MIN_EXTENT_PX = 50  # 1 mm at 20 µm/px
COARSE = 4  # the long-component test's grid (step 2), work px a cell
COARSE_SHARE = 0.25  # greyer share of a cell for it to hold a strand: a 2 px hair across it
_CELL_ROW = np.dtype(f"u{COARSE}")  # a cell's row of COARSE bytes as one integer


def neutral_hair_mask(ratio: np.ndarray, contrast: float) -> np.ndarray:
    """Pixels of grey or white hairs (steps 1-4) in the blue/red ratio image (uint8, x 128) of
    a work-scale frame; ``contrast``: how far (ratio levels) a hair lies above the skin."""
    kernel = np.ones((STRAND_MAX_PX, STRAND_MAX_PX), np.uint8)
    top = cv2.morphologyEx(ratio, cv2.MORPH_TOPHAT, kernel)
    greyer = cv2.threshold(top, contrast, 255, cv2.THRESH_BINARY)[1]
    candidates = _long_strands(greyer)
    if not candidates:  # most frames: no long greyer strand
        return np.zeros(ratio.shape, dtype=bool)
    hair = np.zeros(ratio.shape, dtype=np.uint8)
    skin_ratio = cv2.mean(ratio)[0]
    for rows, columns, near in candidates:
        strand = cv2.bitwise_and(greyer[rows, columns], near)  # 0/1
        # an opening's survivors are blobs wider than a hair (step 3)
        narrow = cv2.subtract(strand, cv2.morphologyEx(strand, cv2.MORPH_OPEN, kernel))
        cv2.bitwise_or(hair[rows, columns], greyer_long_pieces(
            narrow, ratio[rows, columns], skin_ratio + contrast), dst=hair[rows, columns])
    # widened by one pixel for the hair's blur
    found: np.ndarray = cv2.dilate(hair, np.ones((3, 3), np.uint8)).view(bool)
    return found


def _long_strands(greyer: np.ndarray) -> list[tuple[slice, slice, np.ndarray]]:
    """Each long component of ``greyer`` (0/255) on the coarse grid (step 2): its bounding box
    in work pixels (rows, columns) and its cells there, as a 0/1 mask of work pixels."""
    # a component spanning STRAND_MIN_EXTENT_PX holds as many cells as it spans, each with
    # COARSE_SHARE of its pixels greyer (most frames have fewer greyer pixels or cells in all)
    least_cells = -(-STRAND_MIN_EXTENT_PX // COARSE)
    if cv2.countNonZero(greyer) < least_cells * math.ceil(COARSE_SHARE * COARSE**2):
        return []
    cells = greyer_cells(greyer)
    if cv2.countNonZero(cells) < least_cells:
        return []
    count, labels = cv2.connectedComponents(cells, connectivity=8, ltype=cv2.CV_16U)
    found = []
    for label in np.flatnonzero(label_extents(cells, labels, count)[1:] * COARSE
                                >= STRAND_MIN_EXTENT_PX) + 1:
        rows, columns = np.nonzero(labels == label)
        top, bottom, left, right = rows.min(), rows.max() + 1, columns.min(), columns.max() + 1
        own = (labels[top:bottom, left:right] == label).astype(np.uint8)
        near = cv2.resize(own, None, fx=COARSE, fy=COARSE, interpolation=cv2.INTER_NEAREST)
        found.append((slice(top * COARSE, bottom * COARSE), slice(left * COARSE, right * COARSE),
                      near))
    return found


def greyer_cells(greyer: np.ndarray) -> np.ndarray:
    """The coarse grid's cells (``COARSE`` work px a side, the last part-cells left out) with
    at least ``COARSE_SHARE`` of their pixels greyer (``greyer``: 0/255), as 0/1: the cells
    whose ``cv2.resize(..., INTER_AREA)`` reads above that share of 255, counted rather than
    averaged (a quarter of 255, 63.75, rounds to 64: above the share)."""
    height, width = greyer.shape
    rows, columns = height // COARSE, width // COARSE
    # each row's COARSE bytes of a cell (0/1) as one integer: its greyer pixels are its set bits
    whole = np.ascontiguousarray(greyer[: rows * COARSE, : columns * COARSE] & 1)
    bits = np.bitwise_count(whole.view(_CELL_ROW))  # (rows * COARSE, columns), 0..COARSE
    counts = bits[0::COARSE].copy()
    for row in range(1, COARSE):
        counts += bits[row::COARSE]
    cells: np.ndarray = np.greater_equal(counts, COARSE_SHARE * COARSE**2).view(np.uint8)
    return cells


def greyer_long_pieces(strand: np.ndarray, ratio: np.ndarray, above: float) -> np.ndarray:
    """The 8-connected pieces of ``strand`` (0/1) spanning ``STRAND_MIN_EXTENT_PX`` whose mean
    ``ratio`` lies above ``above`` (step 4), as one 0/1 mask: every piece read in one pass (a
    frame of close grey stripes holds hundreds)."""
    count, labels = cv2.connectedComponents(strand, connectivity=8)
    spans = label_extents(strand, labels, count) >= STRAND_MIN_EXTENT_PX
    spans[0] = False
    at = np.flatnonzero(strand)
    of = labels.ravel().take(at)
    sums = np.bincount(of, weights=ratio.ravel().take(at), minlength=count)
    pixels = np.maximum(np.bincount(of, minlength=count), 1)
    keep = spans & (sums * (1.0 / pixels) > above)  # the mean as cv2.mean reads it
    found: np.ndarray = np.take(keep.view(np.uint8), np.asarray(labels))
    return found


def label_extents(mask: np.ndarray, labels: np.ndarray, count: int) -> np.ndarray:
    """Each label's extent (px): the longer side of its bounding box, as
    ``cv2.connectedComponentsWithStats`` reads it, from the few pixels of a sparse ``mask``
    (its stats cost a pass over every pixel)."""
    height, width = mask.shape
    at = np.flatnonzero(mask)
    label = labels.ravel()[at]
    extent = np.zeros(count, dtype=np.int64)
    for position, size in zip(rows_and_columns(at, width), (height, width), strict=True):
        low, high = np.full(count, size), np.full(count, -1)
        np.minimum.at(low, label, position)
        np.maximum.at(high, label, position)
        np.maximum(extent, high - low + 1, out=extent)
    return extent
